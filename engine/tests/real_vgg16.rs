//! The engine on the real, trained VGG-16 (the offline package source of the
//! default model, fetched once into the cache) and a sample photograph.

mod common;

use common::{runtime, sample_image};
use fovea_engine::engine::{Engine, EngineOptions};
use fovea_engine::graphs::transposed::random_weights;
use fovea_engine::model::profile::ImageLimits;
use fovea_engine::paths::cache_dir;
use fovea_engine::probe::reconstruct::{Mode, NeuronAt, Start};
use fovea_engine::record::top_activations;
use fovea_engine::supply::{ModelSource, resolve_model};
use ort::value::TensorRef;

fn vgg16(input_size: usize) -> (Engine, std::path::PathBuf) {
    vgg16_with(input_size, None)
}

fn vgg16_with(input_size: usize, compact: Option<bool>) -> (Engine, std::path::PathBuf) {
    let (path, provenance) =
        resolve_model("vgg16", ModelSource::Package, &cache_dir()).expect("VGG-16");
    let options = EngineOptions {
        input_size,
        compact_recording: compact,
        ..Default::default()
    };
    (
        Engine::load(runtime(), &path, provenance, &options).expect("engine"),
        path,
    )
}

#[test]
fn linear_filter_identity_holds_at_layers_13_10_and_5() {
    let (engine, _) = vgg16(224);
    assert_eq!(engine.network.convs.len(), 13);
    assert_eq!(engine.network.convs[12].name, "conv5_3");
    // Its Flatten is Shape + Reshape on pool5: the head, not a branch.
    assert_eq!(engine.network.probe_stop, None);
    assert_eq!(engine.profile.name, "caffe");
    // pool5 is 7x7 at 224 as at the file's own 240, so the head runs; at 256
    // it does not, and its neurons are refused, naming the size that works.
    assert!(engine.head_enabled);
    assert!(engine.ascent_neuron("neuron", "fc1", 0, 0, 0).is_ok());
    let (wide, _) = vgg16(256);
    assert!(!wide.head_enabled);
    let refused = wide
        .ascent_neuron("neuron", "fc1", 0, 0, 0)
        .expect_err("the head does not run at 256");
    assert!(
        refused.to_string().contains("--input-size 240"),
        "{refused}"
    );
    drop(wide);
    let rec = engine
        .record(
            &sample_image("chelsea.png"),
            "chelsea",
            ImageLimits::default(),
        )
        .expect("record");
    // The compact recording graph records the same bits as the f32 one.
    let (compact, _) = vgg16_with(224, Some(true));
    let again = compact.record_tensor(rec.input.clone()).expect("compact");
    assert_eq!(again.scores, rec.scores);
    for (l, (a, b)) in again.layers.iter().zip(&rec.layers).enumerate() {
        assert!(a.activations == b.activations, "layer {}", l + 1);
        assert!(
            a.mask == b.mask && a.switches == b.switches,
            "layer {}",
            l + 1
        );
    }
    drop(compact);
    let pass = engine.forward(&rec.input).expect("forward");
    let mut neurons = Vec::new();
    for layer in [13, 10, 5] {
        let top = top_activations(rec.layer(layer), 1, None, false)[0];
        neurons.push(NeuronAt {
            layer,
            feature: top.feature,
            y: top.y,
            x: top.x,
        });
    }
    let filters = engine
        .reconstruct(&rec, &neurons, &[Mode::LinearFilter], Start::OneHot, 0)
        .expect("reconstruct");
    for (n, f) in neurons.iter().zip(&filters) {
        let g = engine.geometry[n.layer];
        let preact =
            pass.activations[n.layer - 1][(n.feature * g.height + n.y) * g.width + n.x] as f64;
        let dot: f64 = f
            .values
            .iter()
            .zip(&rec.input)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        let b = engine.effective_bias(&rec, &[*n]).expect("bias")[0] as f64;
        let rel = (dot + b - preact).abs() / preact.abs();
        eprintln!(
            "layer {}: preact {preact}, <filter, x0> {dot}, b_eff {b}, relative error {rel:e}",
            n.layer
        );
        assert!(rel <= 1e-3, "{n:?}: {dot} + {b} vs {preact}");
    }
    // Activity falls with depth, as in the paper's section 5.
    let activity = rec.activity(&engine.network.convs);
    assert!(activity[0] > activity[12], "{activity:?}");
}

#[test]
fn recording_matches_the_unmodified_model_run_by_onnx_runtime() {
    // The file fixes its input at 240x240, so compare at that size.
    let (engine, path) = vgg16(240);
    assert!(engine.head_enabled);
    let rec = engine
        .record(&sample_image("rocket.jpg"), "", ImageLimits::default())
        .expect("record");
    let original = std::fs::read(&path).expect("model file");
    let mut session = engine_runtime_session(&original);
    let nhwc: Vec<f32> = {
        let plane = 240 * 240;
        (0..plane * 3)
            .map(|i| rec.input[(i % 3) * plane + i / 3])
            .collect()
    };
    let input =
        TensorRef::from_array_view(([1usize, 240, 240, 3], nhwc.as_slice())).expect("tensor");
    let outputs = session.run(ort::inputs!["input" => input]).expect("run");
    let (_, want) = outputs["dense_3"]
        .try_extract_tensor::<f32>()
        .expect("output");
    assert_eq!(want.len(), rec.scores.len());
    for (a, b) in rec.scores.iter().zip(want) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-6), "{a} vs {b}");
    }
    // The last conv output, through the recording graph's own session, is
    // consistent with the recorded (half-precision) activations.
    let pass = engine.forward(&rec.input).expect("forward");
    for (x, h) in pass.activations[12].iter().zip(&rec.layer(13).activations) {
        assert!((x - h.to_f32()).abs() <= 1e-3 * x.abs().max(1e-3));
    }
}

fn engine_runtime_session(model: &[u8]) -> ort::session::Session {
    runtime().session(model).expect("session")
}

#[test]
fn random_weights_follow_each_trained_layer() {
    let (engine, _) = vgg16(224);
    let random = random_weights(&engine.network.convs, 9);
    let stats = |v: &[f32]| {
        let n = v.len() as f64;
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let s = (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n).sqrt();
        (m, s)
    };
    for (c, r) in engine.network.convs.iter().zip(&random) {
        let (mt, st) = stats(&c.weight);
        let (mr, sr) = stats(r);
        eprintln!(
            "{}: trained mean {mt:.3e} std {st:.3e}; random mean {mr:.3e} std {sr:.3e}",
            c.name
        );
        assert!((sr - st).abs() <= 0.05 * st, "{}: std {sr} vs {st}", c.name);
        // The mean is near zero, so it is compared on the scale of the std.
        assert!(
            (mr - mt).abs() <= 0.05 * st,
            "{}: mean {mr} vs {mt}",
            c.name
        );
    }
}

#[test]
fn dense_gradients_match_the_original_model_run_by_onnx_runtime() {
    use fovea_onnx::proto::tensor_proto::DataType;
    use fovea_onnx::{Dim, decode_model, encode, value_info};
    // The file's head runs at its own size only.
    let (engine, path) = vgg16(240);
    let net = &engine.network;
    assert_eq!(net.dense.len(), 4);
    // The unmodified model, asked for its dense pre-activations too.
    let mut model = decode_model(&std::fs::read(&path).expect("model file")).expect("decode");
    let graph = model.graph.as_mut().expect("graph");
    for d in &net.dense {
        graph.output.push(value_info(
            &d.preactivation,
            DataType::Float,
            &[Dim::Named("N"), Dim::Fixed(d.units as i64)],
        ));
    }
    let mut session = engine_runtime_session(&encode(&model));
    let mut original = |x: &[f32]| -> Vec<Vec<f32>> {
        let plane = 240 * 240;
        let nhwc: Vec<f32> = (0..plane * 3).map(|i| x[(i % 3) * plane + i / 3]).collect();
        let input =
            TensorRef::from_array_view(([1usize, 240, 240, 3], nhwc.as_slice())).expect("tensor");
        let out = session.run(ort::inputs!["input" => input]).expect("run");
        net.dense
            .iter()
            .map(|d| {
                out[d.preactivation.as_str()]
                    .try_extract_tensor::<f32>()
                    .expect("output")
                    .1
                    .to_vec()
            })
            .collect()
    };
    let rec = engine
        .record(&sample_image("chelsea.png"), "", ImageLimits::default())
        .expect("record");
    // A little noise breaks the exact ties of flat areas, where max pooling
    // has no gradient for differences to find.
    let x0: Vec<f32> = rec
        .input
        .iter()
        .enumerate()
        .map(|(i, v)| v + ((i * 7919 % 1000) as f32 - 500.0) * 2e-5)
        .collect();
    let want = original(&x0);
    let fc1 = &want[0];
    let strongest = (0..fc1.len()).fold(0, |b, i| if fc1[i] > fc1[b] { i } else { b });
    for (index, unit) in [(0usize, strongest), (3, 0), (3, 3)] {
        let d = &net.dense[index];
        let n = engine
            .ascent_neuron("neuron", &d.name, unit as i64, 0, 0)
            .expect("dense neuron");
        let (pre, grad) = engine.fov_gradient(n, &x0).expect("gradient");
        let expected = want[index][unit];
        assert!(
            (pre - expected).abs() <= 1e-3 * expected.abs().max(1.0),
            "{}/{unit}: {pre} vs {expected}",
            d.name
        );
        // Directional differences along the gradient's signs: small steps
        // that stay within one linear piece.
        let h = 1e-3f32;
        let dir: Vec<f32> = grad.iter().map(|g| g.signum()).collect();
        let mut step = |s: f32| -> f32 {
            let x: Vec<f32> = x0.iter().zip(&dir).map(|(a, b)| a + s * h * b).collect();
            original(&x)[index][unit]
        };
        let fd = (step(1.0) as f64 - step(-1.0) as f64) / (2.0 * h as f64);
        let analytic: f64 = grad.iter().map(|g| g.abs() as f64).sum();
        let rel = (fd - analytic).abs() / analytic;
        eprintln!(
            "{}/{unit}: pre-activation {pre}, directional derivative {fd} vs {analytic} ({rel:e})",
            d.name
        );
        assert!(rel <= 1e-2, "{}/{unit}: {fd} vs {analytic}", d.name);
    }
}
