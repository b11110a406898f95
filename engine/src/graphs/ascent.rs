//! Ascent graphs: a conv chain's forward pass over a neuron's FOV window (or
//! the whole image) fused with its gradient, for maximization; the chain
//! builders are shared with the head's gradient graphs.

use crate::graphs::transposed::{
    Arriving, Extent, Kernels, Waiting, concat_channels, forward_conv, joined_input,
    transposed_conv,
};
use crate::graphs::transposed::{add_residual, average_backward, reframe, unpool};
use crate::model::network::{Activation, ConvLayer, FovTree, PoolShape, fov_tree, geometry_of};
use fovea_onnx::proto::{ModelProto, tensor_proto::DataType};
use fovea_onnx::{Dim, GraphBuilder};

/// How the conv chain of an ascent graph meets the image border.
#[derive(Clone, Copy)]
pub(crate) enum Frame<'a> {
    /// A FOV window: unpadded convolutions, and an `inside{i}` input per
    /// hidden layer that zeroes what lies beyond the image (zero padding),
    /// and `inside_pool{i}` beyond the output grid of the pool feeding
    /// layer i.
    Window(&'a FovTree),
    /// The whole image of this side: padded convolutions.
    Whole(usize),
}

impl<'a> Frame<'a> {
    /// Where the pool in front of conv `i` runs in this frame.
    pub(crate) fn pool(self, convs: &[ConvLayer], i: usize) -> PoolFrame {
        match self {
            Frame::Whole(size) => {
                let below = convs[i - 1].input_geom(&geometry_of(&convs[..i - 1], size));
                PoolFrame::Whole(below.height, below.width)
            }
            Frame::Window(tree) => PoolFrame::Window(tree.conv_in[i].0.len, tree.conv_in[i].1.len),
        }
    }

    /// The FOV tree of a window.
    pub(crate) fn tree(self) -> Option<&'a FovTree> {
        match self {
            Frame::Window(tree) => Some(tree),
            Frame::Whole(_) => None,
        }
    }

    /// Where conv layer `i`'s convolutions run in this frame.
    pub(crate) fn extent(self, convs: &[ConvLayer], i: usize) -> Extent {
        match self {
            Frame::Window(_) => Extent::Window,
            Frame::Whole(size) => {
                let below = convs[i - 1].input_geom(&geometry_of(&convs[..i - 1], size));
                match convs[i - 1].pool {
                    Some(p) => {
                        Extent::Whole(p.output_len(below.height, 0), p.output_len(below.width, 1))
                    }
                    None => Extent::Whole(below.height, below.width),
                }
            }
        }
    }
}

/// The forward conv chain of an ascent graph, with what its gradient needs.
pub(crate) struct Chain<'a> {
    frame: Frame<'a>,
    /// The chain's input.
    input: String,
    /// Pre-activation of the top layer.
    pub top: String,
    top_layer: usize,
    /// 0/1 ReLU masks of the layers below the top (index = layer).
    pub masks: Vec<String>,
    /// Activations (after the ReLU) of the layers below the top (index =
    /// layer).
    pub acts: Vec<String>,
    /// Pre-activations of the layers below the top (index = layer).
    pub pres: Vec<String>,
    /// The pools in front of pooled layers (index = layer).
    pub pools: Vec<Option<Pool>>,
}

/// A max or average pool, with what its gradient needs: where each max
/// pool window's maximum sits (the first one in row-major order, as the
/// recordings keep them), the shape of its input, and where it runs.
pub(crate) struct Pool {
    pub output: String,
    shape: PoolShape,
    /// A max pool's indices.
    indices: Option<String>,
    input_shape: String,
    frame: PoolFrame,
    channels: usize,
    /// On a FOV window, the 0/1 input zeroing outputs beyond the grid.
    inside: Option<String>,
}

/// Where a max pool runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PoolFrame {
    /// A whole image: the pool's own padding and rounding over an input of
    /// this (height, width).
    Whole(usize, usize),
    /// A FOV window of this many (rows, columns) of outputs: unpadded, on an
    /// input sized to whole windows.
    Window(usize, usize),
}

impl PoolFrame {
    fn attrs(self, shape: PoolShape) -> Vec<(&'static str, fovea_onnx::Attr)> {
        match self {
            PoolFrame::Whole(..) => shape.own_attrs(),
            PoolFrame::Window(..) => shape.attrs([0; 4]),
        }
    }

    fn outputs(self, shape: PoolShape) -> (usize, usize) {
        match self {
            PoolFrame::Whole(h, w) => (shape.output_len(h, 0), shape.output_len(w, 1)),
            PoolFrame::Window(h, w) => (h, w),
        }
    }
}

/// Pool `shape` over `a` (`channels` planes) in `frame`, a max pool
/// keeping its indices.
pub(crate) fn pool(
    g: &mut GraphBuilder,
    a: &str,
    shape: PoolShape,
    frame: PoolFrame,
    channels: usize,
) -> Pool {
    let (output, indices) = if shape.average {
        (g.node("AveragePool", &[a], frame.attrs(shape)), None)
    } else {
        let output = g.fresh_name("maxpool");
        let indices = format!("{output}_indices");
        g.node_outputs("MaxPool", &[a], &[&output, &indices], frame.attrs(shape));
        (output, Some(indices))
    };
    let input_shape = g.node("Shape", &[a], vec![]);
    Pool {
        output,
        shape,
        indices,
        input_shape,
        frame,
        channels,
        inside: None,
    }
}

impl Pool {
    /// The gradient at the pool's input from the gradient at its output.
    pub(crate) fn backward(&self, g: &mut GraphBuilder, grad: &str) -> String {
        let grad = match &self.inside {
            Some(inside) => g.node("Mul", &[grad, inside], vec![]),
            None => grad.to_string(),
        };
        let Some(indices) = &self.indices else {
            let whole = match self.frame {
                PoolFrame::Whole(h, w) => Some((h, w)),
                PoolFrame::Window(..) => None,
            };
            return average_backward(g, &grad, self.shape, self.channels, whole);
        };
        unpool(
            g,
            &grad,
            indices,
            &self.input_shape,
            self.shape,
            self.frame.outputs(self.shape),
        )
    }
}

/// Forward from `x` through conv layers 1..=top, keeping the masks and
/// switches of that same pass.
pub(crate) fn chain_forward<'a>(
    g: &mut GraphBuilder,
    convs: &[ConvLayer],
    x: &str,
    top: usize,
    frame: Frame<'a>,
) -> Chain<'a> {
    chain_forward_above(g, convs, x, top, frame, 0)
}

/// [`chain_forward`] for a backward pass that stops at layer `stop`'s
/// activation: below it the ReLUs and pools keep no masks or switches
/// (plain Relu and MaxPool, which ONNX Runtime fuses and runs faster), and
/// only `acts[stop]` is kept.
pub(crate) fn chain_forward_above<'a>(
    g: &mut GraphBuilder,
    convs: &[ConvLayer],
    x: &str,
    top: usize,
    frame: Frame<'a>,
    stop: usize,
) -> Chain<'a> {
    // Each layer's output (0: the image), which the layers above read.
    let mut outs = vec![String::new(); top + 1];
    outs[0] = x.to_string();
    // On a window, the layers of the tree; on the whole image every layer
    // up to the top (objectives may weigh layers beside it).
    let live = match frame {
        Frame::Window(tree) => tree.live.clone(),
        Frame::Whole(_) => vec![true; top + 1],
    };
    let mut masks: Vec<String> = vec![String::new(); top + 1];
    let mut acts: Vec<String> = vec![String::new(); top + 1];
    let mut pres: Vec<String> = vec![String::new(); top + 1];
    let mut pools: Vec<Option<Pool>> = (0..=top).map(|_| None).collect();
    // The input of each conv (after its pool), which shortcuts read.
    let mut inputs = vec![String::new(); top + 1];
    let mut top_z = String::new();
    for i in (1..=top).filter(|&i| live[i]) {
        let c = &convs[i - 1];
        let mut a = match frame {
            Frame::Window(tree) => joined_input(g, c, &outs, tree),
            Frame::Whole(_) => {
                let parts: Vec<String> = c.sources.iter().map(|&s| outs[s].clone()).collect();
                concat_channels(g, &parts)
            }
        };
        if let Some(shape) = c.pool {
            let pool_frame = frame.pool(convs, i);
            if i <= stop {
                a = g.node(shape.op(), &[&a], pool_frame.attrs(shape));
            } else {
                let p = pool(g, &a, shape, pool_frame, c.in_channels);
                a = p.output.clone();
                pools[i] = Some(p);
            }
            // On a window, outputs beyond the pooled grid would read the
            // image's edge (rows and columns a pool leaves unread, windows
            // that overlap it); there the convolution reads zero padding.
            if let (Some(p), PoolFrame::Window(h, w)) = (pools[i].as_mut(), pool_frame) {
                let inside = g.input(
                    &format!("inside_pool{i}"),
                    DataType::Float,
                    &[
                        Dim::Fixed(1),
                        Dim::Fixed(1),
                        Dim::Fixed(h as i64),
                        Dim::Fixed(w as i64),
                    ],
                );
                a = g.node("Mul", &[&a, &inside], vec![]);
                p.inside = Some(inside);
            }
        }
        inputs[i] = a.clone();
        let extent = frame.extent(convs, i);
        let read = match frame {
            Frame::Window(tree) => reframe(g, &a, tree.conv_in[i], tree.reads[i]),
            Frame::Whole(_) => a.clone(),
        };
        let z = forward_conv(g, c, &read, extent);
        let z = add_residual(g, c, &z, &inputs, frame.tree(), |g, p, x| {
            forward_conv(g, p, x, extent)
        });
        if i == top {
            top_z = z;
            break;
        }
        if i <= stop && matches!(frame, Frame::Whole(_)) {
            outs[i] = c.activation.node(g, &z);
            acts[i] = outs[i].clone();
            continue;
        }
        pres[i] = z.clone();
        masks[i] = c.activation.slope(g, &z);
        let mut inside_i = None;
        if let Frame::Window(tree) = frame {
            let (sy, sx) = tree.out[i];
            let inside = g.input(
                &format!("inside{i}"),
                DataType::Float,
                &[
                    Dim::Fixed(1),
                    Dim::Fixed(1),
                    Dim::Fixed(sy.len as i64),
                    Dim::Fixed(sx.len as i64),
                ],
            );
            masks[i] = g.node("Mul", &[&masks[i], &inside], vec![]);
            inside_i = Some(inside);
        }
        outs[i] = match (c.activation, &inside_i) {
            // The ReLU is its slope times the pre-activation.
            (Activation::Relu, _) => g.node("Mul", &[&z, &masks[i]], vec![]),
            (activation, None) => activation.node(g, &z),
            (activation, Some(inside)) => {
                let v = activation.node(g, &z);
                g.node("Mul", &[&v, inside], vec![])
            }
        };
        acts[i] = outs[i].clone();
    }
    Chain {
        frame,
        input: outs[0].clone(),
        top: top_z,
        top_layer: top,
        masks,
        acts,
        pres,
        pools,
    }
}

/// How a backward pass goes back through a ReLU (paper eq. 4-9), given the
/// signal at the ReLU's output and its forward slope (the 0/1 mask of a
/// ReLU); for other activations the rectification is theirs
/// ([`Activation::rectify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The forward mask alone: the gradient, the linear filter (eq. 8-9).
    Gradient,
    /// The forward mask and a ReLU on the signal: guided backpropagation,
    /// the masked deconvnet (eq. 6-7).
    Guided,
    /// A ReLU on the signal alone: the deconvnet (eq. 4-5).
    Deconvnet,
}

impl Rule {
    pub(crate) fn through_relu(
        self,
        g: &mut GraphBuilder,
        signal: &str,
        slope: &str,
        activation: Activation,
    ) -> String {
        match self {
            Rule::Gradient => g.node("Mul", &[signal, slope], vec![]),
            Rule::Guided => {
                let r = activation.rectify(g, signal);
                g.node("Mul", &[&r, slope], vec![])
            }
            Rule::Deconvnet => activation.rectify(g, signal),
        }
    }
}

/// The gradient at the chain's input, given the gradient at its top
/// pre-activation: the linear filter at the current input.
pub(crate) fn chain_backward(
    g: &mut GraphBuilder,
    convs: &[ConvLayer],
    chain: &Chain,
    grad_top: &str,
) -> String {
    let kernels = Kernels::trained(convs);
    chain_backward_to(
        g,
        convs,
        chain,
        (grad_top, &[]),
        &kernels,
        Rule::Gradient,
        0,
    )
}

/// The signal at the activation of layer `stop` (0: the input), given the
/// signal at the chain's top pre-activation and `seeds`, signals at the
/// activations of layers below it (a last Inception block's other
/// branches), going back through the transposed convolutions of `weights`
/// (OIHW per layer) and the chain's ReLUs by `rule`. Unpooling follows the
/// forward pass's switches.
pub(crate) fn chain_backward_to(
    g: &mut GraphBuilder,
    convs: &[ConvLayer],
    chain: &Chain,
    (grad_top, seeds): (&str, &[(usize, String)]),
    kernels: &Kernels,
    rule: Rule,
    stop: usize,
) -> String {
    let mut grad = grad_top.to_string();
    let tree = chain.frame.tree();
    let mut waiting = Waiting::new(chain.top_layer);
    let mut arriving = Arriving::new(chain.top_layer);
    for (s, v) in seeds {
        arriving.add(g, *s, v.clone());
    }
    for i in (stop + 1..=chain.top_layer).rev() {
        let c = &convs[i - 1];
        if i < chain.top_layer {
            // Not below the top (another branch of a block).
            let Some(v) = arriving.take(i) else { continue };
            grad = rule.through_relu(g, &v, &chain.masks[i], c.activation);
        }
        // A shortcut from below the stop bypasses its activation.
        if let Some(r) = c.residual.as_ref().filter(|r| r.from > stop) {
            let extent = chain.frame.extent(convs, r.from);
            waiting.send(g, c, kernels.shortcuts[i - 1], &grad, tree, extent);
        }
        let u = transposed_conv(
            g,
            c,
            kernels.convs[i - 1],
            &grad,
            chain.frame.extent(convs, i),
        );
        let mut u = waiting.gather(g, i, &u, tree);
        if let Some(p) = &chain.pools[i] {
            u = p.backward(g, &u);
        }
        arriving.send(g, (c, &convs[..i]), &u, tree);
    }
    arriving.take(stop).unwrap_or_else(|| {
        // The stop is not below the top: nothing reaches it.
        let below = if stop == 0 {
            &chain.input
        } else {
            &chain.acts[stop]
        };
        let name = g.fresh_name("zero");
        let zero = g.initializer(fovea_onnx::f32_tensor(&name, &[], &[0.0]));
        g.node("Mul", &[below, &zero], vec![])
    })
}

/// Forward over the FOV window fused with the gradient of the neuron's
/// pre-activation. Inputs: `x` [S, 3, h0, w0], `seed` [1, C_L, 1, 1] and a
/// 0/1 `inside{i}` window per hidden layer (zero padding at the image
/// border). Outputs: `objective` [S, C_L, 1, 1] and `grad` like `x`.
pub(crate) fn ascent_graph(convs: &[ConvLayer], layer: usize) -> ModelProto {
    let tree = fov_tree(convs, layer, 0, 0);
    let mut g = GraphBuilder::new(&format!("ascent_l{layer}"));
    let (wy, wx) = tree.out[0];
    let x_dims = [
        Dim::Named("s"),
        Dim::Fixed(3),
        Dim::Fixed(wy.len as i64),
        Dim::Fixed(wx.len as i64),
    ];
    let x = g.input("x", DataType::Float, &x_dims);
    let top = &convs[layer - 1];
    let seed_dims = |n| {
        [
            n,
            Dim::Fixed(top.out_channels as i64),
            Dim::Fixed(1),
            Dim::Fixed(1),
        ]
    };
    let seed = g.input("seed", DataType::Float, &seed_dims(Dim::Fixed(1)));
    let chain = chain_forward(&mut g, convs, &x, layer, Frame::Window(&tree));
    g.node_named("Identity", &[&chain.top], "objective", vec![]);
    let top_shape = g.node("Shape", &[&chain.top], vec![]);
    let seed = g.node("Expand", &[&seed, &top_shape], vec![]);
    let grad = chain_backward(&mut g, convs, &chain, &seed);
    g.node_named("Identity", &[&grad], "grad", vec![]);
    g.output("objective", DataType::Float, &seed_dims(Dim::Named("s")));
    g.output("grad", DataType::Float, &x_dims);
    g.finish()
}

/// [`ascent_graph`] over the whole `size` x `size` image, for a layer whose
/// FOV window is larger than the image (deep layers of modern networks):
/// less to compute, and the same graph for every neuron of the layer.
/// Inputs: `x` [S, 3, size, size], `seed` [1, C_L, 1, 1] and `at` [1, 1,
/// H_L, W_L], one-hot on the neuron's position. Outputs as
/// [`ascent_graph`]'s: `objective` [S, C_L, 1, 1] (every feature's
/// pre-activation there) and `grad` like `x`.
pub(crate) fn whole_ascent_graph(convs: &[ConvLayer], layer: usize, size: usize) -> ModelProto {
    let mut g = GraphBuilder::new(&format!("ascent_whole_l{layer}"));
    let side = size as i64;
    let x_dims = [
        Dim::Named("s"),
        Dim::Fixed(3),
        Dim::Fixed(side),
        Dim::Fixed(side),
    ];
    let x = g.input("x", DataType::Float, &x_dims);
    let top = geometry_of(&convs[..layer], size)[layer];
    let seed_dims = |n| {
        [
            n,
            Dim::Fixed(top.channels as i64),
            Dim::Fixed(1),
            Dim::Fixed(1),
        ]
    };
    let seed = g.input("seed", DataType::Float, &seed_dims(Dim::Fixed(1)));
    let at = g.input(
        "at",
        DataType::Float,
        &[
            Dim::Fixed(1),
            Dim::Fixed(1),
            Dim::Fixed(top.height as i64),
            Dim::Fixed(top.width as i64),
        ],
    );
    let chain = chain_forward(&mut g, convs, &x, layer, Frame::Whole(size));
    let picked = g.node("Mul", &[&chain.top, &at], vec![]);
    let axes = g.initializer(fovea_onnx::i64_tensor("plane_axes", &[2], &[2, 3]));
    g.node_named(
        "ReduceSum",
        &[&picked, &axes],
        "objective",
        vec![("keepdims", fovea_onnx::Attr::Int(1))],
    );
    let start = g.node("Mul", &[&seed, &at], vec![]);
    let top_shape = g.node("Shape", &[&chain.top], vec![]);
    let start = g.node("Expand", &[&start, &top_shape], vec![]);
    let grad = chain_backward(&mut g, convs, &chain, &start);
    g.node_named("Identity", &[&grad], "grad", vec![]);
    g.output("objective", DataType::Float, &seed_dims(Dim::Named("s")));
    g.output("grad", DataType::Float, &x_dims);
    g.finish()
}
