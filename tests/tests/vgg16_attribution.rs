//! Class attribution on the real VGG-16 (its trained tumour-classification
//! head is a real dense head) against an implementation that shares no code
//! with Fovea: numpy in float64 runs the model file's graph node by node
//! and goes back from a logit by hand-written rules
//! (`tests/python/vgg16_backward.py`). The venv (numpy and onnx, about 130
//! MB) is made in the user cache on the first run, in about half a minute.

use fovea_engine::engine::{Engine, EngineOptions};
use fovea_engine::model::profile::ImageLimits;
use fovea_engine::paths::cache_dir;
use fovea_engine::probe::attribute::{AttributeRequest, Baseline, Method};
use fovea_engine::runtime::Runtime;
use fovea_engine::stop::Stop;
use fovea_engine::supply::{ExecutionProvider, ModelSource, resolve_model, resolve_ort_library};
use fovea_tests::{python_venv, sample_image};
use std::path::Path;

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("reference output")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn class_saliency_and_guided_backprop_equal_an_independent_numpy_reference() {
    let venv = python_venv("reference", &["numpy", "onnx"], "import numpy, onnx");
    let lib =
        resolve_ort_library(None, ExecutionProvider::Cpu, &cache_dir()).expect("ONNX Runtime");
    let runtime = Runtime::new(&lib, ExecutionProvider::Cpu, 2).expect("runtime");
    let (path, provenance) =
        resolve_model("vgg16", ModelSource::Package, &cache_dir()).expect("VGG-16");
    let engine =
        Engine::load(runtime, &path, provenance, &EngineOptions::default()).expect("engine");
    let size = engine.profile.input_size;
    let image = std::fs::read(sample_image("chelsea.png")).expect("image");
    let rec = engine
        .record(&image, "chelsea", ImageLimits::default())
        .expect("record");
    let dir = tempfile::tempdir().expect("tempdir");
    // The model's own input layout (NHWC for this file).
    let (shape, laid_out) = engine.model_layout(&rec.input);
    assert_eq!(shape, [1, size, size, 3]);
    let input = dir.path().join("input.f32");
    let bytes: Vec<u8> = laid_out.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).expect("input");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/vgg16_backward.py");
    let classes = engine.network.dense.last().expect("a head").units;
    for class in [0, classes - 1] {
        let prefix = dir.path().join(format!("class{class}"));
        let out = std::process::Command::new(venv.join("bin/python"))
            .arg(&script)
            .arg(&path)
            .arg(&input)
            .arg(size.to_string())
            .arg(class.to_string())
            .arg(&prefix)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let logit: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .strip_prefix("logit ")
            .and_then(|v| v.parse().ok())
            .expect("the reference's logit");
        let target = engine
            .dense_neuron(&(13 + engine.network.dense.len()).to_string(), class as i64)
            .expect("class neuron");
        for (method, rule) in [(Method::Saliency, "saliency"), (Method::Guided, "guided")] {
            let req = AttributeRequest {
                target,
                method,
                cam_layer: None,
                steps: 1,
                baseline: Baseline::Black,
            };
            let got = engine
                .attribute(&rec, &req, &Stop::never(), |_, _| {})
                .expect("attribute");
            assert!(
                (got.objective as f64 - logit).abs() <= 1e-4 * logit.abs().max(1.0),
                "class {class}: logit {} vs {logit}",
                got.objective
            );
            let want = read_f32(&prefix.with_extension(format!("{rule}.f32")));
            assert_eq!(got.values.len(), want.len());
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = got
                .values
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let norm = |v: &mut dyn Iterator<Item = f32>| {
                v.map(|x| (x as f64).powi(2)).sum::<f64>().sqrt()
            };
            let l2 = norm(&mut got.values.iter().zip(&want).map(|(a, b)| a - b))
                / norm(&mut want.iter().copied());
            eprintln!(
                "class {class} {rule}: relative L2 difference {l2:e}; max difference {diff:e} of {scale:e}"
            );
            assert!(scale > 0.0, "class {class} {rule}: an all-zero reference");
            // Float32 against float64 through 13 convolutions and the
            // head. The gradient's signed sums cancel, so rounding shows:
            // the same numpy rules run in float32 differ from float64 by up
            // to 4.9e-4 (relative L2) and 2e-3 of the largest value, and
            // ONNX Runtime's kernels round in another order (on AVX-512
            // CPUs 5.6e-4 and 5.6e-3, a ReLU within rounding of zero taking
            // the other side). Guided backprop's positive sums agree to
            // about 1e-4.
            assert!(l2 <= 1.5e-3, "class {class} {rule}: relative L2 {l2}");
            assert!(
                diff <= 1e-2 * scale,
                "class {class} {rule}: max difference {diff} vs max {scale}"
            );
        }
    }
}
