//! An Inception-shaped file: GoogLeNet's block of four branches (1x1;
//! 1x1 then 3x3; 1x1 then a leaky 5x5; a 3x3/1 max pool then 1x1) read
//! after a 3x3/2 pool that rounds up, joined by a Concat on channels and
//! read by one more convolution. Layers are numbered branch after branch;
//! the branch pool after the block's pool is one larger max pool. Held to
//! the plain-loop f64 reference (forward, the four modes, the identity),
//! central differences, and ONNX Runtime on the unmodified file.

mod common;

use common::reference::Reference;
use common::{Probed, assert_forward_is_the_references};
use fovea_engine::fixtures::{
    ChainConv, INCEPTION_BLOCK_POOL, INCEPTION_BRANCH_POOL, INCEPTION_SIZE, INCEPTION_SOURCES,
    inception_convs, inception_model, inception_weights,
};
use fovea_engine::model::network::{Activation, PoolShape};
use fovea_engine::probe::reconstruct::NeuronAt;

fn setup() -> Probed {
    Probed::new(
        &inception_model(),
        INCEPTION_SIZE,
        "inception",
        Reference::of_chain(&inception_convs(), inception_weights(), INCEPTION_SIZE)
            .with_sources(&INCEPTION_SOURCES)
            .with_averaged_head(),
    )
}

/// The head's chain: the last layer, averaged globally.
fn head_chain() -> [ChainConv; 1] {
    [ChainConv {
        pool: None,
        ..inception_convs()[7]
    }]
}

#[test]
fn the_block_is_read_as_branches_joined_on_channels() {
    let s = setup();
    let net = &s.engine.network;
    assert_eq!(net.probe_stop, None);
    let sources: Vec<&[usize]> = net.convs.iter().map(|c| c.sources.as_slice()).collect();
    assert_eq!(sources, INCEPTION_SOURCES);
    assert_eq!(net.dense.len(), 2);
    // The two pools in a row are one 7x7/2 max pool padded by 2.
    assert_eq!(
        INCEPTION_BLOCK_POOL.then(INCEPTION_BRANCH_POOL),
        Some(PoolShape {
            kernel: 7,
            stride: 2,
            pads: [2; 4],
            ceil: true,
            average: false
        })
    );
    // Sides 32, 16, then 8 after the block's pool, 4 after the last. Fields:
    // 5 at 2; the pool +2*2 -> 9 at 4; 3x3 +2*4 -> 17; 5x5 +4*4 -> 25; both
    // pools +6*2 -> 17; the last layer's hull of its branches (25), its
    // pool +2*4 -> 33 at 8 and 3x3 +2*8 -> 49.
    s.assert_read_as(
        &inception_convs(),
        &[
            (16, 16),
            (8, 8),
            (8, 8),
            (8, 8),
            (8, 8),
            (8, 8),
            (8, 8),
            (4, 4),
        ],
        &[
            (5, 2),
            (9, 4),
            (9, 4),
            (17, 4),
            (9, 4),
            (25, 4),
            (17, 4),
            (49, 8),
        ],
    );
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
}

#[test]
fn all_modes_match_the_reference_through_the_block() {
    let s = setup();
    s.assert_all_modes(&head_chain(), s.probe_neurons(), 3);
}

#[test]
fn linear_filters_are_the_central_differences_through_the_block() {
    let s = setup();
    let neurons = s.probe_neurons();
    // The strongest neuron of a second-branch layer and of the last layer.
    s.assert_filter_is_the_central_difference(neurons[3 * 3], 1);
    s.assert_filter_is_the_central_difference(neurons[7 * 3], 2);
    s.assert_filter_is_the_central_difference(
        NeuronAt {
            layer: 7,
            feature: 1,
            y: 7,
            x: 0,
        },
        1,
    );
    for n in &neurons {
        s.assert_fov_gradient_is_the_filter(*n);
    }
}

#[test]
fn the_predictions_are_the_files() {
    setup().assert_predictions_are_the_files(&inception_model());
}

/// Terms on two branches of the block and on the layer reading it: the
/// signals of the branches meet at the block's input.
#[test]
fn an_objective_over_the_branches_and_its_gradient_equal_the_reference() {
    let s = setup();
    let value = |x: &[f64]| {
        let t = s.reference.forward(x);
        t.channel_mean(8, 2) + t.channel_mean(4, 1) + 0.05 * t.squares(7, Activation::Relu)
    };
    s.check_objective("channel(8,2) + channel(4,1) + 0.05*layer(7)", value, 23);
}

#[test]
fn the_linear_region_along_a_line_is_the_references() {
    let s = setup();
    let neurons = s.probe_neurons();
    // A neuron of the fourth branch (behind both pools) and of the layer
    // reading the block.
    for n in [neurons[6 * 3], neurons[7 * 3]] {
        s.assert_region_is_the_references(n);
    }
}

/// Maximisation of a neuron behind the block (its field, 49 pixels,
/// exceeds the image: the whole image) and of one inside a branch.
#[test]
fn neurons_behind_and_inside_the_block_are_maximised() {
    use fovea_engine::probe::maximize::MaximizeOptions;
    let s = setup();
    let opts = MaximizeOptions {
        starts: 2,
        steps: 20,
        seed: 3,
        ..Default::default()
    };
    for n in [
        NeuronAt {
            layer: 8,
            feature: 3,
            y: 2,
            x: 3,
        },
        NeuronAt {
            layer: 6,
            feature: 1,
            y: 2,
            x: 5,
        },
    ] {
        let out = common::maximize_rising(&s.engine, n, &opts);
        assert!(!out.images.is_empty(), "{n:?}");
    }
}

/// A 2x2/2 max pool over a Concat would keep its switches in the gates of
/// four layers read elsewhere too: the probe-able part ends there, named,
/// and the predictions still come from the file.
#[test]
fn a_halving_pool_after_the_block_ends_the_probed_part() {
    use fovea_engine::fixtures::inception_model_with;
    let engine = common::engine_of(
        &inception_model_with(PoolShape::HALVING),
        INCEPTION_SIZE,
        "inception-halving",
    );
    let net = &engine.network;
    let why = net.probe_stop.as_deref().expect("a stop");
    assert!(why.contains("2x2/2 max pool"), "{why}");
    assert_eq!(net.convs.len(), 7);
    assert!(net.dense.is_empty());
    let (rec, _) = common::record_test_image(&engine);
    assert_eq!(rec.scores.len(), fovea_engine::fixtures::TINY_CLASSES);
}

/// GoogLeNet's head reads its last block's Concat: class neurons go back
/// into every branch, in all four modes and with the linear identity.
#[test]
fn a_head_reading_the_block_takes_every_branch() {
    use fovea_engine::fixtures::{inception_block_head, inception_model_ending_in_the_block};
    let convs = &inception_convs()[..7];
    let s = Probed::new(
        &inception_model_ending_in_the_block(),
        INCEPTION_SIZE,
        "inception-head",
        Reference::of_chain(convs, inception_weights()[..7].to_vec(), INCEPTION_SIZE)
            .with_sources(&INCEPTION_SOURCES[..7])
            .with_end(&[2, 4, 6, 7])
            .with_averaged_head(),
    );
    let net = &s.engine.network;
    assert_eq!(net.probe_stop, None);
    assert_eq!(net.end_sources, [2, 4, 6, 7]);
    assert_eq!(net.dense.len(), 2);
    s.assert_all_modes(&[inception_block_head()], s.probe_neurons(), 9);
}

/// Grad-CAM through a head reading the block: at a branch's end (its part
/// of the head's gradient), inside a branch, and at the stem (where the
/// branches' signals add up), for every class, against the reference.
#[test]
fn grad_cam_reads_every_branch_of_a_head_reading_the_block() {
    use common::reference::{Head, unpooled};
    use fovea_engine::fixtures::{
        TINY_CLASSES, TINY_HIDDEN, chain_head_weights, inception_block_head,
        inception_model_ending_in_the_block,
    };
    use fovea_engine::probe::reconstruct::Mode;
    let convs = &inception_convs()[..7];
    let weights = inception_weights()[..7].to_vec();
    let ends = [2usize, 4, 6, 7];
    let reference = Reference::of_chain(convs, weights, INCEPTION_SIZE)
        .with_sources(&INCEPTION_SOURCES[..7])
        .with_end(&ends)
        .with_averaged_head();
    let s = Probed::new(
        &inception_model_ending_in_the_block(),
        INCEPTION_SIZE,
        "inception-cam",
        reference,
    );
    let head = Head::new(chain_head_weights(
        &[inception_block_head()],
        INCEPTION_SIZE,
    ));
    let trace = s.reference.forward(&s.input);
    let ht = head.forward(&s.reference, &trace);
    let trained: Vec<Vec<f64>> = s.reference.layers.iter().map(|l| l.3.clone()).collect();
    let (w1, w2) = (&head.dense[0].0, &head.dense[1].0);
    let f = ht.pooled.len();
    let features: usize = ends.iter().map(|&l| trace.pre[l - 1].len()).sum();
    // Maps that are not empty (Grad-CAM keeps what is positive).
    let mut drawn = 0;
    for class in 0..TINY_CLASSES {
        let n = s
            .engine
            .ascent_neuron("n", "9", class as i64, 0, 0)
            .expect("class neuron");
        // The head's gradient at the block's 18 averaged maps, then at
        // every unit of the Concat, cut into the branches' parts.
        let at_pooled: Vec<f64> = (0..f)
            .map(|i| {
                (0..TINY_HIDDEN)
                    .filter(|&o| ht.pre[0][o] > 0.0)
                    .map(|o| w1[o * f + i] * w2[class * TINY_HIDDEN + o])
                    .sum()
            })
            .collect();
        let at_features = unpooled(&ht.map, &at_pooled, features);
        let mut seeds = Vec::new();
        let mut offset = 0;
        for l in ends {
            let k = trace.pre[l - 1].len();
            seeds.push((l, at_features[offset..offset + k].to_vec()));
            offset += k;
        }
        for layer in [4usize, 3, 1] {
            let at = s.reference.signal_from(
                &trace,
                (7, None, true),
                seeds.clone(),
                Mode::LinearFilter,
                &trained,
                layer,
            );
            let (h, w) = trace.dims[layer - 1];
            drawn += usize::from(common::assert_grad_cam(
                &s.engine,
                &s.rec,
                (n, layer),
                (&trace.pre[layer - 1], &at),
                (convs[layer - 1].out_channels, h, w),
            ));
        }
    }
    assert!(drawn >= TINY_CLASSES, "{drawn} maps drawn");
}
