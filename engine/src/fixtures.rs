//! Small generated models: VGG-like chains with the same weights as an NCHW
//! export (PyTorch style) or an NHWC one (tf2onnx style, input Transpose),
//! a chain of strided, dilated, grouped and asymmetrically padded
//! convolutions, an AlexNet-shaped chain of overlapping, padded and
//! ceil-mode max pools, a MobileNet-shaped depthwise-separable chain with
//! ReLU6 and a leaky-ReLU chain; each with an optional dense head. They make most tests run
//! in milliseconds.

use crate::model::network::{Activation, ConvLayer, ConvShape, Layout, PoolShape, geometry_of};
use fovea_onnx::proto::tensor_proto::DataType;
use fovea_onnx::{Attr, Dim, GraphBuilder, encode, f32_tensor};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// (in, out, pooled before) of the tiny model's conv layers: two pools, five
/// convs, small depths.
pub const TINY_CONVS: [(usize, usize, bool); 5] = [
    (3, 4, false),
    (4, 4, false),
    (4, 6, true),
    (6, 6, false),
    (6, 8, true),
];
/// Classes of the tiny head.
pub const TINY_CLASSES: usize = 5;

/// One conv layer of a generated chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainConv {
    pub in_channels: usize,
    pub out_channels: usize,
    /// The max pool preceding the convolution.
    pub pool: Option<PoolShape>,
    pub shape: ConvShape,
    pub activation: Activation,
}

/// The tiny model's chain: [`TINY_CONVS`] of 3x3 stride-1 convolutions.
pub fn tiny_chain() -> Vec<ChainConv> {
    TINY_CONVS
        .iter()
        .map(|&(in_channels, out_channels, pooled)| ChainConv {
            in_channels,
            out_channels,
            pool: pooled.then_some(PoolShape::HALVING),
            shape: ConvShape::SAME_3X3,
            activation: Activation::Relu,
        })
        .collect()
}

/// The tiny chain with leaky ReLUs of slope [`LEAKY_SLOPE`] (negative
/// values reach its 2x2 pools and dense head).
pub fn leaky_chain() -> Vec<ChainConv> {
    tiny_chain()
        .into_iter()
        .map(|c| ChainConv {
            activation: Activation::Leaky(LEAKY_SLOPE),
            ..c
        })
        .collect()
}

/// The leaky chain's slope below zero.
pub const LEAKY_SLOPE: f32 = 0.1;

/// The leaky chain with the tiny model's weights as ONNX bytes (NCHW).
pub fn leaky_model(head: bool, size: usize) -> Vec<u8> {
    chain_model(
        &leaky_chain(),
        &tiny_weights(),
        Layout::Nchw,
        head,
        size,
        None,
    )
}

/// The leaky chain as PyTorch exports `nn.PReLU()` (one learned slope for
/// all channels): each LeakyRelu a PRelu with a `[1]` slope tensor.
pub fn leaky_model_as_prelu(size: usize) -> Vec<u8> {
    let bytes = leaky_model(true, size);
    let Ok(mut model) = fovea_onnx::decode_model(&bytes) else {
        return bytes;
    };
    let Some(graph) = model.graph.as_mut() else {
        return bytes;
    };
    let mut slopes = Vec::new();
    for (k, n) in graph.node.iter_mut().enumerate() {
        if n.op_type == "LeakyRelu" {
            let name = format!("prelu{k}.weight");
            slopes.push(f32_tensor(&name, &[1], &[LEAKY_SLOPE]));
            n.op_type = "PRelu".into();
            n.attribute.clear();
            n.input.push(name);
        }
    }
    graph.initializer.extend(slopes);
    encode(&model)
}

/// Input side of the average-pool model (odd, so a 2x2 pool leaves a row
/// and a column unread).
pub const AVERAGE_SIZE: usize = 37;

/// A chain of 3x3 convolutions with average pools in front of its layers,
/// as in VGG variants made for style transfer: 2x2/2 (37 -> 18), 3x3/2
/// padded by 1 (9, windows overlapping, the padding counted), a 2x2/2 max
/// pool (4) and a 3x3 stride-1 average padded by 1 (4, as in Inception's
/// branches); its head pools like the last.
pub fn average_chain() -> Vec<ChainConv> {
    let pool = |kernel, stride, pads, average| {
        Some(PoolShape {
            kernel,
            stride,
            pads: [pads; 4],
            ceil: false,
            average,
        })
    };
    let conv = |in_channels, out_channels, pool| ChainConv {
        in_channels,
        out_channels,
        pool,
        shape: ConvShape::SAME_3X3,
        activation: Activation::Relu,
    };
    vec![
        conv(3, 6, None),
        conv(6, 8, pool(2, 2, 0, true)),
        conv(8, 8, pool(3, 2, 1, true)),
        conv(8, 10, pool(2, 2, 0, false)),
        conv(10, 12, pool(3, 1, 1, true)),
    ]
}

/// Weights of the average-pool chain.
pub fn average_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    chain_weights(&average_chain(), 43)
}

/// The average-pool chain as ONNX bytes (NCHW, [`AVERAGE_SIZE`]).
pub fn average_model(head: bool) -> Vec<u8> {
    chain_model(
        &average_chain(),
        &average_weights(),
        Layout::Nchw,
        head,
        AVERAGE_SIZE,
        None,
    )
}

/// Input side of the MobileNet-shaped model.
pub const MOBILE_SIZE: usize = 48;

/// The ceiling of the MobileNet-shaped model's clipped ReLUs (ReLU6).
pub const MOBILE_CEILING: f32 = 6.0;

/// A MobileNet-shaped chain, every convolution batch-normalised and
/// followed by ReLU6: a 3x3/2 stem padded by 1 (48 -> 24), then
/// depthwise-separable pairs (a depthwise 3x3, the second one strided to
/// 12, and a pointwise 1x1); no pools, so its head averages globally.
pub fn mobile_chain() -> Vec<ChainConv> {
    let relu6 = Activation::Clip(MOBILE_CEILING);
    vec![
        separable_conv(3, 8, (3, 2), relu6),
        separable_conv(8, 8, (3, 1), relu6),
        separable_conv(8, 16, (1, 1), relu6),
        separable_conv(16, 16, (3, 2), relu6),
        separable_conv(16, 24, (1, 1), relu6),
        separable_conv(24, 24, (3, 1), relu6),
        separable_conv(24, 32, (1, 1), relu6),
    ]
}

/// A conv of a MobileNet-shaped chain, padded to keep the grid: a 1x1
/// (pointwise), a depthwise 3x3 when `in_channels == out_channels`, else a
/// full 3x3 (the stem); `(kernel, stride)`.
fn separable_conv(
    in_channels: usize,
    out_channels: usize,
    (kernel, stride): (usize, usize),
    activation: Activation,
) -> ChainConv {
    let groups = if kernel == 3 && in_channels == out_channels {
        in_channels
    } else {
        1
    };
    ChainConv {
        in_channels,
        out_channels,
        pool: None,
        shape: ConvShape {
            kernel,
            stride,
            groups,
            pads: [(kernel - 1) / 2; 4],
            ..ConvShape::SAME_3X3
        },
        activation,
    }
}

/// The MobileNet-shaped chain as tf2onnx writes a Keras model: every
/// padded convolution unpadded behind an explicit zero Pad node (Keras'
/// ZeroPadding2D), pads as an int64 input.
pub fn mobile_model_with_pad_nodes(head: bool) -> Vec<u8> {
    rewritten(mobile_model(head), |graph| {
        let mut nodes = Vec::new();
        for (k, mut n) in std::mem::take(&mut graph.node).into_iter().enumerate() {
            let pads = n
                .attribute
                .iter_mut()
                .find(|a| a.name == "pads")
                .filter(|_| n.op_type == "Conv");
            if let Some(pads) = pads.filter(|a| a.ints.iter().any(|&p| p != 0)) {
                let [t, l, b, r] = [pads.ints[0], pads.ints[1], pads.ints[2], pads.ints[3]];
                pads.ints = vec![0; 4];
                let name = format!("pad{k}.pads");
                graph.initializer.push(fovea_onnx::i64_tensor(
                    &name,
                    &[8],
                    &[0, 0, t, l, 0, 0, b, r],
                ));
                let padded = format!("pad{k}.out");
                nodes.push(fovea_onnx::proto::NodeProto {
                    input: vec![n.input[0].clone(), name],
                    output: vec![padded.clone()],
                    name: format!("pad{k}"),
                    op_type: "Pad".into(),
                    ..Default::default()
                });
                n.input[0] = padded;
            }
            nodes.push(n);
        }
        graph.node = nodes;
    })
}

/// The MobileNet-shaped model with its dense head written as 1x1
/// convolutions on the globally pooled features, as Keras' MobileNet and
/// MXNet's MobileNet v2 write their classifiers: a Dropout where the
/// Flatten was, each Gemm a Conv of the same weights (`[out, in, 1, 1]`),
/// and the Flatten before the softmax.
pub fn mobile_model_with_pointwise_head() -> Vec<u8> {
    rewritten(mobile_model(true), |graph| {
        let mut nodes = Vec::new();
        for mut n in std::mem::take(&mut graph.node) {
            match n.op_type.as_str() {
                "Flatten" => {
                    n.op_type = "Dropout".into();
                    n.attribute.clear();
                }
                "Gemm" => {
                    n.op_type = "Conv".into();
                    n.attribute.clear();
                    if let Some(w) = graph.initializer.iter_mut().find(|t| t.name == n.input[1]) {
                        w.dims.extend([1, 1]);
                    }
                }
                "Softmax" => {
                    let flat = format!("{}.flat", n.input[0]);
                    nodes.push(fovea_onnx::proto::NodeProto {
                        input: vec![n.input[0].clone()],
                        output: vec![flat.clone()],
                        name: "flatten".into(),
                        op_type: "Flatten".into(),
                        attribute: vec![fovea_onnx::attribute("axis", Attr::Int(1))],
                        ..Default::default()
                    });
                    n.input[0] = flat;
                }
                _ => {}
            }
            nodes.push(n);
        }
        graph.node = nodes;
    })
}

/// `bytes` (a generated model) with its graph edited by `edit`.
fn rewritten(bytes: Vec<u8>, edit: impl FnOnce(&mut fovea_onnx::proto::GraphProto)) -> Vec<u8> {
    let Ok(mut model) = fovea_onnx::decode_model(&bytes) else {
        return bytes;
    };
    let Some(graph) = model.graph.as_mut() else {
        return bytes;
    };
    edit(graph);
    encode(&model)
}

/// Bias-free weights of the MobileNet-shaped chain.
pub fn mobile_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    let chain = mobile_chain();
    chain_weights(&chain, 37)
        .into_iter()
        .map(|(w, b)| (w, vec![0.0; b.len()]))
        .collect()
}

/// Batch norms (scale, shift, mean, variance; epsilon
/// [`TINY_BN_EPSILON`]) of the MobileNet-shaped chain, their scales large
/// enough that units reach the ceiling.
pub fn mobile_batch_norms() -> Vec<[Vec<f32>; 4]> {
    chain_batch_norms(&mobile_chain(), 41, (2.0, 4.0))
}

/// The MobileNet-shaped chain as ONNX bytes (NCHW, [`MOBILE_SIZE`]).
pub fn mobile_model(head: bool) -> Vec<u8> {
    chain_model(
        &mobile_chain(),
        &mobile_weights(),
        Layout::Nchw,
        head,
        MOBILE_SIZE,
        Some(&mobile_batch_norms()),
    )
}

/// Input side of the strided model (odd rows and columns are left unread by
/// its stride-2 layers, so the transposed passes must restore them).
pub const STRIDED_SIZE: usize = 42;

/// A chain with every convolution geometry but VGG's: a 5x5/2 stem padded
/// by 2 (42 -> 21), a dilated 3x3 in 2 groups (21), a 2x2 pool and a 1x1
/// (10), a depthwise 3x3/2 padded only at the bottom and right (5), and an
/// even 2x2 kernel padded at the top and right (5).
pub fn strided_chain() -> Vec<ChainConv> {
    let conv = |in_channels, out_channels, pooled: bool, shape| ChainConv {
        in_channels,
        out_channels,
        pool: pooled.then_some(PoolShape::HALVING),
        shape,
        activation: Activation::Relu,
    };
    let base = ConvShape::SAME_3X3;
    vec![
        conv(
            3,
            8,
            false,
            ConvShape {
                kernel: 5,
                stride: 2,
                pads: [2; 4],
                ..base
            },
        ),
        conv(
            8,
            8,
            false,
            ConvShape {
                dilation: 2,
                pads: [2; 4],
                groups: 2,
                ..base
            },
        ),
        conv(
            8,
            12,
            true,
            ConvShape {
                kernel: 1,
                pads: [0; 4],
                ..base
            },
        ),
        conv(
            12,
            12,
            false,
            ConvShape {
                stride: 2,
                pads: [0, 0, 1, 1],
                groups: 12,
                ..base
            },
        ),
        conv(
            12,
            16,
            false,
            ConvShape {
                kernel: 2,
                pads: [1, 0, 0, 1],
                ..base
            },
        ),
    ]
}

/// Input side of the overlapping-pool model.
pub const OVERLAPPING_SIZE: usize = 99;

/// An AlexNet-shaped chain: an 11x11/4 stem padded by 2 (99 -> 24), a 3x3/2
/// pool (11, windows overlapping by a row and a column), a 5x5 in 2 groups,
/// a 3x3/2 pool padded by 1 (6), two 3x3, a 3x3/2 pool in ceil mode (3, one
/// more than rounding down) and a 3x3; its head pools like the last (1).
pub fn overlapping_chain() -> Vec<ChainConv> {
    let pool = |pads: usize, ceil: bool| {
        Some(PoolShape {
            kernel: 3,
            stride: 2,
            pads: [pads; 4],
            ceil,
            average: false,
        })
    };
    let conv = |in_channels, out_channels, pool, shape| ChainConv {
        in_channels,
        out_channels,
        pool,
        shape,
        activation: Activation::Relu,
    };
    let base = ConvShape::SAME_3X3;
    vec![
        conv(
            3,
            8,
            None,
            ConvShape {
                kernel: 11,
                stride: 4,
                pads: [2; 4],
                ..base
            },
        ),
        conv(
            8,
            12,
            pool(0, false),
            ConvShape {
                kernel: 5,
                pads: [2; 4],
                groups: 2,
                ..base
            },
        ),
        conv(12, 16, pool(1, false), base),
        conv(16, 16, None, base),
        conv(16, 16, pool(0, true), base),
    ]
}

/// Weights of the overlapping-pool model's chain.
pub fn overlapping_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    chain_weights(&overlapping_chain(), 23)
}

/// The overlapping-pool chain as ONNX bytes (NCHW), with or without its
/// dense head.
pub fn overlapping_model(head: bool) -> Vec<u8> {
    chain_model(
        &overlapping_chain(),
        &overlapping_weights(),
        Layout::Nchw,
        head,
        OVERLAPPING_SIZE,
        None,
    )
}

/// The overlapping-pool model with its head, and a local response
/// normalisation after the first ReLU, as the Caffe networks of the model
/// zoo (AlexNet, CaffeNet, GoogLeNet) have: not piecewise linear.
pub fn overlapping_model_with_lrn() -> Vec<u8> {
    rewritten(overlapping_model(true), |g| {
        let Some(relu) = g.node.iter().position(|n| n.op_type == "Relu") else {
            return;
        };
        let out = g.node[relu].output[0].clone();
        let normed = format!("{out}_lrn");
        for n in &mut g.node {
            for i in &mut n.input {
                if *i == out {
                    i.clone_from(&normed);
                }
            }
        }
        let mut b = GraphBuilder::new("lrn");
        b.node_named(
            "LRN",
            &[&out],
            &normed,
            vec![
                ("size", Attr::Int(5)),
                ("alpha", Attr::Float(1e-4)),
                ("beta", Attr::Float(0.75)),
                ("bias", Attr::Float(1.0)),
            ],
        );
        let lrn = b.finish().graph.and_then(|h| h.node.into_iter().next());
        if let Some(lrn) = lrn {
            g.node.insert(relu + 1, lrn);
        }
    })
}

/// Deterministic He-initialised weights (OIHW) and biases of a chain.
pub fn chain_weights(chain: &[ChainConv], seed: u64) -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    chain
        .iter()
        .map(|c| {
            let fan_in = c.in_channels / c.shape.groups * c.shape.kernel * c.shape.kernel;
            let n = c.out_channels * fan_in;
            let w = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt()).map_or_else(
                |_| vec![0.0; n],
                |d| (0..n).map(|_| d.sample(&mut rng)).collect(),
            );
            let b = Normal::new(0.0f32, 0.1).map_or_else(
                |_| vec![0.0; c.out_channels],
                |d| (0..c.out_channels).map(|_| d.sample(&mut rng)).collect(),
            );
            (w, b)
        })
        .collect()
}

/// Deterministic conv weights and biases of the tiny model (OIHW).
pub fn tiny_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    chain_weights(&tiny_chain(), 7)
}

/// Weights of the strided model's chain.
pub fn strided_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    chain_weights(&strided_chain(), 17)
}

/// (channels, height, width) of a chain's last layer for a `size` input.
pub fn chain_output(chain: &[ChainConv], size: usize) -> (usize, usize, usize) {
    let convs: Vec<ConvLayer> = chain
        .iter()
        .enumerate()
        .map(|(i, c)| ConvLayer::bare(i + 1, (c.in_channels, c.out_channels), c.shape, c.pool))
        .collect();
    let last = geometry_of(&convs, size)[chain.len()];
    (last.channels, last.height, last.width)
}

/// Units of the tiny head's hidden dense layer.
pub const TINY_HIDDEN: usize = 10;

/// The tiny head's dense layers (weight [out, in], bias) for a `size` x
/// `size` input: the flattened last pool (C, H, W order) to 10 ReLU units,
/// then to the classes.
pub fn tiny_head_weights(size: usize) -> [(Vec<f32>, Vec<f32>); 2] {
    chain_head_weights(&tiny_chain(), size)
}

/// The max pool in front of a chain's dense head: the same as the chain's
/// last pool; None for a chain without pools, whose head averages each
/// feature map globally (as MobileNet's and ResNet's do).
pub fn head_pool(chain: &[ChainConv]) -> Option<PoolShape> {
    chain.iter().rev().find_map(|c| c.pool)
}

/// The features a chain's head pool hands to its first dense layer.
fn head_features(chain: &[ChainConv], size: usize) -> usize {
    let (last, h, w) = chain_output(chain, size);
    match head_pool(chain) {
        Some(pool) => last * pool.output_len(h, 0) * pool.output_len(w, 1),
        None => last,
    }
}

/// The dense head of a chain for a `size` input: its last layer's
/// [`head_pool`] flattened to 10 ReLU units, then to the classes.
pub fn chain_head_weights(chain: &[ChainConv], size: usize) -> [(Vec<f32>, Vec<f32>); 2] {
    let features = head_features(chain, size);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let d = Normal::new(0.0f32, (1.0 / features as f32).sqrt()).ok();
    let mut sample = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| d.map_or(0.0, |d| d.sample(&mut rng)))
            .collect()
    };
    let w1 = sample(TINY_HIDDEN * features);
    let b1 = sample(TINY_HIDDEN);
    let w2 = sample(TINY_CLASSES * TINY_HIDDEN);
    let b2 = sample(TINY_CLASSES);
    [(w1, b1), (w2, b2)]
}

/// Epsilon of the tiny model's batch norms.
pub const TINY_BN_EPSILON: f32 = 1e-3;

/// Per conv layer of the batch-normalised tiny model: scale, shift, running
/// mean and running variance, one value per output channel (far enough from
/// the identity that folding them wrongly shows).
pub fn tiny_batch_norms() -> Vec<[Vec<f32>; 4]> {
    chain_batch_norms(&tiny_chain(), 13, (0.5, 1.5))
}

/// Per conv layer of a chain: batch norm scale (uniform in `scales`),
/// shift, running mean and running variance, one value per output channel.
pub fn chain_batch_norms(
    chain: &[ChainConv],
    seed: u64,
    (lo, hi): (f32, f32),
) -> Vec<[Vec<f32>; 4]> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut uniform = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    };
    chain
        .iter()
        .map(|c| {
            let o = c.out_channels;
            [
                uniform(o, lo, hi),
                uniform(o, -0.3, 0.3),
                uniform(o, -0.5, 0.5),
                uniform(o, 0.3, 2.5),
            ]
        })
        .collect()
}

/// The tiny model as ONNX bytes, for a `size` x `size` input.
pub fn tiny_model(layout: Layout, head: bool, size: usize) -> Vec<u8> {
    tiny_model_with(layout, head, size, false)
}

/// The tiny model with `batch_norm`: each convolution without a bias and
/// followed by a BatchNormalization in inference form (as PyTorch exports
/// `Conv2d(bias=False)` + `BatchNorm2d`), with [`tiny_batch_norms`].
pub fn tiny_model_with(layout: Layout, head: bool, size: usize, batch_norm: bool) -> Vec<u8> {
    let norms = batch_norm.then(tiny_batch_norms);
    chain_model(
        &tiny_chain(),
        &tiny_weights(),
        layout,
        head,
        size,
        norms.as_deref(),
    )
}

/// The strided model as ONNX bytes (NCHW, [`STRIDED_SIZE`] input).
pub fn strided_model(head: bool) -> Vec<u8> {
    chain_model(
        &strided_chain(),
        &strided_weights(),
        Layout::Nchw,
        head,
        STRIDED_SIZE,
        None,
    )
}

/// A chain with `weights` as ONNX bytes for a `size` x `size` input; with
/// `norms`, a batch norm after each bias-free convolution.
pub fn chain_model(
    chain: &[ChainConv],
    weights: &[(Vec<f32>, Vec<f32>)],
    layout: Layout,
    head: bool,
    size: usize,
    norms: Option<&[[Vec<f32>; 4]]>,
) -> Vec<u8> {
    let mut g = GraphBuilder::new("tiny_vgg");
    let input = match layout {
        Layout::Nchw => g.input(
            "input",
            DataType::Float,
            &[
                Dim::Named("N"),
                Dim::Fixed(3),
                Dim::Fixed(size as i64),
                Dim::Fixed(size as i64),
            ],
        ),
        Layout::Nhwc => g.input(
            "input",
            DataType::Float,
            &[
                Dim::Named("N"),
                Dim::Fixed(size as i64),
                Dim::Fixed(size as i64),
                Dim::Fixed(3),
            ],
        ),
    };
    let mut x = match layout {
        Layout::Nchw => input,
        Layout::Nhwc => g.node(
            "Transpose",
            &[&input],
            vec![("perm", Attr::Ints(vec![0, 3, 1, 2]))],
        ),
    };
    for (k, (c, (w, b))) in chain.iter().zip(weights).enumerate() {
        if let Some(pool) = c.pool {
            x = g.node(pool.op(), &[&x], pool.own_attrs());
        }
        let z = conv_node(&mut g, k, &x, c, (w, b), norms.map(|n| &n[k]));
        x = activation_node(&mut g, k, &z, c.activation);
    }
    let (last, last_h, last_w) = chain_output(chain, size);
    if head {
        dense_head(&mut g, &x, chain, size);
    } else {
        g.node_named("Identity", &[&x], "features", vec![]);
        g.output(
            "features",
            DataType::Float,
            &[
                Dim::Named("N"),
                Dim::Fixed(last as i64),
                Dim::Fixed(last_h as i64),
                Dim::Fixed(last_w as i64),
            ],
        );
    }
    encode(&g.finish())
}

/// The NCHW image input `input` of a generated model: `[N, 3, side,
/// side]`.
fn image_input(g: &mut GraphBuilder, side: i64) -> String {
    g.input(
        "input",
        DataType::Float,
        &[
            Dim::Named("N"),
            Dim::Fixed(3),
            Dim::Fixed(side),
            Dim::Fixed(side),
        ],
    )
}

/// The chain models' dense head on `x`, the output of `chain` at `size`:
/// the chain's last pool (global average pooling without one), Flatten,
/// a dense layer of [`TINY_HIDDEN`] with ReLU, one of [`TINY_CLASSES`] and
/// the softmax output `probs`.
fn dense_head(g: &mut GraphBuilder, x: &str, chain: &[ChainConv], size: usize) {
    let x = match head_pool(chain) {
        Some(pool) => g.node(pool.op(), &[x], pool.own_attrs()),
        None => g.node("GlobalAveragePool", &[x], vec![]),
    };
    let flat = g.node("Flatten", &[&x], vec![("axis", Attr::Int(1))]);

    let [(w1, b1), (w2, b2)] = chain_head_weights(chain, size);
    let features = head_features(chain, size);
    let w1 = g.initializer(f32_tensor(
        "fc1.weight",
        &[TINY_HIDDEN as i64, features as i64],
        &w1,
    ));
    let b1 = g.initializer(f32_tensor("fc1.bias", &[TINY_HIDDEN as i64], &b1));
    let h = g.node("Gemm", &[&flat, &w1, &b1], vec![("transB", Attr::Int(1))]);
    let h = g.node("Relu", &[&h], vec![]);
    let w2 = g.initializer(f32_tensor(
        "fc2.weight",
        &[TINY_CLASSES as i64, TINY_HIDDEN as i64],
        &w2,
    ));
    let b2 = g.initializer(f32_tensor("fc2.bias", &[TINY_CLASSES as i64], &b2));
    let logits = g.node("Gemm", &[&h, &w2, &b2], vec![("transB", Attr::Int(1))]);
    g.node_named("Softmax", &[&logits], "probs", vec![("axis", Attr::Int(1))]);
    g.output(
        "probs",
        DataType::Float,
        &[Dim::Named("N"), Dim::Fixed(TINY_CLASSES as i64)],
    );
}

/// Input side of the residual model.
pub const RESIDUAL_SIZE: usize = 32;

/// Channels of the residual model's stem and first block (the second
/// block has twice as many).
pub const RESIDUAL_WIDTH: usize = 8;

/// The residual model's stem as a chain: a 7x7/2 convolution padded by 3
/// (32 -> 16), batch-normalised.
pub fn residual_stem() -> ChainConv {
    ChainConv {
        in_channels: 3,
        out_channels: RESIDUAL_WIDTH,
        pool: None,
        shape: ConvShape {
            kernel: 7,
            stride: 2,
            pads: [3; 4],
            ..ConvShape::SAME_3X3
        },
        activation: Activation::Relu,
    }
}

/// A ResNet-shaped model: the stem (conv 7x7/2 + batch norm + ReLU), with
/// `stem_pool` a 3x3/2 max pool padded by 1, then two basic blocks of two
/// 3x3 convolutions with batch norm, each adding its input before the last
/// ReLU: the first as it is, the second (whose first convolution has
/// stride 2 and twice the channels) through a batch-normalised 1x1/2
/// projection. Global average pooling and the chain models' dense head
/// follow. Convolutions and batch norms from [`residual_weights`] and
/// [`residual_batch_norms`] (the projection last), epsilon
/// [`TINY_BN_EPSILON`].
pub fn residual_model(stem_pool: bool) -> Vec<u8> {
    residual_model_with(stem_pool, 1)
}

/// [`residual_model`] with a `projection` x `projection` kernel in the
/// second block's shortcut (padded to keep the grid): from 9 up it reads
/// more of the block's input than the block's convolutions do.
pub fn residual_model_with(stem_pool: bool, projection: usize) -> Vec<u8> {
    let mut g = GraphBuilder::new("residual");
    let size = RESIDUAL_SIZE as i64;
    let input = image_input(&mut g, size);
    let mut convs = residual_convs(stem_pool);
    convs.push(residual_projection(projection));
    let weights = residual_weights(projection);
    let norms = residual_batch_norms();
    let conv_bn = |g: &mut GraphBuilder, k: usize, x: &str| -> String {
        let (w, b) = &weights[k];
        conv_node(g, k, x, &convs[k], (w, b), Some(&norms[k]))
    };
    let z = conv_bn(&mut g, 0, &input);
    let mut x = g.node("Relu", &[&z], vec![]);
    if let Some(pool) = convs[1].pool {
        x = g.node(pool.op(), &[&x], pool.own_attrs());
    }
    let z = conv_bn(&mut g, 1, &x);
    let y = g.node("Relu", &[&z], vec![]);
    let z = conv_bn(&mut g, 2, &y);
    let sum = g.node("Add", &[&z, &x], vec![]);
    let x = g.node("Relu", &[&sum], vec![]);
    let z = conv_bn(&mut g, 3, &x);
    let y = g.node("Relu", &[&z], vec![]);
    let z = conv_bn(&mut g, 4, &y);
    let shortcut = conv_bn(&mut g, 5, &x);
    let sum = g.node("Add", &[&shortcut, &z], vec![]);
    let x = g.node("Relu", &[&sum], vec![]);
    dense_head(&mut g, &x, &convs[..5], RESIDUAL_SIZE);
    encode(&g.finish())
}

/// The residual model's main path as a chain: the stem, then the blocks'
/// four 3x3 convolutions (the third with stride 2 and twice the
/// channels); with `stem_pool` the first block's input is pooled.
pub fn residual_convs(stem_pool: bool) -> Vec<ChainConv> {
    let w = RESIDUAL_WIDTH;
    let block = |in_channels, out_channels, stride| {
        conv3x3((in_channels, out_channels), stride, Activation::Relu)
    };
    let pool = stem_pool.then_some(PoolShape {
        kernel: 3,
        stride: 2,
        pads: [1; 4],
        ..PoolShape::HALVING
    });
    vec![
        residual_stem(),
        ChainConv {
            pool,
            ..block(w, w, 1)
        },
        block(w, w, 1),
        block(w, 2 * w, 2),
        block(2 * w, 2 * w, 1),
    ]
}

/// A 3x3 convolution padded by 1 with `stride`, not pooled.
fn conv3x3(
    (in_channels, out_channels): (usize, usize),
    stride: usize,
    activation: Activation,
) -> ChainConv {
    ChainConv {
        in_channels,
        out_channels,
        pool: None,
        shape: ConvShape {
            stride,
            ..ConvShape::SAME_3X3
        },
        activation,
    }
}

/// The second block's shortcut: a `kernel` x `kernel` projection with
/// stride 2 to twice the channels (1x1/2 in ResNet).
pub fn residual_projection(kernel: usize) -> ChainConv {
    ChainConv {
        in_channels: RESIDUAL_WIDTH,
        out_channels: 2 * RESIDUAL_WIDTH,
        pool: None,
        shape: ConvShape {
            kernel,
            stride: 2,
            pads: [(kernel - 1) / 2; 4],
            ..ConvShape::SAME_3X3
        },
        activation: Activation::Relu,
    }
}

/// The residual model's shortcuts per conv layer: the layer (1-based)
/// whose input the sum adds, and whether through [`residual_projection`].
pub const RESIDUAL_LINKS: [Option<(usize, bool)>; 5] =
    [None, None, Some((2, false)), None, Some((4, true))];

/// Weights (OIHW, bias-free) of the residual model's five convolutions
/// and its projection (of that kernel side).
pub fn residual_weights(projection: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut convs = residual_convs(true);
    convs.push(residual_projection(projection));
    chain_weights(&convs, 23)
        .into_iter()
        .map(|(w, b)| (w, vec![0.0; b.len()]))
        .collect()
}

/// Batch norm parameters (scale, shift, mean, variance) of the residual
/// model's five convolutions and its projection.
pub fn residual_batch_norms() -> Vec<[Vec<f32>; 4]> {
    let mut convs = residual_convs(true);
    convs.push(residual_projection(1));
    chain_batch_norms(&convs, 29, (0.5, 1.5))
}

/// Input side of the pre-activation model.
pub const PREACTIVATION_SIZE: usize = 32;

/// A batch norm on its own as the chain sees it: the depthwise 1x1
/// convolution of its scale and shift.
fn norm_layer(channels: usize, activation: Activation) -> ChainConv {
    ChainConv {
        in_channels: channels,
        out_channels: channels,
        pool: None,
        shape: ConvShape {
            kernel: 1,
            pads: [0; 4],
            groups: channels,
            ..ConvShape::SAME_3X3
        },
        activation,
    }
}

/// A ResNet-v2-shaped chain (pre-activation, as the model zoo's v2
/// files): a batch norm of the input (linear), the residual model's stem
/// (7x7/2, batch norm, ReLU), then blocks that start with batch norm and
/// ReLU, the first after a 3x3/2 max pool padded by 1. Each block's two
/// 3x3 convolutions (the first batch-normalised with ReLU, the second
/// bare) end in the block's sum, a linear layer; the second block's first
/// convolution has stride 2 and twice the channels. A last batch norm and
/// ReLU come before the head. Sums in [`PREACTIVATION_LINKS`].
pub fn preactivation_chain() -> Vec<ChainConv> {
    let w = RESIDUAL_WIDTH;
    let conv = |in_channels, out_channels, stride, activation| {
        conv3x3((in_channels, out_channels), stride, activation)
    };
    let (relu, linear) = (Activation::Relu, Activation::Linear);
    vec![
        norm_layer(3, linear),
        residual_stem(),
        ChainConv {
            pool: Some(PoolShape {
                kernel: 3,
                stride: 2,
                pads: [1; 4],
                ..PoolShape::HALVING
            }),
            ..norm_layer(w, relu)
        },
        conv(w, w, 1, relu),
        conv(w, w, 1, linear),
        norm_layer(w, relu),
        conv(w, 2 * w, 2, relu),
        conv(2 * w, 2 * w, 1, linear),
        norm_layer(2 * w, relu),
    ]
}

/// The pre-activation model's sums per layer: the layer (1-based) whose
/// input it adds, and whether through [`residual_projection`] (1x1/2, no
/// batch norm, reading the block's pre-activation).
pub const PREACTIVATION_LINKS: [Option<(usize, bool)>; 9] = [
    None,
    None,
    None,
    None,
    Some((3, false)),
    None,
    None,
    Some((7, true)),
    None,
];

/// Weights (OIHW, bias-free) of the pre-activation model's layers and its
/// projection: the identity for the batch norms on their own.
pub fn preactivation_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut chain = preactivation_chain();
    chain.push(residual_projection(1));
    chain_weights(&chain, 43)
        .into_iter()
        .zip(&chain)
        .map(|((w, b), c)| {
            let w = if c.shape.groups == c.in_channels && c.shape.kernel == 1 {
                vec![1.0; w.len()]
            } else {
                w
            };
            (w, vec![0.0; b.len()])
        })
        .collect()
}

/// Batch norms (scale, shift, mean, variance) of the pre-activation
/// model's layers and its projection: None where the file has none (the
/// blocks' last convolutions and the projection).
pub fn preactivation_batch_norms() -> Vec<Option<[Vec<f32>; 4]>> {
    let mut chain = preactivation_chain();
    chain.push(residual_projection(1));
    let bare = [4, 7, 9];
    chain_batch_norms(&chain, 47, (0.5, 1.5))
        .into_iter()
        .enumerate()
        .map(|(k, n)| (!bare.contains(&k)).then_some(n))
        .collect()
}

/// The pre-activation model as ONNX bytes (NCHW, [`PREACTIVATION_SIZE`]),
/// laid out as MXNet's ResNet v2 exports: `BatchNormalization` nodes with
/// no convolution before them, bare convolutions ending each block, sums
/// read by the next block's batch norm (and its identity shortcut), and
/// the chain models' dense head.
pub fn preactivation_model() -> Vec<u8> {
    let chain = preactivation_chain();
    let weights = preactivation_weights();
    let norms = preactivation_batch_norms();
    let mut g = GraphBuilder::new("preactivation");
    let input = image_input(&mut g, PREACTIVATION_SIZE as i64);
    let conv = |g: &mut GraphBuilder, k: usize, x: &str, c: &ChainConv| -> String {
        let (w, b) = &weights[k];
        conv_node(g, k, x, c, (w, b), norms[k].as_ref())
    };
    let norm = |g: &mut GraphBuilder, k: usize, x: &str| -> String {
        let z = norms[k]
            .as_ref()
            .map_or_else(|| x.to_string(), |n| batch_norm_node(g, k, x, n));
        activation_node(g, k, &z, chain[k].activation)
    };
    let x = norm(&mut g, 0, &input);
    let z = conv(&mut g, 1, &x, &chain[1]);
    let a = g.node("Relu", &[&z], vec![]);
    let pooled = match chain[2].pool {
        Some(pool) => g.node(pool.op(), &[&a], pool.own_attrs()),
        None => a,
    };
    // Block 1: identity shortcut of the pooled stem.
    let a = norm(&mut g, 2, &pooled);
    let z = conv(&mut g, 3, &a, &chain[3]);
    let a = g.node("Relu", &[&z], vec![]);
    let z = conv(&mut g, 4, &a, &chain[4]);
    let sum = g.node("Add", &[&z, &pooled], vec![]);
    // Block 2: the projection reads the block's pre-activation.
    let pre = norm(&mut g, 5, &sum);
    let z = conv(&mut g, 6, &pre, &chain[6]);
    let a = g.node("Relu", &[&z], vec![]);
    let z = conv(&mut g, 7, &a, &chain[7]);
    let shortcut = conv(&mut g, 9, &pre, &residual_projection(1));
    let sum = g.node("Add", &[&z, &shortcut], vec![]);
    let x = norm(&mut g, 8, &sum);
    dense_head(&mut g, &x, &chain, PREACTIVATION_SIZE);
    encode(&g.finish())
}

/// Input side of the inverted-residual model.
pub const INVERTED_SIZE: usize = 48;

/// A MobileNet-v2-shaped chain: a 3x3/2 ReLU6 stem; a depthwise 3x3 and a
/// linear 1x1 (no activation); then inverted residual blocks of a 1x1
/// expansion (ReLU6), a depthwise 3x3 (ReLU6; the first block strided) and
/// a linear 1x1 projection; a last 1x1 with ReLU6. The second and third
/// blocks add their input to the projection ([`INVERTED_LINKS`]), with no
/// activation after the sum.
pub fn inverted_chain() -> Vec<ChainConv> {
    let relu6 = Activation::Clip(MOBILE_CEILING);
    let linear = Activation::Linear;
    let block = |i, e, o, stride| {
        [
            separable_conv(i, e, (1, 1), relu6),
            separable_conv(e, e, (3, stride), relu6),
            separable_conv(e, o, (1, 1), linear),
        ]
    };
    let mut chain = vec![
        separable_conv(3, 8, (3, 2), relu6),
        separable_conv(8, 8, (3, 1), relu6),
        separable_conv(8, 8, (1, 1), linear),
    ];
    chain.extend(block(8, 16, 12, 2));
    chain.extend(block(12, 24, 12, 1));
    chain.extend(block(12, 24, 12, 1));
    chain.push(separable_conv(12, 32, (1, 1), relu6));
    chain
}

/// The inverted-residual model's sums: per conv layer, the layer whose
/// input it adds (as it is).
pub const INVERTED_LINKS: [Option<usize>; 13] = [
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    Some(7),
    None,
    None,
    Some(10),
    None,
];

/// Weights (OIHW, bias-free) of the inverted-residual model.
pub fn inverted_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    chain_weights(&inverted_chain(), 37)
        .into_iter()
        .map(|(w, b)| (w, vec![0.0; b.len()]))
        .collect()
}

/// Batch norms (scale, shift, mean, variance) of the inverted-residual
/// model.
pub fn inverted_batch_norms() -> Vec<[Vec<f32>; 4]> {
    chain_batch_norms(&inverted_chain(), 41, (0.5, 1.5))
}

/// The inverted-residual model as ONNX bytes (NCHW, [`INVERTED_SIZE`]):
/// every convolution batch-normalised, the sums of [`INVERTED_LINKS`],
/// global average pooling and the chain models' dense head.
pub fn inverted_model() -> Vec<u8> {
    let chain = inverted_chain();
    let weights = inverted_weights();
    let norms = inverted_batch_norms();
    let mut g = GraphBuilder::new("inverted");
    let side = INVERTED_SIZE as i64;
    let mut x = image_input(&mut g, side);
    // Each conv's input, which the sums read.
    let mut inputs: Vec<String> = Vec::new();
    for (k, (c, (w, b))) in chain.iter().zip(&weights).enumerate() {
        inputs.push(x.clone());
        let mut z = conv_node(&mut g, k, &x, c, (w, b), Some(&norms[k]));
        if let Some(from) = INVERTED_LINKS[k] {
            z = g.node("Add", &[&z, &inputs[from - 1]], vec![]);
        }
        x = activation_node(&mut g, k, &z, c.activation);
    }
    dense_head(&mut g, &x, &chain, INVERTED_SIZE);
    encode(&g.finish())
}

/// Input side of the Inception model.
pub const INCEPTION_SIZE: usize = 32;

/// The pool between the Inception model's stem and its block, as
/// GoogLeNet's: 3x3/2 unpadded, rounding up (16 -> 8).
pub const INCEPTION_BLOCK_POOL: PoolShape = PoolShape {
    kernel: 3,
    stride: 2,
    pads: [0; 4],
    ceil: true,
    average: false,
};

/// The pool of the Inception block's fourth branch, 3x3/1 padded by 1.
pub const INCEPTION_BRANCH_POOL: PoolShape = PoolShape {
    kernel: 3,
    stride: 1,
    pads: [1; 4],
    ceil: true,
    average: false,
};

/// The pool after the Inception model's block, 3x3/2 padded by 1 (8 -> 4),
/// over the four branches joined.
pub const INCEPTION_TOP_POOL: PoolShape = PoolShape {
    kernel: 3,
    stride: 2,
    pads: [1; 4],
    ceil: false,
    average: false,
};

/// The layers each conv layer of the Inception model reads (0: the image),
/// concatenated in this order.
pub const INCEPTION_SOURCES: [&[usize]; 8] =
    [&[0], &[1], &[1], &[3], &[1], &[5], &[1], &[2, 4, 6, 7]];

/// The Inception model's convolutions in their numbering (topological, one
/// branch after the other): a 5x5/2 stem (32 -> 16), then GoogLeNet's
/// block after the pool [`INCEPTION_BLOCK_POOL`]: a 1x1 branch, 1x1 then
/// 3x3, 1x1 then 5x5 (leaky), and [`INCEPTION_BRANCH_POOL`] then 1x1,
/// joined on channels (4 + 6 + 4 + 4) and read through
/// [`INCEPTION_TOP_POOL`] by a 3x3 convolution. Each
/// layer's pool is what it reads through: the block's pool for the
/// branches' first convolutions, both pools for the fourth.
pub fn inception_convs() -> Vec<ChainConv> {
    let conv = |(i, o): (usize, usize), kernel: usize, pool: Option<PoolShape>| ChainConv {
        in_channels: i,
        out_channels: o,
        pool,
        shape: ConvShape {
            kernel,
            pads: [kernel / 2; 4],
            ..ConvShape::SAME_3X3
        },
        activation: Activation::Relu,
    };
    let block = Some(INCEPTION_BLOCK_POOL);
    vec![
        ChainConv {
            shape: ConvShape {
                stride: 2,
                ..conv((3, 8), 5, None).shape
            },
            ..conv((3, 8), 5, None)
        },
        conv((8, 4), 1, block),
        conv((8, 4), 1, block),
        conv((4, 6), 3, None),
        conv((8, 2), 1, block),
        ChainConv {
            activation: Activation::Leaky(LEAKY_SLOPE),
            ..conv((2, 4), 5, None)
        },
        conv((8, 4), 1, INCEPTION_BLOCK_POOL.then(INCEPTION_BRANCH_POOL)),
        conv((18, 10), 3, Some(INCEPTION_TOP_POOL)),
    ]
}

/// Weights and biases of the Inception model's convolutions.
pub fn inception_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    chain_weights(&inception_convs(), 43)
}

/// The Inception model as ONNX bytes (NCHW, [`INCEPTION_SIZE`]): the layers
/// of [`inception_convs`] with the pools written as the file's own nodes,
/// then global average pooling and the chain models' dense head.
pub fn inception_model() -> Vec<u8> {
    inception_model_with(INCEPTION_TOP_POOL)
}

/// [`inception_model`] with `after` the pool between the block and the
/// last layer.
pub fn inception_model_with(after: PoolShape) -> Vec<u8> {
    inception_graph(Some(after))
}

/// The Inception model's first seven layers, its head reading the block's
/// Concat (global average pooling over its 18 maps, as GoogLeNet's head
/// reads its last block).
pub fn inception_model_ending_in_the_block() -> Vec<u8> {
    inception_graph(None)
}

/// The head of [`inception_model_ending_in_the_block`] as a chain: the
/// block's 18 maps averaged.
pub fn inception_block_head() -> ChainConv {
    ChainConv {
        in_channels: 8,
        out_channels: 18,
        pool: None,
        ..inception_convs()[0]
    }
}

/// The Inception model's graph, with `after` and the last layer, or with
/// the head on the block.
fn inception_graph(after: Option<PoolShape>) -> Vec<u8> {
    let convs = inception_convs();
    let weights = inception_weights();
    let mut g = GraphBuilder::new("inception");
    let input = image_input(&mut g, INCEPTION_SIZE as i64);
    let layer = |g: &mut GraphBuilder, k: usize, x: &str| {
        let c = ChainConv {
            pool: None,
            ..convs[k]
        };
        let (w, b) = &weights[k];
        let z = conv_node(g, k, x, &c, (w, b), None);
        activation_node(g, k, &z, c.activation)
    };
    let stem = layer(&mut g, 0, &input);
    let pool = INCEPTION_BLOCK_POOL;
    let x = g.node(pool.op(), &[&stem], pool.own_attrs());
    let b1 = layer(&mut g, 1, &x);
    let b2 = layer(&mut g, 2, &x);
    let b2 = layer(&mut g, 3, &b2);
    let b3 = layer(&mut g, 4, &x);
    let b3 = layer(&mut g, 5, &b3);
    let pool = INCEPTION_BRANCH_POOL;
    let b4 = g.node(pool.op(), &[&x], pool.own_attrs());
    let b4 = layer(&mut g, 6, &b4);
    let joined = g.node(
        "Concat",
        &[&b1, &b2, &b3, &b4],
        vec![("axis", Attr::Int(1))],
    );
    let Some(after) = after else {
        dense_head(&mut g, &joined, &[inception_block_head()], INCEPTION_SIZE);
        return encode(&g.finish());
    };
    let pooled = g.node(after.op(), &[&joined], after.own_attrs());
    let top = layer(&mut g, 7, &pooled);
    let head = ChainConv {
        pool: None,
        ..convs[7]
    };
    dense_head(&mut g, &top, &[head], INCEPTION_SIZE);
    encode(&g.finish())
}

/// Input side of the dense-block model.
pub const DENSE_SIZE: usize = 16;

/// The layers each layer of the dense-block model reads, concatenated.
pub const DENSE_SOURCES: [&[usize]; 5] = [&[0], &[1], &[1, 2], &[3], &[1, 2, 4]];

/// The dense-block model's layers, as DenseNet's block lays them out: a
/// 3x3 stem (6 maps), a 3x3 layer of 4 new maps on it, a batch norm with
/// ReLU (on its own, a layer) over the stem's and the new maps joined, a
/// 3x3 layer of 4 more, and a 1x1 layer over all three joined (14 maps).
pub fn dense_convs() -> Vec<ChainConv> {
    let relu = Activation::Relu;
    vec![
        conv3x3((3, 6), 1, relu),
        conv3x3((6, 4), 1, relu),
        norm_layer(10, relu),
        conv3x3((10, 4), 1, relu),
        ChainConv {
            shape: ConvShape {
                kernel: 1,
                pads: [0; 4],
                ..ConvShape::SAME_3X3
            },
            ..conv3x3((14, 8), 1, relu)
        },
    ]
}

/// Weights and biases of the dense-block model's layers (the identity for
/// the batch norm, whose parameters are [`dense_batch_norm`]).
pub fn dense_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut weights = chain_weights(&dense_convs(), 53);
    weights[2] = (vec![1.0; 10], vec![0.0; 10]);
    weights
}

/// The dense-block model's batch norm (scale, shift, mean, variance).
pub fn dense_batch_norm() -> [Vec<f32>; 4] {
    let mut norms = chain_batch_norms(&dense_convs()[2..3], 59, (0.5, 1.5));
    norms.remove(0)
}

/// The dense-block model as ONNX bytes (NCHW, [`DENSE_SIZE`]): each Concat
/// joins the block's input as it is (a branch with no layer) with the new
/// maps, and the second joins the first; then global average pooling and
/// the chain models' dense head.
pub fn dense_model() -> Vec<u8> {
    let convs = dense_convs();
    let weights = dense_weights();
    let mut g = GraphBuilder::new("dense");
    let input = image_input(&mut g, DENSE_SIZE as i64);
    let layer = |g: &mut GraphBuilder, k: usize, x: &str| {
        let (w, b) = &weights[k];
        let z = conv_node(g, k, x, &convs[k], (w, b), None);
        activation_node(g, k, &z, convs[k].activation)
    };
    let stem = layer(&mut g, 0, &input);
    let new = layer(&mut g, 1, &stem);
    let joined = g.node("Concat", &[&stem, &new], vec![("axis", Attr::Int(1))]);
    let normed = batch_norm_node(&mut g, 2, &joined, &dense_batch_norm());
    let normed = g.node("Relu", &[&normed], vec![]);
    let more = layer(&mut g, 3, &normed);
    let all = g.node("Concat", &[&joined, &more], vec![("axis", Attr::Int(1))]);
    let top = layer(&mut g, 4, &all);
    dense_head(&mut g, &top, &convs[4..], DENSE_SIZE);
    encode(&g.finish())
}

/// Bottleneck blocks per stage of ResNet-50.
pub const RESNET50_BLOCKS: [usize; 4] = [3, 4, 6, 3];

/// Input side and classes of the ResNet-50-shaped model.
pub const RESNET50_SIZE: usize = 224;
pub const RESNET50_CLASSES: usize = 1000;

/// A ResNet-50-shaped ImageNet classifier with generated weights, laid out
/// as torchvision exports it: a 7x7/2 stem with batch norm and a 3x3/2
/// padded max pool; stages of [`RESNET50_BLOCKS`] bottleneck blocks (1x1,
/// 3x3 with the stage's stride, 1x1 to 4x the width; 64, 128, 256, 512)
/// each convolution batch-normalised, the block's input added before the
/// last ReLU, through a batch-normalised 1x1 projection where the shape
/// changes; global average pooling, Flatten and a dense layer of
/// [`RESNET50_CLASSES`]. He-normal kernels, batch norms near the identity
/// (the last of each block scaled by 0.2 so the sums stay bounded over 16
/// blocks), all drawn from `seed`. Input `[N, 3, 224, 224]`.
pub fn resnet50_shaped_model(seed: u64) -> Vec<u8> {
    resnet50_shaped(seed, false)
}

/// [`resnet50_shaped_model`] in ResNet v2's layout (pre-activation, as
/// MXNet's v2 files of the model zoo): a batch norm of the input; each
/// block starting with batch norm and ReLU, which its 1x1 projection reads
/// too (no batch norm of its own), its last 1x1 bare and the sum with no
/// activation after it; a last batch norm and ReLU before the head.
pub fn resnet50_v2_shaped_model(seed: u64) -> Vec<u8> {
    resnet50_shaped(seed, true)
}

/// How a generated ResNet-50 convolution is scaled: by its batch norm's
/// scale, or (bare) its kernel's.
#[derive(Clone, Copy)]
enum Scaled {
    Normed(f32),
    Bare(f32),
}

fn resnet50_shaped(seed: u64, pre_activation: bool) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut g = GraphBuilder::new("resnet50_shaped");
    let side = RESNET50_SIZE as i64;
    let input = image_input(&mut g, side);
    let mut k = 0usize;
    // Conv k on `x`, with a batch norm of scale `gamma`, or bare with its
    // kernel scaled by `gamma`'s value in `Bare`.
    let mut conv = |g: &mut GraphBuilder,
                    rng: &mut rand_chacha::ChaCha8Rng,
                    x: &str,
                    (cin, cout): (usize, usize),
                    (kernel, stride): (usize, usize),
                    gamma: Scaled| {
        let c = ChainConv {
            in_channels: cin,
            out_channels: cout,
            pool: None,
            shape: ConvShape {
                kernel,
                stride,
                pads: [(kernel - 1) / 2; 4],
                ..ConvShape::SAME_3X3
            },
            activation: Activation::Relu,
        };
        let fan_in = cin * kernel * kernel;
        let bare = match gamma {
            Scaled::Bare(s) => s,
            Scaled::Normed(_) => 1.0,
        };
        let he = Normal::new(0.0f32, bare * (2.0 / fan_in as f32).sqrt()).ok();
        let w: Vec<f32> = (0..cout * fan_in)
            .map(|_| he.map_or(0.0, |d| d.sample(rng)))
            .collect();
        k += 1;
        let norm = match gamma {
            Scaled::Normed(gamma) => Some(resnet50_norm(rng, cout, gamma)),
            Scaled::Bare(_) => None,
        };
        conv_node(g, k, x, &c, (&w, &vec![0.0; cout]), norm.as_ref())
    };
    // A batch norm (and ReLU) on its own: pre-activation.
    let mut n = 1000usize;
    let mut norm = |g: &mut GraphBuilder,
                    rng: &mut rand_chacha::ChaCha8Rng,
                    x: &str,
                    channels: usize,
                    relu: bool| {
        n += 1;
        let z = batch_norm_node(g, n, x, &resnet50_norm(rng, channels, 1.0));
        if relu {
            g.node("Relu", &[&z], vec![])
        } else {
            z
        }
    };
    let rng = &mut rng;
    let x = if pre_activation {
        norm(&mut g, rng, &input, 3, false)
    } else {
        input
    };
    let z = conv(&mut g, rng, &x, (3, 64), (7, 2), Scaled::Normed(1.0));
    let a = g.node("Relu", &[&z], vec![]);
    let pool = PoolShape {
        kernel: 3,
        stride: 2,
        pads: [1; 4],
        ..PoolShape::HALVING
    };
    let mut x = g.node(pool.op(), &[&a], pool.own_attrs());
    let mut channels = 64;
    for (stage, &blocks) in RESNET50_BLOCKS.iter().enumerate() {
        let width = 64 << stage;
        for block in 0..blocks {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            // The last convolution scaled by 0.2 keeps the 16 sums bounded.
            let (last, projection) = if pre_activation {
                (Scaled::Bare(0.2), Scaled::Bare(1.0))
            } else {
                (Scaled::Normed(0.2), Scaled::Normed(1.0))
            };
            // What the block's convolutions and its projection read.
            let read = if pre_activation {
                norm(&mut g, rng, &x, channels, true)
            } else {
                x.clone()
            };
            let z = conv(
                &mut g,
                rng,
                &read,
                (channels, width),
                (1, 1),
                Scaled::Normed(1.0),
            );
            let a = g.node("Relu", &[&z], vec![]);
            let z = conv(
                &mut g,
                rng,
                &a,
                (width, width),
                (3, stride),
                Scaled::Normed(1.0),
            );
            let a = g.node("Relu", &[&z], vec![]);
            let z = conv(&mut g, rng, &a, (width, 4 * width), (1, 1), last);
            let shortcut = if block == 0 {
                conv(
                    &mut g,
                    rng,
                    &read,
                    (channels, 4 * width),
                    (1, stride),
                    projection,
                )
            } else {
                x.clone()
            };
            let sum = g.node("Add", &[&z, &shortcut], vec![]);
            x = if pre_activation {
                sum
            } else {
                g.node("Relu", &[&sum], vec![])
            };
            channels = 4 * width;
        }
    }
    if pre_activation {
        x = norm(&mut g, rng, &x, channels, true);
    }
    let pooled = g.node("GlobalAveragePool", &[&x], vec![]);
    let flat = g.node("Flatten", &[&pooled], vec![("axis", Attr::Int(1))]);
    let classes = RESNET50_CLASSES;
    let dense = Normal::new(0.0f32, 0.01).ok();
    let w: Vec<f32> = (0..classes * channels)
        .map(|_| dense.map_or(0.0, |d| d.sample(rng)))
        .collect();
    let w = g.initializer(f32_tensor(
        "fc.weight",
        &[classes as i64, channels as i64],
        &w,
    ));
    let b = g.initializer(f32_tensor(
        "fc.bias",
        &[classes as i64],
        &vec![0.0; classes],
    ));
    g.node_named(
        "Gemm",
        &[&flat, &w, &b],
        "logits",
        vec![("transB", Attr::Int(1))],
    );
    g.output(
        "logits",
        DataType::Float,
        &[Dim::Named("N"), Dim::Fixed(classes as i64)],
    );
    encode(&g.finish())
}

/// Batch norm parameters of the ResNet-50-shaped models: scale `gamma`,
/// small random shifts, zero mean and unit variance.
fn resnet50_norm(rng: &mut rand_chacha::ChaCha8Rng, channels: usize, gamma: f32) -> [Vec<f32>; 4] {
    let shift: Vec<f32> = (0..channels).map(|_| rng.random_range(-0.1..0.1)).collect();
    [
        vec![gamma; channels],
        shift,
        vec![0.0; channels],
        vec![1.0; channels],
    ]
}

/// The activation node of conv `k` on `z`, as exporters write it (ReLU6 as
/// Clip with constant bounds).
fn activation_node(g: &mut GraphBuilder, k: usize, z: &str, activation: Activation) -> String {
    match activation {
        Activation::Relu => g.node("Relu", &[z], vec![]),
        Activation::Leaky(alpha) => g.node("LeakyRelu", &[z], vec![("alpha", Attr::Float(alpha))]),
        Activation::Linear => z.to_string(),
        Activation::Clip(ceiling) => {
            let min = g.initializer(f32_tensor(&format!("clip{k}.min"), &[], &[0.0]));
            let max = g.initializer(f32_tensor(&format!("clip{k}.max"), &[], &[ceiling]));
            g.node("Clip", &[z, &min, &max], vec![])
        }
    }
}

/// Conv `k` of a generated model on `x` with weights and bias `(w, b)`; with
/// `norm` (scale, shift, mean, variance) bias-free and followed by a
/// BatchNormalization in inference form. Returns the output's name.
fn conv_node(
    g: &mut GraphBuilder,
    k: usize,
    x: &str,
    c: &ChainConv,
    (w, b): (&[f32], &[f32]),
    norm: Option<&[Vec<f32>; 4]>,
) -> String {
    let kernel = c.shape.kernel as i64;
    let o = c.out_channels as i64;
    let wn = g.initializer(f32_tensor(
        &format!("conv{k}.weight"),
        &[o, (c.in_channels / c.shape.groups) as i64, kernel, kernel],
        w,
    ));
    let attrs = c.shape.attrs(c.shape.own_pads());
    let Some(norm) = norm else {
        let bn = g.initializer(f32_tensor(&format!("conv{k}.bias"), &[o], b));
        return g.node("Conv", &[x, &wn, &bn], attrs);
    };
    let z = g.node("Conv", &[x, &wn], attrs);
    batch_norm_node(g, k, &z, norm)
}

/// Batch norm `k` of a generated model on `z` (scale, shift, mean,
/// variance; epsilon [`TINY_BN_EPSILON`]). Returns the output's name.
fn batch_norm_node(g: &mut GraphBuilder, k: usize, z: &str, norm: &[Vec<f32>; 4]) -> String {
    let o = norm[0].len() as i64;
    let params: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .zip(norm)
        .map(|(what, v)| g.initializer(f32_tensor(&format!("bn{k}.{what}"), &[o], v)))
        .collect();
    let mut inputs = vec![z];
    inputs.extend(params.iter().map(String::as_str));
    g.node(
        "BatchNormalization",
        &inputs,
        vec![("epsilon", Attr::Float(TINY_BN_EPSILON))],
    )
}

/// A deterministic test picture (smooth gradients plus a few edges and flat
/// areas, so pooling ties and inactive units both occur), PNG-encoded.
pub fn test_image_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let fx = x as f32 / width as f32;
        let fy = y as f32 / height as f32;
        let r = (255.0 * fx) as u8;
        let g = if (x / 7 + y / 5) % 2 == 0 { 200 } else { 40 };
        let b = if fy > 0.6 {
            128
        } else {
            (255.0 * (1.0 - fy) * fx) as u8
        };
        image::Rgb([r, g, b])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    // Encoding an in-memory RGB8 image as PNG cannot fail.
    let _ = img.write_to(&mut png, image::ImageFormat::Png);
    png.into_inner()
}

/// A well-formed PNG that declares `width` x `height` pixels but carries
/// almost no data: a decompression bomb in miniature.
pub fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}
