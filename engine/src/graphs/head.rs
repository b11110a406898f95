//! The gradient of a dense (fc or class) neuron with respect to the input
//! image, for maximization: the conv chain runs padded over the whole image,
//! the model's own head nodes are copied in after it, and the graph goes back
//! through them by the rules below, then through the conv chain with the
//! masks and switches of the same pass.
//!
//! Up to a dense layer's pre-activation a head is piecewise linear (dense
//! layers, ReLUs, folded batch norms, global average pooling, reshapes); ops
//! outside that set are refused with the node's name.

use crate::error::{Error, Result};
use crate::graphs::ascent::{Frame, PoolFrame, Rule, chain_backward_to, chain_forward_above, pool};
use crate::graphs::transposed::{
    Kernels, average_backward, channel_parts, concat_channels, random_like, random_shortcuts,
    random_weights,
};
use crate::model::network::{Activation, Network, averages_planes, geometry_of, pool_shape};
use fovea_onnx::proto::{AttributeProto, ModelProto, NodeProto, tensor_proto::DataType};
use fovea_onnx::{
    Attr, Dim, GraphBuilder, attr_int, attr_ints, f32_tensor, i64_tensor, tensor_f32,
};
use std::collections::{HashMap, HashSet};

/// Ops whose output does not depend on the values of their input.
const SHAPE_OPS: &[&str] = &["Shape", "Size"];

/// What a head graph sends back from a dense unit, and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeadBackward {
    /// Index into `Network::dense`.
    pub index: usize,
    pub rule: Rule,
    /// Seeded Gaussian weights, matched per conv and per dense layer, in
    /// place of the trained ones on the way back (the forward pass, and so
    /// every mask and switch, stays the trained network's).
    pub random: Option<u64>,
    /// Stop at this conv layer's activation (Grad-CAM) instead of the input.
    pub cam_layer: Option<usize>,
}

impl HeadBackward {
    /// The gradient of a dense unit with respect to the input.
    pub fn gradient(index: usize) -> HeadBackward {
        HeadBackward {
            index,
            rule: Rule::Gradient,
            random: None,
            cam_layer: None,
        }
    }
}

/// Forward over the whole `size` x `size` image through the head up to
/// dense layer `index`, fused with the gradient of one of its units.
/// Inputs: `x` [S, 3, size, size] and `seed` [1, units] (one-hot). Outputs:
/// `objective` [S, units] (pre-activations) and `grad` like `x`.
pub(crate) fn dense_ascent_graph(
    model: &ModelProto,
    net: &Network,
    size: usize,
    index: usize,
) -> Result<ModelProto> {
    head_graph(model, net, size, HeadBackward::gradient(index))
}

/// Forward over the whole image through the head up to a dense layer, fused
/// with a backward pass from one of its units as `spec` says. Inputs: `x`
/// [S, 3, size, size] and `seed` [1, units]. Outputs: `objective` [S, units]
/// (pre-activations); then `grad` like `x`, or with a `cam_layer` k, `act`
/// (layer k's activation) and `at_act` (the signal there), both [S, C_k,
/// H_k, W_k].
pub(crate) fn head_graph(
    model: &ModelProto,
    net: &Network,
    size: usize,
    spec: HeadBackward,
) -> Result<ModelProto> {
    let index = spec.index;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model("the model has no graph".into()))?;
    let dense = net
        .dense
        .get(index)
        .ok_or_else(|| Error::Unsupported(format!("the head has no dense layer {}", index + 1)))?;
    let target = dense.preactivation.as_str();
    let chain_end = net.chain_end.as_str();
    let start = graph
        .node
        .iter()
        .position(|n| n.output.iter().any(|o| o == chain_end))
        .ok_or_else(|| Error::Unsupported(format!("no node computes {chain_end}")))?;
    let head = &graph.node[start + 1..];
    let initializers: HashMap<&str, _> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();

    // The head nodes the target depends on, in graph order.
    let producer: HashMap<&str, usize> = head
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut needed = vec![false; head.len()];
    let mut todo = vec![target];
    while let Some(t) = todo.pop() {
        if let Some(&i) = producer.get(t)
            && !needed[i]
        {
            needed[i] = true;
            todo.extend(head[i].input.iter().map(String::as_str));
        }
    }
    let nodes: Vec<&NodeProto> = head
        .iter()
        .zip(&needed)
        .filter_map(|(n, &k)| k.then_some(n))
        .collect();
    if nodes.is_empty() {
        return Err(Error::Unsupported(format!(
            "{} ({target}) is not computed after the conv layers",
            dense.name
        )));
    }

    let mut g = GraphBuilder::new(&format!("ascent_{}", dense.name));
    let x_dims = [
        Dim::Named("s"),
        Dim::Fixed(3),
        Dim::Fixed(size as i64),
        Dim::Fixed(size as i64),
    ];
    let x = g.input("x", DataType::Float, &x_dims);
    let seed = g.input(
        "seed",
        DataType::Float,
        &[Dim::Fixed(1), Dim::Fixed(dense.units as i64)],
    );

    // The conv chain, its last ReLU and pool, as the head expects them.
    let convs = &net.convs;
    let stop = spec.cam_layer.unwrap_or(0);
    let chain = chain_forward_above(&mut g, convs, &x, convs.len(), Frame::Whole(size), stop);
    let zero = g.initializer(f32_tensor("head_zero", &[], &[0.0]));
    let top_activation = convs[convs.len() - 1].activation;
    let top_mask = top_activation.slope(&mut g, &chain.top);
    let top_act = top_activation.node(&mut g, &chain.top);
    // The features the head reads: the last layer's activation, or the
    // activations of a last Inception block's branches joined.
    let ends: Vec<String> = net
        .end_sources
        .iter()
        .map(|&s| {
            if s == convs.len() {
                top_act.clone()
            } else {
                chain.acts[s].clone()
            }
        })
        .collect();
    let mut features = concat_channels(&mut g, &ends);
    let mut last_pool = None;
    if let Some(shape) = net.pool_after_last {
        let last = net.end_geom(&crate::model::network::geometry_of(convs, size));
        let p = pool(
            &mut g,
            &features,
            shape,
            PoolFrame::Whole(last.height, last.width),
            last.channels,
        );
        features = p.output.clone();
        last_pool = Some(p);
    }

    // The head's nodes, renamed apart from the generated ones.
    let rename = |t: &str| -> String {
        if t == chain_end {
            features.clone()
        } else if t.is_empty() {
            String::new()
        } else {
            format!("head/{t}")
        }
    };
    let mut copied = HashSet::new();
    for n in &nodes {
        for i in &n.input {
            if i.is_empty() || i == chain_end || producer.contains_key(i.as_str()) {
                continue;
            }
            let t = initializers.get(i.as_str()).ok_or_else(|| {
                Error::Unsupported(format!(
                    "head node {} reads {i}, which is neither a constant nor computed in the head",
                    node_name(n)
                ))
            })?;
            if copied.insert(i.as_str()) {
                let mut t = (*t).clone();
                t.name = rename(i);
                g.initializer(t);
            }
        }
        let mut c = (*n).clone();
        c.input = n.input.iter().map(|i| rename(i)).collect();
        c.output = n.output.iter().map(|o| rename(o)).collect();
        c.name = format!("head/{}", node_name(n));
        g.push_node(c);
    }
    if dense.pointwise {
        g.node_named(
            "Flatten",
            &[&rename(target)],
            "objective",
            vec![("axis", Attr::Int(1))],
        );
    } else {
        g.node_named("Identity", &[&rename(target)], "objective", vec![]);
    }

    // Tensors whose values depend on the conv features.
    let mut data: HashSet<&str> = HashSet::from([chain_end]);
    for n in &nodes {
        if !SHAPE_OPS.contains(&n.op_type.as_str())
            && n.input.iter().any(|i| data.contains(i.as_str()))
        {
            data.extend(n.output.iter().map(String::as_str));
        }
    }

    // Seeded random weights in place of a head node's constant input `k`,
    // matched to the trained ones; stream 1000 + the node's place among the
    // head's dense nodes (Gemm, MatMul, a pointwise classifier's Conv).
    let backward_weight =
        |g: &mut GraphBuilder, n: &NodeProto, k: usize| -> Result<Option<String>> {
            let Some(seed) = spec.random else {
                return Ok(None);
            };
            let t = n
                .input
                .get(k)
                .and_then(|i| initializers.get(i.as_str()))
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "head node {} has no constant weights to replace by random ones",
                        node_name(n)
                    ))
                })?;
            let (dims, values) = tensor_f32(t)?;
            let stream = 1000
                + nodes
                    .iter()
                    .take_while(|m| !std::ptr::eq(**m, n))
                    .filter(|m| matches!(m.op_type.as_str(), "Gemm" | "MatMul" | "Conv"))
                    .count() as u64;
            let random = random_like(&values, seed, stream);
            let name = format!("random/{}", node_name(n));
            Ok(Some(g.initializer(f32_tensor(&name, &dims, &random))))
        };

    // The conv features' grid where the head reads them.
    let end_grid = {
        let last = net.end_geom(&geometry_of(convs, size));
        match net.pool_after_last {
            Some(p) => (
                last.channels,
                p.output_len(last.height, 0),
                p.output_len(last.width, 1),
            ),
            None => (last.channels, last.height, last.width),
        }
    };
    // Back through the head, newest node first.
    let mut grads: HashMap<&str, String> = HashMap::new();
    let target_shape = g.node("Shape", &[&rename(target)], vec![]);
    let seed = if dense.pointwise {
        let units = dense.units as i64;
        let shape = g.initializer(i64_tensor("seed_shape", &[4], &[1, units, 1, 1]));
        g.node("Reshape", &[&seed, &shape], vec![])
    } else {
        seed
    };
    let g0 = g.node("Expand", &[&seed, &target_shape], vec![]);
    grads.insert(target, g0);
    for n in nodes.iter().rev() {
        if let Some(extra) = n
            .output
            .iter()
            .skip(1)
            .find(|o| grads.contains_key(o.as_str()))
        {
            return Err(Error::Unsupported(format!(
                "head node {} passes {extra} on towards {}; Fovea follows first outputs only",
                node_name(n),
                dense.name
            )));
        }
        let Some(out_grad) = n
            .output
            .first()
            .and_then(|o| grads.get(o.as_str()))
            .cloned()
        else {
            continue;
        };
        let inputs: Vec<(usize, &str)> = n
            .input
            .iter()
            .enumerate()
            .filter(|(_, i)| data.contains(i.as_str()))
            .map(|(k, i)| (k, i.as_str()))
            .collect();
        let Some(&(k, input)) = inputs.first() else {
            continue;
        };
        let refuse = |why: &str| {
            Error::Unsupported(format!(
                "head node {} ({}) lies between the conv layers and {}: {why}",
                node_name(n),
                n.op_type,
                dense.name
            ))
        };
        // The node's i-th input, renamed.
        let arg = |i: usize| {
            n.input
                .get(i)
                .filter(|t| !t.is_empty())
                .map(|t| rename(t))
                .ok_or_else(|| refuse(&format!("it lacks input {i}")))
        };
        let only_first = |why: &str| {
            if inputs.len() == 1 && k == 0 {
                Ok(())
            } else {
                Err(refuse(why))
            }
        };
        let grad = match n.op_type.as_str() {
            "Identity" | "Dropout" => {
                only_first("only its first input can carry features")?;
                out_grad
            }
            "Relu" => {
                let x = rename(input);
                let pos = g.node("Greater", &[&x, &zero], vec![]);
                let m = g.to_float(&pos);
                spec.rule
                    .through_relu(&mut g, &out_grad, &m, Activation::Relu)
            }
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
                only_first("its shape must not depend on the features")?;
                let shape = g.node("Shape", &[&rename(input)], vec![]);
                g.node("Reshape", &[&out_grad, &shape], vec![])
            }
            "Transpose" => {
                let perm = attr_ints(n, "perm").ok_or_else(|| refuse("it has no perm"))?;
                let mut inverse = vec![0i64; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    let slot = usize::try_from(p)
                        .ok()
                        .and_then(|p| inverse.get_mut(p))
                        .ok_or_else(|| refuse("its perm is not a permutation"))?;
                    *slot = i as i64;
                }
                g.node(
                    "Transpose",
                    &[&out_grad],
                    vec![("perm", Attr::Ints(inverse))],
                )
            }
            "MatMul" => {
                only_first("its weights must be constants")?;
                let w = backward_weight(&mut g, n, 1)?.unwrap_or(arg(1)?);
                let bt = g.node("Transpose", &[&w], vec![("perm", Attr::Ints(vec![1, 0]))]);
                g.node("MatMul", &[&out_grad, &bt], vec![])
            }
            "Gemm" => {
                only_first("its weights must be constants")?;
                if attr_int(n, "transA").unwrap_or(0) != 0 {
                    return Err(refuse("transA is not supported"));
                }
                let trans_b = attr_int(n, "transB").unwrap_or(0);
                let alpha = attr_float(n, "alpha").unwrap_or(1.0);
                let w = backward_weight(&mut g, n, 1)?.unwrap_or(arg(1)?);
                g.node(
                    "Gemm",
                    &[&out_grad, &w],
                    vec![
                        ("transB", Attr::Int(1 - trans_b)),
                        ("alpha", Attr::Float(alpha)),
                    ],
                )
            }
            // A pointwise classifier (1x1, no groups, strides or padding,
            // as the network reader checks): a dense layer per position.
            "Conv" => {
                only_first("its weights must be constants")?;
                let w = backward_weight(&mut g, n, 1)?.unwrap_or(arg(1)?);
                let wt = g.node(
                    "Transpose",
                    &[&w],
                    vec![("perm", Attr::Ints(vec![1, 0, 2, 3]))],
                );
                g.node("Conv", &[&out_grad, &wt], vec![])
            }
            "Add" | "Sub" | "Mul" | "Div" if inputs.len() == 1 && n.input.len() == 2 => {
                let c = arg(1 - k)?;
                match (n.op_type.as_str(), k) {
                    ("Add", _) | ("Sub", 0) => out_grad,
                    ("Sub", _) => g.node("Neg", &[&out_grad], vec![]),
                    ("Mul", _) => g.node("Mul", &[&out_grad, &c], vec![]),
                    ("Div", 0) => g.node("Div", &[&out_grad, &c], vec![]),
                    _ => return Err(refuse("it divides by the features")),
                }
            }
            // torchvision writes its adaptive average pool as AveragePool
            // (1x1 where the grid already has the pool's output size).
            "AveragePool" => {
                only_first("only its first input can carry features")?;
                let shape = pool_shape(n).map_err(|e| refuse(&e.to_string()))?;
                if shape.kernel == 1 && shape.stride == 1 && shape.pads == [0; 4] {
                    out_grad
                } else if input == chain_end {
                    let (channels, h, w) = end_grid;
                    average_backward(&mut g, &out_grad, shape, channels, Some((h, w)))
                } else {
                    return Err(refuse(
                        "an average pool larger than 1x1 must read the conv features",
                    ));
                }
            }
            "GlobalAveragePool" | "ReduceMean" => {
                only_first("only its first input can carry features")?;
                if n.op_type == "ReduceMean" && !averages_planes(n) {
                    return Err(refuse(
                        "only a mean over the two spatial axes, dimensions kept, is supported",
                    ));
                }
                // Each position gets 1 / (H W) of its plane's signal; the
                // sizes of input and output give H W at any input size.
                let x = rename(input);
                let y = rename(&n.output[0]);
                let shape = g.node("Shape", &[&x], vec![]);
                let spread = g.node("Expand", &[&out_grad, &shape], vec![]);
                let (size_x, size_y) =
                    (g.node("Size", &[&x], vec![]), g.node("Size", &[&y], vec![]));
                let (size_x, size_y) = (g.to_float(&size_x), g.to_float(&size_y));
                let share = g.node("Div", &[&size_y, &size_x], vec![]);
                g.node("Mul", &[&spread, &share], vec![])
            }
            "BatchNormalization" => {
                only_first("its statistics must be constants")?;
                let eps = attr_float(n, "epsilon").unwrap_or(1e-5);
                let eps = g.initializer(f32_tensor(&format!("eps_{}", node_name(n)), &[], &[eps]));
                let var = g.node("Add", &[&arg(4)?, &eps], vec![]);
                let sd = g.node("Sqrt", &[&var], vec![]);
                let factor = g.node("Div", &[&arg(1)?, &sd], vec![]);
                let factor = channel_broadcast(&mut g, &factor, &rename(input));
                g.node("Mul", &[&out_grad, &factor], vec![])
            }
            _ => return Err(refuse("Fovea has no gradient rule for it")),
        };
        match grads.get_mut(input) {
            Some(sum) => *sum = g.node("Add", &[sum, &grad], vec![]),
            None => {
                grads.insert(input, grad);
            }
        }
    }
    let at_features = grads.get(chain_end).cloned().ok_or_else(|| {
        Error::Unsupported(format!(
            "{} does not depend on the conv features along a path Fovea can follow",
            dense.name
        ))
    })?;

    // Back through the last pool and ReLU, then the conv chain.
    let mut u = at_features;
    if let Some(p) = &last_pool {
        u = p.backward(&mut g, &u);
    }
    let top = convs.len();
    let random = spec
        .random
        .map(|seed| (random_weights(convs, seed), random_shortcuts(convs, seed)));
    let weights = match &random {
        Some((w, s)) => Kernels::of(w, s),
        None => Kernels::trained(convs),
    };
    let geometry = geometry_of(convs, size);
    let layer_dims = |k: usize| {
        let l = geometry[k];
        [
            Dim::Named("s"),
            Dim::Fixed(l.channels as i64),
            Dim::Fixed(l.height as i64),
            Dim::Fixed(l.width as i64),
        ]
    };
    // The signal at each end source's activation; the top's goes on
    // through its ReLU, the others join the backward pass where it meets
    // their layers.
    let widths: Vec<usize> = net
        .end_sources
        .iter()
        .map(|&s| geometry[s].channels)
        .collect();
    let mut at_top_act = None;
    let mut seeds = Vec::new();
    for (&s, part) in net
        .end_sources
        .iter()
        .zip(channel_parts(&mut g, &u, &widths))
    {
        if s == top {
            at_top_act = Some(part);
        } else {
            seeds.push((s, part));
        }
    }
    let u = at_top_act.unwrap_or_else(|| g.node("Mul", &[&top_act, &zero], vec![]));
    match spec.cam_layer {
        Some(k) if k == top => {
            g.node_named("Identity", &[&top_act], "act", vec![]);
            g.node_named("Identity", &[&u], "at_act", vec![]);
        }
        Some(k) if k == 0 || k > top => {
            return Err(Error::Unsupported(format!(
                "conv layer {k} does not exist; allowed 1..={top}"
            )));
        }
        cam => {
            // Back to the Grad-CAM layer's activation, or to the input.
            let stop = cam.unwrap_or(0);
            let at_top = spec
                .rule
                .through_relu(&mut g, &u, &top_mask, top_activation);
            let at = chain_backward_to(
                &mut g,
                convs,
                &chain,
                (&at_top, &seeds),
                &weights,
                spec.rule,
                stop,
            );
            if stop > 0 {
                g.node_named("Identity", &[&chain.acts[stop]], "act", vec![]);
                g.node_named("Identity", &[&at], "at_act", vec![]);
            } else {
                g.node_named("Identity", &[&at], "grad", vec![]);
            }
        }
    }
    g.output(
        "objective",
        DataType::Float,
        &[Dim::Named("s"), Dim::Fixed(dense.units as i64)],
    );
    match spec.cam_layer {
        Some(k) => {
            g.output("act", DataType::Float, &layer_dims(k));
            g.output("at_act", DataType::Float, &layer_dims(k));
        }
        None => g.output("grad", DataType::Float, &x_dims),
    }
    Ok(g.finish_with_opset(default_opset(model).max(11)))
}

/// `factor` [C] shaped to broadcast along axis 1 of `x` (rank 2 or more):
/// [C, 1, ..., 1].
fn channel_broadcast(g: &mut GraphBuilder, factor: &str, x: &str) -> String {
    let shape = g.node("Shape", &[x], vec![]);
    let rank = g.node("Size", &[&shape], vec![]);
    let two = g.initializer(i64_tensor(&format!("{factor}_two"), &[], &[2]));
    let ones_len = g.node("Sub", &[&rank, &two], vec![]);
    let one_dim = g.initializer(i64_tensor(&format!("{factor}_one"), &[1], &[1]));
    let ones_len = g.node("Reshape", &[&ones_len, &one_dim], vec![]);
    let ones = g.node("Expand", &[&one_dim, &ones_len], vec![]);
    let minus_one = g.initializer(i64_tensor(&format!("{factor}_minus_one"), &[1], &[-1]));
    let target = g.node("Concat", &[&minus_one, &ones], vec![("axis", Attr::Int(0))]);
    g.node("Reshape", &[factor, &target], vec![])
}

fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(fovea_onnx::OPSET, |o| o.version)
}

fn attr_float(n: &NodeProto, name: &str) -> Option<f32> {
    n.attribute
        .iter()
        .find(|a: &&AttributeProto| a.name == name)
        .map(|a| a.f)
}

fn node_name(n: &NodeProto) -> String {
    if n.name.is_empty() {
        n.output.first().cloned().unwrap_or_default()
    } else {
        n.name.clone()
    }
}
