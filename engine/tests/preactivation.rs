//! A ResNet-v2-shaped file (pre-activation): batch norms with no
//! convolution before them (the input's, each block's start, the last
//! before the head), bare convolutions ending each block in a sum that no
//! activation follows, an identity shortcut and a 1x1/2 projection reading
//! its block's pre-activation. A batch norm on its own is a layer: the
//! depthwise 1x1 convolution of its scale and shift, kept as it is by the
//! random-weights mode. Held to the plain-loop f64 reference and, for the
//! predictions, to ONNX Runtime on the unmodified file.

mod common;

use common::reference::Reference;
use common::{Probed, assert_forward_is_the_references, folded};
use fovea_engine::fixtures::{
    PREACTIVATION_LINKS, PREACTIVATION_SIZE, preactivation_batch_norms, preactivation_chain,
    preactivation_model, preactivation_weights, residual_projection,
};
use fovea_engine::graphs::transposed::random_weights;
use fovea_engine::model::network::Activation;

/// The layers' and the projection's weights as the reference runs them:
/// each batch norm folded into what it follows (the identity when alone).
fn reference_weights() -> Vec<(Vec<f32>, Vec<f32>)> {
    preactivation_weights()
        .into_iter()
        .zip(preactivation_batch_norms())
        .map(|(w, n)| match n {
            Some(n) => folded(vec![w], vec![n]).remove(0),
            None => w,
        })
        .collect()
}

fn setup() -> Probed {
    let mut weights = reference_weights();
    let projection = weights.pop().expect("the projection's weights");
    let links = PREACTIVATION_LINKS
        .iter()
        .map(|l| {
            l.map(|(from, projected)| {
                (
                    from,
                    projected.then(|| (residual_projection(1), projection.clone())),
                )
            })
        })
        .collect();
    Probed::new(
        &preactivation_model(),
        PREACTIVATION_SIZE,
        "preactivation",
        Reference::of_chain(&preactivation_chain(), weights, PREACTIVATION_SIZE)
            .with_residuals(links),
    )
}

#[test]
fn batch_norms_on_their_own_are_layers_and_the_sums_are_read() {
    let s = setup();
    let net = &s.engine.network;
    assert_eq!(net.probe_stop, None);
    let norm_only: Vec<usize> = net
        .convs
        .iter()
        .filter(|c| c.norm_only)
        .map(|c| c.number)
        .collect();
    assert_eq!(norm_only, [1, 3, 6, 9]);
    let activations: Vec<Activation> = net.convs.iter().map(|c| c.activation).collect();
    let want: Vec<Activation> = preactivation_chain().iter().map(|c| c.activation).collect();
    assert_eq!(activations, want);
    let links: Vec<Option<(usize, bool)>> = net
        .convs
        .iter()
        .map(|c| {
            c.residual
                .as_ref()
                .map(|r| (r.from, r.projection.is_some()))
        })
        .collect();
    assert_eq!(links, PREACTIVATION_LINKS);
    // The blocks' last convolutions and the projection have no batch norm.
    let normed: Vec<bool> = net.convs.iter().map(|c| c.batch_norm.is_some()).collect();
    assert_eq!(
        normed,
        [true, true, true, true, false, true, true, false, true]
    );
    assert_eq!(net.dense.len(), 2);
    // Sides 32, 16, pool 8, 8, 8, 8, 4, 4, 4. Fields: 1; 7 at 2; pool
    // +2*2 -> 11 at 4 (the norm adds nothing); +2*4 -> 19, 27; 27; strided
    // +2*4 -> 35 at 8; +2*8 -> 51; 51.
    s.assert_read_as(
        &preactivation_chain(),
        &[
            (32, 32),
            (16, 16),
            (8, 8),
            (8, 8),
            (8, 8),
            (8, 8),
            (4, 4),
            (4, 4),
            (4, 4),
        ],
        &[
            (1, 1),
            (7, 2),
            (11, 4),
            (19, 4),
            (27, 4),
            (27, 4),
            (35, 8),
            (51, 8),
            (51, 8),
        ],
    );
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
    // The sums hold negative values: they are linear layers.
    let pass = s.engine.forward(&s.rec.input).expect("forward");
    assert!(pass.activations[4].iter().any(|&v| v < 0.0));
}

/// The random-weights mode draws every convolution's kernel (and the
/// projection's) but keeps the batch norms standing alone: they have no
/// filters.
#[test]
fn random_weights_keep_the_batch_norms_standing_alone() {
    let s = setup();
    let want = reference_weights();
    let drawn = random_weights(&s.engine.network.convs, 5);
    for (c, (drawn, (w, _))) in s.engine.network.convs.iter().zip(drawn.iter().zip(&want)) {
        let same = drawn
            .iter()
            .zip(w)
            .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0));
        assert_eq!(same, c.norm_only, "layer {}", c.number);
    }
}

#[test]
fn the_predictions_are_the_files() {
    setup().assert_predictions_are_the_files(&preactivation_model());
}

/// Conv neurons (corners included) and every class, in all four modes with
/// trained and random weights, with the linear identity.
#[test]
fn all_four_modes_from_conv_and_class_neurons_equal_the_reference() {
    let s = setup();
    s.assert_all_modes(&preactivation_chain(), s.probe_neurons(), 5);
}

/// The linear filter against central differences of the reference, and
/// the FOV-window gradients against the whole-image filter.
#[test]
fn the_linear_filter_is_the_central_difference_gradient_and_the_fov_gradient() {
    // The strongest neurons of a block's sum and of the last layer.
    setup().assert_filters([12, 24], 2);
}

#[test]
fn an_objective_and_its_gradient_equal_the_reference() {
    let s = setup();
    let value = |x: &[f64]| {
        let t = s.reference.forward(x);
        t.channel_mean(9, 3) + 0.05 * t.squares(4, Activation::Relu)
    };
    s.check_objective("channel(9,3) + 0.05*layer(4)", value, 41);
}

#[test]
fn the_linear_region_along_a_line_is_the_references() {
    let s = setup();
    let neurons = s.probe_neurons();
    for n in [neurons[12], neurons[24]] {
        s.assert_region_is_the_references(n);
    }
}

/// A neuron whose field (51 pixels) exceeds the image (32) is maximised on
/// the whole image: every start's pre-activation rises, and the field of
/// view is the image.
#[test]
fn a_neuron_seeing_more_than_the_image_is_maximised_over_it() {
    use fovea_engine::probe::maximize::MaximizeOptions;
    use fovea_engine::probe::reconstruct::NeuronAt;
    let s = setup();
    let n = NeuronAt {
        layer: 9,
        feature: 3,
        y: 1,
        x: 2,
    };
    let opts = MaximizeOptions {
        starts: 2,
        steps: 20,
        seed: 3,
        ..Default::default()
    };
    let out = common::maximize_rising(&s.engine, n, &opts);
    let size = PREACTIVATION_SIZE;
    assert_eq!(
        (out.fov.x0, out.fov.y0, out.fov.x1, out.fov.y1),
        (0, 0, size, size)
    );
    assert_eq!(out.images[0].len(), 3 * size * size);
}

/// A ResNet-50-v2-shaped file (the model zoo's v2 layout) is read layer by
/// layer: the input's batch norm, the stem, per bottleneck block its batch
/// norm and ReLU and three convolutions (the last a linear layer holding
/// the sum), a last batch norm before the head: 67 layers, 18 of them batch
/// norms on their own, 16 sums (a projection reading the block's
/// pre-activation where each stage starts), and the v1 network's field of
/// view (427 pixels at stride 32).
#[test]
fn a_resnet50_v2_shaped_file_is_read_layer_by_layer() {
    use fovea_engine::fixtures::{RESNET50_SIZE, resnet50_v2_shaped_model};
    use fovea_engine::model::network::Network;
    let model = fovea_onnx::decode_model(&resnet50_v2_shaped_model(1)).expect("model");
    let net = Network::from_model(&model).expect("read");
    assert_eq!(net.probe_stop, None);
    assert_eq!(net.convs.len(), 67);
    let norms: Vec<usize> = net
        .convs
        .iter()
        .filter(|c| c.norm_only)
        .map(|c| c.number)
        .collect();
    // 1, 3, then every fourth layer, and the last.
    let want: Vec<usize> = [1]
        .into_iter()
        .chain((0..16).map(|b| 3 + 4 * b))
        .chain([67])
        .collect();
    assert_eq!(norms, want);
    let sums: Vec<(usize, usize, bool)> = net
        .convs
        .iter()
        .filter_map(|c| {
            let r = c.residual.as_ref()?;
            Some((c.number, r.from, r.projection.is_some()))
        })
        .collect();
    assert_eq!(sums.len(), 16);
    for &(n, from, projected) in &sums {
        assert_eq!(net.convs[n - 1].activation, Activation::Linear, "layer {n}");
        // A projection reads the block's pre-activation (the input of its
        // first convolution); the identity, the block's batch norm's input.
        assert_eq!(from, if projected { n - 2 } else { n - 3 }, "layer {n}");
    }
    let projected: Vec<usize> = sums.iter().filter(|s| s.2).map(|s| s.0).collect();
    assert_eq!(projected, [6, 18, 34, 58]);
    assert_eq!(net.dense.len(), 1);
    // Each stage's layers, its blocks' batch norms included, share a name.
    let stage = |s: &str| net.convs.iter().filter(|c| c.name.starts_with(s)).count();
    assert_eq!(
        ["conv1_", "conv2_", "conv3_", "conv4_", "conv5_"].map(stage),
        [2, 12, 16, 24, 13]
    );
    let g = net.geometry(RESNET50_SIZE);
    assert_eq!(
        (g[67].fov, g[67].stride, g[67].height, g[67].channels),
        (427, 32, 7, 2048)
    );
}
