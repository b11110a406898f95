//! An AlexNet-shaped chain whose max pools overlap (3x3 windows at stride
//! 2), are padded, or round up (ceil mode), with a dense head. An input can
//! be the maximum of several outputs, so unpooling adds. ONNX Runtime
//! records the file's own nodes; a plain-loop f64 reference computes the
//! forward pass and every backward pass.

mod common;

use common::reference::{Reference, first_max_pool};
use common::{Probed, assert_forward_is_the_references};
use fovea_engine::fixtures::{
    OVERLAPPING_SIZE, overlapping_chain, overlapping_model, overlapping_weights,
};
use fovea_engine::model::network::Activation;
use fovea_engine::record::Switches;

fn setup() -> Probed {
    Probed::new(
        &overlapping_model(true),
        OVERLAPPING_SIZE,
        "overlapping",
        Reference::of_chain(
            &overlapping_chain(),
            overlapping_weights(),
            OVERLAPPING_SIZE,
        ),
    )
}

#[test]
fn the_pools_are_read_with_their_geometry() {
    let s = setup();
    assert_eq!(s.engine.network.probe_stop, None);
    // Sides: (99 + 4 - 11) / 4 + 1 = 24; (24 - 3) / 2 + 1 = 11; (11 + 2 -
    // 3) / 2 + 1 = 6; ceil((6 - 3) / 2) + 1 = 3 (2 rounding down). Fields:
    // 11 at stride 4; pool +2*4, 5x5 +4*8 -> 51 at 8; pool +2*8, 3x3 +2*16
    // -> 99 at 16; 131; pool +2*16, 3x3 +2*32 -> 227 at 32.
    s.assert_read_as(
        &overlapping_chain(),
        &[(24, 24), (11, 11), (6, 6), (6, 6), (3, 3)],
        &[(11, 4), (51, 8), (99, 16), (131, 16), (227, 32)],
    );
}

/// Activations, masks, and each pool output's switch are the reference's;
/// the overlapping windows share maxima.
#[test]
fn the_recording_and_its_switches_match_the_reference() {
    let s = setup();
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
    let mut shared = 0;
    for (i, arg) in trace.argmax.iter().enumerate() {
        let Some(arg) = arg else { continue };
        let below = s.rec.layer(i);
        let plane = below.height * below.width;
        let want: Vec<u32> = arg.iter().map(|&a| (a % plane) as u32).collect();
        let Some(Switches::Cells(got)) = &s.rec.layer(i + 1).switches else {
            panic!("layer {} has no pool cells", i + 1);
        };
        assert_eq!(got, &want, "layer {}", i + 1);
        let mut sorted = arg.clone();
        sorted.sort_unstable();
        sorted.dedup();
        shared += arg.len() - sorted.len();
    }
    assert!(shared > 0, "no input is the maximum of two windows");
}

/// A recording read back from disk is used only when its switches fit the
/// pools: a cell per output of an overlapping pool, no bits in their place.
#[test]
fn a_recording_whose_switches_do_not_fit_the_pools_is_not_used() {
    let s = setup();
    assert!(s.engine.fits_recording(&s.rec));
    let mut short = s.rec.clone();
    if let Some(Switches::Cells(cells)) = short.layers[1].switches.as_mut() {
        cells.pop();
    }
    assert!(!s.engine.fits_recording(&short));
    let mut bits = s.rec.clone();
    let below = s.rec.layer(1);
    bits.layers[1].switches = Some(Switches::Bits(fovea_engine::record::Bits::zeros(
        below.channels * below.height * below.width,
    )));
    assert!(!s.engine.fits_recording(&bits));
    let mut none = s.rec.clone();
    none.layers[4].switches = None;
    assert!(!s.engine.fits_recording(&none));
}

/// Conv neurons (corners included) and every class, in all four modes with
/// trained and random weights, with the linear identity.
#[test]
fn all_four_modes_from_conv_and_class_neurons_equal_the_reference() {
    let s = setup();
    s.assert_all_modes(&overlapping_chain(), s.probe_neurons(), 5);
}

/// The linear filter against central differences of the reference, and
/// the FOV-window gradient (pools run and unpooled inside the graph)
/// against the whole-image linear filter.
#[test]
fn the_linear_filter_is_the_central_difference_gradient_and_the_fov_gradient() {
    // Central differences for the strongest neurons of layers 2 and 4,
    // every fourth row and column of the box (keeps the run short).
    setup().assert_filters([3, 9], 4);
}

/// A whole-image objective through the padded and ceil-mode pools: value
/// and gradient against the reference.
#[test]
fn an_objective_and_its_gradient_equal_the_reference() {
    let s = setup();
    let value = |x: &[f64]| {
        let t = s.reference.forward(x);
        t.channel_mean(5, 3) + 0.05 * t.squares(3, Activation::Relu) - t.unit(4, (7, 2, 2))
    };
    s.check_objective("channel(5,3) + 0.05*layer(3) - neuron(4,7,2,2)", value, 97);
}

/// A neuron's linear region along a random line, bounded by ReLUs and by
/// the overlapping pools' switches: value and slope are the reference's,
/// and the reference is linear inside it.
#[test]
fn the_linear_region_along_a_line_is_the_references() {
    let s = setup();
    let neurons = s.probe_neurons();
    for n in [neurons[6], neurons[12]] {
        s.assert_region_is_the_references(n);
    }
}

/// The reference's own pool rule on a hand-made plane: an input shared by
/// two windows, and ties resolved to the first cell.
#[test]
fn the_reference_pool_shares_maxima_and_takes_the_first_of_ties() {
    let pool = fovea_engine::model::network::PoolShape {
        kernel: 3,
        stride: 2,
        pads: [0; 4],
        ceil: false,
        average: false,
    };
    // 5x5, one large value in the shared middle column and ties elsewhere.
    let mut x = vec![1.0f64; 25];
    x[2 * 5 + 2] = 9.0;
    let (arg, dims) = first_max_pool(&x, 1, (5, 5), pool);
    assert_eq!(dims, (2, 2));
    assert_eq!(arg, vec![12, 12, 12, 12]);
    let (arg, _) = first_max_pool(&[1.0; 25], 1, (5, 5), pool);
    assert_eq!(arg, vec![0, 2, 10, 12]);
}

/// The Caffe networks' local response normalisation after the first ReLU
/// is not piecewise linear: the probe-able part ends there, named, the
/// first layer is probed, and the whole file still predicts.
#[test]
fn a_local_response_normalisation_ends_the_probed_part() {
    use fovea_engine::fixtures::{TINY_CLASSES, overlapping_model_with_lrn};
    let engine = common::engine_of(&overlapping_model_with_lrn(), OVERLAPPING_SIZE, "lrn");
    let net = &engine.network;
    let why = net.probe_stop.as_deref().expect("a stop");
    assert!(why.contains("LRN"), "{why}");
    assert_eq!(net.convs.len(), 1);
    assert!(net.dense.is_empty());
    let (rec, _) = common::record_test_image(&engine);
    assert_eq!(rec.scores.len(), TINY_CLASSES);
    let sum: f32 = rec.scores.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "softmax scores sum to {sum}");
    let n = fovea_engine::probe::reconstruct::NeuronAt {
        layer: 1,
        feature: 2,
        y: 5,
        x: 7,
    };
    let r = common::reconstruct_all_modes(&engine, &rec, &[n], 1);
    assert_eq!(r.len(), 4);
    assert!(r.iter().all(|r| r.values.iter().any(|&v| v != 0.0)));
}
