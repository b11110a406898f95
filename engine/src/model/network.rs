//! The network Fovea probes: a chain of convolutions (any square kernel,
//! stride, dilation and grouping, any padding), each followed by a ReLU, a
//! leaky ReLU or a ReLU clipped at a ceiling (ReLU6), with max pooling (any square window, stride and padding) between them,
//! optionally followed by a dense head.
//! Extracted from an ONNX graph, with the weights, plus the geometry (shapes,
//! fields of view) at a working input size.

use crate::error::{Error, Result};
use fovea_onnx::proto::{ModelProto, NodeProto, TensorProto, type_proto};
use fovea_onnx::{attr, attr_int, attr_ints, attr_str, tensor_f32, tensor_i64};
use std::collections::HashMap;

/// Layout of the model file's input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        }
    }
}

/// Where a convolution's kernel sits on its input: a square kernel with the
/// same stride and dilation along both axes, and zero padding per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// ONNX order: top, left, bottom, right.
    pub pads: [usize; 4],
    pub groups: usize,
}

impl ConvShape {
    /// VGG's 3x3 stride-1 convolution padded by 1.
    pub const SAME_3X3: ConvShape = ConvShape {
        kernel: 3,
        stride: 1,
        dilation: 1,
        pads: [1; 4],
        groups: 1,
    };

    /// Input pixels one output spans along an axis: `dilation * (kernel - 1) + 1`.
    pub fn extent(&self) -> usize {
        self.dilation * (self.kernel - 1) + 1
    }

    /// Padding before and after the input along `axis` (0: rows, 1: columns).
    pub fn pad(&self, axis: usize) -> (usize, usize) {
        (self.pads[axis], self.pads[axis + 2])
    }

    /// Output length along `axis` for an input of `len` (0 when the padded
    /// input is shorter than the kernel).
    pub fn output_len(&self, len: usize, axis: usize) -> usize {
        let (b, e) = self.pad(axis);
        let padded = len + b + e;
        if padded < self.extent() {
            0
        } else {
            (padded - self.extent()) / self.stride + 1
        }
    }

    /// The input window outputs `span` read along `axis` (it may reach into
    /// the padding, outside `[0, len)`).
    pub fn input_span(&self, span: Span, axis: usize) -> Span {
        Span {
            start: span.start * self.stride as i64 - self.pad(axis).0 as i64,
            len: (span.len - 1) * self.stride + self.extent(),
        }
    }

    /// The ONNX attributes of the convolution with `pads`.
    pub fn attrs(&self, pads: [i64; 4]) -> Vec<(&'static str, fovea_onnx::Attr)> {
        use fovea_onnx::Attr;
        let pair = |v: usize| Attr::Ints(vec![v as i64; 2]);
        vec![
            ("kernel_shape", pair(self.kernel)),
            ("strides", pair(self.stride)),
            ("dilations", pair(self.dilation)),
            ("group", Attr::Int(self.groups as i64)),
            ("pads", Attr::Ints(pads.to_vec())),
        ]
    }

    /// The file's own padding as attribute values.
    pub fn own_pads(&self) -> [i64; 4] {
        self.pads.map(|p| p as i64)
    }
}

/// A max or average pool: a square window with the same stride along both
/// axes, padding per side (never a max pool's maximum; zeros counted in an
/// average), and the output size rounded down or up (max pools only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    pub kernel: usize,
    pub stride: usize,
    /// ONNX order: top, left, bottom, right.
    pub pads: [usize; 4],
    pub ceil: bool,
    /// An average pool: linear, so it keeps no switches.
    pub average: bool,
}

impl PoolShape {
    /// VGG's 2x2 stride-2 pool without padding.
    pub const HALVING: PoolShape = PoolShape {
        kernel: 2,
        stride: 2,
        pads: [0; 4],
        ceil: false,
        average: false,
    };

    /// The window as a convolution's (for spans and attributes).
    fn window(&self) -> ConvShape {
        ConvShape {
            kernel: self.kernel,
            stride: self.stride,
            dilation: 1,
            pads: self.pads,
            groups: 1,
        }
    }

    /// The 2x2/2 pool: its windows tile the input, so its switches are one
    /// bit per input position (the other pools keep each output's cell).
    pub fn halves(&self) -> bool {
        *self == PoolShape::HALVING
    }

    /// Output length along `axis` for an input of `len`. In ceil mode a last
    /// window that would start in the bottom/right padding is dropped (as
    /// ONNX Runtime and PyTorch do).
    pub fn output_len(&self, len: usize, axis: usize) -> usize {
        let (b, e) = self.window().pad(axis);
        let padded = len + b + e;
        if padded < self.kernel {
            return 0;
        }
        let over = padded - self.kernel;
        let mut n = over / self.stride + 1;
        if self.ceil && !over.is_multiple_of(self.stride) {
            n += 1;
            if (n - 1) * self.stride >= len + b {
                n -= 1;
            }
        }
        n
    }

    /// The input window outputs `span` read along `axis`.
    pub fn input_span(&self, span: Span, axis: usize) -> Span {
        self.window().input_span(span, axis)
    }

    /// Max pool `self` then max pool `next` as one max pool, when they are
    /// one: a maximum of maxima is the maximum over the union of their
    /// windows. Checked on every input length up to 128: the same output
    /// lengths, and each output reading the same input cells.
    pub fn then(self, next: PoolShape) -> Option<PoolShape> {
        if self.average || next.average {
            return None;
        }
        let both = PoolShape {
            kernel: self.kernel + (next.kernel - 1) * self.stride,
            stride: self.stride * next.stride,
            pads: std::array::from_fn(|k| self.pads[k] + next.pads[k] * self.stride),
            ceil: false,
            average: false,
        };
        let cells = |p: &PoolShape, o: usize, len: usize, axis: usize| {
            let start = p.window_start(o, axis);
            (start.max(0)..(start + p.kernel as i64).min(len as i64)).map(|c| c as usize)
        };
        let same = |both: &PoolShape| {
            (0..2).all(|axis| {
                (1..=128).all(|len| {
                    let inner = self.output_len(len, axis);
                    let outer = next.output_len(inner, axis);
                    outer == both.output_len(len, axis)
                        && (0..outer).all(|o| {
                            let mut union = vec![false; len];
                            for j in cells(&next, o, inner, axis) {
                                for c in cells(&self, j, len, axis) {
                                    union[c] = true;
                                }
                            }
                            let mut one = vec![false; len];
                            for c in cells(both, o, len, axis) {
                                one[c] = true;
                            }
                            union == one
                        })
                })
            })
        };
        [false, true]
            .into_iter()
            .map(|ceil| PoolShape { ceil, ..both })
            .find(same)
    }

    /// The ONNX attributes of the pool with `pads` (no ceil mode: callers
    /// running it on a window size it to whole windows). Zero pads are left
    /// out, as the model files write them (ONNX Runtime's layout
    /// optimisations pick their kernels by the node as written).
    pub fn attrs(&self, pads: [i64; 4]) -> Vec<(&'static str, fovea_onnx::Attr)> {
        let mut a = self.window().attrs(pads);
        a.retain(|(name, _)| match *name {
            "kernel_shape" | "strides" => true,
            "pads" => pads.iter().any(|&p| p != 0),
            _ => false,
        });
        a
    }

    /// The pool's own attributes (padding, and ceil mode when set: opsets
    /// before 10 do not know the attribute; an average over padding counts
    /// the zeros).
    pub fn own_attrs(&self) -> Vec<(&'static str, fovea_onnx::Attr)> {
        let mut a = self.attrs(self.window().own_pads());
        if self.ceil {
            a.push(("ceil_mode", fovea_onnx::Attr::Int(1)));
        }
        if self.average && self.pads.iter().any(|&p| p > 0) {
            a.push(("count_include_pad", fovea_onnx::Attr::Int(1)));
        }
        a
    }

    /// The ONNX op.
    pub fn op(&self) -> &'static str {
        if self.average {
            "AveragePool"
        } else {
            "MaxPool"
        }
    }

    /// Row or column of the first input cell of output `o`'s window (in the
    /// padding when negative).
    pub fn window_start(&self, o: usize, axis: usize) -> i64 {
        (o * self.stride) as i64 - self.pads[axis] as i64
    }
}

/// The piecewise-linear activation after a conv layer. A recording's mask
/// bit says a unit is on its identity piece (slope 1); the gates of
/// generated graphs carry one of three states per unit: 0 (zero, or beyond
/// the image or the switches), 1 (identity) and [`Activation::OTHER`], the
/// other piece where the unit is not zero: the leaky slope, or the
/// ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `x` for `x > 0`, `alpha * x` otherwise.
    Leaky(f32),
    /// `min(max(0, x), ceiling)`: ReLU6 is `Clip(0, 6)`.
    Clip(f32),
    /// No activation: `x` (MobileNet v2's linear bottlenecks). Its mask
    /// marks positive units as a leaky ReLU's with slope 1 would; both
    /// pieces pass everything, so it bounds no linear region.
    Linear,
}

impl Activation {
    /// The gate state of a unit on the activation's other piece.
    pub const OTHER: u8 = 2;

    /// The slope of each gate state.
    pub fn slopes(self) -> [f32; 3] {
        match self {
            Activation::Leaky(alpha) => [0.0, 1.0, alpha],
            Activation::Linear => [0.0, 1.0, 1.0],
            Activation::Relu | Activation::Clip(_) => [0.0, 1.0, 0.0],
        }
    }

    /// The constant each gate state adds (a clipped unit's ceiling).
    pub fn offsets(self) -> [f32; 3] {
        match self {
            Activation::Clip(c) => [0.0, 0.0, c],
            Activation::Relu | Activation::Leaky(_) | Activation::Linear => [0.0; 3],
        }
    }

    /// Whether a unit off the identity piece with output `a` is on the
    /// other piece (exact on float16 outputs: off the identity piece a
    /// clipped unit is 0 or its ceiling, a leaky one not positive).
    pub fn other(self, a: f32) -> bool {
        match self {
            Activation::Relu => false,
            Activation::Leaky(_) | Activation::Linear => true,
            Activation::Clip(_) => a > 0.0,
        }
    }
}

/// One conv layer (paper numbers 1..=13 for VGG-16).
#[derive(Debug, Clone)]
pub struct ConvLayer {
    pub number: usize,
    pub name: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub shape: ConvShape,
    /// The pool preceding the convolution.
    pub pool: Option<PoolShape>,
    pub activation: Activation,
    /// OIHW, `[out, in / groups, kernel, kernel]`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// The activation's output tensor in the model file (NCHW).
    pub relu_output: String,
    pub conv_node: String,
    /// The BatchNormalization node folded into `weight` and `bias` at load.
    pub batch_norm: Option<String>,
    /// A shortcut added to the pre-activation (a residual block's sum).
    pub residual: Option<Residual>,
    /// The layers whose outputs, concatenated on channels in this order,
    /// the pool and the convolution read (0: the image). A chain's layer i
    /// reads `[i - 1]`; the branches of an Inception block read the block's
    /// input, and the layer after it the branches' ends.
    pub sources: Vec<usize>,
    /// The tensor of the model file holding that input (before the pool):
    /// the one source's activation, or the Concat's output.
    pub input: String,
    /// A batch norm with no convolution before it (pre-activation
    /// networks: ResNet v2's blocks start with batch norm and ReLU), held
    /// as the depthwise 1x1 convolution it is; it has no filters to draw
    /// at random, so the random-weights mode keeps it.
    pub norm_only: bool,
}

/// A residual sum into a layer's pre-activation, as ResNet's blocks end:
/// the input of conv layer `from` (after its pool) added through a
/// projection convolution or as it is. The sum is linear, so a recording's
/// gates still fix one affine map; backward passes split at the sum and add
/// up again at `from`'s input.
#[derive(Debug, Clone)]
pub struct Residual {
    pub from: usize,
    /// The shortcut's convolution (batch norm folded in); None for the
    /// identity.
    pub projection: Option<Box<ConvLayer>>,
    pub add_node: String,
}

impl Residual {
    /// The window of the shortcut's source that window `w` of the sum reads.
    pub fn input_span(&self, w: (Span, Span)) -> (Span, Span) {
        match &self.projection {
            Some(p) => (p.shape.input_span(w.0, 0), p.shape.input_span(w.1, 1)),
            None => w,
        }
    }
}

impl ConvLayer {
    /// The grid the layer's pool (or convolution) reads, in `geometry`:
    /// its sources' (which share it), with all their channels.
    pub fn input_geom(&self, geometry: &[LayerGeom]) -> LayerGeom {
        let source = geometry[self.sources.first().copied().unwrap_or(0)];
        LayerGeom {
            channels: self.in_channels,
            ..source
        }
    }

    /// The max pool preceding the convolution (whose switches a recording
    /// keeps).
    pub fn max_pool(&self) -> Option<PoolShape> {
        self.pool.filter(|p| !p.average)
    }

    /// A layer with its geometry and no weights (enough for shapes, fields
    /// of view and FOV trees).
    pub fn bare(
        number: usize,
        (in_channels, out_channels): (usize, usize),
        shape: ConvShape,
        pool: Option<PoolShape>,
    ) -> ConvLayer {
        ConvLayer {
            number,
            name: String::new(),
            in_channels,
            out_channels,
            shape,
            pool,
            activation: Activation::Relu,
            weight: vec![],
            bias: vec![],
            relu_output: String::new(),
            conv_node: String::new(),
            batch_norm: None,
            residual: None,
            sources: vec![number.saturating_sub(1)],
            input: String::new(),
            norm_only: false,
        }
    }
}

/// A fully connected layer of the head (reported, run by ONNX Runtime as part
/// of the original graph).
#[derive(Debug, Clone)]
pub struct DenseLayer {
    pub number: usize,
    pub name: String,
    pub units: usize,
    pub node: String,
    /// The tensor holding the layer's pre-activation: the Gemm's output, or
    /// the bias Add after a MatMul.
    pub preactivation: String,
    /// A 1x1 convolution on globally pooled features (a classifier written
    /// as a convolution, as Keras' MobileNet and MXNet's MobileNet v2 do):
    /// its pre-activation is `[N, units, 1, 1]`.
    pub pointwise: bool,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub input_name: String,
    pub layout: Layout,
    /// Spatial input size fixed by the file, if any.
    pub native_size: Option<(usize, usize)>,
    pub convs: Vec<ConvLayer>,
    /// The pool after the last conv (feeding the head).
    pub pool_after_last: Option<PoolShape>,
    /// The tensor where the conv chain ends and the head begins.
    pub chain_end: String,
    /// The layers whose outputs, concatenated on channels, that tensor
    /// holds (before `pool_after_last`): the last layer, or the branches
    /// of a last Inception block.
    pub end_sources: Vec<usize>,
    pub dense: Vec<DenseLayer>,
    /// The graph output holding class scores, when the model has a head.
    pub head_output: Option<String>,
    /// Classes of the head's output, when the file says.
    pub classes: Option<usize>,
    /// Why the probe-able layers end before the head, when they do (the
    /// node and op where the chain stops; the rest of the model still runs
    /// for the predictions).
    pub probe_stop: Option<String>,
    pub producer: String,
    pub labels: Vec<String>,
}

/// Ops a dense head may contain (shape plumbing, dense layers, activations).
const HEAD_OPS: &[&str] = &[
    "Flatten",
    "Reshape",
    "Transpose",
    "Shape",
    "Gather",
    "Cast",
    "Slice",
    "Concat",
    "Unsqueeze",
    "Squeeze",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Sub",
    "Div",
    "Relu",
    "Dropout",
    "Softmax",
    "BatchNormalization",
    "Identity",
    "Constant",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "MaxPool",
    "ConstantOfShape",
    "ReduceProd",
];

impl Network {
    pub fn from_model(model: &ModelProto) -> Result<Network> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| Error::Model("the model has no graph".into()))?;
        let mut consts: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        for n in &graph.node {
            if n.op_type == "Constant"
                && let (Some(out), Some(t)) = (
                    n.output.first(),
                    attr(n, "value").and_then(|a| a.t.as_ref()),
                )
            {
                consts.insert(out.as_str(), t);
            }
            // PyTorch's exporter writes equal parameters once and the
            // others as an Identity of it.
            if n.op_type == "Identity"
                && let (Some(input), Some(out)) = (n.input.first(), n.output.first())
                && let Some(&t) = consts.get(input.as_str())
            {
                consts.insert(out.as_str(), t);
            }
        }
        let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
        for n in &graph.node {
            for i in &n.input {
                consumers.entry(i.as_str()).or_default().push(n);
            }
        }
        let input = graph
            .input
            .iter()
            .find(|i| !consts.contains_key(i.name.as_str()))
            .ok_or_else(|| Error::Model("the graph has no input".into()))?;
        let dims: Vec<Option<i64>> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(
                                fovea_onnx::proto::tensor_shape_proto::dimension::Value::DimValue(
                                    v,
                                ),
                            ) if v > 0 => Some(v),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if dims.len() != 4 {
            return Err(Error::Model(format!(
                "input {} has {} dimensions; expected an image batch [N, C, H, W] or [N, H, W, C]",
                input.name,
                dims.len()
            )));
        }
        let single = |t: &str| -> Option<&NodeProto> {
            match consumers.get(t).map(|v| v.as_slice()) {
                Some([n]) => Some(*n),
                _ => None,
            }
        };
        let readers =
            |t: &str| -> Vec<&NodeProto> { consumers.get(t).cloned().unwrap_or_default() };
        let mut cur = input.name.clone();
        let mut layout = Layout::Nchw;
        if let Some(n) = single(&cur)
            && n.op_type == "Transpose"
        {
            if attr_ints(n, "perm").as_deref() == Some(&[0, 3, 1, 2]) {
                layout = Layout::Nhwc;
                cur = n.output[0].clone();
            } else {
                return Err(node_error(
                    n,
                    "transposes the input with an unexpected permutation",
                ));
            }
        }
        let (channel_dim, h_dim, w_dim) = match layout {
            Layout::Nchw => (1, 2, 3),
            Layout::Nhwc => (3, 1, 2),
        };
        if let Some(c) = dims[channel_dim]
            && c != 3
        {
            return Err(Error::Model(format!(
                "input {} has {c} channels; expected 3",
                input.name
            )));
        }
        let native_size = match (dims[h_dim], dims[w_dim]) {
            (Some(h), Some(w)) => Some((h as usize, w as usize)),
            _ => None,
        };

        let mut convs: Vec<ConvLayer> = Vec::new();
        let mut channels = 3usize;
        let mut pending_pool: Option<PoolShape> = None;
        let mut block = 1usize;
        let mut in_block = 0usize;
        // Why the probe-able chain ends before the graph's head, if it does.
        let mut stop: Option<String> = None;
        // A residual block's shortcut, from its start until its sum.
        let mut pending: Option<PendingResidual> = None;
        // Each layer's module path, when the file's node names carry one.
        let mut paths: Vec<String> = Vec::new();
        // The layers whose outputs `cur` holds (concatenated), and the
        // tensor holding them before any pool.
        let mut sources = vec![0usize];
        let mut source_tensor = cur.clone();
        // The Inception block being read, and the next branch's first node.
        let mut junction: Option<Junction> = None;
        let mut forced: Option<&NodeProto> = None;
        let position: HashMap<*const NodeProto, usize> = graph
            .node
            .iter()
            .enumerate()
            .map(|(k, n)| (n as *const NodeProto, k))
            .collect();
        loop {
            // A branch reaching its block's Concat: on to the next branch,
            // or past the Concat when every branch is read.
            // A branch that is no layer at all (DenseNet's: the block's
            // input joins the Concat as it is) ends where it starts.
            if let (Some(f), Some(j)) = (forced, junction.as_ref())
                && std::ptr::eq(f, j.concat)
            {
                forced = None;
            }
            if forced.is_none()
                && let Some(j) = junction.as_mut()
                && j.concat.input.contains(&cur)
            {
                if pending_pool.is_some() || pending.is_some() {
                    stop = Some(format!(
                        "{cur} joins the Concat {:?} after a pool or inside a residual block; Fovea joins the outputs of layers",
                        display_name(j.concat)
                    ));
                    break;
                }
                j.parts.insert(cur.clone(), (sources.clone(), channels));
                if let Some(next) = j.todo.pop() {
                    forced = Some(next);
                    cur.clone_from(&j.start);
                    sources.clone_from(&j.sources);
                    source_tensor.clone_from(&j.start_tensor);
                    channels = j.channels;
                    pending_pool = j.pool;
                    continue;
                }
                let mut joined = Vec::new();
                let mut width = 0;
                for part in &j.concat.input {
                    let Some((s, c)) = j.parts.get(part) else {
                        stop = Some(format!(
                            "the Concat {:?} joins {part}, which its block's input does not lead to",
                            display_name(j.concat)
                        ));
                        break;
                    };
                    joined.extend_from_slice(s);
                    width += c;
                }
                if stop.is_some() {
                    break;
                }
                cur = j.concat.output.first().cloned().unwrap_or_default();
                source_tensor.clone_from(&cur);
                sources = joined;
                channels = width;
                junction = None;
                block += 1;
                in_block = 0;
                continue;
            }
            let n = match forced.take() {
                Some(n) => n,
                None => {
                    let readers = consumers.get(cur.as_str()).map_or(&[][..], Vec::as_slice);
                    let branch = readers.len() > 1 && !convs.is_empty();
                    let residual = match readers {
                        [a, b] if branch && pending.is_none() => {
                            residual_start([*a, *b], &cur, &consts, &single, channels)
                        }
                        _ => None,
                    };
                    match residual {
                        Some(Ok((main, shortcut))) => {
                            // ResNet's stages start with a strided
                            // projection: a new block in the layer names.
                            if shortcut
                                .projection
                                .as_ref()
                                .is_some_and(|p| p.shape.stride > 1)
                                && pending_pool.is_none()
                            {
                                block += 1;
                                in_block = 0;
                                // A pre-activation block's batch norm,
                                // read before its projection showed the
                                // new stage, opens it.
                                if let Some(norm) = convs.last_mut().filter(|c| c.norm_only) {
                                    in_block = 1;
                                    norm.name = format!("conv{block}_1");
                                }
                            }
                            pending = Some(PendingResidual {
                                from: convs.len() + 1,
                                ..shortcut
                            });
                            main
                        }
                        Some(Err(Error::Model(why))) => {
                            stop = Some(why);
                            break;
                        }
                        Some(Err(e)) => return Err(e),
                        None if branch => match junction_start(readers, &consumers, &position) {
                            Some(_) if junction.is_some() => {
                                stop = Some(format!(
                                    "{cur} branches again inside a branch of an Inception block; Fovea reads blocks whose branches are chains"
                                ));
                                break;
                            }
                            Some(_) if pending_pool.is_some_and(|p| p.halves()) => {
                                stop = Some(format!(
                                    "{cur} is the output of a 2x2/2 max pool that an Inception block's branches read"
                                ));
                                break;
                            }
                            Some(concat) => {
                                let mut j = Junction::new(
                                    (concat, convs.len()),
                                    readers,
                                    (&cur, &source_tensor),
                                    &sources,
                                    channels,
                                    pending_pool,
                                );
                                forced = j.todo.pop();
                                junction = Some(j);
                                block += 1;
                                in_block = 0;
                                continue;
                            }
                            // Shape plumbing reading the chain's end (a
                            // Flatten written as Shape + Reshape) starts the
                            // head.
                            None if junction.is_none()
                                && readers
                                    .iter()
                                    .all(|n| HEAD_OPS.contains(&n.op_type.as_str())) =>
                            {
                                break;
                            }
                            None => {
                                stop = Some(format!(
                                    "{cur} feeds {} nodes (a branch) that neither start a residual block nor join again in a Concat on channels; Fovea probes chains, residual blocks and Inception blocks",
                                    readers.len()
                                ));
                                break;
                            }
                        },
                        None => match readers {
                            [n] => *n,
                            _ => break,
                        },
                    }
                }
            };
            let step = match n.op_type.as_str() {
                // A zero Pad in front of a convolution (as tf2onnx writes
                // Keras' ZeroPadding2D) is read as the convolution's own.
                // A batch norm with no convolution before it (a
                // pre-activation block's start) is a layer of its own.
                "Conv" | "Pad" | "BatchNormalization" => match n.op_type.as_str() {
                    "Conv" => read_conv(
                        n,
                        (&consts, &single, &readers),
                        channels,
                        [0; 4],
                        &mut pending,
                    ),
                    "BatchNormalization" => read_norm(n, (&consts, &single, &readers), channels),
                    _ => match single(&n.output[0]) {
                        Some(conv) if conv.op_type == "Conv" => {
                            read_pad(n, &consts).and_then(|pads| {
                                read_conv(
                                    conv,
                                    (&consts, &single, &readers),
                                    channels,
                                    pads,
                                    &mut pending,
                                )
                            })
                        }
                        _ => Err(node_error(
                            n,
                            "pads something other than a single convolution",
                        )),
                    },
                }
                .map(|c| {
                    // A pool starts a new block (one not begun already,
                    // as after an Inception block).
                    if pending_pool.is_some() && junction.is_none() && in_block > 0 {
                        block += 1;
                        in_block = 0;
                    }
                    in_block += 1;
                    cur = c.relu_output.clone();
                    channels = c.out_channels;
                    paths.push(c.name.clone());
                    let number = convs.len() + 1;
                    convs.push(ConvLayer {
                        number,
                        name: format!("conv{block}_{in_block}"),
                        pool: pending_pool.take(),
                        sources: std::mem::replace(&mut sources, vec![number]),
                        input: std::mem::replace(&mut source_tensor, cur.clone()),
                        ..c
                    });
                }),
                "MaxPool" | "AveragePool" if !convs.is_empty() => match pending_pool {
                    // The switches of a 2x2/2 pool travel in the gates of
                    // the layer below, which then must have no other reader.
                    None => pool_shape(n).and_then(|p| {
                        if p.halves() && (junction.is_some() || sources.len() > 1) {
                            return Err(node_error(
                                n,
                                "is a 2x2/2 max pool inside or right after an Inception block",
                            ));
                        }
                        pending_pool = Some(p);
                        cur = n.output[0].clone();
                        Ok(())
                    }),
                    // Two max pools in a row in a block (GoogLeNet's pool
                    // branch after the pool between stages) are one larger
                    // max pool; after the last layer a second pool starts
                    // the head.
                    Some(first) => match pool_shape(n).ok().and_then(|p| first.then(p)) {
                        Some(both) if junction.is_some() => {
                            pending_pool = Some(both);
                            cur = n.output[0].clone();
                            Ok(())
                        }
                        _ if junction.is_none() => break,
                        _ => Err(node_error(
                            n,
                            "follows another pool, and the two are not one max pool",
                        )),
                    },
                },
                "Identity" | "Dropout" => {
                    cur = n.output[0].clone();
                    Ok(())
                }
                _ if convs.is_empty() => Err(node_error(
                    n,
                    "where the network should start with a Conv; Fovea reads chains of Conv, a ReLU-like activation and max or average pools",
                )),
                _ if junction.is_some() => Err(node_error(
                    n,
                    "is in a branch of an Inception block and is not a layer or a pool (a Concat inside a branch, as DenseNet's layers write theirs, or another op)",
                )),
                _ if HEAD_OPS.contains(&n.op_type.as_str()) => break,
                _ => Err(node_error(n, "is not a conv, ReLU or pool")),
            };
            match step {
                Ok(()) => {}
                Err(e) if convs.is_empty() => return Err(e),
                Err(Error::Model(why)) => {
                    stop = Some(why);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        // A block left unfinished leaves no layers behind: what the
        // probe-able part holds all leads to where it ends.
        if let Some(j) = junction {
            convs.truncate(j.first_layer);
            paths.truncate(j.first_layer);
            cur = j.start;
            sources = j.sources;
            pending_pool = j.pool;
        }
        if convs.is_empty() {
            return Err(Error::Model(
                "the graph has no convolution after its input".into(),
            ));
        }

        // Whatever follows the chain is the head: list its dense layers when
        // it is a dense head (ops Fovea can differentiate), and find the
        // output holding class scores. Anything else still runs for the
        // predictions, and the probe-able part ends where it begins.
        let mut dense = Vec::new();
        let chain_end_index = graph
            .node
            .iter()
            .position(|n| n.output.contains(&cur))
            .unwrap_or(0);
        let tail = &graph.node[(chain_end_index + 1).min(graph.node.len())..];
        let producers: HashMap<&str, &NodeProto> = tail
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
            .collect();
        let channels_at_end = sources
            .iter()
            .map(|&s| convs.get(s.wrapping_sub(1)).map_or(0, |c| c.out_channels))
            .sum();
        let pointwise = |n: &NodeProto| -> Option<usize> {
            pointwise_classifier(n, &consts, &producers, channels_at_end, 0)
        };
        let foreign = tail
            .iter()
            .find(|n| !HEAD_OPS.contains(&n.op_type.as_str()) && pointwise(n).is_none());
        if let Some(n) = foreign
            && stop.is_none()
        {
            stop = Some(format!(
                "node {:?} ({}) follows the chain and is not part of a dense head",
                display_name(n),
                n.op_type
            ));
        }
        for n in tail.iter().filter(|_| foreign.is_none()) {
            // (units, whether a bias Add may follow, pointwise).
            let read = if let Some(units) = pointwise(n) {
                Some((units, true, true))
            } else if n.op_type == "Gemm" || n.op_type == "MatMul" {
                n.input
                    .get(1)
                    .and_then(|w| consts.get(w.as_str()))
                    .filter(|w| w.dims.len() == 2)
                    .map(|w| {
                        let trans_b = n.op_type == "Gemm" && attr_int(n, "transB") == Some(1);
                        let units = if trans_b { w.dims[0] } else { w.dims[1] } as usize;
                        (units, n.op_type == "MatMul", false)
                    })
            } else {
                None
            };
            let Some((units, bias_add, pointwise)) = read else {
                continue;
            };
            let mut preactivation = n.output[0].clone();
            if bias_add
                && let Some(add) = single(&preactivation)
                && add.op_type == "Add"
                && add
                    .input
                    .iter()
                    .any(|i| *i != preactivation && consts.contains_key(i.as_str()))
            {
                preactivation = add.output[0].clone();
            }
            dense.push(DenseLayer {
                number: convs.len() + 1 + dense.len(),
                name: format!("fc{}", dense.len() + 1),
                units,
                node: display_name(n),
                preactivation,
                pointwise,
            });
        }
        name_by_module_paths(&mut convs, &paths, &dense);
        let head_output = if dense.is_empty() && foreign.is_none() {
            None
        } else {
            graph.output.first().map(|o| o.name.clone())
        };
        let classes = dense
            .last()
            .map(|d| d.units)
            .or_else(|| graph.output.first().and_then(class_count));
        let labels = model
            .metadata_props
            .iter()
            .find(|p| p.key == "labels" || p.key == "classes")
            .map(|p| p.value.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_else(|| match classes {
                Some(n) if n == IMAGENET_LABELS.lines().count() => {
                    IMAGENET_LABELS.lines().map(str::to_string).collect()
                }
                _ => Vec::new(),
            });
        Ok(Network {
            input_name: input.name.clone(),
            layout,
            native_size,
            convs,
            pool_after_last: pending_pool,
            chain_end: cur,
            end_sources: sources,
            dense,
            head_output,
            classes,
            probe_stop: stop,
            producer: model.producer_name.clone(),
            labels,
        })
    }

    /// The grid the head reads in `geometry` (before `pool_after_last`):
    /// its sources', with all their channels.
    pub fn end_geom(&self, geometry: &[LayerGeom]) -> LayerGeom {
        let first = geometry[self.end_sources.first().copied().unwrap_or(0)];
        LayerGeom {
            channels: self.end_sources.iter().map(|&s| geometry[s].channels).sum(),
            ..first
        }
    }

    /// Shapes and fields of view at the working input size. Index 0 is the
    /// input, index i the conv layer numbered i.
    pub fn geometry(&self, input_size: usize) -> Vec<LayerGeom> {
        geometry_of(&self.convs, input_size)
    }

    /// Resolves a layer given by paper number or name.
    pub fn resolve_layer(&self, field: &str, spec: &str) -> Result<LayerId> {
        let n_conv = self.convs.len();
        let last = n_conv + self.dense.len();
        let range = format!(
            "0..={last} or a name such as {}{}",
            self.convs[n_conv - 1].name,
            self.dense
                .first()
                .map(|d| format!(" or {}", d.name))
                .unwrap_or_default()
        );
        // Plain decimal only: "13", not "+13", "013" or " 13".
        let decimal = !spec.is_empty()
            && spec.len() <= 6
            && spec.bytes().all(|b| b.is_ascii_digit())
            && (spec == "0" || !spec.starts_with('0'));
        if let Some(n) = decimal.then(|| spec.parse::<i64>().ok()).flatten() {
            return match n {
                0 => Ok(LayerId::Input),
                n if n >= 1 && n as usize <= n_conv => Ok(LayerId::Conv(n as usize)),
                n if n as usize > n_conv && n as usize <= last => {
                    Ok(LayerId::Dense(n as usize - n_conv - 1))
                }
                _ => Err(Error::invalid(
                    field,
                    format!("layer {n} does not exist; allowed {range}"),
                )),
            };
        }
        if spec == "input" {
            return Ok(LayerId::Input);
        }
        if let Some(c) = self.convs.iter().find(|c| c.name == spec) {
            return Ok(LayerId::Conv(c.number));
        }
        if let Some(i) = self.dense.iter().position(|d| d.name == spec) {
            return Ok(LayerId::Dense(i));
        }
        Err(Error::invalid(
            field,
            format!(
                "unknown layer {}; allowed {range} (numbers in plain decimal)",
                crate::error::quote(spec)
            ),
        ))
    }

    /// Like [`Self::resolve_layer`] but only conv layers are accepted.
    pub fn resolve_conv(&self, field: &str, spec: &str) -> Result<usize> {
        match self.resolve_layer(field, spec)? {
            LayerId::Conv(n) => Ok(n),
            _ => Err(Error::invalid(
                field,
                format!(
                    "layer {} is not a conv layer; allowed 1..={}",
                    crate::error::quote(spec),
                    self.convs.len()
                ),
            )),
        }
    }
}

/// [`Network::geometry`] of a conv chain: each layer's grid from the one
/// below (through the pool in front, then the convolution's output length),
/// its stride the product of the strides below, and its field of view the
/// side of one neuron's window on the input (through residual shortcuts
/// too, the hull of every path).
pub fn geometry_of(convs: &[ConvLayer], input_size: usize) -> Vec<LayerGeom> {
    let mut out = vec![LayerGeom {
        channels: 3,
        height: input_size,
        width: input_size,
        fov: 1,
        stride: 1,
        pooled: false,
    }];
    for (i, c) in convs.iter().enumerate() {
        // The sources of a concatenation share their grid.
        let below = out[c.sources.first().copied().unwrap_or(0).min(i)];
        let (mut h, mut w, mut stride) = (below.height, below.width, below.stride);
        if let Some(p) = c.pool {
            h = p.output_len(h, 0);
            w = p.output_len(w, 1);
            stride *= p.stride;
        }
        h = c.shape.output_len(h, 0);
        w = c.shape.output_len(w, 1);
        stride *= c.shape.stride;
        out.push(LayerGeom {
            channels: c.out_channels,
            height: h,
            width: w,
            fov: fov_tree(convs, i + 1, 0, 0).out[0].0.len,
            stride,
            pooled: c.pool.is_some(),
        });
    }
    out
}

/// The ImageNet-1k class names in the standard class-index order (as
/// torchvision lists them), for heads of 1000 classes whose file names none.
pub const IMAGENET_LABELS: &str = include_str!("imagenet_labels.txt");

/// A layer named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerId {
    Input,
    /// Paper number 1..=convs.
    Conv(usize),
    /// Index into `Network::dense`.
    Dense(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerGeom {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Field of view side and stride, in input pixels.
    pub fov: usize,
    pub stride: usize,
    pub pooled: bool,
}

/// A window `[start, start + len)` on one axis of a layer's grid, possibly
/// reaching outside it (the parts outside are zero padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub len: usize,
}

impl Span {
    /// The part of the span inside `[0, size)`.
    pub fn clip(self, size: usize) -> (usize, usize) {
        let a = self.start.max(0) as usize;
        let b = ((self.start + self.len as i64).max(0) as usize).min(size);
        (a.min(b), b)
    }
}

/// Over window `w` of a (rows, columns) `grid`: 1 where the window lies on
/// the grid, 0 beyond it.
pub fn inside_grid(w: (Span, Span), (h, wd): (usize, usize)) -> Vec<f32> {
    let (ty, tx) = w;
    (0..ty.len * tx.len)
        .map(|k| {
            let (y, x) = (
                ty.start + (k / tx.len) as i64,
                tx.start + (k % tx.len) as i64,
            );
            f32::from(y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < wd)
        })
        .collect()
}

/// The window `w` of a `[3, size, size]` frame as `[3, w.0.len, w.1.len]`,
/// zero where it reaches beyond the frame.
pub fn window_of(frame: &[f32], size: usize, w: (Span, Span)) -> Vec<f32> {
    let (sy, sx) = w;
    let mut out = vec![0f32; 3 * sy.len * sx.len];
    for_rows(size, w, |src, dst, len| {
        out[dst..dst + len].copy_from_slice(&frame[src..src + len]);
    });
    out
}

/// Writes a `[3, w.0.len, w.1.len]` window into a `[3, size, size]` frame
/// where it lies inside; the rest of the frame is left as it is.
pub fn put_window(frame: &mut [f32], size: usize, w: (Span, Span), window: &[f32]) {
    for_rows(size, w, |dst, src, len| {
        frame[dst..dst + len].copy_from_slice(&window[src..src + len]);
    });
}

/// Calls `f(frame offset, window offset, length)` for each row of window
/// `w` inside a `[3, size, size]` frame.
fn for_rows(size: usize, w: (Span, Span), mut f: impl FnMut(usize, usize, usize)) {
    let (sy, sx) = w;
    let (y0, y1) = sy.clip(size);
    let (x0, x1) = sx.clip(size);
    for c in 0..3 {
        for y in y0..y1 {
            let frame = (c * size + y) * size + x0;
            let window = (c * sy.len + (y as i64 - sy.start) as usize) * sx.len
                + (x0 as i64 - sx.start) as usize;
            f(frame, window, x1 - x0);
        }
    }
}

/// The windows a neuron's backward pass touches: `out[i]` at the output of
/// layer i (i = 0 is the input plane), `conv_in[i]` at the input of conv i
/// (after its pool); of that, `reads[i]` is what conv i reads and
/// `shortcut[i]` what layer i's residual reads at `conv_in[from]`. Without
/// residuals `reads` is `conv_in`; with them a source's window is the hull
/// of what its readers need, and each reader takes its part.
#[derive(Debug, Clone)]
pub struct FovTree {
    pub out: Vec<(Span, Span)>,
    pub conv_in: Vec<(Span, Span)>,
    pub reads: Vec<(Span, Span)>,
    pub shortcut: Vec<Option<(Span, Span)>>,
    /// The window at the input of layer i's pool (its conv input without
    /// one) on its sources' grid: `out[i - 1]` in a chain; a source read by
    /// several layers holds the hull of their windows.
    pub below: Vec<(Span, Span)>,
    /// Whether layer i is in the tree: the top or a layer it reads through
    /// others (the branches of an Inception block beside the top's own are
    /// not). Windows of layers out of the tree are empty.
    pub live: Vec<bool>,
    /// Every window is its layer's whole grid ([`window_tree`]).
    pub whole: bool,
}

/// The windows the generated graphs run on for neuron (y, x) of `layer` on
/// a `size` x `size` input: its FOV tree, or where that tree's window on
/// the input is larger than the image (deep layers of modern networks),
/// every layer's whole grid, which is smaller and the same for every
/// neuron of the layer (convolutions then run with their own padding).
pub fn window_tree(
    convs: &[ConvLayer],
    layer: usize,
    (y, x): (usize, usize),
    size: usize,
) -> FovTree {
    let tree = fov_tree(convs, layer, y, x);
    let (sy, sx) = tree.out[0];
    if sy.len <= size && sx.len <= size {
        return tree;
    }
    let geometry = geometry_of(&convs[..layer], size);
    let grid = |h: usize, w: usize| (Span { start: 0, len: h }, Span { start: 0, len: w });
    let out: Vec<(Span, Span)> = geometry.iter().map(|g| grid(g.height, g.width)).collect();
    let mut conv_in = out.clone();
    let mut reads = out.clone();
    let mut pool_in = out.clone();
    let mut shortcut = vec![None; layer + 1];
    for i in 1..=layer {
        let c = &convs[i - 1];
        let below = geometry[c.sources.first().copied().unwrap_or(0)];
        pool_in[i] = grid(below.height, below.width);
        conv_in[i] = match c.pool {
            Some(p) => grid(p.output_len(below.height, 0), p.output_len(below.width, 1)),
            None => grid(below.height, below.width),
        };
        // Convolutions run padded, from grid to grid.
        reads[i] = conv_in[i];
        shortcut[i] = c.residual.as_ref().map(|r| conv_in[r.from]);
    }
    FovTree {
        out,
        conv_in,
        reads,
        shortcut,
        below: pool_in,
        live: tree.live,
        whole: true,
    }
}

/// Windows of the FOV tree of neuron (y, x) at conv layer `layer`.
pub fn fov_tree(convs: &[ConvLayer], layer: usize, y: usize, x: usize) -> FovTree {
    let empty = (Span { start: 0, len: 0 }, Span { start: 0, len: 0 });
    let mut out = vec![empty; layer + 1];
    let mut conv_in = out.clone();
    let mut reads = out.clone();
    let mut pool_in = out.clone();
    let mut shortcut = vec![None; layer + 1];
    // What the layers above need at each conv input (residuals) and each
    // layer's output (its readers), as they are met.
    let mut needed: Vec<Option<(Span, Span)>> = vec![None; layer + 1];
    let mut wanted: Vec<Option<(Span, Span)>> = vec![None; layer + 1];
    wanted[layer] = Some((
        Span {
            start: y as i64,
            len: 1,
        },
        Span {
            start: x as i64,
            len: 1,
        },
    ));
    let mut live = vec![false; layer + 1];
    // Layers are numbered in topological order: every reader of a layer
    // comes after it, so its window is whole when it is met.
    for i in (1..=layer).rev() {
        let Some(w) = wanted[i] else { continue };
        live[i] = true;
        out[i] = w;
        let c = &convs[i - 1];
        let (oy, ox) = out[i];
        reads[i] = (c.shape.input_span(oy, 0), c.shape.input_span(ox, 1));
        if let Some(r) = &c.residual {
            let w = r.input_span(out[i]);
            shortcut[i] = Some(w);
            needed[r.from] = Some(needed[r.from].map_or(w, |n| hull(n, w)));
        }
        conv_in[i] = needed[i].map_or(reads[i], |n| hull(n, reads[i]));
        let (sy, sx) = conv_in[i];
        let below = match c.pool {
            Some(p) => (p.input_span(sy, 0), p.input_span(sx, 1)),
            None => (sy, sx),
        };
        pool_in[i] = below;
        for &s in &c.sources {
            wanted[s] = Some(wanted[s].map_or(below, |n| hull(n, below)));
        }
    }
    live[0] = true;
    out[0] = wanted[0].unwrap_or(empty);
    FovTree {
        out,
        conv_in,
        reads,
        shortcut,
        below: pool_in,
        live,
        whole: false,
    }
}

/// Names the conv layers by their module paths when every layer has one,
/// no two share one and none reads as a layer number, `input` or a dense
/// layer's name; otherwise they keep their block names (`conv3_1`).
fn name_by_module_paths(convs: &mut [ConvLayer], paths: &[String], dense: &[DenseLayer]) {
    let mut seen = std::collections::HashSet::new();
    let usable = paths.len() == convs.len()
        && paths.iter().all(|p| {
            !p.is_empty()
                && p != "input"
                && !p.bytes().all(|b| b.is_ascii_digit())
                && !dense.iter().any(|d| d.name == *p)
                && seen.insert(p.as_str())
        });
    if usable {
        for (c, p) in convs.iter_mut().zip(paths) {
            c.name.clone_from(p);
        }
    }
}

/// The units of Conv `n` when it is a classifier on globally pooled
/// features: a 1x1 kernel (constant, `[units, channels, 1, 1]`, no groups,
/// strides or padding) reading one value per channel, that is a
/// GlobalAveragePool (or a ReduceMean over the planes) of the chain's
/// `channels` through pass-through,
/// reshaping, ReLU, bias and other such convolutions. It is then a dense
/// layer. `depth` counts the nodes walked back so far.
fn pointwise_classifier(
    n: &NodeProto,
    consts: &HashMap<&str, &TensorProto>,
    producers: &HashMap<&str, &NodeProto>,
    channels: usize,
    depth: usize,
) -> Option<usize> {
    if n.op_type != "Conv" {
        return None;
    }
    let w = consts.get(n.input.get(1)?.as_str())?;
    let plain =
        |name: &str, value: i64| attr_ints(n, name).is_none_or(|v| v.iter().all(|&x| x == value));
    let [units, c, 1, 1] = w.dims.as_slice() else {
        return None;
    };
    let pointwise = attr_int(n, "group").unwrap_or(1) == 1
        && plain("strides", 1)
        && plain("pads", 0)
        && attr_str(n, "auto_pad").is_none_or(|a| a == "NOTSET" || a == "VALID");
    let reads = pooled_channels(n.input.first()?, consts, producers, channels, depth + 1)?;
    (pointwise && usize::try_from(*c).ok()? == reads)
        .then(|| usize::try_from(*units).ok())
        .flatten()
}

/// The channels of tensor `t` when it holds one value per channel after a
/// global average of the chain's `channels` (see
/// [`pointwise_classifier`]); None otherwise. `depth` bounds the walk.
fn pooled_channels(
    t: &str,
    consts: &HashMap<&str, &TensorProto>,
    producers: &HashMap<&str, &NodeProto>,
    channels: usize,
    depth: usize,
) -> Option<usize> {
    let p = producers.get(t)?;
    let first = p.input.first()?;
    if depth > 64 {
        return None;
    }
    match p.op_type.as_str() {
        "GlobalAveragePool" => Some(channels),
        "ReduceMean" if averages_planes(p) => Some(channels),
        "Identity" | "Dropout" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Transpose"
        | "Relu" => pooled_channels(first, consts, producers, channels, depth + 1),
        "Add" => {
            let data: Vec<&String> = p
                .input
                .iter()
                .filter(|i| !consts.contains_key(i.as_str()))
                .collect();
            match data.as_slice() {
                [d] => pooled_channels(d, consts, producers, channels, depth + 1),
                _ => None,
            }
        }
        "Conv" => pointwise_classifier(p, consts, producers, channels, depth + 1),
        _ => None,
    }
}

/// Whether a ReduceMean averages each plane of an NCHW tensor and keeps
/// its dimensions (axes as an attribute, as up to opset 17).
pub(crate) fn averages_planes(n: &NodeProto) -> bool {
    let spatial = matches!(
        attr_ints(n, "axes").as_deref(),
        Some([2, 3] | [3, 2] | [-2, -1] | [-1, -2])
    );
    spatial && attr_int(n, "keepdims").unwrap_or(1) == 1
}

/// The smallest window holding both.
fn hull(a: (Span, Span), b: (Span, Span)) -> (Span, Span) {
    let one = |a: Span, b: Span| {
        let start = a.start.min(b.start);
        let end = (a.start + a.len as i64).max(b.start + b.len as i64);
        Span {
            start,
            len: (end - start) as usize,
        }
    };
    (one(a.0, b.0), one(a.1, b.1))
}

/// Conv node `n` on `channels` inputs with what follows it: an optional
/// inference-form BatchNormalization (folded in) and the Relu. The layer's
/// number, name and pool are the caller's.
/// Conv `n` with its batch norm and activation; `padded` is a Pad in front
/// of it (top, left, bottom, right), added to its own padding.
/// With a `pending` shortcut, an Add of it between the batch norm and the
/// activation ends its residual block.
/// A conv whose output goes straight to the next conv (or to a residual
/// block's start) has no activation: a linear layer.
#[allow(clippy::type_complexity)]
fn read_conv<'g>(
    n: &'g NodeProto,
    (consts, single, readers): (
        &HashMap<&str, &TensorProto>,
        &dyn Fn(&str) -> Option<&'g NodeProto>,
        &dyn Fn(&str) -> Vec<&'g NodeProto>,
    ),
    channels: usize,
    padded: [usize; 4],
    pending: &mut Option<PendingResidual>,
) -> Result<ConvLayer> {
    let (mut layer, mut conv_out) = read_linear_conv(n, consts, single, channels, padded)?;
    if let Some(add) = single(&conv_out).filter(|a| a.op_type == "Add")
        && let Some(shortcut) = pending.take_if(|p| add.input.contains(&p.joins))
    {
        if add.input.len() != 2 || !add.input.contains(&conv_out) {
            return Err(node_error(
                add,
                "is not the sum of a convolution and a shortcut",
            ));
        }
        let width = shortcut
            .projection
            .as_ref()
            .map_or(shortcut.channels, |p| p.out_channels);
        if width != layer.out_channels {
            return Err(node_error(
                add,
                &format!(
                    "adds a shortcut of {width} channels to a convolution of {}",
                    layer.out_channels
                ),
            ));
        }
        layer.residual = Some(Residual {
            from: shortcut.from,
            projection: shortcut.projection.map(Box::new),
            add_node: display_name(add),
        });
        conv_out = add.output[0].clone();
    }
    read_activation_of(layer, n, &conv_out, (consts, single, readers))
}

/// The activation of `layer` (whose node is `n`) on its pre-activation
/// tensor `z`: the single ReLU-like node reading it, or none when `z` goes
/// straight to the next layer (a linear layer).
#[allow(clippy::type_complexity)]
fn read_activation_of<'g>(
    mut layer: ConvLayer,
    n: &'g NodeProto,
    z: &str,
    (consts, single, readers): (
        &HashMap<&str, &TensorProto>,
        &dyn Fn(&str) -> Option<&'g NodeProto>,
        &dyn Fn(&str) -> Vec<&'g NodeProto>,
    ),
) -> Result<ConvLayer> {
    let next_ops: Vec<&str> = readers(z).iter().map(|r| r.op_type.as_str()).collect();
    // The next layer's start: a convolution, or a batch norm of its own
    // (pre-activation blocks), maybe beside a residual sum reading it too.
    if matches!(
        next_ops.as_slice(),
        ["Conv" | "Pad" | "BatchNormalization"]
            | ["Conv" | "Pad" | "BatchNormalization", "Add"]
            | ["Add", "Conv" | "Pad" | "BatchNormalization"]
    ) {
        layer.activation = Activation::Linear;
        layer.relu_output = z.to_string();
        layer.name = module_path(&n.name).unwrap_or_default();
        return Ok(layer);
    }
    let next = single(z).ok_or_else(|| {
        node_error(
            n,
            "must be followed by a single Relu, LeakyRelu, PRelu or Clip (after an optional BatchNormalization and residual Add), found several or no nodes",
        )
    })?;
    layer.activation = read_activation(next, consts).map_err(|why| {
        node_error(
            n,
            &format!(
                "must be followed by a single Relu, LeakyRelu, PRelu or Clip(0, c) (after an optional BatchNormalization and residual Add); {} ({}) {why}",
                display_name(next),
                next.op_type
            ),
        )
    })?;
    layer.relu_output = next.output[0].clone();
    layer.name = module_path(&next.name).unwrap_or_default();
    Ok(layer)
}

/// The module path a PyTorch export writes into a node's name, as the
/// model's author knows the layer: `/layer3/layer3.1/relu_1/Relu` ->
/// `layer3.1.relu_1`, `/features/features.1/conv/conv.0/conv.0.2/Clip` ->
/// `features.1.conv.0.2`. Each scope is the attribute under the one
/// before, or one of its children (`features.1` under `features`); the
/// last part is the op's own name. None for names without such a path.
fn module_path(node: &str) -> Option<String> {
    let scopes = node.strip_prefix('/')?.rsplit_once('/')?.0;
    let mut path: Vec<&str> = Vec::new();
    for scope in scopes.split('/') {
        if scope.is_empty() {
            return None;
        }
        match path.last() {
            Some(last)
                if scope
                    .strip_prefix(*last)
                    .is_some_and(|r| r.starts_with('.')) =>
            {
                if let Some(last) = path.last_mut() {
                    *last = scope;
                }
            }
            _ => path.push(scope),
        }
    }
    Some(path.join("."))
}

/// An Inception block being read: branches from one tensor, each a chain
/// of layers (or nothing), joined by a Concat on channels.
struct Junction<'g> {
    concat: &'g NodeProto,
    /// The tensor the branches read (after any pool), the tensor before
    /// that pool, its sources, channels and the pool itself.
    start: String,
    start_tensor: String,
    sources: Vec<usize>,
    channels: usize,
    pool: Option<PoolShape>,
    /// The first nodes of the branches not read yet, the last first.
    todo: Vec<&'g NodeProto>,
    /// The number of layers read before the block.
    first_layer: usize,
    /// Each branch's end read so far: its sources and channels.
    parts: HashMap<String, (Vec<usize>, usize)>,
}

impl<'g> Junction<'g> {
    fn new(
        (concat, first_layer): (&'g NodeProto, usize),
        readers: &[&'g NodeProto],
        (start, start_tensor): (&str, &str),
        sources: &[usize],
        channels: usize,
        pool: Option<PoolShape>,
    ) -> Junction<'g> {
        Junction {
            concat,
            start: start.to_string(),
            start_tensor: start_tensor.to_string(),
            sources: sources.to_vec(),
            channels,
            pool,
            todo: readers.iter().rev().copied().collect(),
            first_layer,
            parts: HashMap::new(),
        }
    }
}

/// The Concat on channels where the branches from `start` (its
/// `readers`) join again: the first, in the file's (topological) order,
/// that every branch leads to. None when they do not join in one.
fn junction_start<'g>(
    readers: &[&'g NodeProto],
    consumers: &HashMap<&str, Vec<&'g NodeProto>>,
    position: &HashMap<*const NodeProto, usize>,
) -> Option<&'g NodeProto> {
    // Bounds the walk on files with huge graphs after the block.
    const WALK: usize = 4096;
    let mut common: Option<Vec<&'g NodeProto>> = None;
    for &r in readers {
        let mut seen: std::collections::HashSet<*const NodeProto> = Default::default();
        let mut stack = vec![r];
        let mut concats = Vec::new();
        while let Some(n) = stack.pop() {
            if seen.len() > WALK || !seen.insert(n) {
                continue;
            }
            if n.op_type == "Concat" && matches!(attr_int(n, "axis"), Some(1 | -3)) {
                concats.push(n);
            }
            for o in &n.output {
                stack.extend(consumers.get(o.as_str()).into_iter().flatten().copied());
            }
        }
        common = Some(match common {
            None => concats,
            Some(c) => c
                .into_iter()
                .filter(|n| concats.iter().any(|m| std::ptr::eq(*n, *m)))
                .collect(),
        });
    }
    common?
        .into_iter()
        .min_by_key(|n| position.get(&(*n as *const NodeProto)).copied())
}

/// A residual block's shortcut, read at its start.
struct PendingResidual {
    /// The layer whose conv input is the shortcut's source.
    from: usize,
    /// Channels of the source.
    channels: usize,
    projection: Option<ConvLayer>,
    /// The tensor the shortcut adds to the block's last convolution.
    joins: String,
}

/// At `source`, read by two nodes, the start of a residual block: the main
/// path's first node and the shortcut, the identity when the other reader
/// is the sum itself, or a Conv (with an optional batch norm) whose output
/// only that sum reads. None when the pair is not that.
fn residual_start<'g>(
    readers: [&'g NodeProto; 2],
    source: &str,
    consts: &HashMap<&str, &TensorProto>,
    single: &dyn Fn(&str) -> Option<&'g NodeProto>,
    channels: usize,
) -> Option<Result<(&'g NodeProto, PendingResidual)>> {
    let ends_in_add = |n: &NodeProto| -> Option<String> {
        let mut out = n.output.first()?.clone();
        if let Some(bn) = single(&out).filter(|b| b.op_type == "BatchNormalization") {
            out = bn.output.first()?.clone();
        }
        single(&out).filter(|a| a.op_type == "Add").map(|_| out)
    };
    let [a, b] = readers;
    for (shortcut, main) in [(a, b), (b, a)] {
        if !matches!(main.op_type.as_str(), "Conv" | "Pad" | "BatchNormalization") {
            continue;
        }
        let pending = |projection, joins| PendingResidual {
            from: 0,
            channels,
            projection,
            joins,
        };
        if shortcut.op_type == "Add" {
            return Some(Ok((main, pending(None, source.to_string()))));
        }
        if shortcut.op_type == "Conv"
            && let Some(joins) = ends_in_add(shortcut)
        {
            return Some(
                read_linear_conv(shortcut, consts, single, channels, [0; 4]).map(
                    |(mut projection, _)| {
                        projection.name = "shortcut".into();
                        (main, pending(Some(projection), joins))
                    },
                ),
            );
        }
    }
    None
}

/// Conv `n` on `channels` inputs with its optional inference-form batch
/// norm folded in, and the tensor where they end; `padded` as for
/// [`read_conv`]. The layer's activation is the caller's to read.
fn read_linear_conv<'g>(
    n: &'g NodeProto,
    consts: &HashMap<&str, &TensorProto>,
    single: &dyn Fn(&str) -> Option<&'g NodeProto>,
    channels: usize,
    padded: [usize; 4],
) -> Result<(ConvLayer, String)> {
    let wname = n.input.get(1).map(String::as_str).unwrap_or("");
    let wt = consts
        .get(wname)
        .ok_or_else(|| node_error(n, "has weights that are not constants"))?;
    let (wdims, mut weight) = tensor_f32(wt)?;
    let mut shape = conv_shape(n, &wdims, channels)?;
    for (own, extra) in shape.pads.iter_mut().zip(padded) {
        *own += extra;
    }
    let out = wdims[0] as usize;
    let mut bias = match n.input.get(2).filter(|s| !s.is_empty()) {
        Some(b) => {
            let bt = consts
                .get(b.as_str())
                .ok_or_else(|| node_error(n, "has a bias that is not a constant"))?;
            let (_, bias) = tensor_f32(bt)?;
            if bias.len() != out {
                return Err(node_error(
                    n,
                    &format!("has {} biases for {out} filters", bias.len()),
                ));
            }
            bias
        }
        None => vec![0.0; out],
    };
    let mut conv_out = n.output[0].clone();
    let mut batch_norm = None;
    if let Some(bn) = single(&conv_out).filter(|b| b.op_type == "BatchNormalization") {
        fold_batch_norm(bn, consts, &mut weight, &mut bias)?;
        batch_norm = Some(display_name(bn));
        conv_out = bn.output[0].clone();
    }
    let layer = ConvLayer {
        weight,
        bias,
        conv_node: display_name(n),
        batch_norm,
        ..ConvLayer::bare(0, (channels, out), shape, None)
    };
    Ok((layer, conv_out))
}

/// BatchNormalization `n` on `channels` with no convolution before it, and
/// its activation: a layer of its own ([`ConvLayer::norm_only`]). The
/// layer's number, name and pool are the caller's.
#[allow(clippy::type_complexity)]
fn read_norm<'g>(
    n: &'g NodeProto,
    graph: (
        &HashMap<&str, &TensorProto>,
        &dyn Fn(&str) -> Option<&'g NodeProto>,
        &dyn Fn(&str) -> Vec<&'g NodeProto>,
    ),
    channels: usize,
) -> Result<ConvLayer> {
    let (mut weight, mut bias) = (vec![1.0; channels], vec![0.0; channels]);
    fold_batch_norm(n, graph.0, &mut weight, &mut bias)?;
    let shape = ConvShape {
        kernel: 1,
        pads: [0; 4],
        groups: channels,
        ..ConvShape::SAME_3X3
    };
    let layer = ConvLayer {
        weight,
        bias,
        conv_node: display_name(n),
        batch_norm: Some(display_name(n)),
        norm_only: true,
        ..ConvLayer::bare(0, (channels, channels), shape, None)
    };
    let z = n.output.first().cloned().unwrap_or_default();
    read_activation_of(layer, n, &z, graph)
}

/// A Pad node's zero padding of the two spatial axes (top, left, bottom,
/// right); other modes, values and axes are refused.
fn read_pad(n: &NodeProto, consts: &HashMap<&str, &TensorProto>) -> Result<[usize; 4]> {
    if attr_str(n, "mode").is_some_and(|m| m != "constant") {
        return Err(node_error(
            n,
            "pads by reflection or repetition, not with zeros",
        ));
    }
    let constant = |i: usize| {
        n.input
            .get(i)
            .filter(|t| !t.is_empty())
            .map(|t| consts.get(t.as_str()))
    };
    // Pads are an attribute up to opset 10, a constant input after.
    let pads = match (attr_ints(n, "pads"), constant(1)) {
        (Some(p), _) => p,
        (None, Some(Some(t))) => {
            tensor_i64(t).ok_or_else(|| node_error(n, "has pads that are not an int64 tensor"))?
        }
        _ => return Err(node_error(n, "has pads that are not a constant")),
    };
    let value = match (attr(n, "value"), constant(2)) {
        (Some(a), _) => a.f,
        (None, None) => 0.0,
        (None, Some(Some(t))) => match tensor_f32(t) {
            Ok((_, v)) if v.len() == 1 => v[0],
            _ => {
                return Err(node_error(
                    n,
                    "pads with a value that is not a constant scalar",
                ));
            }
        },
        (None, Some(None)) => {
            return Err(node_error(n, "pads with a value that is not a constant"));
        }
    };
    if value != 0.0 {
        return Err(node_error(n, &format!("pads with {value}, not zero")));
    }
    if constant(3).is_some() {
        return Err(node_error(
            n,
            "names its axes; Fovea reads pads of all four",
        ));
    }
    match pads.as_slice() {
        [0, 0, t, l, 0, 0, b, r] if [t, l, b, r].iter().all(|&&p| (0..=64).contains(&p)) => {
            Ok([*t as usize, *l as usize, *b as usize, *r as usize])
        }
        _ => Err(node_error(
            n,
            "has pads that are not 0..=64 rows and columns on the two spatial axes alone",
        )),
    }
}

/// The activation node `n` after a conv, or why it is not one Fovea reads.
fn read_activation(
    n: &NodeProto,
    consts: &HashMap<&str, &TensorProto>,
) -> std::result::Result<Activation, String> {
    match n.op_type.as_str() {
        "Relu" => Ok(Activation::Relu),
        "LeakyRelu" => {
            let alpha = attr(n, "alpha").map_or(0.01, |a| a.f);
            if alpha.is_finite() {
                Ok(Activation::Leaky(alpha))
            } else {
                Err("has a slope that is not finite".into())
            }
        }
        // PyTorch's nn.PReLU() learns one slope for all channels: a leaky
        // ReLU with that slope.
        "PRelu" => match n
            .input
            .get(1)
            .and_then(|s| consts.get(s.as_str()))
            .map(|t| tensor_f32(t))
        {
            Some(Ok((_, slopes))) => match slopes.split_first() {
                Some((&first, rest)) if first.is_finite() && rest.iter().all(|&s| s == first) => {
                    Ok(Activation::Leaky(first))
                }
                Some(_) => Err("learns a slope per channel; Fovea reads one slope for all".into()),
                None => Err("has no slope".into()),
            },
            _ => Err("has a slope that is not a constant".into()),
        },
        "Clip" => {
            // Bounds are attributes up to opset 10, constant inputs after.
            let bound =
                |attr_name: &str, input: usize| -> std::result::Result<Option<f32>, String> {
                    if let Some(a) = attr(n, attr_name) {
                        return Ok(Some(a.f));
                    }
                    match n.input.get(input).filter(|s| !s.is_empty()) {
                        None => Ok(None),
                        Some(t) => match consts.get(t.as_str()).map(|t| tensor_f32(t)) {
                            Some(Ok((_, v))) if v.len() == 1 => Ok(Some(v[0])),
                            _ => Err(format!(
                                "has a {attr_name} bound that is not a constant scalar"
                            )),
                        },
                    }
                };
            let (min, max) = (bound("min", 1)?, bound("max", 2)?);
            if min != Some(0.0) {
                return Err("does not clip at 0 from below".into());
            }
            match max {
                None => Ok(Activation::Relu),
                Some(c) if c.is_finite() && c > 0.0 => Ok(Activation::Clip(c)),
                Some(_) => Err("has a ceiling that is not a positive number".into()),
            }
        }
        _ => Err("is not one".into()),
    }
}

/// The number of classes of a `[N, classes]` graph output, if its type says.
fn class_count(o: &fovea_onnx::proto::ValueInfoProto) -> Option<usize> {
    use fovea_onnx::proto::tensor_shape_proto::dimension::Value;
    match o.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => match t.shape.as_ref()?.dim.as_slice() {
            [_, d] => match d.value {
                Some(Value::DimValue(v)) if v > 0 => Some(v as usize),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn display_name(n: &NodeProto) -> String {
    if n.name.is_empty() {
        n.output.first().cloned().unwrap_or_default()
    } else {
        n.name.clone()
    }
}

fn node_error(n: &NodeProto, what: &str) -> Error {
    Error::Model(format!("node {:?} ({}) {what}", display_name(n), n.op_type))
}

/// Folds an inference-form BatchNormalization into the convolution before
/// it: per output channel `k = scale / sqrt(var + epsilon)`, the weights
/// times `k` and the bias `(bias - mean) * k + B`. The recording still runs
/// the file's own nodes; the folded weights serve the generated graphs,
/// whose forward passes then give the same pre-activations.
fn fold_batch_norm(
    bn: &NodeProto,
    consts: &HashMap<&str, &TensorProto>,
    weight: &mut [f32],
    bias: &mut [f32],
) -> Result<()> {
    if attr_int(bn, "training_mode").is_some_and(|t| t != 0) || bn.output.len() > 1 {
        return Err(node_error(
            bn,
            "is in training form; Fovea folds batch norm in inference form only",
        ));
    }
    if attr_int(bn, "spatial").is_some_and(|s| s != 1) {
        return Err(node_error(
            bn,
            "normalises per position (spatial = 0); Fovea folds per-channel batch norm only",
        ));
    }
    let epsilon = attr(bn, "epsilon").map_or(1e-5, |a| a.f) as f64;
    let out = bias.len();
    let param = |k: usize, what: &str| -> Result<Vec<f32>> {
        let t = bn
            .input
            .get(k)
            .and_then(|i| consts.get(i.as_str()))
            .ok_or_else(|| node_error(bn, &format!("has a {what} that is not a constant")))?;
        let (_, v) = tensor_f32(t)?;
        if v.len() != out {
            return Err(node_error(
                bn,
                &format!("has {} {what} values for {out} channels", v.len()),
            ));
        }
        Ok(v)
    };
    let (scale, shift) = (param(1, "scale")?, param(2, "B")?);
    let (mean, var) = (param(3, "mean")?, param(4, "variance")?);
    let per_filter = weight.len() / out.max(1);
    for o in 0..out {
        let v = var[o] as f64 + epsilon;
        if v.is_nan() || v <= 0.0 {
            return Err(node_error(
                bn,
                &format!(
                    "has variance {} for channel {o}; it must be above -epsilon",
                    var[o]
                ),
            ));
        }
        let k = scale[o] as f64 / v.sqrt();
        for w in &mut weight[o * per_filter..(o + 1) * per_filter] {
            *w = (*w as f64 * k) as f32;
        }
        bias[o] = ((bias[o] as f64 - mean[o] as f64) * k + shift[o] as f64) as f32;
    }
    Ok(())
}

/// The geometry of Conv node `n` with weights of shape `wdims` on an input
/// of `channels`: square kernels, strides and dilations (the FOV boxes are
/// squares), explicit or `auto_pad` padding, any grouping.
fn conv_shape(n: &NodeProto, wdims: &[i64], channels: usize) -> Result<ConvShape> {
    if wdims.len() != 4 || wdims.iter().any(|&d| d < 1) {
        return Err(node_error(
            n,
            &format!("has weight shape {wdims:?}; expected [out, in / groups, k, k]"),
        ));
    }
    let kernel = square_attr(n, "kernel_shape", wdims[2])?;
    if wdims[2] != wdims[3] || wdims[2] as usize != kernel {
        return Err(node_error(
            n,
            &format!("has weight shape {wdims:?} and kernel {kernel}; Fovea reads square kernels"),
        ));
    }
    let groups = attr_int(n, "group").unwrap_or(1);
    let (out, per_group) = (wdims[0] as usize, wdims[1] as usize);
    if groups < 1
        || !channels.is_multiple_of(groups as usize)
        || !out.is_multiple_of(groups as usize)
        || per_group * groups as usize != channels
    {
        return Err(node_error(
            n,
            &format!(
                "has weight shape {wdims:?} in {groups} groups on {channels} input channels; expected [out, {channels} / groups, k, k] with out a multiple of groups"
            ),
        ));
    }
    let stride = square_attr(n, "strides", 1)?;
    let dilation = square_attr(n, "dilations", 1)?;
    let extent = dilation * (kernel - 1) + 1;
    Ok(ConvShape {
        kernel,
        stride,
        dilation,
        pads: window_pads(n, extent, stride)?,
        groups: groups as usize,
    })
}

/// A MaxPool node's window; dilated pools and pools that return their
/// indices to the graph are not read.
pub(crate) fn pool_shape(n: &NodeProto) -> Result<PoolShape> {
    if attr_ints(n, "kernel_shape").is_none() {
        return Err(node_error(n, "has no kernel_shape"));
    }
    let average = n.op_type == "AveragePool";
    let kernel = square_attr(n, "kernel_shape", 1)?;
    let stride = square_attr(n, "strides", 1)?;
    if square_attr(n, "dilations", 1)? != 1 {
        return Err(node_error(n, "is a dilated pool"));
    }
    if n.output.get(1).is_some_and(|o| !o.is_empty()) {
        return Err(node_error(n, "returns its indices to the graph"));
    }
    let ceil = match attr_int(n, "ceil_mode").unwrap_or(0) {
        0 => false,
        1 => true,
        c => {
            return Err(node_error(n, &format!("has ceil_mode {c}; allowed 0 or 1")));
        }
    };
    let pads = window_pads(n, kernel, stride)?;
    // Averages whose divisor changes from window to window (padding left
    // out of the count, windows cut short by rounding up) are not read.
    if average && ceil {
        return Err(node_error(
            n,
            "rounds up (ceil_mode), averaging its last windows over fewer inputs",
        ));
    }
    if average && pads.iter().any(|&p| p > 0) && attr_int(n, "count_include_pad").unwrap_or(0) != 1
    {
        return Err(node_error(
            n,
            "leaves its padding out of the averages (count_include_pad 0)",
        ));
    }
    Ok(PoolShape {
        kernel,
        stride,
        pads,
        ceil,
        average,
    })
}

/// A 2-d attribute with the same positive value on both axes.
fn square_attr(n: &NodeProto, name: &str, default: i64) -> Result<usize> {
    match attr_ints(n, name).as_deref() {
        None => Ok(default as usize),
        Some([a, b]) if a == b && *a >= 1 => Ok(*a as usize),
        Some(v) => Err(node_error(
            n,
            &format!(
                "has {name} {v:?}; Fovea reads 2-d windows with equal, positive values on both axes"
            ),
        )),
    }
}

/// The padding of a window spanning `extent` input pixels: explicit pads,
/// VALID, or SAME_* at stride 1 (at larger strides it would depend on the
/// input size).
fn window_pads(n: &NodeProto, extent: usize, stride: usize) -> Result<[usize; 4]> {
    Ok(match attr_str(n, "auto_pad").unwrap_or_default().as_str() {
        "" | "NOTSET" => match attr_ints(n, "pads").as_deref() {
            None => [0; 4],
            Some(&[t, l, b, r])
                if [t, l, b, r]
                    .iter()
                    .all(|&p| p >= 0 && (p as usize) < extent) =>
            {
                [t, l, b, r].map(|p| p as usize)
            }
            Some(p) => {
                return Err(node_error(
                    n,
                    &format!(
                        "has pads {p:?}; expected four values in 0..{extent} (the window's extent)"
                    ),
                ));
            }
        },
        "VALID" => [0; 4],
        same @ ("SAME_UPPER" | "SAME_LOWER") if stride == 1 => {
            let (less, more) = ((extent - 1) / 2, extent / 2);
            if same == "SAME_UPPER" {
                [less, less, more, more]
            } else {
                [more, more, less, less]
            }
        }
        other => {
            return Err(node_error(
                n,
                &format!(
                    "has auto_pad {} with stride {stride}; its padding would depend on the input size (export with explicit pads)",
                    crate::error::quote(other)
                ),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_imagenet_labels_are_the_1000_classes_in_index_order() {
        let labels: Vec<&str> = IMAGENET_LABELS.lines().collect();
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels[0], "tench");
        assert_eq!(labels[281], "tabby");
        assert_eq!(labels[968], "cup");
        assert_eq!(labels[999], "toilet tissue");
    }

    fn vgg_like() -> Vec<ConvLayer> {
        let pools = [
            false, false, true, false, true, false, false, true, false, false, true, false, false,
        ];
        pools
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                ConvLayer::bare(
                    i + 1,
                    (1, 1),
                    ConvShape::SAME_3X3,
                    p.then_some(PoolShape::HALVING),
                )
            })
            .collect()
    }

    #[test]
    fn vgg16_layer13_fov_is_196_pixels_with_stride_16() {
        let net = Network {
            input_name: String::new(),
            layout: Layout::Nchw,
            native_size: None,
            convs: vgg_like(),
            pool_after_last: Some(PoolShape::HALVING),
            chain_end: String::new(),
            end_sources: vec![13],
            dense: vec![],
            head_output: None,
            classes: None,
            probe_stop: None,
            producer: String::new(),
            labels: vec![],
        };
        let g = net.geometry(224);
        assert_eq!((g[13].fov, g[13].stride, g[13].height), (196, 16, 14));
        assert_eq!(
            (g[1].fov, g[2].fov, g[4].fov, g[7].fov, g[10].fov),
            (3, 5, 14, 40, 92)
        );
        let tree = fov_tree(&net.convs, 13, 7, 7);
        assert_eq!(tree.out[0].0.len, 196);
        assert_eq!(tree.out[0].0.start, 7 * 16 - 90);
    }

    #[test]
    fn strided_dilated_and_asymmetric_convolutions_set_shapes_fields_and_trees() {
        // A ResNet-style stem (7x7/2 pad 3), a 2x2 pool, a dilated 3x3 (pad
        // 2) and a 3x3/2 padded only at the bottom and right.
        let convs = [
            ConvLayer::bare(
                1,
                (3, 4),
                ConvShape {
                    kernel: 7,
                    stride: 2,
                    pads: [3; 4],
                    ..ConvShape::SAME_3X3
                },
                None,
            ),
            ConvLayer::bare(
                2,
                (4, 4),
                ConvShape {
                    dilation: 2,
                    pads: [2; 4],
                    ..ConvShape::SAME_3X3
                },
                Some(PoolShape::HALVING),
            ),
            ConvLayer::bare(
                3,
                (4, 4),
                ConvShape {
                    stride: 2,
                    pads: [0, 0, 1, 1],
                    ..ConvShape::SAME_3X3
                },
                None,
            ),
        ];
        let g = geometry_of(&convs, 45);
        // (45 + 6 - 7) / 2 + 1 = 23; pooled 11; dilated keeps 11;
        // (11 + 1 - 3) / 2 + 1 = 5.
        let sides: Vec<(usize, usize)> = g.iter().map(|l| (l.height, l.width)).collect();
        assert_eq!(sides, [(45, 45), (23, 23), (11, 11), (5, 5)]);
        // Fields: 7; pool +2 -> 9, dilated extent 5 at stride 4 -> 25; 3 at
        // stride 4 -> 33. Strides 2, 4, 8.
        let fields: Vec<(usize, usize)> = g.iter().map(|l| (l.fov, l.stride)).collect();
        assert_eq!(fields, [(1, 1), (7, 2), (25, 4), (33, 8)]);
        // The tree of neuron (1, 2) at layer 3, walked back by hand.
        let tree = fov_tree(&convs, 3, 1, 2);
        let span = |start, len| Span { start, len };
        assert_eq!(tree.conv_in[3], (span(2, 3), span(4, 3)));
        assert_eq!(tree.out[2], (span(2, 3), span(4, 3)));
        assert_eq!(tree.conv_in[2], (span(0, 7), span(2, 7)));
        assert_eq!(tree.out[1], (span(0, 14), span(4, 14)));
        assert_eq!(tree.out[0], (span(-3, 33), span(5, 33)));
        assert_eq!(tree.out[0].0.len, g[3].fov);
    }

    #[test]
    fn module_paths_are_read_from_pytorch_node_names() {
        let path = |n: &str| module_path(n);
        assert_eq!(
            path("/layer3/layer3.1/relu_1/Relu").as_deref(),
            Some("layer3.1.relu_1")
        );
        assert_eq!(
            path("/features/features.1/conv/conv.0/conv.0.2/Clip").as_deref(),
            Some("features.1.conv.0.2")
        );
        assert_eq!(
            path("/features/features.2/conv/conv.2/Conv").as_deref(),
            Some("features.2.conv.2")
        );
        assert_eq!(path("/relu/Relu").as_deref(), Some("relu"));
        // A layer's own scope that merely starts like the one before is not
        // its child.
        assert_eq!(
            path("/layer1/layer10/Relu").as_deref(),
            Some("layer1.layer10")
        );
        for other in [
            "Relu_12",
            "vgg0_relu0_fwd",
            "/Relu",
            "model/block1_conv1/Relu",
            "//x/Relu",
            "",
        ] {
            assert_eq!(path(other), None, "{other}");
        }
    }

    #[test]
    fn max_pools_in_a_row_are_one_when_their_windows_join() {
        let pool = |kernel, stride, pad, ceil| PoolShape {
            kernel,
            stride,
            pads: [pad; 4],
            ceil,
            average: false,
        };
        // GoogLeNet's pool branch after the pool between its stages.
        assert_eq!(
            pool(3, 2, 0, true).then(pool(3, 1, 1, true)),
            Some(pool(7, 2, 2, true))
        );
        assert_eq!(
            pool(2, 2, 0, false).then(pool(2, 2, 0, false)),
            Some(pool(4, 4, 0, false))
        );
        // Windows with gaps between them, and averages, are no one pool.
        assert_eq!(pool(1, 2, 0, false).then(pool(2, 1, 0, false)), None);
        let average = PoolShape {
            average: true,
            ..pool(2, 2, 0, false)
        };
        assert_eq!(average.then(pool(2, 2, 0, false)), None);
    }

    #[test]
    fn span_clip() {
        assert_eq!(Span { start: -3, len: 10 }.clip(5), (0, 5));
        assert_eq!(Span { start: 2, len: 2 }.clip(5), (2, 4));
        assert_eq!(Span { start: 7, len: 2 }.clip(5), (5, 5));
    }
}

#[cfg(test)]
mod node_tests {
    use super::*;
    use fovea_onnx::{Attr, GraphBuilder, f32_tensor};

    /// The activation read from a node `op` with `attrs` and constant
    /// inputs `bounds` (None for an omitted input).
    fn read(
        op: &str,
        attrs: Vec<(&str, Attr)>,
        bounds: &[Option<f32>],
    ) -> Result<Activation, String> {
        let mut g = GraphBuilder::new("a");
        let mut inputs = vec!["z".to_string()];
        for (k, b) in bounds.iter().enumerate() {
            inputs.push(match b {
                Some(v) => g.initializer(f32_tensor(&format!("b{k}"), &[], &[*v])),
                None => String::new(),
            });
        }
        read_node(g, op, &inputs, attrs, read_activation)
    }

    /// Node `op` on `inputs` with `attrs`, in graph `g` that holds its
    /// constants, as `read` reads it.
    fn read_node<T>(
        mut g: GraphBuilder,
        op: &str,
        inputs: &[String],
        attrs: Vec<(&str, Attr)>,
        read: impl Fn(&NodeProto, &HashMap<&str, &TensorProto>) -> T,
    ) -> T {
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        g.node(op, &refs, attrs);
        let graph = g.finish().graph.unwrap_or_default();
        let consts = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        read(&graph.node[0], &consts)
    }

    #[test]
    fn relu_like_nodes_are_read_with_their_slope_and_ceiling() {
        assert_eq!(read("Relu", vec![], &[]), Ok(Activation::Relu));
        assert_eq!(read("LeakyRelu", vec![], &[]), Ok(Activation::Leaky(0.01)));
        let alpha = vec![("alpha", Attr::Float(0.2))];
        assert_eq!(read("LeakyRelu", alpha, &[]), Ok(Activation::Leaky(0.2)));
        assert_eq!(
            read("PRelu", vec![], &[Some(0.25)]),
            Ok(Activation::Leaky(0.25))
        );
        // Bounds as inputs (opset 11 on) and as attributes (up to 10).
        let relu6 = read("Clip", vec![], &[Some(0.0), Some(6.0)]);
        assert_eq!(relu6, Ok(Activation::Clip(6.0)));
        let attrs = vec![("min", Attr::Float(0.0)), ("max", Attr::Float(6.0))];
        assert_eq!(read("Clip", attrs, &[]), Ok(Activation::Clip(6.0)));
        // No ceiling: a ReLU.
        assert_eq!(read("Clip", vec![], &[Some(0.0)]), Ok(Activation::Relu));
        assert_eq!(
            read("Clip", vec![], &[Some(0.0), None]),
            Ok(Activation::Relu)
        );
    }

    /// The pool read from a node `op` with `attrs`.
    fn pool(op: &str, mut attrs: Vec<(&str, Attr)>) -> Result<PoolShape> {
        attrs.push(("kernel_shape", Attr::Ints(vec![3, 3])));
        attrs.push(("strides", Attr::Ints(vec![2, 2])));
        let mut g = GraphBuilder::new("p");
        g.node(op, &["x"], attrs);
        let graph = g.finish().graph.unwrap_or_default();
        pool_shape(&graph.node[0])
    }

    #[test]
    fn average_pools_are_read_when_every_window_has_one_divisor() {
        let pads = || ("pads", Attr::Ints(vec![1; 4]));
        let p = pool(
            "AveragePool",
            vec![pads(), ("count_include_pad", Attr::Int(1))],
        );
        assert!(p.is_ok_and(|p| p.average && p.pads == [1; 4]));
        assert!(pool("AveragePool", vec![]).is_ok_and(|p| p.average));
        assert!(pool("MaxPool", vec![pads()]).is_ok_and(|p| !p.average));
        let why = |r: Result<PoolShape>| match r {
            Err(Error::Model(why)) => why,
            other => format!("{other:?}"),
        };
        let left_out = why(pool("AveragePool", vec![pads()]));
        assert!(left_out.contains("count_include_pad 0"), "{left_out}");
        let ceil = why(pool("AveragePool", vec![("ceil_mode", Attr::Int(1))]));
        assert!(ceil.contains("rounds up"), "{ceil}");
    }

    /// The padding read from a Pad node with `pads` as an input, and
    /// `attrs`.
    fn pad(pads: &[i64], value: Option<f32>, attrs: Vec<(&str, Attr)>) -> Result<[usize; 4]> {
        let mut g = GraphBuilder::new("p");
        let p = g.initializer(fovea_onnx::i64_tensor("pads", &[pads.len() as i64], pads));
        let mut inputs = vec!["x".to_string(), p];
        if let Some(v) = value {
            inputs.push(g.initializer(f32_tensor("value", &[], &[v])));
        }
        read_node(g, "Pad", &inputs, attrs, read_pad)
    }

    #[test]
    fn zero_pads_of_the_spatial_axes_are_read_and_others_refused() {
        assert!(matches!(
            pad(&[0, 0, 0, 0, 0, 0, 1, 1], None, vec![]),
            Ok([0, 0, 1, 1])
        ));
        assert!(matches!(
            pad(&[0, 0, 2, 1, 0, 0, 2, 3], Some(0.0), vec![]),
            Ok([2, 1, 2, 3])
        ));
        // Opset 10 and before: pads and value as attributes.
        let attrs = vec![("pads", Attr::Ints(vec![0, 0, 1, 1, 0, 0, 1, 1]))];
        assert!(matches!(pad(&[], None, attrs), Ok([1, 1, 1, 1])));
        let why = |r: Result<[usize; 4]>| match r {
            Err(Error::Model(why)) => why,
            other => format!("{other:?}"),
        };
        let channels = why(pad(&[0, 1, 1, 1, 0, 0, 1, 1], None, vec![]));
        assert!(channels.contains("spatial axes alone"), "{channels}");
        let negative = why(pad(&[0, 0, -1, 0, 0, 0, 0, 0], None, vec![]));
        assert!(negative.contains("spatial axes alone"), "{negative}");
        let ones = why(pad(&[0, 0, 1, 1, 0, 0, 1, 1], Some(1.0), vec![]));
        assert!(ones.contains("not zero"), "{ones}");
        let reflect = vec![("mode", Attr::Str("reflect"))];
        let reflected = why(pad(&[0, 0, 1, 1, 0, 0, 1, 1], None, reflect));
        assert!(reflected.contains("reflection"), "{reflected}");
    }

    #[test]
    fn other_clips_and_ops_are_refused_with_the_reason() {
        let low = read("Clip", vec![], &[Some(-1.0), Some(1.0)]);
        assert_eq!(low, Err("does not clip at 0 from below".into()));
        let unbounded = read("Clip", vec![], &[None, Some(6.0)]);
        assert_eq!(unbounded, Err("does not clip at 0 from below".into()));
        let empty = read("Clip", vec![], &[Some(0.0), Some(0.0)]);
        assert!(empty.is_err_and(|e| e.contains("ceiling")));
        let mut g = GraphBuilder::new("a");
        g.node("Clip", &["z", "lo", "hi"], vec![]);
        let graph = g.finish().graph.unwrap_or_default();
        let computed = read_activation(&graph.node[0], &HashMap::new());
        assert!(computed.is_err_and(|e| e.contains("not a constant")));
        assert_eq!(read("Sigmoid", vec![], &[]), Err("is not one".into()));
        let mut g = GraphBuilder::new("a");
        let slopes = g.initializer(f32_tensor("slopes", &[2, 1, 1], &[0.1, 0.2]));
        let per_channel = read_node(g, "PRelu", &["z".into(), slopes], vec![], read_activation);
        assert!(per_channel.is_err_and(|e| e.contains("per channel")));
    }
}
