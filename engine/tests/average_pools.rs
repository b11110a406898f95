//! Average pools inside the chain (2x2/2 on an odd side, 3x3/2 padded with
//! the padding counted, 3x3 at stride 1) next to a max pool, with a dense
//! head after an average. An average pool is linear: it keeps no switches,
//! and the backward modes spread each output's signal over its window.
//! ONNX Runtime records the file's own nodes; a plain-loop f64 reference
//! computes the forward pass and every backward pass.

mod common;

use common::reference::Reference;
use common::{Probed, assert_forward_is_the_references};
use fovea_engine::fixtures::{AVERAGE_SIZE, average_chain, average_model, average_weights};
use fovea_engine::model::network::Activation;
use fovea_engine::record::{Bits, Switches};

fn setup() -> Probed {
    Probed::new(
        &average_model(true),
        AVERAGE_SIZE,
        "average",
        Reference::of_chain(&average_chain(), average_weights(), AVERAGE_SIZE),
    )
}

#[test]
fn average_pools_are_read_and_keep_no_switches() {
    let s = setup();
    assert_eq!(s.engine.network.probe_stop, None);
    // Sides: (37 - 2) / 2 + 1 = 18; (18 + 2 - 3) / 2 + 1 = 9; 4; 4. Fields:
    // 3; pool +1, conv +2*2 -> 8 at 2; pool +2*2, conv +2*4 -> 20 at 4; pool
    // +1*4, conv +2*8 -> 40 at 8; pool +2*8, conv +2*8 -> 72 at 8.
    s.assert_read_as(
        &average_chain(),
        &[(37, 37), (18, 18), (9, 9), (4, 4), (4, 4)],
        &[(3, 1), (8, 2), (20, 4), (40, 8), (72, 8)],
    );
    let pooled: Vec<bool> = s.rec.layers.iter().map(|l| l.switches.is_some()).collect();
    assert_eq!(pooled, [false, false, false, true, false]);
    // A recording with switches where an average pool is is not used.
    assert!(s.engine.fits_recording(&s.rec));
    let mut wrong = s.rec.clone();
    let below = s.rec.layer(1);
    wrong.layers[1].switches = Some(Switches::Bits(Bits::zeros(
        below.channels * below.height * below.width,
    )));
    assert!(!s.engine.fits_recording(&wrong));
}

#[test]
fn the_recording_matches_the_reference() {
    let s = setup();
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
}

/// Conv neurons (corners included) and every class, in all four modes with
/// trained and random weights, with the linear identity.
#[test]
fn all_four_modes_from_conv_and_class_neurons_equal_the_reference() {
    let s = setup();
    s.assert_all_modes(&average_chain(), s.probe_neurons(), 5);
}

/// The linear filter against central differences of the reference, and
/// the FOV-window gradient (average pools run and transposed inside the
/// graph) against the whole-image linear filter. Layer 4's neurons on the
/// right edge read a max-pool output beyond the 2x2 pool's grid (its input
/// has 9 columns), which the window must zero as the whole image pads it.
#[test]
fn the_linear_filter_is_the_central_difference_gradient_and_the_fov_gradient() {
    // Central differences for the strongest neurons of layers 2 and 5.
    setup().assert_filters([3, 12], 2);
}

/// A whole-image objective through the average pools: value and gradient
/// against the reference.
#[test]
fn an_objective_and_its_gradient_equal_the_reference() {
    let s = setup();
    let value = |x: &[f64]| {
        let t = s.reference.forward(x);
        t.channel_mean(5, 3) + 0.05 * t.squares(3, Activation::Relu)
    };
    s.check_objective("channel(5,3) + 0.05*layer(3)", value, 41);
}

/// A neuron's linear region along a random line (bounded by ReLUs and the
/// max pool's switches only): value and slope are the reference's, and the
/// reference is linear inside it.
#[test]
fn the_linear_region_along_a_line_is_the_references() {
    let s = setup();
    let neurons = s.probe_neurons();
    for n in [neurons[6], neurons[12]] {
        s.assert_region_is_the_references(n);
    }
}
