//! Shared set-up for the engine tests: ONNX Runtime from the cache (fetched
//! on first use) and engines on the generated tiny model.

#![allow(dead_code)]

use fovea_engine::engine::{Engine, EngineOptions};
use fovea_engine::fixtures::tiny_model;
use fovea_engine::model::network::Layout;
use fovea_engine::model::profile::ProfileName;
use fovea_engine::paths::cache_dir;
use fovea_engine::probe::reconstruct::NeuronAt;
use fovea_engine::runtime::Runtime;
use fovea_engine::supply::{ExecutionProvider, Provenance, resolve_ort_library};
use std::path::PathBuf;

pub mod reference;

pub const TINY_SIZE: usize = 32;

pub fn runtime() -> std::sync::Arc<Runtime> {
    let lib =
        resolve_ort_library(None, ExecutionProvider::Cpu, &cache_dir()).expect("ONNX Runtime");
    Runtime::new(&lib, ExecutionProvider::Cpu, 2).expect("runtime")
}

pub fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    (dir, path)
}

pub fn tiny_engine(layout: Layout, head: bool) -> Engine {
    engine_of(
        &tiny_model(layout, head, TINY_SIZE),
        TINY_SIZE,
        &format!("tiny-{layout:?}-{head}"),
    )
}

/// An engine on a generated model at `size` x `size` (torchvision
/// preprocessing). The file is kept: the engine re-reads it for
/// full-precision passes and for graphs built later.
pub fn engine_of(model: &[u8], size: usize, name: &str) -> Engine {
    engine_with(model, size, name, None)
}

/// [`engine_of`] with the recording graph chosen (`None`: by provider).
pub fn engine_with(model: &[u8], size: usize, name: &str, compact: Option<bool>) -> Engine {
    let (dir, path) = write_temp(model, &format!("{name}.onnx"));
    let _kept = dir.keep();
    let options = EngineOptions {
        input_size: size,
        profile: Some(ProfileName::Torchvision),
        compact_recording: compact,
        ..Default::default()
    };
    let provenance = Provenance {
        source: "file".into(),
        origin: name.into(),
        path: path.clone(),
        sha256: name.into(),
        ..Default::default()
    };
    Engine::load(runtime(), &path, provenance, &options).expect("engine")
}

/// A sample image shipped in the repository's `samples/` folder.
pub fn sample_image(name: &str) -> Vec<u8> {
    let path = fovea_samples::source_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The backward weights of the four modes as f64: the reference's trained
/// convs and the engine's random ones for `seed` (drawn from its conv
/// layers), the tiny head's trained dense layers and their random
/// replacements (the engine's streams 1000 + layer).
pub struct ModeWeights {
    pub convs: Vec<Vec<f64>>,
    pub random_convs: Vec<Vec<f64>>,
    pub head: Vec<Vec<f64>>,
    pub random_head: Vec<Vec<f64>>,
}

impl ModeWeights {
    /// The weights of the tiny model with its head.
    pub fn new(engine: &Engine, reference: &reference::Reference, seed: u64) -> ModeWeights {
        let head = fovea_engine::fixtures::tiny_head_weights(TINY_SIZE);
        ModeWeights::with_head(engine, reference, &head, seed)
    }

    pub fn with_head(
        engine: &Engine,
        reference: &reference::Reference,
        head: &[(Vec<f32>, Vec<f32>); 2],
        seed: u64,
    ) -> ModeWeights {
        use fovea_engine::graphs::transposed::{random_like, random_shortcuts, random_weights};
        let f64s = |v: Vec<f32>| v.into_iter().map(|x| x as f64).collect::<Vec<f64>>();
        let convs = &engine.network.convs;
        let shortcuts = random_shortcuts(convs, seed)
            .into_iter()
            .map(Option::unwrap_or_default);
        ModeWeights {
            convs: reference.kernels(),
            random_convs: random_weights(convs, seed)
                .into_iter()
                .chain(shortcuts)
                .map(f64s)
                .collect(),
            head: head.iter().map(|(w, _)| f64s(w.clone())).collect(),
            random_head: head
                .iter()
                .enumerate()
                .map(|(k, (w, _))| f64s(random_like(w, seed, 1000 + k as u64)))
                .collect(),
        }
    }

    /// (conv, head) weights the backward pass of `mode` uses.
    pub fn of(&self, mode: fovea_engine::probe::reconstruct::Mode) -> (&[Vec<f64>], &[Vec<f64>]) {
        match mode {
            fovea_engine::probe::reconstruct::Mode::RandomWeights => {
                (&self.random_convs, &self.random_head)
            }
            _ => (&self.convs, &self.head),
        }
    }
}

/// All four modes from `neurons` (one-hot start at the pre-activation,
/// with the effective bias), for `seed`'s random weights.
pub fn reconstruct_all_modes(
    engine: &Engine,
    rec: &fovea_engine::record::Recording,
    neurons: &[fovea_engine::probe::reconstruct::NeuronAt],
    seed: u64,
) -> Vec<fovea_engine::probe::reconstruct::Reconstruction> {
    use fovea_engine::probe::reconstruct::{Mode, ReconstructRequest, Start};
    let req = ReconstructRequest {
        neurons: neurons.to_vec(),
        modes: Mode::ALL.to_vec(),
        start: Start::OneHot,
        seed,
        effective_bias: true,
        through_relu: false,
    };
    let got = engine
        .reconstruct_request(rec, &req, &fovea_engine::stop::Stop::never())
        .expect("reconstruct");
    assert_eq!(got.len(), neurons.len() * 4);
    got
}

/// The 40x36 test picture recorded, and its input tensor as f64 for the
/// reference.
pub fn record_test_image(engine: &Engine) -> (fovea_engine::record::Recording, Vec<f64>) {
    let rec = engine
        .record(
            &fovea_engine::fixtures::test_image_png(40, 36),
            "test",
            fovea_engine::model::profile::ImageLimits::default(),
        )
        .expect("record");
    let input = rec.input.iter().map(|&v| v as f64).collect();
    (rec, input)
}

/// Each sample's value against `value`, and its gradient against central
/// differences of `value` at every `stride`-th input of a batch of `[3,
/// plane]` samples (a unit turning within the differences' step spoils one
/// of them; not more than two).
pub fn check_samples(
    value: impl Fn(&[f64]) -> f64,
    batch: &[f32],
    values: &[f32],
    grad: &[f32],
    (plane, stride): (usize, usize),
) {
    for (k, &got) in values.iter().enumerate() {
        let x: Vec<f64> = batch[k * 3 * plane..(k + 1) * 3 * plane]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let want = value(&x);
        assert!(
            (got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
            "sample {k}: {got} vs {want}"
        );
        let mut straddling = 0;
        for i in (0..3 * plane).step_by(stride) {
            let h = 1e-4;
            let at = |d: f64| {
                let mut y = x.clone();
                y[i] += d;
                value(&y)
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let g = grad[k * 3 * plane + i] as f64;
            if (fd - g).abs() > 1e-3 * fd.abs().max(1e-2) {
                straddling += 1;
            }
        }
        assert!(straddling <= 2, "sample {k}: {straddling} gradients differ");
    }
}

/// Bias-free conv weights with their batch norms (scale, shift, mean,
/// variance; epsilon `TINY_BN_EPSILON`) folded in, in f64: `w * k` and
/// `shift - mean * k` with `k = scale / sqrt(var + eps)`.
pub fn folded(
    weights: Vec<(Vec<f32>, Vec<f32>)>,
    norms: Vec<[Vec<f32>; 4]>,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    let eps = fovea_engine::fixtures::TINY_BN_EPSILON as f64;
    weights
        .into_iter()
        .zip(norms)
        .map(|((w, _), [scale, shift, mean, var])| {
            let out = scale.len();
            let per = w.len() / out;
            let k: Vec<f64> = (0..out)
                .map(|o| scale[o] as f64 / (var[o] as f64 + eps).sqrt())
                .collect();
            let w = w
                .iter()
                .enumerate()
                .map(|(i, &v)| (v as f64 * k[i / per]) as f32)
                .collect();
            let b = (0..out)
                .map(|o| (shift[o] as f64 - mean[o] as f64 * k[o]) as f32)
                .collect();
            (w, b)
        })
        .collect()
}

/// The largest magnitude in `v`.
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// The largest difference between `got` and the reference `want`.
pub fn max_diff(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()))
}

/// The linear identity of a linear-filter reconstruction: the neuron's
/// pre-activation `pre` equals `<filter, input> + effective bias`.
pub fn assert_linear_identity(
    r: &fovea_engine::probe::reconstruct::Reconstruction,
    input: &[f64],
    pre: f64,
) {
    let dot: f64 = r
        .values
        .iter()
        .zip(input)
        .map(|(&a, &b)| a as f64 * b)
        .sum();
    let b = r.effective_bias.expect("effective bias") as f64;
    assert!(
        (dot + b - pre).abs() <= 1e-5 * pre.abs().max(1.0),
        "neuron {}: {dot} + {b} != {pre}",
        r.neuron_index
    );
}

/// The engine's forward pass at `rec`'s input against the reference's
/// `trace` (activations to 1e-5 relative), and the recorded ReLU masks
/// against the reference's signs away from zero. Returns the number of
/// active units per layer.
pub fn assert_forward_is_the_references(
    engine: &Engine,
    rec: &fovea_engine::record::Recording,
    trace: &reference::Trace,
) -> Vec<usize> {
    let pass = engine.forward(&rec.input).expect("forward");
    let mut active = Vec::new();
    for (l, (got, pre)) in pass.activations.iter().zip(&trace.pre).enumerate() {
        let act = engine.network.convs[l].activation;
        let want: Vec<f64> = pre.iter().map(|&v| reference::activate(act, v)).collect();
        // Rounding grows with the pre-activations, which a ceiling hides.
        let scale = match act {
            fovea_engine::model::network::Activation::Clip(_) => max_abs(pre),
            _ => max_abs(&want),
        };
        let diff = max_diff(got, &want);
        assert!(diff <= 1e-5 * scale, "layer {}: {diff} of {scale}", l + 1);
        let lr = rec.layer(l + 1);
        let ceiling = match act {
            fovea_engine::model::network::Activation::Clip(c) => c as f64,
            _ => f64::INFINITY,
        };
        let mut on = 0;
        for (i, &p) in pre.iter().enumerate() {
            let margin = 1e-4 * scale;
            if p.abs() > margin && (p - ceiling).abs() > margin {
                let want_on = p > 0.0 && p < ceiling;
                assert_eq!(lr.mask.get(i), want_on, "layer {} unit {i}", l + 1);
                on += usize::from(want_on);
            }
        }
        active.push(on);
    }
    assert_eq!(active.len(), trace.pre.len());
    active
}

/// All four modes from `conv_neurons` and from every class neuron of a
/// model with a two-layer dense head, with trained and `seed`'s random
/// weights (`head` the head's weights), against the reference; the linear
/// filters keep the linear identity. Returns the worst relative difference.
pub fn assert_all_modes_are_the_references(
    engine: &Engine,
    (rec, input): (&fovea_engine::record::Recording, &[f64]),
    reference: &reference::Reference,
    head: &[(Vec<f32>, Vec<f32>); 2],
    mut neurons: Vec<fovea_engine::probe::reconstruct::NeuronAt>,
    seed: u64,
) -> f64 {
    use fovea_engine::probe::reconstruct::Mode;
    let trace = reference.forward(input);
    let head_ref = reference::Head::new(head.clone());
    let ht = head_ref.forward(reference, &trace);
    let weights = ModeWeights::with_head(engine, reference, head, seed);
    let convs = engine.network.convs.len();
    for class in 0..fovea_engine::fixtures::TINY_CLASSES {
        neurons.push(
            engine
                .ascent_neuron("n", &(convs + 2).to_string(), class as i64, 0, 0)
                .expect("class"),
        );
    }
    let mut worst = 0f64;
    for r in &reconstruct_all_modes(engine, rec, &neurons, seed) {
        let n = neurons[r.neuron_index];
        let (cw, hw) = weights.of(r.mode);
        let want = if n.layer <= convs {
            reference.backward(&trace, n, r.mode, cw, 1.0)
        } else {
            head_ref.backward(reference, &trace, &ht, (1, n.feature), r.mode, cw, hw)
        };
        let scale = max_abs(&want);
        let diff = max_diff(&r.values, &want);
        if scale > 0.0 {
            worst = worst.max(diff / scale);
        }
        assert!(
            diff <= 1e-5 * scale.max(1e-30),
            "{:?} {n:?}: {diff} of {scale}",
            r.mode
        );
        if r.mode == Mode::LinearFilter {
            let pre = if n.layer <= convs {
                let g = engine.geometry[n.layer];
                trace.pre[n.layer - 1][(n.feature * g.height + n.y) * g.width + n.x]
            } else {
                ht.pre[1][n.feature]
            };
            assert_linear_identity(r, input, pre);
        }
    }
    worst
}

/// An engine on a generated model with the test picture recorded, and the
/// reference of the same network.
pub struct Probed {
    pub engine: Engine,
    pub rec: fovea_engine::record::Recording,
    pub reference: reference::Reference,
    pub input: Vec<f64>,
}

impl Probed {
    pub fn new(model: &[u8], size: usize, name: &str, reference: reference::Reference) -> Probed {
        let engine = engine_of(model, size, name);
        let (rec, input) = record_test_image(&engine);
        Probed {
            engine,
            rec,
            reference,
            input,
        }
    }
}

impl Probed {
    /// The recording's scores are ONNX Runtime's `probs` on `model`, the
    /// unmodified file, at the recorded input (to 1e-5).
    pub fn assert_predictions_are_the_files(&self, model: &[u8]) {
        let mut session = runtime().session(model).expect("session");
        let size = self.engine.profile.input_size;
        let input = ort::value::TensorRef::from_array_view((
            [1usize, 3, size, size],
            self.rec.input.as_slice(),
        ))
        .expect("tensor");
        let outputs = session.run(ort::inputs!["input" => input]).expect("run");
        let want = outputs["probs"]
            .try_extract_tensor::<f32>()
            .expect("probs")
            .1
            .to_vec();
        assert_eq!(self.rec.scores.len(), want.len());
        for (a, b) in self.rec.scores.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
        }
    }

    /// [`assert_all_modes_are_the_references`] on this set-up, whose model
    /// has `chain`'s dense head; prints and returns the worst relative
    /// difference.
    pub fn assert_all_modes(
        &self,
        chain: &[fovea_engine::fixtures::ChainConv],
        neurons: Vec<NeuronAt>,
        seed: u64,
    ) -> f64 {
        let size = self.engine.profile.input_size;
        let worst = assert_all_modes_are_the_references(
            &self.engine,
            (&self.rec, &self.input),
            &self.reference,
            &fovea_engine::fixtures::chain_head_weights(chain, size),
            neurons,
            seed,
        );
        eprintln!("worst relative difference {worst:e}");
        worst
    }

    /// Neuron `n`'s pre-activation in a reference trace.
    pub fn pre_at(&self, trace: &reference::Trace, n: NeuronAt) -> f64 {
        let g = self.engine.geometry[n.layer];
        trace.pre[n.layer - 1][(n.feature * g.height + n.y) * g.width + n.x]
    }

    /// The linear filter of `n` against central differences of the
    /// reference over its FOV box (every `step`-th row and column).
    pub fn assert_filter_is_the_central_difference(&self, n: NeuronAt, step: usize) {
        let r = &self.linear_filter(n);
        let size = self.engine.profile.input_size;
        let preact = |x: &[f64]| self.pre_at(&self.reference.forward(x), n);
        let eps = 1e-3;
        let (mut num, mut den) = (0f64, 0f64);
        let mut x = self.input.clone();
        let b = r.fov;
        for c in 0..3 {
            for y in (b.y0..b.y1).step_by(step) {
                for xx in (b.x0..b.x1).step_by(step) {
                    let i = (c * size + y) * size + xx;
                    x[i] = self.input[i] + eps;
                    let up = preact(&x);
                    x[i] = self.input[i] - eps;
                    let down = preact(&x);
                    x[i] = self.input[i];
                    let fd = (up - down) / (2.0 * eps);
                    num += (fd - r.values[i] as f64).powi(2);
                    den += fd.powi(2);
                }
            }
        }
        let rel = (num / den.max(1e-30)).sqrt();
        assert!(den > 0.0 && rel <= 1e-2, "{n:?}: relative error {rel}");
    }

    /// Every one of [`Self::probe_neurons`]: the FOV-window gradient
    /// against the whole-image linear filter; for those at `central` (the
    /// strongest of two layers, say), the linear filter against central
    /// differences on every `step`-th row and column.
    pub fn assert_filters(&self, central: [usize; 2], step: usize) {
        let neurons = self.probe_neurons();
        for n in &neurons {
            self.assert_fov_gradient_is_the_filter(*n);
        }
        for k in central {
            self.assert_filter_is_the_central_difference(neurons[k], step);
        }
    }

    /// The ascent graph's gradient over `n`'s FOV window against the
    /// whole-image linear filter, and its value against the recorded
    /// forward pass.
    pub fn assert_fov_gradient_is_the_filter(&self, n: NeuronAt) {
        let r = self.linear_filter(n);
        let (pre, grad) = self
            .engine
            .fov_gradient(n, &self.rec.input)
            .expect("gradient");
        let scale = r.values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = max_diff(
            &grad,
            &r.values.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        );
        assert!(diff <= 1e-5 * scale as f64, "{n:?}: {diff} vs {scale}");
        let pass = self.engine.forward(&self.rec.input).expect("forward");
        let g = self.engine.geometry[n.layer];
        let act = pass.activations[n.layer - 1][(n.feature * g.height + n.y) * g.width + n.x];
        let activation = self.engine.network.convs[n.layer - 1].activation;
        let activated = reference::activate(activation, pre as f64) as f32;
        assert!(
            (activated - act).abs() <= 1e-4 * act.abs().max(1.0),
            "{pre} gives {activated}, recorded {act}"
        );
    }

    fn linear_filter(&self, n: NeuronAt) -> fovea_engine::probe::reconstruct::Reconstruction {
        use fovea_engine::probe::reconstruct::{Mode, Start};
        self.engine
            .reconstruct(&self.rec, &[n], &[Mode::LinearFilter], Start::OneHot, 0)
            .expect("reconstruct")
            .remove(0)
    }

    /// `n`'s linear region along a random line: value and slope are the
    /// reference's, and the reference's pre-activation is linear inside it
    /// on both sides (at half of each boundary's distance).
    pub fn assert_region_is_the_references(&self, n: NeuronAt) {
        use fovea_engine::probe::regions::Direction;
        let d = self
            .engine
            .direction(&self.rec, n, &Direction::Random(5))
            .expect("direction");
        let region = self.engine.linear_region(&self.rec, n, &d).expect("region");
        let pre = |t: f64| {
            let x: Vec<f64> = self
                .input
                .iter()
                .zip(&d)
                .map(|(&a, &b)| a + t * b as f64)
                .collect();
            self.pre_at(&self.reference.forward(&x), n)
        };
        let v0 = pre(0.0);
        assert!(
            (region.value - v0).abs() <= 1e-4 * v0.abs().max(1.0),
            "{n:?}"
        );
        for end in [region.forward.map(|b| b.t), region.backward.map(|b| b.t)] {
            let t = end.expect("a bounded region") * 0.5;
            let want = pre(t);
            let got = region.value + region.slope * t;
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{n:?} at t = {t}: {got} vs {want}"
            );
        }
    }
}

impl Probed {
    /// Objective `spec` evaluated by the engine on two random images (a
    /// whole-image graph): its values and gradients against `value`, the
    /// reference's objective, by central differences (see [`check_samples`]
    /// for `stride`).
    pub fn check_objective(&self, spec: &str, value: impl Fn(&[f64]) -> f64, stride: usize) {
        use fovea_engine::probe::visualize::VisualizeOptions;
        use rand::{Rng, SeedableRng};
        let objective = self.engine.parse_objective(spec, &[]).expect("objective");
        let opts = VisualizeOptions::new(objective);
        let size = self.engine.profile.input_size;
        let plane = size * size;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let batch: Vec<f32> = (0..2 * 3 * plane)
            .map(|_| rng.random_range(-1.5f32..1.5))
            .collect();
        let (values, _, grad) = self
            .engine
            .evaluate_objective(&opts, &batch, 2)
            .expect("evaluate");
        check_samples(value, &batch, &values, &grad, (plane, stride));
    }
}

impl Probed {
    /// The engine read `chain` (each conv's geometry and pool) and its
    /// layers have these (height, width), matching the reference's, and
    /// these (field of view, stride).
    pub fn assert_read_as(
        &self,
        chain: &[fovea_engine::fixtures::ChainConv],
        sides: &[(usize, usize)],
        fields: &[(usize, usize)],
    ) {
        let convs = &self.engine.network.convs;
        assert_eq!(convs.len(), chain.len());
        for (c, want) in convs.iter().zip(chain) {
            assert_eq!((c.shape, c.pool), (want.shape, want.pool), "{}", c.name);
        }
        let geometry = &self.engine.geometry[1..];
        let got: Vec<(usize, usize)> = geometry.iter().map(|g| (g.height, g.width)).collect();
        assert_eq!(got, self.reference.forward(&self.input).dims);
        assert_eq!(got, sides);
        let got: Vec<(usize, usize)> = geometry.iter().map(|g| (g.fov, g.stride)).collect();
        assert_eq!(got, fields);
    }
}

impl Probed {
    /// The strongest neuron of every layer and the first and last corners
    /// of its grid.
    pub fn probe_neurons(&self) -> Vec<NeuronAt> {
        self.strongest_and_corners(&[(false, false), (true, true)])
    }

    /// Per conv layer: its strongest neuron, then one neuron at each of
    /// `corners` of its grid ((last row?, last column?); their FOV windows
    /// reach into the padding), on feature (y + x) mod channels.
    pub fn strongest_and_corners(&self, corners: &[(bool, bool)]) -> Vec<NeuronAt> {
        let mut out = Vec::new();
        for l in 1..=self.engine.network.convs.len() {
            let top = fovea_engine::record::top_activations(self.rec.layer(l), 1, None, false)[0];
            out.push(NeuronAt {
                layer: l,
                feature: top.feature,
                y: top.y,
                x: top.x,
            });
            let g = self.engine.geometry[l];
            for &(bottom, right) in corners {
                let (y, x) = (
                    if bottom { g.height - 1 } else { 0 },
                    if right { g.width - 1 } else { 0 },
                );
                out.push(NeuronAt {
                    layer: l,
                    feature: (y + x) % g.channels,
                    y,
                    x,
                });
            }
        }
        out
    }
}

/// Grad-CAM of `target` at conv layer `layer` of `rec` against the map
/// drawn from the reference's pre-activations `pre` there and its signal
/// `at` at the layer's activation (`dims`: channels, rows, columns), to
/// 1e-5 relative. Returns whether the map is not empty.
pub fn assert_grad_cam(
    engine: &Engine,
    rec: &fovea_engine::record::Recording,
    (target, layer): (NeuronAt, usize),
    (pre, at): (&[f64], &[f64]),
    dims: (usize, usize, usize),
) -> bool {
    use fovea_engine::probe::attribute::{AttributeRequest, Baseline, Method, grad_cam};
    let req = AttributeRequest {
        target,
        method: Method::GradCam,
        cam_layer: Some(layer),
        steps: 1,
        baseline: Baseline::Black,
    };
    let got = engine
        .attribute(rec, &req, &fovea_engine::stop::Stop::never(), |_, _| {})
        .expect("grad-cam");
    let act: Vec<f32> = pre.iter().map(|&v| v.max(0.0) as f32).collect();
    let at: Vec<f32> = at.iter().map(|&v| v as f32).collect();
    let size = engine.profile.input_size;
    let want = grad_cam(&act, &at, dims, size);
    let cam = got.cam.expect("cam map");
    assert_eq!((cam.layer, cam.height, cam.width), (layer, dims.1, dims.2));
    let scale = want
        .grid
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-30);
    let err = cam
        .grid
        .iter()
        .zip(&want.grid)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    assert!(err <= 1e-5, "layer {layer}: relative error {err:e}");
    assert_eq!(got.values.len(), size * size);
    cam.grid.iter().any(|&v| v > 0.0)
}

/// Maximizes, checking that every start's objective rose from its first step.
pub fn maximize_rising(
    engine: &Engine,
    n: NeuronAt,
    opts: &fovea_engine::probe::maximize::MaximizeOptions,
) -> fovea_engine::probe::maximize::Maximized {
    let mut first = Vec::new();
    let out = engine
        .maximize(n, opts, |p| {
            if p.step == 1 {
                first = p.objective.to_vec();
            }
            true
        })
        .expect("maximize");
    assert_eq!(first.len(), opts.starts);
    for (a, b) in first.iter().zip(&out.objective) {
        assert!(b > a, "objective did not rise: {a} -> {b}");
    }
    out
}
