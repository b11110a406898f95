//! A MobileNet-v2-shaped file: ReLU6 expansions and depthwise convolutions,
//! linear 1x1 projections (no activation after them), and inverted
//! residual blocks that add their input to the projection with no
//! activation after the sum. A linear layer is probed like any other: its
//! units pass everything, so it fixes nothing in the affine map and bounds
//! no linear region. Held to the plain-loop f64 reference.

mod common;

use common::reference::Reference;
use common::{Probed, assert_forward_is_the_references, folded};
use fovea_engine::fixtures::{
    INVERTED_LINKS, INVERTED_SIZE, inverted_batch_norms, inverted_chain, inverted_model,
    inverted_weights,
};
use fovea_engine::model::network::{Activation, Network};
use fovea_onnx::{decode_model, proto::ModelProto};

fn setup() -> Probed {
    let weights = folded(inverted_weights(), inverted_batch_norms());
    let links = INVERTED_LINKS
        .iter()
        .map(|l| l.map(|from| (from, None)))
        .collect();
    Probed::new(
        &inverted_model(),
        INVERTED_SIZE,
        "inverted",
        Reference::of_chain(&inverted_chain(), weights, INVERTED_SIZE).with_residuals(links),
    )
}

#[test]
fn linear_bottlenecks_and_their_sums_are_read_and_recorded() {
    let s = setup();
    let net = &s.engine.network;
    assert_eq!(net.probe_stop, None);
    let activations: Vec<Activation> = net.convs.iter().map(|c| c.activation).collect();
    let want: Vec<Activation> = inverted_chain().iter().map(|c| c.activation).collect();
    assert_eq!(activations, want);
    assert_eq!(
        activations
            .iter()
            .filter(|a| **a == Activation::Linear)
            .count(),
        4
    );
    let links: Vec<Option<usize>> = net
        .convs
        .iter()
        .map(|c| c.residual.as_ref().map(|r| r.from))
        .collect();
    assert_eq!(links, INVERTED_LINKS);
    assert_eq!(net.dense.len(), 2);
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
    // The linear layers hold negative values.
    let pass = s.engine.forward(&s.rec.input).expect("forward");
    assert!(pass.activations[8].iter().any(|&v| v < 0.0));
}

/// The file's nodes renamed as `torch.onnx.export` names them
/// (`/features/features.{k}/conv/...`): each activation node in the block
/// of its position, each conv in a scope of its own.
fn torchvision_named(model: &[u8], path: impl Fn(usize, &str) -> String) -> ModelProto {
    let mut model = decode_model(model).expect("decode");
    if let Some(g) = model.graph.as_mut() {
        for (k, n) in g.node.iter_mut().enumerate() {
            n.name = path(k, &n.op_type);
        }
    }
    model
}

/// Layers are named by the module paths PyTorch writes into node names
/// (the activation's, or a linear layer's conv), and keep their block
/// names when those paths do not tell the layers apart.
#[test]
fn layers_are_named_by_their_module_paths_when_the_file_has_them() {
    let named = torchvision_named(&inverted_model(), |k, op| {
        format!("/features/features.{k}/conv/conv.{k}/{op}")
    });
    let net = Network::from_model(&named).expect("read");
    let nodes = &named.graph.as_ref().expect("graph").node;
    for c in &net.convs {
        // The node that names the layer: its activation, or its conv when
        // it has none.
        let k = nodes
            .iter()
            .position(|n| match c.activation {
                Activation::Linear => n.name == c.conv_node,
                _ => n.output.contains(&c.relu_output),
            })
            .expect("the layer's node");
        assert_eq!(
            c.name,
            format!("features.{k}.conv.{k}"),
            "layer {}",
            c.number
        );
    }
    let third = net.convs[2].name.clone();
    assert!(third.starts_with("features."), "{third}");
    assert_eq!(net.resolve_conv("layer", &third).ok(), Some(3));

    // Paths that repeat keep the block names.
    let shared = torchvision_named(&inverted_model(), |_, op| format!("/features/{op}"));
    let net = Network::from_model(&shared).expect("read");
    let names: Vec<&str> = net.convs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names[..2], ["conv1_1", "conv1_2"]);
}

/// Conv neurons (corners included) and every class, in all four modes with
/// trained and random weights, with the linear identity.
#[test]
fn all_four_modes_from_conv_and_class_neurons_equal_the_reference() {
    let s = setup();
    s.assert_all_modes(&inverted_chain(), s.probe_neurons(), 5);
}

/// FOV-window gradients against the whole-image linear filter, and the
/// filter against central differences (the strongest neurons of layers 9
/// and 12, behind the sums).
#[test]
fn the_linear_filter_is_the_central_difference_gradient_and_the_fov_gradient() {
    setup().assert_filters([24, 33], 2);
}

/// Linear regions behind the sums and the linear layers: value and slope
/// are the reference's, the reference is linear inside.
#[test]
fn the_linear_region_along_a_line_is_the_references() {
    let s = setup();
    let neurons = s.probe_neurons();
    for n in [neurons[24], neurons[36]] {
        s.assert_region_is_the_references(n);
    }
}
