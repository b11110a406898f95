//! The graph of a feature-visualisation objective over conv layers: the
//! conv chain forward over the whole image, the objective's value, and its
//! gradient with respect to the image (the chain's own masks and switches).
//!
//! The objective is a sum of terms per layer: a linear map of the layer's
//! pre-activations (`seed{L}`, one [C, H, W] map: neurons, channel means,
//! directions, weighted), a weight times the sum of squared activations
//! (DeepDream's layer objective), and optionally a diversity penalty on the
//! activations of one layer across the batch: the mean cosine similarity of
//! the samples' Gram matrices (Lucid's), times a weight, subtracted.

use crate::graphs::ascent::{Frame, chain_forward};
use crate::graphs::transposed::{Arriving, Kernels, Waiting, transposed_conv};
use crate::model::network::{Activation, ConvLayer, geometry_of};
use fovea_onnx::proto::{ModelProto, tensor_proto::DataType};
use fovea_onnx::{Attr, Dim, GraphBuilder, f32_tensor, i64_tensor};

/// What the graph computes at each layer it touches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectiveLayout {
    /// Layers with a linear map of their pre-activations (fed as
    /// `seed{L}`).
    pub linear: Vec<usize>,
    /// (layer, weight) of sums of squared activations.
    pub squared: Vec<(usize, f32)>,
    /// (layer, weight) of the diversity penalty.
    pub diversity: Option<(usize, f32)>,
}

impl ObjectiveLayout {
    /// The deepest layer the objective reads.
    pub fn top(&self) -> usize {
        self.linear
            .iter()
            .copied()
            .chain(self.squared.iter().map(|t| t.0))
            .chain(self.diversity.map(|d| d.0))
            .max()
            .unwrap_or(1)
    }
}

/// Inputs: `x` [S, 3, size, size] and `seed{L}` [1, C_L, H_L, W_L] for each
/// linear layer. Outputs: `objective` [S] (without the diversity term),
/// `diversity` [1] (the mean pairwise similarity; 0 for one sample) and
/// `grad` like `x`, the gradient of objective - weight * diversity.
pub(crate) fn objective_graph(
    convs: &[ConvLayer],
    size: usize,
    layout: &ObjectiveLayout,
) -> ModelProto {
    let top = layout.top();
    let mut g = GraphBuilder::new("objective");
    let x_dims = [
        Dim::Named("s"),
        Dim::Fixed(3),
        Dim::Fixed(size as i64),
        Dim::Fixed(size as i64),
    ];
    let x = g.input("x", DataType::Float, &x_dims);
    let frame = Frame::Whole(size);
    let chain = chain_forward(&mut g, convs, &x, top, frame);
    let zero = g.initializer(f32_tensor("obj_zero", &[], &[0.0]));
    // Pre-activation, mask and activation at every layer up to the top.
    let mut pre = chain.pres.clone();
    let mut mask = chain.masks.clone();
    let mut act = chain.acts.clone();
    pre[top] = chain.top.clone();
    let activation = convs[top - 1].activation;
    mask[top] = activation.slope(&mut g, &chain.top);
    act[top] = activation.node(&mut g, &chain.top);
    // (channels, height, width) of the input and of each layer.
    let dims: Vec<(usize, usize, usize)> = geometry_of(&convs[..top], size)
        .iter()
        .map(|l| (l.channels, l.height, l.width))
        .collect();

    let axes_chw = g.initializer(i64_tensor("obj_axes_chw", &[3], &[1, 2, 3]));
    let mut value: Option<String> = None;
    let mut add_value = |g: &mut GraphBuilder, v: String| {
        value = Some(match value.take() {
            None => v,
            Some(acc) => g.node("Add", &[&acc, &v], vec![]),
        });
    };
    // The signal to add at each layer's pre-activation.
    let mut extra: Vec<Option<String>> = vec![None; top + 1];
    let push = |g: &mut GraphBuilder, extra: &mut Vec<Option<String>>, l: usize, s: String| {
        extra[l] = Some(match extra[l].take() {
            None => s,
            Some(acc) => g.node("Add", &[&acc, &s], vec![]),
        });
    };
    for &l in &layout.linear {
        let (ch, h, w) = dims[l];
        let seed = g.input(
            &format!("seed{l}"),
            DataType::Float,
            &[
                Dim::Fixed(1),
                Dim::Fixed(ch as i64),
                Dim::Fixed(h as i64),
                Dim::Fixed(w as i64),
            ],
        );
        let prod = g.node("Mul", &[&pre[l], &seed], vec![]);
        let v = g.node(
            "ReduceSum",
            &[&prod, &axes_chw],
            vec![("keepdims", Attr::Int(0))],
        );
        add_value(&mut g, v);
        let shape = g.node("Shape", &[&pre[l]], vec![]);
        let s = g.node("Expand", &[&seed, &shape], vec![]);
        push(&mut g, &mut extra, l, s);
    }
    for &(l, w) in &layout.squared {
        let sq = g.node("Mul", &[&act[l], &act[l]], vec![]);
        let total = g.node(
            "ReduceSum",
            &[&sq, &axes_chw],
            vec![("keepdims", Attr::Int(0))],
        );
        let wt = g.initializer(f32_tensor(&format!("obj_sq_w{l}"), &[], &[w]));
        let v = g.node("Mul", &[&total, &wt], vec![]);
        add_value(&mut g, v);
        // d(w * a^2)/dz = 2 w a a'(z), which for a ReLU is 2 w a.
        let two_w = g.initializer(f32_tensor(&format!("obj_sq_2w{l}"), &[], &[2.0 * w]));
        let mut s = g.node("Mul", &[&act[l], &two_w], vec![]);
        if convs[l - 1].activation != Activation::Relu {
            s = g.node("Mul", &[&s, &mask[l]], vec![]);
        }
        push(&mut g, &mut extra, l, s);
    }
    // Without a term of its own (diversity alone) the objective is 0.
    let objective = value.unwrap_or_else(|| {
        let per_sample = g.node(
            "ReduceSum",
            &[&x, &axes_chw],
            vec![("keepdims", Attr::Int(0))],
        );
        g.node("Mul", &[&per_sample, &zero], vec![])
    });
    g.node_named("Identity", &[&objective], "objective", vec![]);

    // Diversity: its value and the gradient at the layer's activation.
    let mut at_act: Vec<Option<String>> = vec![None; top + 1];
    match layout.diversity {
        Some((l, w)) => {
            let (c, h, width) = dims[l];
            let (sim, grad) = diversity(&mut g, &act[l], (c, h * width), w);
            g.node_named("Identity", &[&sim], "diversity", vec![]);
            at_act[l] = Some(grad);
        }
        None => {
            let none = g.initializer(f32_tensor("div_none", &[1], &[0.0]));
            g.node_named("Identity", &[&none], "diversity", vec![]);
        }
    }

    // Back from the top, adding each layer's own terms on the way.
    let through_mask =
        |g: &mut GraphBuilder, signal: &str, l: usize| g.node("Mul", &[signal, &mask[l]], vec![]);
    // The signal at each layer's activation (index 0: the image), summed
    // over the layers reading it.
    let mut arriving = Arriving::new(top);
    let kernels = Kernels::trained(convs);
    let mut waiting = Waiting::new(top);
    for l in (1..=top).rev() {
        // The signal at layer l's activation (from above, and diversity).
        let mut at = arriving.take(l);
        if let Some(d) = at_act[l].take() {
            at = Some(match at {
                None => d,
                Some(a) => g.node("Add", &[&a, &d], vec![]),
            });
        }
        let mut z = at.map(|a| through_mask(&mut g, &a, l));
        if let Some(e) = extra[l].take() {
            z = Some(match z {
                None => e,
                Some(a) => g.node("Add", &[&a, &e], vec![]),
            });
        }
        let Some(z) = z else {
            continue;
        };
        let conv = &convs[l - 1];
        if let Some(r) = &conv.residual {
            let extent = frame.extent(convs, r.from);
            let kernel = kernels.shortcuts[l - 1];
            waiting.send(&mut g, conv, kernel, &z, frame.tree(), extent);
        }
        let u = transposed_conv(&mut g, conv, &conv.weight, &z, frame.extent(convs, l));
        let mut u = waiting.gather(&mut g, l, &u, frame.tree());
        if let Some(p) = &chain.pools[l] {
            u = p.backward(&mut g, &u);
        }
        arriving.send(&mut g, (conv, &convs[..l]), &u, frame.tree());
    }
    let grad = arriving
        .take(0)
        .unwrap_or_else(|| g.node("Mul", &[&x, &zero], vec![]));
    g.node_named("Identity", &[&grad], "grad", vec![]);
    g.output("objective", DataType::Float, &[Dim::Named("s")]);
    g.output("diversity", DataType::Float, &[Dim::Fixed(1)]);
    g.output("grad", DataType::Float, &x_dims);
    g.finish()
}

/// Lucid's diversity over the batch at activations `a` [S, C, H, W]: the
/// mean cosine similarity of every two samples' Gram matrices, and the
/// gradient of `-weight` times it with respect to `a`.
fn diversity(
    g: &mut GraphBuilder,
    a: &str,
    (c, plane): (usize, usize),
    weight: f32,
) -> (String, String) {
    let (c, hw) = (c as i64, plane as i64);
    let flat_shape = g.initializer(i64_tensor("div_flat", &[3], &[0, c, hw]));
    let a3 = g.node("Reshape", &[a, &flat_shape], vec![]);
    let at = g.node(
        "Transpose",
        &[&a3],
        vec![("perm", Attr::Ints(vec![0, 2, 1]))],
    );
    let gram = g.node("MatMul", &[&a3, &at], vec![]);
    let gram_shape = g.initializer(i64_tensor("div_gram", &[2], &[0, c * c]));
    let gf = g.node("Reshape", &[&gram, &gram_shape], vec![]);
    let axis1 = g.initializer(i64_tensor("div_axis1", &[1], &[1]));
    let sq = g.node("Mul", &[&gf, &gf], vec![]);
    let norm2 = g.node(
        "ReduceSum",
        &[&sq, &axis1],
        vec![("keepdims", Attr::Int(1))],
    );
    let eps = g.initializer(f32_tensor("div_eps", &[], &[1e-12]));
    let norm2 = g.node("Add", &[&norm2, &eps], vec![]);
    let norm = g.node("Sqrt", &[&norm2], vec![]);
    let u = g.node("Div", &[&gf, &norm], vec![]);
    // Pairwise similarities and their mean off the diagonal.
    let ut = g.node("Transpose", &[&u], vec![("perm", Attr::Ints(vec![1, 0]))]);
    let sim = g.node("MatMul", &[&u, &ut], vec![]);
    let total = g.node("ReduceSum", &[&sim], vec![("keepdims", Attr::Int(0))]);
    let shape = g.node("Shape", &[a], vec![]);
    let first = g.initializer(i64_tensor("div_first", &[1], &[0]));
    let one = g.initializer(i64_tensor("div_one", &[1], &[1]));
    let s = g.node("Slice", &[&shape, &first, &one], vec![]);
    let s = g.to_float(&s);
    let one_f = g.initializer(f32_tensor("div_one_f", &[], &[1.0]));
    let s1 = g.node("Sub", &[&s, &one_f], vec![]);
    let pairs = g.node("Mul", &[&s, &s1], vec![]);
    let pairs = g.node("Max", &[&pairs, &one_f], vec![]);
    // The diagonal of `sim` is 1 (unit vectors): subtract it.
    let off = g.node("Sub", &[&total, &s], vec![]);
    let mean = g.node("Div", &[&off, &pairs], vec![]);
    // d mean / d u_i = 2 (sum_j u_j - u_i) / pairs.
    let axis0 = g.initializer(i64_tensor("div_axis0", &[1], &[0]));
    let sum_u = g.node("ReduceSum", &[&u, &axis0], vec![("keepdims", Attr::Int(1))]);
    let others = g.node("Sub", &[&sum_u, &u], vec![]);
    let scale = g.initializer(f32_tensor("div_scale", &[], &[-2.0 * weight]));
    let d_u = g.node("Mul", &[&others, &scale], vec![]);
    let d_u = g.node("Div", &[&d_u, &pairs], vec![]);
    // Through the normalisation: (d_u - u <u, d_u>) / |gf|.
    let dot = g.node("Mul", &[&u, &d_u], vec![]);
    let dot = g.node(
        "ReduceSum",
        &[&dot, &axis1],
        vec![("keepdims", Attr::Int(1))],
    );
    let along = g.node("Mul", &[&u, &dot], vec![]);
    let d_gf = g.node("Sub", &[&d_u, &along], vec![]);
    let d_gf = g.node("Div", &[&d_gf, &norm], vec![]);
    // Through the Gram matrix (symmetric gradient): 2 dG A.
    let gram_back = g.initializer(i64_tensor("div_gram_back", &[3], &[0, c, c]));
    let d_g = g.node("Reshape", &[&d_gf, &gram_back], vec![]);
    let d_a = g.node("MatMul", &[&d_g, &a3], vec![]);
    let two = g.initializer(f32_tensor("div_two", &[], &[2.0]));
    let d_a = g.node("Mul", &[&d_a, &two], vec![]);
    let back = g.node("Shape", &[a], vec![]);
    let d_a = g.node("Reshape", &[&d_a, &back], vec![]);
    let mean = g.node("Reshape", &[&mean, &one], vec![]);
    (mean, d_a)
}
