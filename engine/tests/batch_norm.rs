//! A network with batch norm after every convolution (the tiny model with
//! `Conv(bias=False) + BatchNormalization + Relu`), folded at load. ONNX
//! Runtime runs the file's own nodes when recording; the plain-loop f64
//! reference runs convolutions whose weights this test folds itself. The
//! recording, the four modes from conv and class neurons, random weights
//! drawn from the folded layers and the linear identity all agree.

mod common;

use common::reference::Reference;
use common::{
    Probed, TINY_SIZE, assert_all_modes_are_the_references, assert_forward_is_the_references,
    folded,
};
use fovea_engine::fixtures::{
    TINY_CONVS, tiny_batch_norms, tiny_head_weights, tiny_model_with, tiny_weights,
};
use fovea_engine::model::network::Layout;
use fovea_engine::probe::reconstruct::NeuronAt;

/// The tiny model's weights with each batch norm folded in.
fn folded_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    folded(tiny_weights(), tiny_batch_norms())
}

fn setup() -> Probed {
    Probed::new(
        &tiny_model_with(Layout::Nchw, true, TINY_SIZE, true),
        TINY_SIZE,
        "tiny-batch-norm",
        Reference::new(folded_weights(), TINY_SIZE),
    )
}

#[test]
fn batch_norm_is_folded_and_named() {
    let s = setup();
    let model = fovea_onnx::decode_model(&tiny_model_with(Layout::Nchw, true, TINY_SIZE, true))
        .expect("decode");
    let norms: Vec<String> = model
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| n.op_type == "BatchNormalization")
        .map(|n| n.name.clone())
        .collect();
    assert_eq!(norms.len(), TINY_CONVS.len());
    for ((c, (w, b)), norm) in s
        .engine
        .network
        .convs
        .iter()
        .zip(folded_weights())
        .zip(&norms)
    {
        assert_eq!(c.batch_norm.as_ref(), Some(norm), "{}", c.name);
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (x, y) in c.weight.iter().zip(&w).chain(c.bias.iter().zip(&b)) {
            assert!((x - y).abs() <= 1e-6 * scale, "{}: {x} vs {y}", c.name);
        }
    }
}

#[test]
fn the_files_own_nodes_record_what_the_folded_reference_computes() {
    let s = setup();
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
}

/// Conv neurons (the strongest of every layer) and every class, in all four
/// modes with trained and random (drawn from the folded layers) weights.
#[test]
fn all_four_modes_from_conv_and_class_neurons_equal_the_reference() {
    let s = setup();
    let neurons: Vec<NeuronAt> = (1..=TINY_CONVS.len())
        .map(|l| {
            let top = fovea_engine::record::top_activations(s.rec.layer(l), 1, None, false)[0];
            NeuronAt {
                layer: l,
                feature: top.feature,
                y: top.y,
                x: top.x,
            }
        })
        .collect();
    assert_all_modes_are_the_references(
        &s.engine,
        (&s.rec, &s.input),
        &s.reference,
        &tiny_head_weights(TINY_SIZE),
        neurons,
        5,
    );
}

#[test]
fn a_batch_norm_in_training_form_is_refused_by_name() {
    let mut model =
        fovea_onnx::decode_model(&tiny_model_with(Layout::Nchw, false, TINY_SIZE, true))
            .expect("decode");
    let graph = model.graph.as_mut().expect("graph");
    let bn = graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "BatchNormalization")
        .expect("a batch norm");
    bn.output.push("running_mean_out".into());
    let name = if bn.name.is_empty() {
        bn.output[0].clone()
    } else {
        bn.name.clone()
    };
    let err = fovea_engine::model::network::Network::from_model(&model)
        .expect_err("training form")
        .to_string();
    assert!(
        err.contains(&name) && err.contains("training form"),
        "{err}"
    );
}
