//! The model file's own graph rewritten to record: every conv layer's
//! activations (as float16 with active flags, or as f32), the flags at each
//! pool window's maximum, and optionally the head's scores; or pruned to the
//! reductions of a dataset scan.

use crate::model::network::{Activation, LayerGeom, Layout, Network};
use fovea_onnx::proto::{ModelProto, tensor_proto::DataType};
use fovea_onnx::{self as onnx};
use std::collections::HashSet;

/// Declares the input's batch and spatial dimensions free, so the graph runs
/// at the working size; nothing else changes.
pub(crate) fn free_input_size(g: &mut fovea_onnx::proto::GraphProto, net: &Network) {
    for i in &mut g.input {
        if i.name != net.input_name {
            continue;
        }
        if let Some(fovea_onnx::proto::type_proto::Value::TensorType(t)) =
            i.r#type.as_mut().and_then(|t| t.value.as_mut())
            && let Some(shape) = t.shape.as_mut()
        {
            let (h, w) = match net.layout {
                Layout::Nchw => (2, 3),
                Layout::Nhwc => (1, 2),
            };
            for (k, name) in [(0usize, "batch"), (h, "height"), (w, "width")] {
                if let Some(d) = shape.dim.get_mut(k) {
                    d.value = Some(
                        fovea_onnx::proto::tensor_shape_proto::dimension::Value::DimParam(
                            name.into(),
                        ),
                    );
                }
            }
        }
    }
}

/// The unmodified model with only its input size freed: the baseline the
/// benchmark compares against.
pub fn plain_model(model: &ModelProto, net: &Network) -> ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        free_input_size(g, net);
        g.value_info.clear();
    }
    m
}

/// The original graph made to record: per conv layer its activations as
/// float16, its active flags, and (before each pooled layer) the pool's
/// switches: flags at each 2x2 window's maxima, or each output's index of
/// its maximum for other pools; the spatial input size left free.
/// With `head` false the head is pruned away.
pub(crate) fn record_graph(
    model: &ModelProto,
    net: &Network,
    head: bool,
    geometry: &[LayerGeom],
) -> ModelProto {
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let mut outputs = head_output(g, net, head);
    let mut b = onnx::GraphBuilder::new("record_extras").prefixed("fovea_");
    let zero = b.initializer(onnx::f32_tensor("fovea_zero", &[], &[0.0]));
    for c in &net.convs {
        let i = c.number;
        let act = format!("fovea_act{i}");
        b.node_named(
            "Cast",
            &[&c.relu_output],
            &act,
            vec![("to", onnx::Attr::Int(DataType::Float16 as i64))],
        );
        outputs.push(onnx::value_info(&act, DataType::Float16, &[]));
        let mask = format!("fovea_mask{i}");
        match c.activation {
            Activation::Clip(ceiling) => {
                let pos = b.node("Greater", &[&c.relu_output, &zero], vec![]);
                let cap = b.initializer(onnx::f32_tensor(
                    &format!("fovea_ceiling{i}"),
                    &[],
                    &[ceiling],
                ));
                let below = b.node("Less", &[&c.relu_output, &cap], vec![]);
                b.node_named("And", &[&pos, &below], &mask, vec![]);
            }
            Activation::Relu | Activation::Leaky(_) | Activation::Linear => {
                b.node_named("Greater", &[&c.relu_output, &zero], &mask, vec![]);
            }
        }
        outputs.push(onnx::value_info(&mask, DataType::Bool, &[]));
        let Some(pool) = c.max_pool() else { continue };
        let switch = format!("fovea_switch{i}");
        let below = &c.input;
        if !pool.halves() {
            // ONNX Runtime's own first maximum per window: flat indices
            // into the pool's input, reduced to plane indices when packing.
            let dropped = format!("fovea_pooled{i}");
            b.node_outputs("MaxPool", &[below], &[&dropped, &switch], pool.own_attrs());
            outputs.push(onnx::value_info(&switch, DataType::Int64, &[]));
            continue;
        }
        // Every position equal to its 2x2 window's maximum (exact f32
        // comparisons); the first of them per window is resolved when
        // packing, which is cheaper than an ArgMax over window blocks.
        let prev = &geometry[c.sources.first().copied().unwrap_or(0)];
        let (h2, w2) = (prev.height / 2, prev.width / 2);
        let mut x = below.clone();
        if prev.height % 2 == 1 || prev.width % 2 == 1 {
            let starts = b.initializer(onnx::i64_tensor(&format!("fovea_s{i}"), &[2], &[0, 0]));
            let ends = b.initializer(onnx::i64_tensor(
                &format!("fovea_e{i}"),
                &[2],
                &[2 * h2 as i64, 2 * w2 as i64],
            ));
            let axes = b.initializer(onnx::i64_tensor(&format!("fovea_a{i}"), &[2], &[2, 3]));
            x = b.node("Slice", &[&x, &starts, &ends, &axes], vec![]);
        }
        let pooled = b.node("MaxPool", &[&x], pool.own_attrs());
        let spread = b.upsample2(&pooled);
        b.node_named("Equal", &[&x, &spread], &switch, vec![]);
        outputs.push(onnx::value_info(&switch, DataType::Bool, &[]));
    }
    append(g, b);
    finish_record_graph(g, net, outputs);
    m
}

/// The original graph reduced to, per conv layer, each feature's maximum over
/// the locations and its first position (`fovea_max{i}`, `fovea_arg{i}`),
/// for any batch size. Ops chosen to exist in every opset from 11 on.
pub(crate) fn scan_graph(model: &ModelProto, net: &Network) -> ModelProto {
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let mut b = onnx::GraphBuilder::new("scan_extras").prefixed("fovea_");
    let one = b.initializer(onnx::i64_tensor("fovea_k", &[1], &[1]));
    let mut outputs = Vec::new();
    for c in &net.convs {
        let i = c.number;
        let shape = b.initializer(onnx::i64_tensor(
            &format!("fovea_flat{i}"),
            &[3],
            &[0, c.out_channels as i64, -1],
        ));
        let flat = b.node("Reshape", &[&c.relu_output, &shape], vec![]);
        // TopK with k = 1 returns the first maximum (lower index first on
        // ties) and is cheaper than ArgMax plus a gather.
        let (max, arg) = (format!("fovea_max{i}"), format!("fovea_arg{i}"));
        b.node_outputs(
            "TopK",
            &[&flat, &one],
            &[&max, &arg],
            vec![("axis", onnx::Attr::Int(2))],
        );
        outputs.push(onnx::value_info(&max, DataType::Float, &[]));
        outputs.push(onnx::value_info(&arg, DataType::Int64, &[]));
    }
    append(g, b);
    finish_record_graph(g, net, outputs);
    m
}

/// The original graph with every conv layer's ReLU output exposed in full
/// precision (see [`Engine::forward`]).
pub(crate) fn exact_graph(model: &ModelProto, net: &Network, head: bool) -> ModelProto {
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let mut outputs = head_output(g, net, head);
    for c in &net.convs {
        outputs.push(onnx::value_info(&c.relu_output, DataType::Float, &[]));
    }
    finish_record_graph(g, net, outputs);
    m
}

/// The head's output, kept when `head` is on (shape cleared).
pub(crate) fn head_output(
    g: &fovea_onnx::proto::GraphProto,
    net: &Network,
    head: bool,
) -> Vec<fovea_onnx::proto::ValueInfoProto> {
    let found = g
        .output
        .iter()
        .find(|o| Some(&o.name) == net.head_output.as_ref());
    match found {
        Some(o) if head => {
            let mut o = o.clone();
            clear_shape(&mut o);
            vec![o]
        }
        _ => Vec::new(),
    }
}

/// Adds generated nodes and initializers to a model's graph.
pub(crate) fn append(g: &mut fovea_onnx::proto::GraphProto, extras: onnx::GraphBuilder) {
    let extras = extras.finish().graph.unwrap_or_default();
    g.node.extend(extras.node);
    g.initializer.extend(extras.initializer);
}

/// Shapes recorded in the file hold for its native size only.
pub(crate) fn clear_shape(o: &mut fovea_onnx::proto::ValueInfoProto) {
    if let Some(fovea_onnx::proto::type_proto::Value::TensorType(t)) =
        o.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape = None;
    }
}

/// Sets the outputs, frees the input size and prunes what they do not need.
pub(crate) fn finish_record_graph(
    g: &mut fovea_onnx::proto::GraphProto,
    net: &Network,
    outputs: Vec<fovea_onnx::proto::ValueInfoProto>,
) {
    g.output = outputs;
    g.value_info.clear();
    free_input_size(g, net);
    // Keep only the nodes the outputs need.
    let mut needed: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; g.node.len()];
    for (i, n) in g.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(n.input.iter().cloned());
        }
    }
    let mut idx = 0;
    g.node.retain(|_| {
        idx += 1;
        keep[idx - 1]
    });
    g.initializer.retain(|t| needed.contains(&t.name));
}
