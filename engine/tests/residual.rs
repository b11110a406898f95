//! A ResNet-shaped file (a 7x7/2 batch-normalised stem, a 3x3/2 padded max
//! pool, a basic block with its residual sum, global average pooling, a
//! dense layer). Fovea probes its chain up to where the chain stops (the
//! branch to the residual sum, after the stem's overlapping pool or without
//! it), says where and why, and still runs the whole file for the
//! predictions: they equal ONNX Runtime's on the unmodified file, and the
//! probed stem equals the plain-loop f64 reference in all four modes.

mod common;

use common::reference::Reference;
use common::{
    assert_linear_identity, engine_of, folded, max_abs, max_diff, reconstruct_all_modes,
    record_test_image, runtime,
};
use fovea_engine::engine::Engine;
use fovea_engine::fixtures::{
    RESIDUAL_SIZE, TINY_CLASSES, residual_batch_norms, residual_model, residual_stem,
    residual_weights,
};
use fovea_engine::graphs::transposed::random_weights;
use fovea_engine::probe::reconstruct::{Mode, NeuronAt};
use fovea_engine::record::Recording;
use ort::value::TensorRef;

/// The file's logits for the recorded input, run by ONNX Runtime as it is.
fn original_scores(model: &[u8], rec: &Recording) -> Vec<f32> {
    let mut session = runtime().session(model).expect("session");
    let size = RESIDUAL_SIZE;
    let input = TensorRef::from_array_view(([1usize, 3, size, size], rec.input.as_slice()))
        .expect("tensor");
    let outputs = session.run(ort::inputs!["input" => input]).expect("run");
    outputs["logits"]
        .try_extract_tensor::<f32>()
        .expect("logits")
        .1
        .to_vec()
}

fn assert_predictions_are_the_files(engine: &Engine, model: &[u8], rec: &Recording) {
    assert!(engine.head_enabled);
    assert_eq!(engine.network.classes, Some(TINY_CLASSES));
    let want = original_scores(model, rec);
    assert_eq!(rec.scores.len(), want.len());
    for (a, b) in rec.scores.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "{a} vs {b}");
    }
}

#[test]
fn a_resnet_shaped_file_is_probed_through_its_stem_pool_up_to_the_branch() {
    let model = residual_model(true);
    let engine = engine_of(&model, RESIDUAL_SIZE, "residual");
    let net = &engine.network;
    assert_eq!(net.convs.len(), 1);
    assert_eq!(net.convs[0].shape, residual_stem().shape);
    assert!(net.convs[0].batch_norm.is_some());
    assert!(net.dense.is_empty(), "the tail is no dense head");
    // The stem's 3x3/2 pool padded by 1 is read; its output feeds the
    // block and the residual sum.
    let pool = net.pool_after_last.expect("the stem pool");
    assert_eq!((pool.kernel, pool.stride, pool.pads), (3, 2, [1; 4]));
    let stop = net.probe_stop.as_deref().expect("a stop");
    assert!(stop.contains("feeds 2 nodes (a branch)"), "{stop}");
    let (rec, input) = record_test_image(&engine);
    assert_predictions_are_the_files(&engine, &model, &rec);

    // The probed stem, batch norm folded, against the reference.
    let weights = folded(residual_weights(), residual_batch_norms());
    let reference =
        Reference::of_chain(&[residual_stem()], vec![weights[0].clone()], RESIDUAL_SIZE);
    let trace = reference.forward(&input);
    let g = engine.geometry[1];
    assert_eq!((g.height, g.width, g.fov, g.stride), (16, 16, 7, 2));
    let recorded: Vec<f32> = rec
        .layer(1)
        .activations
        .iter()
        .map(|h| h.to_f32())
        .collect();
    let scale = max_abs(&trace.pre[0]);
    for (got, &pre) in recorded.iter().zip(&trace.pre[0]) {
        assert!(
            (*got as f64 - pre.max(0.0)).abs() <= 2e-3 * scale,
            "{got} vs {pre}"
        );
    }
    let top = fovea_engine::record::top_activations(rec.layer(1), 1, None, false)[0];
    let neurons: Vec<NeuronAt> = [(top.feature, top.y, top.x), (1, 0, 0), (5, 15, 15)]
        .iter()
        .map(|&(feature, y, x)| NeuronAt {
            layer: 1,
            feature,
            y,
            x,
        })
        .collect();
    let seed = 9;
    let trained = vec![reference.layers[0].3.clone()];
    let random: Vec<Vec<f64>> = random_weights(&engine.network.convs, seed)
        .into_iter()
        .map(|w| w.into_iter().map(f64::from).collect())
        .collect();
    for r in reconstruct_all_modes(&engine, &rec, &neurons, seed) {
        let n = neurons[r.neuron_index];
        let w = if r.mode == Mode::RandomWeights {
            &random
        } else {
            &trained
        };
        let want = reference.backward(&trace, n, r.mode, w, 1.0);
        let scale = max_abs(&want);
        let diff = max_diff(&r.values, &want);
        assert!(
            scale > 0.0 && diff <= 1e-5 * scale,
            "{:?} {n:?}: {diff}",
            r.mode
        );
        if r.mode == Mode::LinearFilter {
            let pre = trace.pre[0][(n.feature * 16 + n.y) * 16 + n.x];
            assert_linear_identity(&r, &input, pre);
        }
    }
}

#[test]
fn a_branch_ends_the_probed_chain_and_the_file_still_predicts() {
    let model = residual_model(false);
    let engine = engine_of(&model, RESIDUAL_SIZE, "residual-branch");
    assert_eq!(engine.network.convs.len(), 1);
    let stop = engine.network.probe_stop.as_deref().expect("a stop");
    assert!(stop.contains("feeds 2 nodes (a branch)"), "{stop}");
    let (rec, _) = record_test_image(&engine);
    assert_predictions_are_the_files(&engine, &model, &rec);
}
