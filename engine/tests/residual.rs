//! A ResNet-shaped file: a 7x7/2 batch-normalised stem, a 3x3/2 padded max
//! pool, a basic block adding its input as it is and a strided one adding
//! it through a batch-normalised 1x1/2 projection, global average pooling
//! and a dense head. The residual sums are linear, so the recorded gates
//! fix one affine map: the forward pass, all four modes, the linear
//! identity, FOV-window gradients, objectives and linear regions are held
//! to a plain-loop f64 reference with the same sums, and the predictions
//! to ONNX Runtime running the unmodified file.

mod common;

use common::reference::Reference;
use common::{Probed, assert_forward_is_the_references, folded};
use fovea_engine::fixtures::{
    RESIDUAL_LINKS, RESIDUAL_SIZE, residual_batch_norms, residual_convs, residual_model,
    residual_model_with, residual_projection, residual_weights,
};
use fovea_engine::model::network::Activation;

fn setup_with(stem_pool: bool) -> Probed {
    setup_of(stem_pool, 1)
}

/// With a `projection`-sided kernel in the second block's shortcut.
fn setup_of(stem_pool: bool, projection: usize) -> Probed {
    let mut weights = folded(residual_weights(projection), residual_batch_norms());
    let weights_p = weights.pop().expect("the projection's weights");
    let links = RESIDUAL_LINKS
        .iter()
        .map(|l| {
            l.map(|(from, projected)| {
                (
                    from,
                    projected.then(|| (residual_projection(projection), weights_p.clone())),
                )
            })
        })
        .collect();
    Probed::new(
        &residual_model_with(stem_pool, projection),
        RESIDUAL_SIZE,
        &format!("residual-{stem_pool}-{projection}"),
        Reference::of_chain(&residual_convs(stem_pool), weights, RESIDUAL_SIZE)
            .with_residuals(links),
    )
}

fn setup() -> Probed {
    setup_with(true)
}

#[test]
fn residual_blocks_are_read_with_their_shortcuts() {
    let s = setup();
    let net = &s.engine.network;
    assert_eq!(net.probe_stop, None);
    let names: Vec<&str> = net.convs.iter().map(|c| c.name.as_str()).collect();
    // The stage that starts with a strided projection is a block of its own.
    assert_eq!(
        names,
        ["conv1_1", "conv2_1", "conv2_2", "conv3_1", "conv3_2"]
    );
    let links: Vec<Option<(usize, bool)>> = net
        .convs
        .iter()
        .map(|c| {
            c.residual
                .as_ref()
                .map(|r| (r.from, r.projection.is_some()))
        })
        .collect();
    assert_eq!(links, RESIDUAL_LINKS);
    let projection = net.convs[4]
        .residual
        .as_ref()
        .and_then(|r| r.projection.as_ref());
    let projection = projection.expect("the projection");
    assert_eq!(projection.shape, residual_projection(1).shape);
    assert!(projection.batch_norm.is_some() && net.convs.iter().all(|c| c.batch_norm.is_some()));
    assert_eq!(
        net.dense.len(),
        2,
        "the dense head after global average pooling"
    );
    // Sides 16, pool 8, 8, 4, 4. Fields: 7 at 2; pool +2*2, conv +2*4 -> 19
    // at 4; +2*4 -> 27 (the identity reads 11); strided +2*4 -> 35 at 8;
    // +2*8 -> 51 (the projection reads 27).
    s.assert_read_as(
        &residual_convs(true),
        &[(16, 16), (8, 8), (8, 8), (4, 4), (4, 4)],
        &[(7, 2), (19, 4), (27, 4), (35, 8), (51, 8)],
    );
    for stem_pool in [true, false] {
        let s = setup_with(stem_pool);
        let trace = s.reference.forward(&s.input);
        assert_forward_is_the_references(&s.engine, &s.rec, &trace);
    }
}

/// The engine's predictions are ONNX Runtime's on the unmodified file.
#[test]
fn the_predictions_are_the_files() {
    setup().assert_predictions_are_the_files(&residual_model(true));
}

/// Conv neurons (corners included) and every class, in all four modes with
/// trained and random weights (the projection's drawn too), with the
/// linear identity; with the stem pool and without (the first block's
/// input then is the stem's activation).
#[test]
fn all_four_modes_from_conv_and_class_neurons_equal_the_reference() {
    for stem_pool in [true, false] {
        let s = setup_with(stem_pool);
        s.assert_all_modes(&residual_convs(stem_pool), s.probe_neurons(), 5);
    }
}

/// The linear filter against central differences of the reference, and
/// the FOV-window gradient (the shortcuts cut from their source's window)
/// against the whole-image linear filter.
#[test]
fn the_linear_filter_is_the_central_difference_gradient_and_the_fov_gradient() {
    // Central differences for the strongest neurons of layers 3 and 5.
    setup().assert_filters([6, 12], 2);
}

/// A whole-image objective through both blocks: value and gradient against
/// the reference.
#[test]
fn an_objective_and_its_gradient_equal_the_reference() {
    let s = setup();
    let value = |x: &[f64]| {
        let t = s.reference.forward(x);
        t.channel_mean(5, 3) + 0.05 * t.squares(3, Activation::Relu)
    };
    s.check_objective("channel(5,3) + 0.05*layer(3)", value, 41);
}

/// Linear regions of neurons behind each sum: value and slope are the
/// reference's, and the reference is linear inside.
#[test]
fn the_linear_region_along_a_line_is_the_references() {
    let s = setup();
    let neurons = s.probe_neurons();
    for n in [neurons[6], neurons[12]] {
        s.assert_region_is_the_references(n);
    }
}

/// A 9x9/2 projection reads more of the second block's input than the
/// block's convolutions (9 against 7 rows per neuron): that input's window
/// is the projection's, and the convolution takes its part of it. All four
/// modes, FOV gradients and the field of view (+8*4 = 59) hold.
#[test]
fn a_shortcut_wider_than_its_block_sets_the_window() {
    let s = setup_of(true, 9);
    let g = s.engine.geometry[5];
    assert_eq!((g.fov, g.stride), (27 + 8 * 4, 8));
    let tree = fovea_engine::model::network::fov_tree(&s.engine.network.convs, 5, 2, 2);
    assert!(tree.reads[4].0.len < tree.conv_in[4].0.len, "{tree:?}");
    s.assert_all_modes(&residual_convs(true), s.probe_neurons(), 5);
    for n in s.probe_neurons() {
        s.assert_fov_gradient_is_the_filter(n);
    }
}

/// The ResNet-50-shaped file of `fovea-bench --model resnet50-shape` is
/// read layer by layer: 49 conv layers named by stage (conv1_1, conv2_1 ..
/// conv5_9), a residual sum ending each of the 16 blocks (a projection
/// where each stage starts), every batch norm folded, the dense head, and
/// ResNet-50's field of view (427 pixels at stride 32 at the last layer).
#[test]
fn a_resnet50_shaped_file_is_read_layer_by_layer() {
    use fovea_engine::fixtures::{RESNET50_SIZE, resnet50_shaped_model};
    use fovea_engine::model::network::Network;
    let model = fovea_onnx::decode_model(&resnet50_shaped_model(1)).expect("model");
    let net = Network::from_model(&model).expect("read");
    assert_eq!(net.probe_stop, None);
    assert_eq!(net.convs.len(), 49);
    assert!(net.convs.iter().all(|c| c.batch_norm.is_some()));
    let sums: Vec<(usize, usize, bool)> = net
        .convs
        .iter()
        .filter_map(|c| {
            let r = c.residual.as_ref()?;
            Some((c.number, r.from, r.projection.is_some()))
        })
        .collect();
    assert_eq!(sums.len(), 16);
    // Each block's three layers: the sum at the third adds the first's input.
    assert!(sums.iter().all(|&(n, from, _)| n == from + 2), "{sums:?}");
    let projected: Vec<usize> = sums.iter().filter(|s| s.2).map(|s| s.0).collect();
    assert_eq!(projected, [4, 13, 25, 43]);
    let names = |stage: &str| {
        net.convs
            .iter()
            .filter(|c| c.name.starts_with(stage))
            .count()
    };
    assert_eq!(
        [
            names("conv1_"),
            names("conv2_"),
            names("conv3_"),
            names("conv4_"),
            names("conv5_")
        ],
        [1, 9, 12, 18, 9]
    );
    assert_eq!(net.dense.len(), 1);
    let g = net.geometry(RESNET50_SIZE);
    assert_eq!(
        (g[49].fov, g[49].stride, g[49].height, g[49].channels),
        (427, 32, 7, 2048)
    );
}
