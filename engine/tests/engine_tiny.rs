//! The engine on the generated tiny model, checked against a plain-loop
//! reference written here (f64 conv, ReLU, first-max pooling, and the four
//! backward modes over the whole image) and against finite differences.

mod common;

use common::reference::Reference;
use common::{TINY_SIZE, engine_with, max_abs, maximize_rising, tiny_engine};
use fovea_engine::Error;
use fovea_engine::engine::Engine;
use fovea_engine::fixtures::{TINY_CONVS, test_image_png, tiny_weights};
use fovea_engine::graphs::transposed::random_weights;
use fovea_engine::model::network::Layout;
use fovea_engine::model::profile::ImageLimits;
use fovea_engine::probe::reconstruct::{Mode, NeuronAt, Start};

fn recorded_input(engine: &Engine) -> (fovea_engine::record::Recording, Vec<f64>) {
    let png = test_image_png(40, 36);
    let rec = engine
        .record(&png, "test", ImageLimits::default())
        .expect("record");
    let input = rec.input.iter().map(|&v| v as f64).collect();
    (rec, input)
}

/// Neurons to probe: the strongest active unit of every layer, plus corner
/// and edge positions of the top layer.
fn probe_neurons(engine: &Engine, rec: &fovea_engine::record::Recording) -> Vec<NeuronAt> {
    let mut out = Vec::new();
    for l in 1..=TINY_CONVS.len() {
        let top = fovea_engine::record::top_activations(rec.layer(l), 1, None, false)[0];
        out.push(NeuronAt {
            layer: l,
            feature: top.feature,
            y: top.y,
            x: top.x,
        });
    }
    let g = engine.geometry[5];
    for (y, x) in [
        (0, 0),
        (0, g.width - 1),
        (g.height - 1, 0),
        (g.height - 1, g.width - 1),
        (0, 3),
        (4, 0),
    ] {
        out.push(NeuronAt {
            layer: 5,
            feature: 1,
            y,
            x,
        });
    }
    out
}

/// The compact recording graph (float16 and flags made by ONNX Runtime,
/// a max pool's own indices) and the f32 one packed in Rust record the same
/// bits, ties included (a flat image makes whole pool windows tie), in both
/// layouts, with strided convolutions, overlapping and average pools,
/// leaky and clipped ReLUs (the ceiling off the mask in both), and
/// residual sums.
#[test]
fn both_recording_graphs_record_the_same() {
    use fovea_engine::fixtures::{
        AVERAGE_SIZE, MOBILE_SIZE, OVERLAPPING_SIZE, RESIDUAL_SIZE, STRIDED_SIZE, average_model,
        leaky_model, mobile_model, overlapping_model, residual_model, strided_model, tiny_model,
    };
    let models = [
        ("nchw", tiny_model(Layout::Nchw, true, TINY_SIZE), TINY_SIZE),
        ("nhwc", tiny_model(Layout::Nhwc, true, TINY_SIZE), TINY_SIZE),
        ("strided", strided_model(true), STRIDED_SIZE),
        ("overlapping", overlapping_model(true), OVERLAPPING_SIZE),
        ("average", average_model(true), AVERAGE_SIZE),
        ("mobile", mobile_model(true), MOBILE_SIZE),
        ("leaky", leaky_model(true, TINY_SIZE), TINY_SIZE),
        ("residual", residual_model(true), RESIDUAL_SIZE),
    ];
    for (what, model, s) in models {
        let name = format!("tiny-both-{what}");
        let compact = engine_with(&model, s, &format!("{name}-c"), Some(true));
        let exact = engine_with(&model, s, &format!("{name}-e"), Some(false));
        let ramp: Vec<f32> = (0..3 * s * s)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        for input in [vec![0.5f32; 3 * s * s], ramp] {
            assert_eq!(compact.network.probe_stop, None, "{what}");
            let a = compact.record_tensor(input.clone()).expect("compact");
            let b = exact.record_tensor(input.clone()).expect("exact");
            assert!(!a.scores.is_empty(), "{what}");
            assert_eq!(a.scores, b.scores, "{what}");
            for (l, (x, y)) in a.layers.iter().zip(&b.layers).enumerate() {
                let bits = |v: &[half::f16]| v.iter().map(|h| h.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&x.activations),
                    bits(&y.activations),
                    "{what} layer {}",
                    l + 1
                );
                assert_eq!(x.mask, y.mask, "{what} layer {}", l + 1);
                assert_eq!(x.switches, y.switches, "{what} layer {}", l + 1);
            }
            assert_eq!(
                compact.forward(&input).expect("forward").activations,
                exact.forward(&input).expect("forward").activations
            );
        }
    }
}

#[test]
fn recording_matches_the_reference_forward() {
    let engine = tiny_engine(Layout::Nchw, true);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let (rec, input) = recorded_input(&engine);
    let pass = engine.forward(&rec.input).expect("forward");
    let trace = reference.forward(&input);
    for (l, (got, pre)) in pass.activations.iter().zip(&trace.pre).enumerate() {
        let want: Vec<f64> = pre.iter().map(|&v| v.max(0.0)).collect();
        let scale = max_abs(&want).max(1e-12);
        let diff = got
            .iter()
            .zip(&want)
            .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
        assert!(
            diff <= 1e-5 * scale,
            "layer {}: max diff {diff} vs scale {scale}",
            l + 1
        );
        // Masks are exactly the sign of the reference pre-activation, except
        // for values within float noise of zero.
        let lr = rec.layer(l + 1);
        for (i, &p) in pre.iter().enumerate() {
            if p.abs() > 1e-4 * scale {
                assert_eq!(lr.mask.get(i), p > 0.0, "layer {} unit {i}", l + 1);
            }
        }
    }
    assert_eq!(pass.scores.len(), fovea_engine::fixtures::TINY_CLASSES);
    assert!((pass.scores.iter().sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn all_four_modes_equal_the_reference_backward() {
    let engine = tiny_engine(Layout::Nchw, false);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let (rec, input) = recorded_input(&engine);
    let trace = reference.forward(&input);
    let trained: Vec<Vec<f64>> = reference.layers.iter().map(|l| l.3.clone()).collect();
    let seed = 42;
    let random: Vec<Vec<f64>> = random_weights(&engine.network.convs, seed)
        .into_iter()
        .map(|w| w.into_iter().map(|v| v as f64).collect())
        .collect();
    let neurons = probe_neurons(&engine, &rec);
    for start in [Start::OneHot, Start::RecordedActivation] {
        let got = engine
            .reconstruct(&rec, &neurons, &Mode::ALL, start, seed)
            .expect("reconstruct");
        assert_eq!(got.len(), neurons.len() * 4);
        let mut worst = 0f64;
        for r in &got {
            let n = neurons[r.neuron_index];
            let value = match start {
                Start::OneHot => 1.0,
                Start::RecordedActivation => {
                    rec.layer(n.layer).activation(n.feature, n.y, n.x) as f64
                }
            };
            let w = if r.mode == Mode::RandomWeights {
                &random
            } else {
                &trained
            };
            let want = reference.backward(&trace, n, r.mode, w, value);
            let scale = max_abs(&want);
            let diff = r
                .values
                .iter()
                .zip(&want)
                .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
            if scale > 0.0 {
                worst = worst.max(diff / scale);
            }
            assert!(
                diff <= 1e-5 * scale.max(1e-30),
                "{:?} {n:?} {start:?}: max diff {diff} vs max {scale}",
                r.mode
            );
        }
        eprintln!("{start:?}: worst relative difference {worst:e}");
    }
}

#[test]
fn fov_restricted_results_equal_full_image_results_and_stay_inside_the_fov() {
    let engine = tiny_engine(Layout::Nchw, false);
    let (rec, _) = recorded_input(&engine);
    let neurons = probe_neurons(&engine, &rec);
    let got = engine
        .reconstruct(&rec, &neurons, &Mode::ALL, Start::OneHot, 1)
        .expect("reconstruct");
    for r in got {
        let b = r.fov;
        for c in 0..3 {
            for y in 0..TINY_SIZE {
                for x in 0..TINY_SIZE {
                    let inside = y >= b.y0 && y < b.y1 && x >= b.x0 && x < b.x1;
                    if !inside {
                        assert_eq!(r.values[(c * TINY_SIZE + y) * TINY_SIZE + x], 0.0);
                    }
                }
            }
        }
    }
}

#[test]
fn linear_filter_is_the_finite_difference_gradient_and_the_affine_identity_holds() {
    let engine = tiny_engine(Layout::Nchw, false);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let (rec, input) = recorded_input(&engine);
    let neurons = probe_neurons(&engine, &rec);
    for &n in &neurons[..5] {
        let r = &engine
            .reconstruct(&rec, &[n], &[Mode::LinearFilter], Start::OneHot, 0)
            .expect("reconstruct")[0];
        let g = engine.geometry[n.layer];
        let preact = |x: &[f64]| {
            reference.forward(x).pre[n.layer - 1][(n.feature * g.height + n.y) * g.width + n.x]
        };
        let eps = 1e-3;
        let (mut num, mut den) = (0f64, 0f64);
        let mut x = input.clone();
        for i in 0..input.len() {
            x[i] = input[i] + eps;
            let up = preact(&x);
            x[i] = input[i] - eps;
            let down = preact(&x);
            x[i] = input[i];
            let fd = (up - down) / (2.0 * eps);
            num += (fd - r.values[i] as f64).powi(2);
            den += fd.powi(2);
        }
        let rel = (num / den.max(1e-30)).sqrt();
        assert!(rel <= 1e-2, "{n:?}: relative error {rel}");
        // pre-activation = <filter, x0> + b_eff
        let dot: f64 = r
            .values
            .iter()
            .zip(&input)
            .map(|(&a, &b)| a as f64 * b)
            .sum();
        let b = engine.effective_bias(&rec, &[n]).expect("effective bias")[0] as f64;
        let want = preact(&input);
        assert!(
            (dot + b - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{n:?}: {dot} + {b} != {want}"
        );
    }
}

#[test]
fn nhwc_and_nchw_exports_agree() {
    let a = tiny_engine(Layout::Nchw, true);
    let b = tiny_engine(Layout::Nhwc, true);
    let png = test_image_png(50, 30);
    let ra = a.record(&png, "", ImageLimits::default()).expect("record");
    let rb = b.record(&png, "", ImageLimits::default()).expect("record");
    for (la, lb) in ra.layers.iter().zip(&rb.layers) {
        assert_eq!(la.mask, lb.mask);
        assert_eq!(la.switches, lb.switches);
        for (x, y) in la.activations.iter().zip(&lb.activations) {
            assert!((x.to_f32() - y.to_f32()).abs() <= 1e-3 * x.to_f32().abs().max(1e-3));
        }
    }
    for (x, y) in ra.scores.iter().zip(&rb.scores) {
        assert!((x - y).abs() < 1e-5);
    }
    let neurons = probe_neurons(&a, &ra);
    let xa = a
        .reconstruct(&ra, &neurons, &Mode::ALL, Start::OneHot, 3)
        .expect("a");
    let xb = b
        .reconstruct(&rb, &neurons, &Mode::ALL, Start::OneHot, 3)
        .expect("b");
    for (p, q) in xa.iter().zip(&xb) {
        let scale = p.values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = p
            .values
            .iter()
            .zip(&q.values)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-4 * scale.max(1e-30), "{:?}: {diff}", p.mode);
    }
}

#[test]
fn random_weights_match_layer_statistics_and_are_seeded() {
    let engine = tiny_engine(Layout::Nchw, false);
    let convs = &engine.network.convs;
    let a = random_weights(convs, 5);
    let b = random_weights(convs, 5);
    let c = random_weights(convs, 6);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // (Mean and std against the trained layers are checked on the real
    // VGG-16, whose layers are large enough for sampling noise to be small.)
    // Different seeds give different reconstructions; the same seed the same.
    let (rec, _) = recorded_input(&engine);
    let n = probe_neurons(&engine, &rec)[4];
    let r1 = engine
        .reconstruct(&rec, &[n], &[Mode::RandomWeights], Start::OneHot, 5)
        .expect("r1");
    let r2 = engine
        .reconstruct(&rec, &[n], &[Mode::RandomWeights], Start::OneHot, 5)
        .expect("r2");
    let r3 = engine
        .reconstruct(&rec, &[n], &[Mode::RandomWeights], Start::OneHot, 6)
        .expect("r3");
    assert_eq!(r1[0].values, r2[0].values);
    assert_ne!(r1[0].values, r3[0].values);
}

#[test]
fn bad_requests_are_typed_errors() {
    let engine = tiny_engine(Layout::Nchw, false);
    let invalid = |r: Result<NeuronAt, Error>, field: &str| match r {
        Err(Error::InvalidArgument { field: f, message }) => {
            assert_eq!(f, field, "{message}");
        }
        other => panic!("expected InvalidArgument on {field}, got {other:?}"),
    };
    invalid(engine.neuron("neuron", "0", 0, 0, 0), "neuron.layer");
    invalid(engine.neuron("neuron", "14", 0, 0, 0), "neuron.layer");
    invalid(engine.neuron("neuron", "conv9_9", 0, 0, 0), "neuron.layer");
    invalid(engine.neuron("neuron", "1", -1, 0, 0), "neuron.feature");
    invalid(engine.neuron("neuron", "1", 4, 0, 0), "neuron.feature");
    invalid(engine.neuron("neuron", "conv3_1", 0, 8, 0), "neuron.y");
    invalid(engine.neuron("neuron", "5", 0, 0, -2), "neuron.x");
    assert!(engine.neuron("neuron", "conv3_1", 7, 7, 7).is_ok());
    // A tensor with the wrong channel count.
    assert!(matches!(
        engine.forward(&vec![0.0; 4 * TINY_SIZE * TINY_SIZE]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        engine.record(b"garbage", "", ImageLimits::default()),
        Err(Error::BadImage(_))
    ));
}

#[test]
fn fov_gradient_equals_the_full_image_linear_filter_everywhere() {
    let engine = tiny_engine(Layout::Nchw, false);
    let (rec, _) = recorded_input(&engine);
    let pass = engine.forward(&rec.input).expect("forward");
    for n in probe_neurons(&engine, &rec) {
        let (pre, grad) = engine.fov_gradient(n, &rec.input).expect("gradient");
        let filter = &engine
            .reconstruct(&rec, &[n], &[Mode::LinearFilter], Start::OneHot, 0)
            .expect("filter")[0];
        let scale = filter.values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = grad
            .iter()
            .zip(&filter.values)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-5 * scale.max(1e-30), "{n:?}: {diff} vs {scale}");
        let g = engine.geometry[n.layer];
        let act = pass.activations[n.layer - 1][(n.feature * g.height + n.y) * g.width + n.x];
        if act > 0.0 {
            assert!(
                (pre - act).abs() <= 1e-4 * act.abs().max(1.0),
                "{pre} vs {act}"
            );
        }
    }
}

#[test]
fn maximization_raises_the_neuron_deterministically_and_cancels() {
    use fovea_engine::probe::maximize::MaximizeOptions;
    let engine = tiny_engine(Layout::Nchw, false);
    let n = NeuronAt {
        layer: 5,
        feature: 2,
        y: 3,
        x: 4,
    };
    let opts = MaximizeOptions {
        starts: 3,
        steps: 40,
        seed: 7,
        ..Default::default()
    };
    let out = maximize_rising(&engine, n, &opts);
    assert_eq!(out.images.len(), 3);
    assert_ne!(
        out.images[0], out.images[1],
        "different starts give different images"
    );
    let again = engine.maximize(n, &opts, |_| true).expect("again");
    assert_eq!(again.images, out.images);
    // Outside the FOV the image stays at zero (the mean colour).
    let b = out.fov;
    for y in 0..TINY_SIZE {
        for x in 0..TINY_SIZE {
            if !(y >= b.y0 && y < b.y1 && x >= b.x0 && x < b.x1) {
                assert_eq!(out.images[0][y * TINY_SIZE + x], 0.0);
            }
        }
    }
    let mut calls = 0;
    let cancelled = engine.maximize(n, &opts, |p| {
        calls += 1;
        p.step < 3
    });
    assert!(matches!(cancelled, Err(Error::Cancelled)));
    assert_eq!(calls, 3);
}

/// The tiny model's head in f64, with the weights read from the model file:
/// max pool, flatten (NCHW), fc1 + ReLU, fc2 (class logits).
struct ReferenceHead {
    fc: Vec<(Vec<f64>, Vec<f64>, usize)>,
}

impl ReferenceHead {
    fn from_tiny_model() -> ReferenceHead {
        let bytes = fovea_engine::fixtures::tiny_model(Layout::Nchw, true, TINY_SIZE);
        let model = fovea_onnx::decode_model(&bytes).expect("model");
        let graph = model.graph.expect("graph");
        let tensor = |name: &str| -> (Vec<i64>, Vec<f64>) {
            let t = graph
                .initializer
                .iter()
                .find(|t| t.name == name)
                .expect(name);
            let (dims, v) = fovea_onnx::tensor_f32(t).expect("tensor");
            (dims, v.iter().map(|&x| x as f64).collect())
        };
        let fc = ["fc1", "fc2"]
            .iter()
            .map(|l| {
                let (dims, w) = tensor(&format!("{l}.weight"));
                let (_, b) = tensor(&format!("{l}.bias"));
                (w, b, dims[1] as usize)
            })
            .collect();
        ReferenceHead { fc }
    }

    /// Pre-activations of every dense layer, from the last conv layer's.
    fn forward(&self, last_pre: &[f64], channels: usize, h: usize, w: usize) -> Vec<Vec<f64>> {
        let (oh, ow) = (h / 2, w / 2);
        let mut x = vec![0f64; channels * oh * ow];
        for c in 0..channels {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut m = f64::MIN;
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        m = m.max(last_pre[(c * h + 2 * y + dy) * w + 2 * xx + dx].max(0.0));
                    }
                    x[(c * oh + y) * ow + xx] = m;
                }
            }
        }
        let mut out = Vec::new();
        for (k, (wt, b, inputs)) in self.fc.iter().enumerate() {
            let pre: Vec<f64> = b
                .iter()
                .enumerate()
                .map(|(o, bo)| bo + (0..*inputs).map(|i| wt[o * inputs + i] * x[i]).sum::<f64>())
                .collect();
            if k + 1 < self.fc.len() {
                x = pre.iter().map(|&v| v.max(0.0)).collect();
            }
            out.push(pre);
        }
        out
    }
}

#[test]
fn dense_gradients_are_finite_differences_and_the_logits_give_the_scores() {
    let engine = tiny_engine(Layout::Nchw, true);
    assert!(engine.head_enabled);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let head = ReferenceHead::from_tiny_model();
    let (_, input) = recorded_input(&engine);
    // A little noise breaks the exact ties of the image's flat areas, where
    // max pooling has no gradient for finite differences to find.
    let input: Vec<f64> = input
        .iter()
        .enumerate()
        .map(|(i, v)| v + ((i * 7919 % 1000) as f64 - 500.0) * 1e-4)
        .collect();
    let x0: Vec<f32> = input.iter().map(|&v| v as f32).collect();
    let last = TINY_CONVS.len();
    let channels = TINY_CONVS[last - 1].1;
    let dense_pre = |x: &[f64]| {
        let t = reference.forward(x);
        let (h, w) = t.dims[last - 1];
        head.forward(&t.pre[last - 1], channels, h, w)
    };
    let want = dense_pre(&input);
    // Every class logit, then two fc1 units (the strongest and the weakest).
    let fc1 = &want[0];
    let strongest = (0..fc1.len()).fold(0, |b, i| if fc1[i] > fc1[b] { i } else { b });
    let weakest = (0..fc1.len()).fold(0, |b, i| if fc1[i] < fc1[b] { i } else { b });
    let mut logits = Vec::new();
    let mut neurons = Vec::new();
    for class in 0..fovea_engine::fixtures::TINY_CLASSES {
        neurons.push((1, class, "fc2".to_string()));
    }
    neurons.push((0, strongest, (last + 1).to_string()));
    neurons.push((0, weakest, "fc1".to_string()));
    for (k, (dense, unit, layer)) in neurons.into_iter().enumerate() {
        let n = engine
            .ascent_neuron("neuron", &layer, unit as i64, 0, 0)
            .expect("dense neuron");
        assert_eq!(n.layer, last + 1 + dense);
        assert_eq!(engine.fov_window(n), (TINY_SIZE, TINY_SIZE));
        let (pre, grad) = engine.fov_gradient(n, &x0).expect("gradient");
        let expected = want[dense][unit];
        assert!(
            (pre as f64 - expected).abs() <= 1e-4 * expected.abs().max(1.0),
            "{layer}/{unit}: {pre} vs {expected}"
        );
        if dense == 1 {
            logits.push(pre);
        }
        // Central differences over every input value (all of them for one
        // class, a stride of them for the rest to keep the test quick).
        let stride = if k == 0 { 1 } else { 7 };
        let eps = 1e-3;
        let (mut num, mut den) = (0f64, 0f64);
        let mut x = input.clone();
        for i in (0..input.len()).step_by(stride) {
            x[i] = input[i] + eps;
            let up = dense_pre(&x)[dense][unit];
            x[i] = input[i] - eps;
            let down = dense_pre(&x)[dense][unit];
            x[i] = input[i];
            let fd = (up - down) / (2.0 * eps);
            num += (fd - grad[i] as f64).powi(2);
            den += fd.powi(2);
        }
        let rel = (num / den.max(1e-30)).sqrt();
        assert!(den > 0.0, "{layer}/{unit}: the gradient is zero");
        assert!(rel <= 1e-2, "{layer}/{unit}: relative error {rel}");
    }
    // Softmax of the logits is what ONNX Runtime gives running the file.
    let m = logits.iter().fold(f32::MIN, |a, &b| a.max(b));
    let total: f32 = logits.iter().map(|&l| (l - m).exp()).sum();
    let scores = engine.forward(&x0).expect("forward").scores;
    assert_eq!(scores.len(), logits.len());
    for (l, s) in logits.iter().zip(&scores) {
        let p = (l - m).exp() / total;
        assert!((p - s).abs() <= 1e-5, "{p} vs {s}");
    }
}

#[test]
fn class_neurons_are_maximized_over_the_whole_image() {
    use fovea_engine::probe::maximize::MaximizeOptions;
    let engine = tiny_engine(Layout::Nhwc, true);
    let n = engine
        .ascent_neuron("neuron", "fc2", 3, 0, 0)
        .expect("class neuron");
    let opts = MaximizeOptions {
        starts: 2,
        steps: 30,
        seed: 3,
        ..Default::default()
    };
    let out = maximize_rising(&engine, n, &opts);
    assert_eq!(
        (out.fov.x0, out.fov.y0, out.fov.x1, out.fov.y1),
        (0, 0, TINY_SIZE, TINY_SIZE)
    );
    // The class's score rises with its logit (the file's own softmax).
    let before = engine
        .forward(&vec![0.0; 3 * TINY_SIZE * TINY_SIZE])
        .expect("forward")
        .scores[3];
    let after = engine.forward(&out.images[0]).expect("forward").scores[3];
    assert!(after > before, "score {before} -> {after}");
    assert_eq!(
        engine.maximize(n, &opts, |_| true).expect("again").images,
        out.images
    );

    // Out of range, and a head that does not run at the working size.
    let bad = engine.ascent_neuron("neuron", "fc2", 5, 0, 0).unwrap_err();
    assert!(bad.to_string().contains("neuron.feature"), "{bad}");
    let headless = tiny_engine(Layout::Nchw, false);
    assert!(headless.ascent_neuron("neuron", "fc1", 0, 0, 0).is_err());
}

/// A small VGG-like model whose head uses every op the dense gradient has a
/// rule for: Transpose, Reshape, MatMul + Add, BatchNormalization, Relu, Div
/// and Sub by constants, Gemm (transB = 0, alpha), then Softmax. Its dense
/// pre-activations are graph outputs too, for finite differences. With
/// `first`, a 1x1 pool of that op (AveragePool, as torchvision writes its
/// adaptive pool; MaxPool, a head op without a rule) comes first.
fn rich_head_model(size: usize, first: Option<&str>) -> Vec<u8> {
    use fovea_onnx::proto::tensor_proto::DataType;
    use fovea_onnx::{Attr, Dim, GraphBuilder, encode, f32_tensor, i64_tensor};
    let mut seed = 1u32;
    let mut next = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let mut sample = |n: usize, scale: f32| (0..n).map(|_| next() * scale).collect::<Vec<f32>>();
    let mut g = GraphBuilder::new("rich_head");
    let dims = [
        Dim::Named("N"),
        Dim::Fixed(3),
        Dim::Fixed(size as i64),
        Dim::Fixed(size as i64),
    ];
    let mut x = g.input("input", DataType::Float, &dims);
    for (k, (i, o)) in [(3usize, 4usize), (4, 4)].into_iter().enumerate() {
        let w = g.initializer(f32_tensor(
            &format!("w{k}"),
            &[o as i64, i as i64, 3, 3],
            &sample(o * i * 9, 1.0),
        ));
        let b = g.initializer(f32_tensor(&format!("b{k}"), &[o as i64], &sample(o, 0.2)));
        let c = g.node(
            "Conv",
            &[&x, &w, &b],
            vec![
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
            ],
        );
        let r = g.node("Relu", &[&c], vec![]);
        x = g.node(
            "MaxPool",
            &[&r],
            vec![
                ("kernel_shape", Attr::Ints(vec![2, 2])),
                ("strides", Attr::Ints(vec![2, 2])),
            ],
        );
    }
    if let Some(op) = first {
        x = g.node(op, &[&x], vec![("kernel_shape", Attr::Ints(vec![1, 1]))]);
    }
    let features = 4 * (size / 4) * (size / 4);
    let t = g.node(
        "Transpose",
        &[&x],
        vec![("perm", Attr::Ints(vec![0, 2, 3, 1]))],
    );
    let shape = g.initializer(i64_tensor("flat", &[2], &[-1, features as i64]));
    let flat = g.node("Reshape", &[&t, &shape], vec![]);
    let w1 = g.initializer(f32_tensor(
        "fc1.w",
        &[features as i64, 6],
        &sample(features * 6, 0.5),
    ));
    let b1 = g.initializer(f32_tensor("fc1.b", &[6], &sample(6, 0.5)));
    let m = g.node("MatMul", &[&flat, &w1], vec![]);
    g.node_named("Add", &[&m, &b1], "fc1_pre", vec![]);
    let bn: Vec<String> = ["scale", "bias", "mean"]
        .iter()
        .map(|n| g.initializer(f32_tensor(&format!("bn.{n}"), &[6], &sample(6, 2.0))))
        .collect();
    let var = g.initializer(f32_tensor("bn.var", &[6], &[0.5, 1.0, 2.0, 0.25, 3.0, 1.5]));
    let h = g.node(
        "BatchNormalization",
        &["fc1_pre", &bn[0], &bn[1], &bn[2], &var],
        vec![("epsilon", Attr::Float(1e-3))],
    );
    let h = g.node("Relu", &[&h], vec![]);
    let two = g.initializer(f32_tensor("two", &[], &[2.0]));
    let h = g.node("Div", &[&h, &two], vec![]);
    let shift = g.initializer(f32_tensor("shift", &[6], &sample(6, 1.0)));
    let h = g.node("Sub", &[&shift, &h], vec![]);
    let w2 = g.initializer(f32_tensor("fc2.w", &[6, 3], &sample(18, 1.0)));
    let b2 = g.initializer(f32_tensor("fc2.b", &[3], &sample(3, 1.0)));
    g.node_named(
        "Gemm",
        &[&h, &w2, &b2],
        "fc2_pre",
        vec![("alpha", Attr::Float(0.5))],
    );
    g.node_named(
        "Softmax",
        &["fc2_pre"],
        "probs",
        vec![("axis", Attr::Int(1))],
    );
    for (name, n) in [("probs", 3), ("fc1_pre", 6), ("fc2_pre", 3)] {
        g.output(name, DataType::Float, &[Dim::Named("N"), Dim::Fixed(n)]);
    }
    encode(&g.finish())
}

#[test]
fn every_head_rule_gives_the_finite_difference_gradient() {
    for first in [None, Some("AveragePool")] {
        head_rules_give_the_finite_difference_gradient(first);
    }
}

fn head_rules_give_the_finite_difference_gradient(first: Option<&str>) {
    use ort::value::TensorRef;
    let size = 16;
    let bytes = rich_head_model(size, first);
    let engine = common::engine_of(
        &bytes,
        size,
        &format!("rich-head-{}", first.unwrap_or("none")),
    );
    assert!(engine.head_enabled);
    assert_eq!(engine.network.dense.len(), 2);
    let mut original = common::runtime().session(&bytes).expect("session");
    let mut dense_pre = |x: &[f32]| -> [Vec<f32>; 2] {
        let t = TensorRef::from_array_view(([1usize, 3, size, size], x)).expect("tensor");
        let out = original.run(ort::inputs!["input" => t]).expect("run");
        ["fc1_pre", "fc2_pre"].map(|name| {
            out[name]
                .try_extract_tensor::<f32>()
                .expect("output")
                .1
                .to_vec()
        })
    };
    // Continuous values: no ties for the pools.
    let x0: Vec<f32> = (0..3 * size * size)
        .map(|i| ((i * 7919 % 997) as f32 / 997.0 - 0.5) * 3.0)
        .collect();
    let want = dense_pre(&x0);
    let mut checked = 0;
    for (index, layer) in ["fc1", "fc2"].into_iter().enumerate() {
        for (unit, &expected) in want[index].iter().enumerate() {
            let n = engine
                .ascent_neuron("neuron", layer, unit as i64, 0, 0)
                .expect("dense neuron");
            let (pre, grad) = engine.fov_gradient(n, &x0).expect("gradient");
            assert!(
                (pre - expected).abs() <= 1e-4 * expected.abs().max(1.0),
                "{layer}/{unit}: {pre} vs {expected}"
            );
            let eps = 1e-2f32;
            let (mut num, mut den) = (0f64, 0f64);
            let mut x = x0.clone();
            for i in 0..x0.len() {
                x[i] = x0[i] + eps;
                let up = dense_pre(&x)[index][unit];
                x[i] = x0[i] - eps;
                let down = dense_pre(&x)[index][unit];
                x[i] = x0[i];
                let fd = (up as f64 - down as f64) / (2.0 * eps as f64);
                num += (fd - grad[i] as f64).powi(2);
                den += fd.powi(2);
            }
            let rel = (num / den.max(1e-30)).sqrt();
            // A unit whose ReLU is shut for this input has no gradient.
            if den > 0.0 {
                assert!(rel <= 1e-2, "{layer}/{unit}: relative error {rel}");
                checked += 1;
            } else {
                assert!(grad.iter().all(|&v| v == 0.0), "{layer}/{unit}");
            }
        }
    }
    assert_eq!(checked, 9, "every unit has a gradient at this input");
}

#[test]
fn a_head_op_without_a_gradient_rule_is_refused_by_name() {
    let size = 16;
    let engine = common::engine_of(
        &rich_head_model(size, Some("MaxPool")),
        size,
        "maxpool-head",
    );
    let n = engine
        .ascent_neuron("neuron", "fc2", 0, 0, 0)
        .expect("the neuron itself is valid");
    match engine.fov_gradient(n, &vec![0.0; 3 * size * size]) {
        Err(Error::Unsupported(why)) => assert!(why.contains("MaxPool"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // Conv neurons of the same model are unaffected.
    let conv = engine.ascent_neuron("neuron", "2", 1, 3, 3).expect("conv");
    assert!(
        engine
            .fov_gradient(conv, &vec![0.5; 3 * size * size])
            .is_ok()
    );
}
