//! Activations other than the ReLU: a MobileNet-shaped chain of
//! depthwise-separable convolutions with batch norm and ReLU6 (Clip(0, 6))
//! and a global-average head, and a chain of leaky ReLUs whose negative
//! values reach 2x2 pools and a dense head. ONNX Runtime records the
//! files' own nodes; a plain-loop f64 reference computes the forward pass
//! and every backward pass.

mod common;

use common::reference::Reference;
use common::{Probed, TINY_SIZE, assert_forward_is_the_references, folded};
use fovea_engine::fixtures::{
    LEAKY_SLOPE, MOBILE_CEILING, MOBILE_SIZE, leaky_chain, leaky_model, leaky_model_as_prelu,
    mobile_batch_norms, mobile_chain, mobile_model, mobile_model_with_pad_nodes,
    mobile_model_with_pointwise_head, mobile_weights, tiny_weights,
};
use fovea_engine::model::network::Activation;
use fovea_engine::probe::regions::{Direction, FlipKind};
use fovea_engine::record::layer_stats;
use fovea_engine::stop::Stop;

fn mobile() -> Probed {
    Probed::new(
        &mobile_model(true),
        MOBILE_SIZE,
        "mobile",
        Reference::of_chain(
            &mobile_chain(),
            folded(mobile_weights(), mobile_batch_norms()),
            MOBILE_SIZE,
        ),
    )
}

fn leaky() -> Probed {
    Probed::new(
        &leaky_model(true, TINY_SIZE),
        TINY_SIZE,
        "leaky",
        Reference::of_chain(&leaky_chain(), tiny_weights(), TINY_SIZE),
    )
}

#[test]
fn relu6_and_leaky_relus_are_read_with_their_parameters() {
    let s = mobile();
    assert_eq!(s.engine.network.probe_stop, None);
    let net = &s.engine.network;
    assert!(
        net.convs
            .iter()
            .all(|c| c.activation == Activation::Clip(MOBILE_CEILING) && c.batch_norm.is_some())
    );
    // Sides 48 -> 24 (stem), 12 (second depthwise). Fields: 3 at stride 2,
    // +2*2 -> 7, 1x1, +2*2 -> 11 at 4, 1x1, +2*4 -> 19, 1x1.
    s.assert_read_as(
        &mobile_chain(),
        &[
            (24, 24),
            (24, 24),
            (24, 24),
            (12, 12),
            (12, 12),
            (12, 12),
            (12, 12),
        ],
        &[(3, 2), (7, 2), (7, 2), (11, 4), (11, 4), (19, 4), (19, 4)],
    );
    // The global-average head's dense layers are listed.
    assert_eq!(net.dense.len(), 2);
    let s = leaky();
    assert!(
        s.engine
            .network
            .convs
            .iter()
            .all(|c| c.activation == Activation::Leaky(LEAKY_SLOPE))
    );
}

/// Activations and masks are the reference's: a clipped unit at its
/// ceiling is off its identity piece, and units do reach the ceiling; a
/// leaky layer records its negative values.
#[test]
fn recordings_keep_the_ceiling_and_the_negative_slope() {
    let s = mobile();
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
    let ceiling = MOBILE_CEILING as f64;
    let saturated: Vec<usize> = trace
        .pre
        .iter()
        .map(|p| p.iter().filter(|&&v| v > ceiling).count())
        .collect();
    eprintln!("units at the ceiling per layer: {saturated:?}");
    assert!(
        saturated.iter().filter(|&&n| n > 0).count() >= 4,
        "{saturated:?}"
    );
    // Units at the ceiling count as active in the statistics (their
    // pre-activation is positive), though their mask is off.
    let activity = s.rec.activity(&s.engine.network.convs);
    for (l, pre) in trace.pre.iter().enumerate() {
        let positive = pre.iter().filter(|&&v| v > 0.0).count() as f32 / pre.len() as f32;
        let stats = layer_stats(l + 1, s.rec.layer(l + 1));
        assert!(
            (activity[l] - positive).abs() < 1e-3
                && (stats.fraction_active - positive).abs() < 1e-3,
            "layer {}: {} and {} vs {positive}",
            l + 1,
            activity[l],
            stats.fraction_active
        );
    }
    let s = leaky();
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
    let negative = s.rec.layers[0]
        .activations
        .iter()
        .filter(|a| a.to_f32() < 0.0)
        .count();
    assert!(negative > 0);
}

/// Conv neurons (corners included) and every class, in all four modes with
/// trained and random weights, with the linear identity (a clipped unit at
/// its ceiling adds its ceiling to the effective bias).
#[test]
fn all_four_modes_from_conv_and_class_neurons_equal_the_reference() {
    let s = mobile();
    s.assert_all_modes(&mobile_chain(), s.probe_neurons(), 5);
    let s = leaky();
    s.assert_all_modes(&leaky_chain(), s.probe_neurons(), 5);
}

/// The linear filter against central differences of the reference, and
/// the FOV-window gradient against the whole-image linear filter.
#[test]
fn the_linear_filter_is_the_central_difference_gradient_and_the_fov_gradient() {
    for s in [mobile(), leaky()] {
        // The strongest neurons of layer 2 and of the last layer.
        let last = s.probe_neurons().len() - 3;
        s.assert_filters([3, last], 2);
    }
}

/// A whole-image objective with squared activations (whose gradient goes
/// through the activation's slope): value and gradient against the
/// reference.
#[test]
fn an_objective_and_its_gradient_equal_the_reference() {
    let s = mobile();
    let value = |x: &[f64]| {
        let t = s.reference.forward(x);
        t.channel_mean(7, 3) + 0.05 * t.squares(5, Activation::Clip(MOBILE_CEILING))
    };
    s.check_objective("channel(7,3) + 0.05*layer(5)", value, 53);
    let s = leaky();
    let value = |x: &[f64]| {
        let t = s.reference.forward(x);
        t.pre[4][5] + 0.05 * t.squares(4, Activation::Leaky(LEAKY_SLOPE))
    };
    s.check_objective("neuron(5,0,0,5) + 0.05*layer(4)", value, 29);
}

/// Linear regions: value and slope are the reference's and the reference
/// is linear inside; a walk along a line crosses ceilings, and every
/// piece it reports is the reference's pre-activation.
#[test]
fn linear_regions_are_bounded_by_the_ceiling_and_the_kink() {
    for s in [mobile(), leaky()] {
        let neurons = s.probe_neurons();
        let last = neurons.len() - 3;
        for n in [neurons[6], neurons[last]] {
            s.assert_region_is_the_references(n);
        }
    }
    let s = mobile();
    let n = s.probe_neurons()[s.probe_neurons().len() - 3];
    let d = s
        .engine
        .direction(&s.rec, n, &Direction::Random(3))
        .expect("direction");
    let profile = s
        .engine
        .walk_regions(
            &s.rec,
            n,
            &d,
            (-2.0, 2.0),
            400,
            &Stop::never(),
            &mut |_, _| {},
        )
        .expect("walk");
    let ceilings = profile
        .segments
        .iter()
        .filter(|g| g.end.is_some_and(|f| f.kind == FlipKind::Ceiling))
        .count();
    assert!(
        ceilings > 0,
        "{} segments, no ceiling",
        profile.segments.len()
    );
    for g in &profile.segments {
        let t = 0.5 * (g.t0 + g.t1);
        let x: Vec<f64> = s
            .input
            .iter()
            .zip(&d)
            .map(|(&a, &b)| a + t * b as f64)
            .collect();
        let want = s.pre_at(&s.reference.forward(&x), n);
        let got = 0.5 * (g.v0 + g.v1);
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "at t = {t}: {got} vs {want}"
        );
    }
}

/// The MobileNet-shaped file as tf2onnx writes Keras models (explicit zero
/// Pad nodes in front of unpadded convolutions) is read as the same
/// network: each Pad joins its convolution's padding, and the recording and
/// a linear filter are the padded file's.
#[test]
fn zero_pad_nodes_are_read_as_the_convolutions_padding() {
    let s = mobile();
    let bytes = mobile_model_with_pad_nodes(true);
    let file = fovea_onnx::decode_model(&bytes).expect("decode");
    let nodes = &file.graph.as_ref().expect("graph").node;
    let pads = nodes.iter().filter(|n| n.op_type == "Pad").count();
    assert_eq!(pads, 4, "the stem and the three depthwise convolutions");
    let keras = common::engine_of(&bytes, MOBILE_SIZE, "mobile-pad-nodes");
    assert_eq!(keras.network.probe_stop, None);
    let read = |e: &fovea_engine::engine::Engine| -> Vec<_> {
        e.network
            .convs
            .iter()
            .map(|c| (c.shape, c.pool, c.activation))
            .collect()
    };
    assert_eq!(read(&keras), read(&s.engine));
    let (rec, _) = common::record_test_image(&keras);
    for (l, (a, b)) in rec.layers.iter().zip(&s.rec.layers).enumerate() {
        let diff = a
            .activations
            .iter()
            .zip(&b.activations)
            .fold(0f32, |m, (x, y)| m.max((x.to_f32() - y.to_f32()).abs()));
        assert!(diff <= 1e-2, "layer {}: {diff}", l + 1);
    }
    let n = s.probe_neurons()[18];
    let filter = |e: &fovea_engine::engine::Engine, r| {
        use fovea_engine::probe::reconstruct::{Mode, Start};
        e.reconstruct(r, &[n], &[Mode::LinearFilter], Start::OneHot, 0)
            .expect("reconstruct")
            .remove(0)
            .values
    };
    let (a, b) = (filter(&keras, &rec), filter(&s.engine, &s.rec));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(scale > 0.0 && diff <= 1e-5 * scale, "{diff} of {scale}");
}

/// A PyTorch `nn.PReLU()` (one slope for all channels) is read as the leaky
/// ReLU it is: the file's recording is the leaky file's.
#[test]
fn a_prelu_with_one_slope_is_read_as_a_leaky_relu() {
    let s = leaky();
    let bytes = leaky_model_as_prelu(TINY_SIZE);
    let file = fovea_onnx::decode_model(&bytes).expect("decode");
    let nodes = &file.graph.as_ref().expect("graph").node;
    assert_eq!(nodes.iter().filter(|n| n.op_type == "PRelu").count(), 5);
    let prelu = common::engine_of(&bytes, TINY_SIZE, "prelu");
    assert_eq!(prelu.network.probe_stop, None);
    assert!(
        prelu
            .network
            .convs
            .iter()
            .all(|c| c.activation == Activation::Leaky(LEAKY_SLOPE))
    );
    let (rec, _) = common::record_test_image(&prelu);
    for (l, (a, b)) in rec.layers.iter().zip(&s.rec.layers).enumerate() {
        assert_eq!(a.activations, b.activations, "layer {}", l + 1);
        assert_eq!(a.mask, b.mask, "layer {}", l + 1);
    }
}

/// A classifier written as 1x1 convolutions on the globally pooled
/// features (Keras' MobileNet, MXNet's MobileNet v2) is a dense head: its
/// layers are listed, the predictions are the file's, and class neurons
/// are reconstructed in all four modes as the reference's dense head.
#[test]
fn a_classifier_of_pointwise_convolutions_is_a_dense_head() {
    let dense = mobile();
    // As written, and with the global average as a ReduceMean over the
    // planes (as some exporters write it).
    let mut mean = fovea_onnx::decode_model(&mobile_model_with_pointwise_head()).expect("decode");
    for n in &mut mean.graph.as_mut().expect("graph").node {
        if n.op_type == "GlobalAveragePool" {
            n.op_type = "ReduceMean".into();
            n.attribute = vec![
                fovea_onnx::attribute("axes", fovea_onnx::Attr::Ints(vec![2, 3])),
                fovea_onnx::attribute("keepdims", fovea_onnx::Attr::Int(1)),
            ];
        }
    }
    for (name, bytes) in [
        ("mobile-pointwise-head", mobile_model_with_pointwise_head()),
        ("mobile-pointwise-head-mean", fovea_onnx::encode(&mean)),
    ] {
        let s = Probed::new(
            &bytes,
            MOBILE_SIZE,
            name,
            Reference::of_chain(
                &mobile_chain(),
                folded(mobile_weights(), mobile_batch_norms()),
                MOBILE_SIZE,
            ),
        );
        let net = &s.engine.network;
        assert_eq!(net.probe_stop, None, "{name}");
        let units: Vec<(usize, bool)> = net.dense.iter().map(|d| (d.units, d.pointwise)).collect();
        assert_eq!(units, [(10, true), (5, true)], "{name}");
        for (a, b) in s.rec.scores.iter().zip(&dense.rec.scores) {
            assert!((a - b).abs() <= 1e-5, "{name}: {a} vs {b}");
        }
        s.assert_all_modes(&mobile_chain(), s.probe_neurons(), 7);
    }
}

/// Heads that average with AveragePool, as torchvision exports its
/// adaptive pools: after the chain's last pool (here 1x1), the global
/// average written as a pool over the whole last grid, then a 1x1 pool
/// (the grid already has the output size). The
/// predictions are the global-average file's, and class neurons are
/// reconstructed in all four modes as the reference's head.
#[test]
fn average_pools_in_the_head_are_followed_back() {
    use fovea_engine::fixtures::chain_output;
    let gap = mobile();
    let mut model = fovea_onnx::decode_model(&mobile_model(true)).expect("decode");
    let (_, h, w) = chain_output(&mobile_chain(), MOBILE_SIZE);
    assert_eq!(h, w);
    let graph = model.graph.as_mut().expect("graph");
    let at = graph
        .node
        .iter()
        .position(|n| n.op_type == "GlobalAveragePool")
        .expect("the global average");
    let pool = |kernel: i64, input: &str, output: &str| fovea_onnx::proto::NodeProto {
        input: vec![input.into()],
        output: vec![output.into()],
        name: format!("avgpool_{output}"),
        op_type: "AveragePool".into(),
        attribute: vec![fovea_onnx::attribute(
            "kernel_shape",
            fovea_onnx::Attr::Ints(vec![kernel, kernel]),
        )],
        ..Default::default()
    };
    let (input, output) = (
        graph.node[at].input[0].clone(),
        graph.node[at].output[0].clone(),
    );
    // The first 1x1 pool ends the chain (its last pool); the head's pools
    // read what it gives.
    graph.node[at] = pool(1, &input, "chain_end");
    graph
        .node
        .insert(at + 1, pool(h as i64, "chain_end", "whole_grid"));
    graph.node.insert(at + 2, pool(1, "whole_grid", &output));
    let s = Probed::new(
        &fovea_onnx::encode(&model),
        MOBILE_SIZE,
        "mobile-average-pool-head",
        Reference::of_chain(
            &mobile_chain(),
            folded(mobile_weights(), mobile_batch_norms()),
            MOBILE_SIZE,
        ),
    );
    assert_eq!(s.engine.network.dense.len(), 2);
    for (a, b) in s.rec.scores.iter().zip(&gap.rec.scores) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }
    s.assert_all_modes(&mobile_chain(), s.probe_neurons(), 7);
}
