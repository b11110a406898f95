//! A chain of every convolution geometry but VGG's (a strided stem, a
//! dilated grouped 3x3, a 1x1, a depthwise stride-2 3x3 padded on one side,
//! an even kernel) with a dense head. ONNX Runtime records the file's own
//! nodes; a plain-loop f64 reference computes the forward pass and every
//! backward pass. Recording, the four modes from conv and class neurons
//! (neurons at the borders, whose windows reach into the padding, among
//! them), the linear identity, the FOV gradient, the central differences
//! and a feature-visualisation objective all agree.

mod common;

use common::reference::Reference;
use common::{Probed, assert_forward_is_the_references};
use fovea_engine::fixtures::{
    STRIDED_SIZE, TINY_CLASSES, strided_chain, strided_model, strided_weights,
};
use fovea_engine::model::network::Activation;
use fovea_engine::model::network::Network;
use fovea_engine::probe::reconstruct::NeuronAt;
use fovea_onnx::proto::AttributeProto;
use fovea_onnx::{Attr, attribute};

fn setup() -> Probed {
    Probed::new(
        &strided_model(true),
        STRIDED_SIZE,
        "strided",
        Reference::of_chain(&strided_chain(), strided_weights(), STRIDED_SIZE),
    )
}

/// The strongest neuron of every layer and the four corners of its grid
/// (whose FOV windows reach into the padding on two sides).
fn probe_neurons(s: &Probed) -> Vec<NeuronAt> {
    s.strongest_and_corners(&[(false, false), (false, true), (true, false), (true, true)])
}

#[test]
fn the_chain_is_read_with_its_geometry() {
    let s = setup();
    // Fields of view by hand: 5; +4 at stride 2 -> 13; pool +2 -> 15; 1x1
    // keeps it; 3x3 at stride 4 -> 23; 2x2 at stride 8 -> 31.
    s.assert_read_as(
        &strided_chain(),
        &[(21, 21), (21, 21), (10, 10), (5, 5), (5, 5)],
        &[(5, 2), (13, 2), (15, 4), (23, 8), (31, 8)],
    );
}

#[test]
fn the_recording_matches_the_reference_forward() {
    let s = setup();
    let trace = s.reference.forward(&s.input);
    let active = assert_forward_is_the_references(&s.engine, &s.rec, &trace);
    for (l, (&on, pre)) in active.iter().zip(&trace.pre).enumerate() {
        assert!(on > 0 && on < pre.len(), "layer {}", l + 1);
    }
    assert_eq!(s.rec.scores.len(), TINY_CLASSES);
    // The 2x2 pool's bits over the layer below fit; fewer do not.
    assert!(s.engine.fits_recording(&s.rec));
    let mut short = s.rec.clone();
    let below = s.rec.layer(2);
    short.layers[2].switches = Some(fovea_engine::record::Switches::Bits(
        fovea_engine::record::Bits::zeros(below.channels * below.height * below.width - 1),
    ));
    assert!(!s.engine.fits_recording(&short));
}

/// Conv neurons (including the corners) and every class, in all four modes
/// with trained and random weights, with the linear identity.
#[test]
fn all_four_modes_from_conv_and_class_neurons_equal_the_reference() {
    let s = setup();
    s.assert_all_modes(&strided_chain(), probe_neurons(&s), 3);
}

/// The linear filter against central differences of the reference's
/// forward pass, and the ascent graph's gradient over the FOV window
/// against the linear filter over the whole image.
#[test]
fn the_linear_filter_is_the_central_difference_gradient_and_the_fov_gradient() {
    let s = setup();
    let neurons = probe_neurons(&s);
    // The strongest neuron of each layer and one corner of the top layer.
    for n in neurons
        .iter()
        .step_by(5)
        .copied()
        .chain(neurons.last().copied())
    {
        s.assert_filter_is_the_central_difference(n, 1);
        s.assert_fov_gradient_is_the_filter(n);
    }
}

/// A feature-visualisation objective over the whole image (strided
/// transposed convolutions restoring the rows the stride leaves unread):
/// its value and its gradient against the reference.
#[test]
fn an_objective_and_its_gradient_equal_the_reference() {
    let s = setup();
    let value = |x: &[f64]| {
        let t = s.reference.forward(x);
        t.channel_mean(5, 3) + 0.05 * t.squares(2, Activation::Relu) - t.unit(4, (7, 4, 4))
    };
    s.check_objective("channel(5,3) + 0.05*layer(2) - neuron(4,7,4,4)", value, 23);
}

/// The network read from the strided model with conv `k`'s attributes
/// edited, or the loader's message.
fn read_with(k: usize, edit: impl FnOnce(&mut Vec<AttributeProto>)) -> Result<Network, String> {
    let mut model = fovea_onnx::decode_model(&strided_model(false)).expect("decode");
    let graph = model.graph.as_mut().expect("graph");
    let conv = graph
        .node
        .iter_mut()
        .filter(|n| n.op_type == "Conv")
        .nth(k)
        .expect("conv");
    edit(&mut conv.attribute);
    Network::from_model(&model).map_err(|e| e.to_string())
}

/// Why conv `k`, edited, is not read: the loader's error for the first
/// conv, or where the probed chain stops for a later one (the layers before
/// it are still probed).
fn refusal(k: usize, edit: impl FnOnce(&mut Vec<AttributeProto>)) -> String {
    match read_with(k, edit) {
        Err(e) => {
            assert_eq!(k, 0, "{e}");
            e
        }
        Ok(net) => {
            assert_eq!(net.convs.len(), k);
            net.probe_stop.expect("a stop")
        }
    }
}

fn set(attrs: &mut Vec<AttributeProto>, name: &str, value: Attr) {
    attrs.retain(|a| a.name != name);
    attrs.push(attribute(name, value));
}

#[test]
fn auto_pad_at_stride_1_pads_as_onnx_says_and_strided_auto_pad_is_refused() {
    // The 2x2 kernel of layer 5: SAME_UPPER puts the odd pixel at the end.
    for (mode, pads) in [("SAME_UPPER", [0, 0, 1, 1]), ("SAME_LOWER", [1, 1, 0, 0])] {
        let net = read_with(4, |a| {
            a.retain(|a| a.name != "pads");
            set(a, "auto_pad", Attr::Str(mode));
        })
        .expect("auto_pad");
        assert_eq!(net.convs[4].shape.pads, pads, "{mode}");
    }
    let valid = read_with(2, |a| set(a, "auto_pad", Attr::Str("VALID"))).expect("VALID");
    assert_eq!(valid.convs[2].shape.pads, [0; 4]);
    let err = refusal(0, |a| set(a, "auto_pad", Attr::Str("SAME_UPPER")));
    assert!(
        err.contains("auto_pad") && err.contains("stride 2") && err.contains("explicit pads"),
        "{err}"
    );
}

#[test]
fn convolutions_outside_the_supported_geometry_are_refused_by_name() {
    let cases: [(usize, &str, Attr, &str); 4] = [
        (
            0,
            "strides",
            Attr::Ints(vec![2, 1]),
            "equal, positive values",
        ),
        (
            1,
            "dilations",
            Attr::Ints(vec![0, 0]),
            "equal, positive values",
        ),
        (
            0,
            "pads",
            Attr::Ints(vec![5, 5, 5, 5]),
            "expected four values in 0..5",
        ),
        (1, "group", Attr::Int(3), "in 3 groups on 8 input channels"),
    ];
    for (k, name, value, says) in cases {
        let err = refusal(k, |a| set(a, name, value));
        assert!(
            err.contains("(Conv)") && err.contains(says),
            "{name}: {err}"
        );
    }
    let err = refusal(0, |a| set(a, "kernel_shape", Attr::Ints(vec![5, 3])));
    assert!(err.contains("kernel_shape [5, 3]"), "{err}");
}

/// A neuron's linear region along a random line, solved from the gates of
/// the strided layers: its value and slope are the reference's, and the
/// reference's pre-activation is linear inside it on both sides.
#[test]
fn the_linear_region_along_a_line_is_the_references() {
    let s = setup();
    let neurons = probe_neurons(&s);
    for n in [neurons[15], neurons[20]] {
        s.assert_region_is_the_references(n);
    }
}

/// At 26 pixels the last layer sees more than the image (a field of 31):
/// its graphs run on whole grids, with padded
/// convolutions of every geometry (one-sided padding, dilation, groups, an
/// even kernel, strides restored by output padding).
#[test]
fn on_an_image_smaller_than_the_deep_fields_all_modes_equal_the_reference() {
    use fovea_engine::fixtures::chain_model;
    use fovea_engine::model::network::{Layout, window_tree};
    let size = 26;
    let (chain, weights) = (strided_chain(), strided_weights());
    let model = chain_model(&chain, &weights, Layout::Nchw, true, size, None);
    let reference = Reference::of_chain(&chain, weights, size);
    let s = Probed::new(&model, size, "strided-26", reference);
    let convs = &s.engine.network.convs;
    assert!(window_tree(convs, 5, (0, 0), size).whole);
    assert!(!window_tree(convs, 3, (0, 0), size).whole);
    let neurons = probe_neurons(&s);
    s.assert_all_modes(&chain, neurons.clone(), 5);
    for n in neurons {
        s.assert_fov_gradient_is_the_filter(n);
    }
    s.assert_region_is_the_references(probe_neurons(&s)[20]);
}
