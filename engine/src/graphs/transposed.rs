//! Transposed chains: the backward graphs of the paper's reconstruction
//! modes (a neuron's FOV window back to the input, gated by recorded masks
//! and switches), and the affine graph of a recording's effective bias.

use crate::model::network::{ConvLayer, FovTree, PoolShape, Span, window_tree};
use fovea_onnx::proto::{ModelProto, tensor_proto::DataType};
use fovea_onnx::{Attr, Dim, GraphBuilder, f32_tensor, i64_tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Gaussian weights with each layer's weight mean and std, reproducible from
/// the seed (ChaCha8, one stream per layer), OIHW like the trained ones.
pub fn random_weights(convs: &[ConvLayer], seed: u64) -> Vec<Vec<f32>> {
    convs
        .iter()
        .map(|c| match c.norm_only {
            true => c.weight.clone(),
            false => random_like(&c.weight, seed, c.number as u64),
        })
        .collect()
}

/// Random kernels of the residual shortcuts' projections (None where a
/// layer has none), drawn like [`random_weights`] on streams of their own.
pub fn random_shortcuts(convs: &[ConvLayer], seed: u64) -> Vec<Option<Vec<f32>>> {
    convs
        .iter()
        .map(|c| {
            let p = c.residual.as_ref()?.projection.as_ref()?;
            Some(random_like(
                &p.weight,
                seed,
                SHORTCUT_STREAMS + c.number as u64,
            ))
        })
        .collect()
}

/// Where the random streams of shortcut projections start (conv layers use
/// their numbers).
const SHORTCUT_STREAMS: u64 = 1 << 32;

/// The kernels (OIHW) a backward pass transposes: per conv layer its own
/// and its shortcut projection's.
pub(crate) struct Kernels<'a> {
    pub convs: Vec<&'a [f32]>,
    pub shortcuts: Vec<Option<&'a [f32]>>,
}

impl<'a> Kernels<'a> {
    /// The model's own.
    pub(crate) fn trained(convs: &'a [ConvLayer]) -> Kernels<'a> {
        Kernels {
            convs: convs.iter().map(|c| c.weight.as_slice()).collect(),
            shortcuts: convs
                .iter()
                .map(|c| {
                    let p = c.residual.as_ref()?.projection.as_ref()?;
                    Some(p.weight.as_slice())
                })
                .collect(),
        }
    }

    /// Drawn ones ([`random_weights`], [`random_shortcuts`]).
    pub(crate) fn of(convs: &'a [Vec<f32>], shortcuts: &'a [Option<Vec<f32>>]) -> Kernels<'a> {
        Kernels {
            convs: convs.iter().map(Vec::as_slice).collect(),
            shortcuts: shortcuts.iter().map(Option::as_deref).collect(),
        }
    }
}

/// Gaussian samples with the mean and std of `values`, as many, from
/// ChaCha8 seeded by `seed` on stream `stream`.
pub fn random_like(values: &[f32], seed: u64, stream: u64) -> Vec<f32> {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = var.sqrt().max(f64::MIN_POSITIVE);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    match Normal::new(mean, std) {
        Ok(dist) => (0..values.len())
            .map(|_| dist.sample(&mut rng) as f32)
            .collect(),
        Err(_) => vec![mean as f32; values.len()],
    }
}

/// `[in, out / groups, k, k]` kernel of the transposed stride-1 convolution
/// of a layer with OIHW weights `w`: channels swapped within each group and
/// the kernel rotated by 180 degrees.
pub(crate) fn transposed_kernel(w: &[f32], c: &ConvLayer) -> Vec<f32> {
    let k2 = c.shape.kernel * c.shape.kernel;
    let groups = c.shape.groups;
    let (out_g, in_g) = (c.out_channels / groups, c.in_channels / groups);
    let mut t = vec![0f32; w.len()];
    for o in 0..c.out_channels {
        let (group, o_g) = (o / out_g, o % out_g);
        for i_g in 0..in_g {
            let i = group * in_g + i_g;
            for k in 0..k2 {
                t[(i * out_g + o_g) * k2 + (k2 - 1 - k)] = w[(o * in_g + i_g) * k2 + k];
            }
        }
    }
    t
}

pub(crate) fn dims(n: &'static str, c: usize, s: (Span, Span)) -> [Dim; 4] {
    [
        Dim::Named(n),
        Dim::Fixed(c as i64),
        Dim::Fixed(s.0.len as i64),
        Dim::Fixed(s.1.len as i64),
    ]
}

/// A batch of one location of `top`'s channels: `[n, C, 1, 1]`.
fn one_neuron(top: &ConvLayer) -> [Dim; 4] {
    [
        Dim::Named("n"),
        Dim::Fixed(top.out_channels as i64),
        Dim::Fixed(1),
        Dim::Fixed(1),
    ]
}

/// The window sizes of any neuron of `layer` on a `size` input (they do not
/// depend on where it is, only the offsets do).
pub(crate) fn tree_of(convs: &[ConvLayer], layer: usize, size: usize) -> FovTree {
    window_tree(convs, layer, (0, 0), size)
}

/// Where the convolutions reading conv `i`'s input run on `tree`: on a
/// FOV window, or padded over whole grids (transposed back to that input).
fn extent_at(tree: &FovTree, i: usize) -> Extent {
    match tree.whole {
        true => Extent::Whole(tree.conv_in[i].0.len, tree.conv_in[i].1.len),
        false => Extent::Window,
    }
}

/// On whole grids, input `at` (float `[n, 1, H, W]`): 1 at each sample's
/// neuron on the top layer's grid, 0 elsewhere.
fn at_input(g: &mut GraphBuilder, tree: &FovTree, layer: usize) -> String {
    let (sy, sx) = tree.out[layer];
    g.input(
        "at",
        DataType::Float,
        &[
            Dim::Named("n"),
            Dim::Fixed(1),
            Dim::Fixed(sy.len as i64),
            Dim::Fixed(sx.len as i64),
        ],
    )
}

/// Where a generated graph's convolutions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extent {
    /// A FOV window: unpadded forward convolutions (the caller zeroes what
    /// lies beyond the image), transposed ones that grow the window to what
    /// the layer reads.
    Window,
    /// A whole image: the file's own padding, and transposed convolutions
    /// back to the layer's input grid of this (height, width).
    Whole(usize, usize),
}

/// A layer's forward convolution with its trained weights and bias.
pub(crate) fn forward_conv(g: &mut GraphBuilder, c: &ConvLayer, x: &str, extent: Extent) -> String {
    let w = trained_weight(g, c);
    let name = g.fresh_name("b");
    let b = g.initializer(f32_tensor(&name, &[c.out_channels as i64], &c.bias));
    g.node("Conv", &[x, &w, &b], c.shape.attrs(forward_pads(c, extent)))
}

fn forward_pads(c: &ConvLayer, extent: Extent) -> [i64; 4] {
    match extent {
        Extent::Window => [0; 4],
        Extent::Whole(..) => c.shape.own_pads(),
    }
}

/// A layer's trained kernel (OIHW) as an initializer.
fn trained_weight(g: &mut GraphBuilder, c: &ConvLayer) -> String {
    let k = c.shape.kernel as i64;
    let name = g.fresh_name("w");
    g.initializer(f32_tensor(
        &name,
        &[
            c.out_channels as i64,
            (c.in_channels / c.shape.groups) as i64,
            k,
            k,
        ],
        &c.weight,
    ))
}

/// The transposed convolution of a layer with `weight` (OIHW). At stride 1
/// it runs as an ordinary convolution with the kernel rotated (faster in
/// ONNX Runtime than ConvTranspose), padded to grow a window by the kernel's
/// reach or to keep a whole image's size; a strided layer runs
/// ConvTranspose, whose output padding restores the rows and columns the
/// forward stride left unread.
pub(crate) fn transposed_conv(
    g: &mut GraphBuilder,
    c: &ConvLayer,
    weight: &[f32],
    x: &str,
    extent: Extent,
) -> String {
    let s = &c.shape;
    let reach = s.extent() as i64 - 1;
    let k = s.kernel as i64;
    let name = g.fresh_name("wt");
    if s.stride == 1 {
        let kernel = g.initializer(f32_tensor(
            &name,
            &[
                c.in_channels as i64,
                (c.out_channels / s.groups) as i64,
                k,
                k,
            ],
            &transposed_kernel(weight, c),
        ));
        let pads = match extent {
            Extent::Window => [reach; 4],
            Extent::Whole(..) => s.own_pads().map(|p| reach - p),
        };
        return g.node("Conv", &[x, &kernel], s.attrs(pads));
    }
    let kernel = g.initializer(f32_tensor(
        &name,
        &[
            c.out_channels as i64,
            (c.in_channels / s.groups) as i64,
            k,
            k,
        ],
        weight,
    ));
    let mut attrs = s.attrs(forward_pads(c, extent));
    if let Extent::Whole(h, w) = extent {
        let unread = |len: usize, axis: usize| {
            let (b, e) = s.pad(axis);
            ((len + b + e - s.extent()) % s.stride) as i64
        };
        attrs.push((
            "output_padding",
            Attr::Ints(vec![unread(h, 0), unread(w, 1)]),
        ));
    }
    g.node("ConvTranspose", &[x, &kernel], attrs)
}

/// Backward graph from conv layer `layer` to the input plane. Layers are
/// met from the top down in their (topological) order, so a layer's signal
/// holds every reader's share when it is met.
pub(crate) fn backward_graph(
    convs: &[ConvLayer],
    layer: usize,
    (kernels, size): (&Kernels, usize),
    linear: bool,
) -> ModelProto {
    let tree = tree_of(convs, layer, size);
    let mut g = GraphBuilder::new(&format!("backward_l{layer}"));
    let top = &convs[layer - 1];
    let mut x = g.input("seed", DataType::Float, &one_neuron(top));
    if tree.whole {
        let at = at_input(&mut g, &tree, layer);
        x = g.node("Mul", &[&x, &at], vec![]);
    }
    let mut waiting = Waiting::new(layer);
    // The signal at each layer's output (index 0: the image), summed over
    // the layers reading it.
    let mut arriving = Arriving::new(layer);
    for i in (1..=layer).rev().filter(|&i| tree.live[i]) {
        let c = &convs[i - 1];
        if i < layer {
            let mut v = arriving.take_or_zero(&mut g, i, c.out_channels, &tree);
            if !linear {
                v = c.activation.rectify(&mut g, &v);
            }
            let gate = g.input(
                &format!("gate{i}"),
                DataType::Uint8,
                &dims("n", c.out_channels, tree.out[i]),
            );
            let slope = c.activation.gate_slope(&mut g, &gate);
            x = g.node("Mul", &[&v, &slope], vec![]);
        }
        let shortcut = kernels.shortcuts[i - 1];
        let from = c.residual.as_ref().map_or(i, |r| r.from);
        waiting.send(&mut g, c, shortcut, &x, Some(&tree), extent_at(&tree, from));
        let u = transposed_conv(&mut g, c, kernels.convs[i - 1], &x, extent_at(&tree, i));
        let u = waiting.gather(&mut g, i, &u, Some(&tree));
        // Unpooling, onto the window of the pool's input (the 2x2 pool's
        // spreading commutes with the rectification, which the sources'
        // gates carry its switches past).
        let below = tree.below[i];
        let v = match c.pool {
            Some(p) if p.average => {
                let inside = inside_pool_input(&mut g, &tree, i, Dim::Named("n"));
                let kept = g.node("Mul", &[&u, &inside], vec![]);
                let spread = average_backward(&mut g, &kept, p, c.in_channels, None);
                reframe(&mut g, &spread, pool_input(p, tree.conv_in[i]), below)
            }
            Some(p) if p.halves() => {
                let up = g.upsample2(&u);
                reframe(&mut g, &up, pool_input(p, tree.conv_in[i]), below)
            }
            Some(p) => {
                let cells = cells_input(&mut g, c, &tree, i);
                let shape = window_shape(&mut g, &u, below);
                let (cy, cx) = tree.conv_in[i];
                unpool(&mut g, &u, &cells, &shape, p, (cy.len, cx.len))
            }
            None => u,
        };
        arriving.send(&mut g, (c, &convs[..i]), &v, Some(&tree));
    }
    let image = arriving.take_or_zero(&mut g, 0, 3, &tree);
    g.node_named("Identity", &[&image], "image", vec![]);
    g.output("image", DataType::Float, &dims("n", 3, tree.out[0]));
    g.finish()
}

/// A fresh int64 constant of `values` (its name from `stem`).
fn constant(g: &mut GraphBuilder, stem: &str, values: &[i64]) -> String {
    let name = g.fresh_name(stem);
    g.initializer(i64_tensor(&name, &[values.len() as i64], values))
}

/// The shape `[n, C, rows, columns]` of `x` (`[n, C, ..]`) on window `w`.
fn window_shape(g: &mut GraphBuilder, x: &str, w: (Span, Span)) -> String {
    let shape = g.node("Shape", &[x], vec![]);
    let (start, end, axis) = (
        constant(g, "shape_start", &[0]),
        constant(g, "shape_end", &[2]),
        constant(g, "shape_axis", &[0]),
    );
    let batch = g.node("Slice", &[&shape, &start, &end, &axis], vec![]);
    let grid = constant(g, "shape_grid", &[w.0.len as i64, w.1.len as i64]);
    g.node("Concat", &[&batch, &grid], vec![("axis", Attr::Int(0))])
}

/// `v` cut along its channels into parts of `widths` (`v` itself for one).
pub(crate) fn channel_parts(g: &mut GraphBuilder, v: &str, widths: &[usize]) -> Vec<String> {
    if widths.len() == 1 {
        return vec![v.to_string()];
    }
    let mut offset = 0;
    let mut parts = Vec::with_capacity(widths.len());
    for &width in widths {
        let start = constant(g, "part_start", &[offset as i64]);
        let end = constant(g, "part_end", &[(offset + width) as i64]);
        let axis = constant(g, "part_axis", &[1]);
        parts.push(g.node("Slice", &[v, &start, &end, &axis], vec![]));
        offset += width;
    }
    parts
}

/// Backward signals at the layers' outputs (index = layer, 0 the image),
/// each the sum of what its readers send.
pub(crate) struct Arriving(Vec<Option<String>>);

impl Arriving {
    pub(crate) fn new(layers: usize) -> Arriving {
        Arriving(vec![None; layers + 1])
    }

    /// Sends `v`, the signal at the input of conv layer `c`'s pool (on a
    /// FOV `tree`, at `tree.below`), to its sources (`below`: the layers up
    /// to `c`): each its channels of the concatenation, on its own window.
    pub(crate) fn send(
        &mut self,
        g: &mut GraphBuilder,
        (c, below): (&ConvLayer, &[ConvLayer]),
        v: &str,
        tree: Option<&FovTree>,
    ) {
        let widths: Vec<usize> = c
            .sources
            .iter()
            .map(|&s| if s == 0 { 3 } else { below[s - 1].out_channels })
            .collect();
        for (&s, mut part) in c.sources.iter().zip(channel_parts(g, v, &widths)) {
            if let Some(t) = tree {
                part = reframe(g, &part, t.below[c.number], t.out[s]);
            }
            self.add(g, s, part);
        }
    }

    /// Adds `v` to the signal at layer `i`'s output.
    pub(crate) fn add(&mut self, g: &mut GraphBuilder, i: usize, v: String) {
        let Some(slot) = self.0.get_mut(i) else {
            return;
        };
        *slot = Some(match slot.take() {
            Some(acc) => g.node("Add", &[&acc, &v], vec![]),
            None => v,
        });
    }

    /// The signal at layer `i`'s output, when a reader sent one.
    pub(crate) fn take(&mut self, i: usize) -> Option<String> {
        self.0.get_mut(i).and_then(Option::take)
    }

    /// [`Self::take`], or zero (`channels` wide on `tree.out[i]`).
    fn take_or_zero(
        &mut self,
        g: &mut GraphBuilder,
        i: usize,
        channels: usize,
        tree: &FovTree,
    ) -> String {
        if let Some(v) = self.take(i) {
            return v;
        }
        let (sy, sx) = tree.out[i];
        let name = g.fresh_name("silent");
        g.initializer(f32_tensor(
            &name,
            &[1, channels as i64, sy.len as i64, sx.len as i64],
            &vec![0.0; channels * sy.len * sx.len],
        ))
    }
}

/// Forward graph of the affine map fixed by the recorded masks and switches,
/// on the FOV windows, from a zero input: its output is the neuron's
/// effective bias (pre-activation for input 0).
pub(crate) fn affine_graph(convs: &[ConvLayer], layer: usize, size: usize) -> ModelProto {
    let tree = tree_of(convs, layer, size);
    let mut g = GraphBuilder::new(&format!("affine_l{layer}"));
    let zeros_shape = g.initializer(i64_tensor(
        "zeros_shape",
        &[3],
        &[3, tree.out[0].0.len as i64, tree.out[0].1.len as i64],
    ));
    let zeros = g.node("ConstantOfShape", &[&zeros_shape], vec![]);
    let axes = g.initializer(i64_tensor("axes0", &[1], &[0]));
    let mut outs = vec![String::new(); layer + 1];
    outs[0] = g.node("Unsqueeze", &[&zeros, &axes], vec![]);
    let top = &convs[layer - 1];
    let mut inputs = vec![String::new(); layer + 1];
    let extent = extent_at(&tree, layer);
    let conv = |g: &mut GraphBuilder, c: &ConvLayer, x: &str| forward_conv(g, c, x, extent);
    for i in (1..=layer).filter(|&i| tree.live[i]) {
        let c = &convs[i - 1];
        let a = joined_input(&mut g, c, &outs, &tree);
        let z = gated_sum(&mut g, (c, &tree, i), &a, &mut inputs, false, conv);
        if i == layer {
            if tree.whole {
                // The neuron's own unit of the top grid.
                let at = at_input(&mut g, &tree, layer);
                let picked = g.node("Mul", &[&z, &at], vec![]);
                let axes = g.initializer(i64_tensor("axes_hw", &[2], &[2, 3]));
                g.node_named(
                    "ReduceSum",
                    &[&picked, &axes],
                    "preact",
                    vec![("keepdims", Attr::Int(1))],
                );
            } else {
                g.node_named("Identity", &[&z], "preact", vec![]);
            }
            break;
        }
        // The batch comes in with the first gate (the zero image has batch 1).
        outs[i] = gated(&mut g, &z, c, &tree, (i, Dim::Named("n")), None);
    }
    g.output("preact", DataType::Float, &one_neuron(top));
    g.finish()
}

/// The input of conv layer `c`'s pool on `tree.below`: its sources'
/// outputs (`outs`, on their windows), concatenated on channels.
pub(crate) fn joined_input(
    g: &mut GraphBuilder,
    c: &ConvLayer,
    outs: &[String],
    tree: &FovTree,
) -> String {
    let parts: Vec<String> = c
        .sources
        .iter()
        .map(|&s| reframe(g, &outs[s], tree.out[s], tree.below[c.number]))
        .collect();
    concat_channels(g, &parts)
}

/// `parts` joined along their channels (the one part as it is).
pub(crate) fn concat_channels(g: &mut GraphBuilder, parts: &[String]) -> String {
    match parts {
        [one] => one.clone(),
        _ => {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            g.node("Concat", &parts, vec![("axis", Attr::Int(1))])
        }
    }
}

/// The pre-activation of conv layer `i` (layer `c`) on its window of
/// `tree`, from `a`, the window of the layer below: through its pool under
/// the recorded switches (`shared` as for [`gated_pool`]), its convolution
/// by `conv` and its residual sum (`conv` again for a projection). Keeps
/// the conv's input in `inputs[i]`.
fn gated_sum(
    g: &mut GraphBuilder,
    (c, tree, i): (&ConvLayer, &FovTree, usize),
    a: &str,
    inputs: &mut [String],
    shared: bool,
    conv: impl Fn(&mut GraphBuilder, &ConvLayer, &str) -> String + Copy,
) -> String {
    inputs[i] = match c.pool {
        Some(p) => gated_pool(g, a, c, tree, i, p, shared),
        None => a.to_string(),
    };
    let read = reframe(g, &inputs[i], tree.conv_in[i], tree.reads[i]);
    let z = conv(g, c, &read);
    add_residual(g, c, &z, inputs, Some(tree), conv)
}

/// `z`, the output of conv layer `i`, through the input `gate{i}` (the
/// window of its gate states, zero where the switches of the pool after it
/// are off) whose batch dimension is `batch`: times each state's slope,
/// plus its constant (times `offset_scale` when given, as the biases are).
fn gated(
    g: &mut GraphBuilder,
    z: &str,
    c: &ConvLayer,
    tree: &FovTree,
    (i, batch): (usize, Dim),
    offset_scale: Option<&str>,
) -> String {
    let [_, channels, h, w] = dims("n", c.out_channels, tree.out[i]);
    let gate = g.input(
        &format!("gate{i}"),
        DataType::Uint8,
        &[batch, channels, h, w],
    );
    let slope = c.activation.gate_slope(g, &gate);
    let a = g.node("Mul", &[z, &slope], vec![]);
    let Some(mut offset) = c.activation.gate_offset(g, &gate) else {
        return a;
    };
    if let Some(scale) = offset_scale {
        offset = g.node("Mul", &[&offset, scale], vec![]);
    }
    g.node("Add", &[&a, &offset], vec![])
}

/// The max pool feeding conv `i` (layer `c`), on the window of its input.
/// A 2x2/2 pool's input is already gated by its switches: the sum of each
/// window is the one value the gate lets through. Any other pool reads the
/// value at each output's recorded cell (input `cells{i}`, see
/// [`cells_input`]); with `shared`, one set of cells for the whole batch.
fn gated_pool(
    g: &mut GraphBuilder,
    a: &str,
    c: &ConvLayer,
    tree: &FovTree,
    i: usize,
    pool: PoolShape,
    shared: bool,
) -> String {
    // Average and 2x2 pools run unpadded on the window they read.
    let read =
        |g: &mut GraphBuilder| reframe(g, a, tree.below[i], pool_input(pool, tree.conv_in[i]));
    if pool.average {
        let a = read(g);
        let pooled = g.node("AveragePool", &[&a], pool.attrs([0; 4]));
        let batch = if shared {
            Dim::Fixed(1)
        } else {
            Dim::Named("n")
        };
        let inside = inside_pool_input(g, tree, i, batch);
        return g.node("Mul", &[&pooled, &inside], vec![]);
    }
    if pool.halves() {
        let a = read(g);
        let pooled = g.node("AveragePool", &[&a], pool.attrs([0; 4]));
        let four = g.initializer(f32_tensor(&format!("four{i}"), &[], &[4.0]));
        return g.node("Mul", &[&pooled, &four], vec![]);
    }
    let cells = cells_input(g, c, tree, i);
    if !shared {
        let flat = g.initializer(i64_tensor(&format!("flat{i}"), &[1], &[-1]));
        let values = g.node("Reshape", &[a, &flat], vec![]);
        return g.node("Gather", &[&values, &cells], vec![]);
    }
    // [n, C*h*w] gathered along axis 1 by [1, C, h', w'] cells:
    // [n, 1, C, h', w'], one configuration applied to every sample.
    let rows = g.initializer(i64_tensor(&format!("rows{i}"), &[2], &[0, -1]));
    let values = g.node("Reshape", &[a, &rows], vec![]);
    let picked = g.node("Gather", &[&values, &cells], vec![("axis", Attr::Int(1))]);
    let (sy, sx) = tree.conv_in[i];
    let out = g.initializer(i64_tensor(
        &format!("pooled{i}"),
        &[4],
        &[0, c.in_channels as i64, sy.len as i64, sx.len as i64],
    ));
    g.node("Reshape", &[&picked, &out], vec![])
}

/// Input `inside_pool{i}` (float `[batch, 1, h', w']`): 1 where an output
/// of the average pool feeding conv `i` on its window lies on the pool's
/// grid; beyond it the convolution reads padding, not the pool.
fn inside_pool_input(g: &mut GraphBuilder, tree: &FovTree, i: usize, batch: Dim) -> String {
    let (cy, cx) = tree.conv_in[i];
    g.input(
        &format!("inside_pool{i}"),
        DataType::Float,
        &[
            batch,
            Dim::Fixed(1),
            Dim::Fixed(cy.len as i64),
            Dim::Fixed(cx.len as i64),
        ],
    )
}

/// Input `cells{i}`: for each output of the pool feeding conv `i` on its
/// window (`[n, C, h', w']`, int64), the flat index in the batch of input
/// windows `[n, C, h, w]` of its recorded maximum. Outputs beyond the image
/// point at a cell of their window that is beyond it too, where the gates
/// are zero.
fn cells_input(g: &mut GraphBuilder, c: &ConvLayer, tree: &FovTree, i: usize) -> String {
    g.input(
        &format!("cells{i}"),
        DataType::Int64,
        &dims("n", c.in_channels, tree.conv_in[i]),
    )
}

/// The transpose of average pool `pool` over `channels` planes: each
/// output's signal spread evenly over its window (the padding is counted in
/// the averages, so every window has the same divisor). On a whole input of
/// `whole` (rows, columns) the rows and columns the pool left unread get
/// nothing; on a FOV window the input is sized to whole windows.
pub(crate) fn average_backward(
    g: &mut GraphBuilder,
    grad: &str,
    pool: PoolShape,
    channels: usize,
    whole: Option<(usize, usize)>,
) -> String {
    let (k, s) = (pool.kernel as i64, pool.stride as i64);
    let share = 1.0 / (pool.kernel * pool.kernel) as f32;
    let name = g.fresh_name("average_t");
    let kernel = g.initializer(f32_tensor(
        &name,
        &[channels as i64, 1, k, k],
        &vec![share; channels * pool.kernel * pool.kernel],
    ));
    let mut attrs = vec![
        ("kernel_shape", Attr::Ints(vec![k, k])),
        ("strides", Attr::Ints(vec![s, s])),
        ("group", Attr::Int(channels as i64)),
    ];
    if let Some((h, w)) = whole {
        let [top, left, bottom, right] = pool.pads;
        let unread = |len: usize, b: usize, e: usize| {
            ((len + b + e).saturating_sub(pool.kernel) % pool.stride) as i64
        };
        attrs.push((
            "pads",
            Attr::Ints(pool.pads.iter().map(|&p| p as i64).collect()),
        ));
        attrs.push((
            "output_padding",
            Attr::Ints(vec![unread(h, top, bottom), unread(w, left, right)]),
        ));
    }
    g.node("ConvTranspose", &[grad, &kernel], attrs)
}

/// Unpooling: `grad` at a max pool's outputs (`output_size` rows and
/// columns) added into its input of shape `input_shape` at the flat
/// `indices` of each output's maximum. MaxUnpool writes rather than adds, so
/// overlapping windows run as `m x m` phases of outputs `m = ceil(k / s)`
/// apart, whose windows are disjoint, and the phases are summed.
pub(crate) fn unpool(
    g: &mut GraphBuilder,
    grad: &str,
    indices: &str,
    input_shape: &str,
    pool: PoolShape,
    output_size: (usize, usize),
) -> String {
    let (k, s) = (pool.kernel as i64, pool.stride as i64);
    let attrs = || {
        vec![
            ("kernel_shape", Attr::Ints(vec![k, k])),
            ("strides", Attr::Ints(vec![s, s])),
        ]
    };
    let m = pool.kernel.div_ceil(pool.stride).max(1);
    if m == 1 {
        return g.node("MaxUnpool", &[grad, indices, input_shape], attrs());
    }
    let ends = constant(g, "phase_ends", &[i64::MAX; 2]);
    let axes = constant(g, "phase_axes", &[2, 3]);
    let steps = constant(g, "phase_steps", &[m as i64; 2]);
    let mut sum: Option<String> = None;
    for ry in 0..m.min(output_size.0) {
        for rx in 0..m.min(output_size.1) {
            let starts = constant(g, "phase_starts", &[ry as i64, rx as i64]);
            let slice = |g: &mut GraphBuilder, x: &str| {
                g.node("Slice", &[x, &starts, &ends, &axes, &steps], vec![])
            };
            let (part, at) = (slice(g, grad), slice(g, indices));
            let u = g.node("MaxUnpool", &[&part, &at, input_shape], attrs());
            sum = Some(match sum {
                Some(acc) => g.node("Add", &[&acc, &u], vec![]),
                None => u,
            });
        }
    }
    sum.unwrap_or_else(|| g.node("MaxUnpool", &[grad, indices, input_shape], attrs()))
}

/// Forward graph of the affine map fixed by the recorded masks and switches,
/// on the FOV windows from an input window `x`, exposing every layer's
/// pre-activations as `z{i}`. Sample k of the batch gets the biases times
/// `bias_scale[k]`: one run gives the pre-activations at an image (scale 1)
/// and their derivative along a direction (scale 0).
pub(crate) fn region_graph(convs: &[ConvLayer], layer: usize, size: usize) -> ModelProto {
    let tree = tree_of(convs, layer, size);
    let mut g = GraphBuilder::new(&format!("region_l{layer}"));
    let mut outs = vec![String::new(); layer + 1];
    outs[0] = g.input("x", DataType::Float, &dims("n", 3, tree.out[0]));
    let scale = g.input(
        "bias_scale",
        DataType::Float,
        &[Dim::Named("n"), Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(1)],
    );
    let extent = extent_at(&tree, layer);
    // Each convolution's bias times the sample's scale.
    let scaled_conv = |g: &mut GraphBuilder, c: &ConvLayer, x: &str| {
        let w = trained_weight(g, c);
        let name = g.fresh_name("b");
        let b = g.initializer(f32_tensor(
            &name,
            &[1, c.out_channels as i64, 1, 1],
            &c.bias,
        ));
        let linear = g.node("Conv", &[x, &w], c.shape.attrs(forward_pads(c, extent)));
        let bias = g.node("Mul", &[&b, &scale], vec![]);
        g.node("Add", &[&linear, &bias], vec![])
    };
    let mut inputs = vec![String::new(); layer + 1];
    for i in (1..=layer).filter(|&i| tree.live[i]) {
        let c = &convs[i - 1];
        let a = joined_input(&mut g, c, &outs, &tree);
        let sum = gated_sum(&mut g, (c, &tree, i), &a, &mut inputs, true, scaled_conv);
        let z = format!("z{i}");
        g.node_named("Identity", &[&sum], &z, vec![]);
        g.output(&z, DataType::Float, &dims("n", c.out_channels, tree.out[i]));
        if i == layer {
            break;
        }
        // One configuration for the whole batch: the gates broadcast.
        outs[i] = gated(&mut g, &z, c, &tree, (i, Dim::Fixed(1)), Some(&scale));
    }
    g.finish()
}

/// Window `have` of a tensor as window `want`: cut where `want` is
/// smaller, zero where it is larger.
pub(crate) fn reframe(
    g: &mut GraphBuilder,
    x: &str,
    have: (Span, Span),
    want: (Span, Span),
) -> String {
    if have == want {
        return x.to_string();
    }
    let end = |s: Span| s.start + s.len as i64;
    let both = |a: Span, b: Span| {
        let start = a.start.max(b.start);
        Span {
            start,
            len: (end(a).min(end(b)) - start).max(0) as usize,
        }
    };
    let overlap = (both(have.0, want.0), both(have.1, want.1));
    let mut y = x.to_string();
    if overlap != have {
        let from = |o: Span, h: Span| o.start - h.start;
        let starts = [from(overlap.0, have.0), from(overlap.1, have.1)];
        let ends = [
            starts[0] + overlap.0.len as i64,
            starts[1] + overlap.1.len as i64,
        ];
        let starts = constant(g, "cut_starts", &starts);
        let ends = constant(g, "cut_ends", &ends);
        let axes = constant(g, "cut_axes", &[2, 3]);
        y = g.node("Slice", &[&y, &starts, &ends, &axes], vec![]);
    }
    if overlap == want {
        return y;
    }
    let pads = [
        0,
        0,
        overlap.0.start - want.0.start,
        overlap.1.start - want.1.start,
        0,
        0,
        end(want.0) - end(overlap.0),
        end(want.1) - end(overlap.1),
    ];
    let name = g.fresh_name("pads");
    let pads = g.initializer(i64_tensor(&name, &[8], &pads));
    g.node("Pad", &[&y, &pads], vec![])
}

/// The window of a pool's input whose unpadded pooling gives window `w`
/// of its output.
fn pool_input(pool: PoolShape, w: (Span, Span)) -> (Span, Span) {
    (pool.input_span(w.0, 0), pool.input_span(w.1, 1))
}

/// `z`, conv `c`'s output, plus its residual shortcut: the input of conv
/// `from` (`inputs[from]`; on a FOV window, `tree.conv_in[from]` cut to
/// what the shortcut reads) through `conv` for a projection.
pub(crate) fn add_residual(
    g: &mut GraphBuilder,
    c: &ConvLayer,
    z: &str,
    inputs: &[String],
    tree: Option<&FovTree>,
    conv: impl FnOnce(&mut GraphBuilder, &ConvLayer, &str) -> String,
) -> String {
    let Some(r) = &c.residual else {
        return z.to_string();
    };
    let mut s = inputs[r.from].clone();
    if let Some(t) = tree
        && let Some(read) = t.shortcut[c.number]
    {
        s = reframe(g, &s, t.conv_in[r.from], read);
    }
    if let Some(p) = &r.projection {
        s = conv(g, p, &s);
    }
    g.node("Add", &[z, &s], vec![])
}

/// Backward signals on their way down residual shortcuts, waiting at the
/// input of the conv they start from (index = layer).
pub(crate) struct Waiting(Vec<Option<String>>);

impl Waiting {
    pub(crate) fn new(layers: usize) -> Waiting {
        Waiting(vec![None; layers + 1])
    }

    /// Sends `grad`, the signal at conv `c`'s pre-activation, down its
    /// shortcut: through its projection's transpose of `kernel` (`extent`:
    /// a FOV window, or the source's grid on a whole image), on a FOV
    /// `tree` placed in the source's window.
    pub(crate) fn send(
        &mut self,
        g: &mut GraphBuilder,
        c: &ConvLayer,
        kernel: Option<&[f32]>,
        grad: &str,
        tree: Option<&FovTree>,
        extent: Extent,
    ) {
        let Some(r) = &c.residual else {
            return;
        };
        let mut s = grad.to_string();
        if let (Some(p), Some(kernel)) = (&r.projection, kernel) {
            s = transposed_conv(g, p, kernel, &s, extent);
        }
        if let Some(t) = tree
            && let Some(read) = t.shortcut[c.number]
        {
            s = reframe(g, &s, read, t.conv_in[r.from]);
        }
        let slot = &mut self.0[r.from];
        *slot = Some(match slot.take() {
            Some(acc) => g.node("Add", &[&acc, &s], vec![]),
            None => s,
        });
    }

    /// The signal at conv `i`'s input: `u`, from its transpose (on a FOV
    /// `tree` placed in the input's window), plus what waits there.
    pub(crate) fn gather(
        &mut self,
        g: &mut GraphBuilder,
        i: usize,
        u: &str,
        tree: Option<&FovTree>,
    ) -> String {
        let u = match tree {
            Some(t) => reframe(g, u, t.reads[i], t.conv_in[i]),
            None => u.to_string(),
        };
        match self.0.get_mut(i).and_then(Option::take) {
            Some(s) => g.node("Add", &[&u, &s], vec![]),
            None => u,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::network::ConvShape;

    fn layer(in_channels: usize, out_channels: usize, kernel: usize, groups: usize) -> ConvLayer {
        let shape = ConvShape {
            kernel,
            groups,
            ..ConvShape::SAME_3X3
        };
        ConvLayer::bare(1, (in_channels, out_channels), shape, None)
    }

    #[test]
    fn transposed_kernel_swaps_channels_and_rotates() {
        // 2 out x 1 in, kernels 0..9 and 9..18.
        let w: Vec<f32> = (0..18).map(|v| v as f32).collect();
        let t = transposed_kernel(&w, &layer(1, 2, 3, 1));
        assert_eq!(&t[..9], &[8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
        assert_eq!(t[9], 17.0);
    }

    #[test]
    fn a_grouped_kernel_swaps_channels_within_each_group() {
        // 4 in, 2 out in 2 groups of 1x1: out 0 reads in 0..2, out 1 in 2..4.
        let w = [1.0, 2.0, 3.0, 4.0];
        let t = transposed_kernel(&w, &layer(4, 2, 1, 2));
        // [in 4, out / groups 1]: in i is read by its group's one output.
        assert_eq!(t, vec![1.0, 2.0, 3.0, 4.0]);
        // 2 in, 4 out in 2 groups: out 0, 1 read in 0; out 2, 3 read in 1.
        let t = transposed_kernel(&w, &layer(2, 4, 1, 2));
        assert_eq!(t, vec![1.0, 2.0, 3.0, 4.0]);
        let w: Vec<f32> = (0..16).map(|v| v as f32).collect();
        // 2 in, 2 out, 1 group, 2x2: t[i][o] = rot(w[o][i]).
        let t = transposed_kernel(&w, &layer(2, 2, 2, 1));
        let want = [3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 5, 4, 15, 14, 13, 12];
        assert_eq!(t, want.map(|v| v as f32).to_vec());
    }
}
