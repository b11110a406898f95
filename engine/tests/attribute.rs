//! Dense and class neurons on the tiny model with its head, against the
//! plain-loop f64 reference (four modes, effective bias, Grad-CAM from the
//! reference's own activations and gradients), central finite differences
//! of the reference's forward, and integrated gradients' completeness.

mod common;

use common::reference::{Head, Reference};
use common::{ModeWeights, TINY_SIZE, reconstruct_all_modes, record_test_image, tiny_engine};
use fovea_engine::engine::Engine;
use fovea_engine::fixtures::{
    TINY_CLASSES, TINY_CONVS, TINY_HIDDEN, tiny_head_weights, tiny_weights,
};
use fovea_engine::model::network::Layout;
use fovea_engine::probe::attribute::{AttributeRequest, Baseline, Method};
use fovea_engine::probe::reconstruct::{Mode, NeuronAt, ReconstructRequest, Start};
use fovea_engine::record::Recording;
use fovea_engine::stop::Stop;

struct Setup {
    engine: Engine,
    rec: Recording,
    reference: Reference,
    head: Head,
    input: Vec<f64>,
}

fn setup() -> Setup {
    let engine = tiny_engine(Layout::Nchw, true);
    let (rec, input) = record_test_image(&engine);
    Setup {
        engine,
        rec,
        reference: Reference::new(tiny_weights(), TINY_SIZE),
        head: Head::new(tiny_head_weights(TINY_SIZE)),
        input,
    }
}

fn relative(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
    assert_eq!(got.len(), want.len());
    diff / scale.max(1e-30)
}

/// Every hidden unit and every class.
fn dense_neurons(e: &Engine) -> Vec<NeuronAt> {
    let convs = TINY_CONVS.len();
    let hidden = (0..TINY_HIDDEN).map(|f| (convs + 1, f));
    let classes = (0..TINY_CLASSES).map(|f| (convs + 2, f));
    hidden
        .chain(classes)
        .map(|(layer, f)| {
            e.ascent_neuron("n", &layer.to_string(), f as i64, 0, 0)
                .expect("dense neuron")
        })
        .collect()
}

#[test]
fn dense_neurons_in_all_four_modes_equal_the_reference() {
    let s = setup();
    let trace = s.reference.forward(&s.input);
    let ht = s.head.forward(&s.reference, &trace);
    let seed = 9;
    let weights = ModeWeights::new(&s.engine, &s.reference, seed);
    let neurons = dense_neurons(&s.engine);
    let got = reconstruct_all_modes(&s.engine, &s.rec, &neurons, seed);
    let convs = TINY_CONVS.len();
    let mut worst = 0f64;
    for r in &got {
        let n = neurons[r.neuron_index];
        let unit = (n.layer - convs - 1, n.feature);
        let (cw, hw) = weights.of(r.mode);
        let want = s
            .head
            .backward(&s.reference, &trace, &ht, unit, r.mode, cw, hw);
        let err = relative(&r.values, &want);
        worst = worst.max(err);
        assert!(err <= 1e-5, "{:?} {n:?}: relative error {err:e}", r.mode);
        let pre = ht.pre[unit.0][unit.1];
        assert_eq!(r.inactive, unit.0 == 0 && pre <= 0.0, "{n:?}");
        if r.mode == Mode::LinearFilter {
            // The identity, with the reference's own effective bias (the
            // affine map at a zero image under the same gates).
            let b_eff = s.head.effective_bias(&s.reference, &trace, &ht, unit);
            let got_bias = r.effective_bias.expect("effective bias") as f64;
            assert!(
                (got_bias - b_eff).abs() <= 1e-5 * pre.abs().max(b_eff.abs()).max(1.0),
                "{n:?}: effective bias {got_bias} vs {b_eff}"
            );
            let dot: f64 = want.iter().zip(&s.input).map(|(a, b)| a * b).sum();
            assert!(
                (dot + b_eff - pre).abs() <= 1e-9 * pre.abs().max(1.0),
                "{n:?}: reference identity {dot} + {b_eff} vs {pre}"
            );
        }
    }
    eprintln!("worst relative difference {worst:e}");
    // Some hidden units are off and some on, so both starts are exercised.
    assert!(got.iter().any(|r| r.inactive) && got.iter().any(|r| !r.inactive));
}

#[test]
fn an_inactive_unit_through_its_relu_gives_zeros_in_every_mode() {
    let s = setup();
    let neurons = dense_neurons(&s.engine);
    let req = |through_relu| ReconstructRequest {
        neurons: neurons.clone(),
        modes: Mode::ALL.to_vec(),
        start: Start::OneHot,
        seed: 1,
        effective_bias: false,
        through_relu,
    };
    let open = s
        .engine
        .reconstruct_request(&s.rec, &req(false), &Stop::never())
        .expect("pre-activation");
    let through = s
        .engine
        .reconstruct_request(&s.rec, &req(true), &Stop::never())
        .expect("through the ReLU");
    for (a, b) in open.iter().zip(&through) {
        if b.inactive {
            assert!(b.values.iter().all(|&v| v == 0.0));
        } else {
            assert_eq!(a.values, b.values);
        }
    }
}

#[test]
fn a_class_linear_filter_equals_central_differences_of_the_reference() {
    let s = setup();
    let trace = s.reference.forward(&s.input);
    let ht = s.head.forward(&s.reference, &trace);
    let class = (0..TINY_CLASSES)
        .max_by(|&a, &b| ht.pre[1][a].total_cmp(&ht.pre[1][b]))
        .expect("classes");
    let n = s
        .engine
        .ascent_neuron("n", &(TINY_CONVS.len() + 2).to_string(), class as i64, 0, 0)
        .expect("class neuron");
    let got = s
        .engine
        .reconstruct(&s.rec, &[n], &[Mode::LinearFilter], Start::OneHot, 0)
        .expect("linear filter");
    let logit = |x: &[f64]| {
        let t = s.reference.forward(x);
        s.head.forward(&s.reference, &t).pre[1][class]
    };
    let h = 1e-4;
    let plane = TINY_SIZE * TINY_SIZE;
    let mut checked = 0;
    for k in (0..3 * plane).step_by(37) {
        let mut up = s.input.clone();
        let mut down = s.input.clone();
        up[k] += h;
        down[k] -= h;
        let fd = (logit(&up) - logit(&down)) / (2.0 * h);
        let g = got[0].values[k] as f64;
        assert!(
            (fd - g).abs() <= 1e-4 * fd.abs().max(1e-2),
            "pixel {k}: finite difference {fd} vs filter {g}"
        );
        checked += 1;
    }
    assert!(checked > 70);
}

#[test]
fn grad_cam_equals_the_reference_activations_and_gradients() {
    let s = setup();
    let trace = s.reference.forward(&s.input);
    let ht = s.head.forward(&s.reference, &trace);
    let trained: Vec<Vec<f64>> = s.reference.layers.iter().map(|l| l.3.clone()).collect();
    let class = 2;
    let n = s
        .engine
        .ascent_neuron("n", &(TINY_CONVS.len() + 2).to_string(), class, 0, 0)
        .expect("class neuron");
    let l = TINY_CONVS.len();
    for layer in [l, 3] {
        // The reference's gradient at the layer's activation: the head's
        // gradient unpooled onto the top, then back to `layer`.
        let w2 = &s.head.dense[1].0;
        let hidden: Vec<f64> = (0..TINY_HIDDEN)
            .map(|i| {
                let on = ht.pre[0][i] > 0.0;
                if on {
                    w2[class as usize * TINY_HIDDEN + i]
                } else {
                    0.0
                }
            })
            .collect();
        let w1 = &s.head.dense[0].0;
        let f = ht.pooled.len();
        let mut top = vec![0f64; trace.pre[l - 1].len()];
        for (i, &a) in ht.argmax.iter().enumerate() {
            top[a] += (0..TINY_HIDDEN)
                .map(|o| w1[o * f + i] * hidden[o])
                .sum::<f64>();
        }
        // At the top, the signal at its activation is the unpooled head
        // gradient itself (before the top's own mask).
        let at = if layer == l {
            top
        } else {
            s.reference
                .signal_at(&trace, l, top, Mode::LinearFilter, &trained, true, layer)
        };
        let (h, w) = trace.dims[layer - 1];
        let drawn = common::assert_grad_cam(
            &s.engine,
            &s.rec,
            (n, layer),
            (&trace.pre[layer - 1], &at),
            (TINY_CONVS[layer - 1].1, h, w),
        );
        assert!(drawn, "layer {layer}: an empty map");
    }
}

#[test]
fn guided_grad_cam_is_guided_backprop_times_the_map() {
    let s = setup();
    let n = s
        .engine
        .ascent_neuron("n", &(TINY_CONVS.len() + 2).to_string(), 1, 0, 0)
        .expect("class neuron");
    let run = |method| {
        let req = AttributeRequest {
            target: n,
            method,
            cam_layer: None,
            steps: 1,
            baseline: Baseline::Black,
        };
        s.engine
            .attribute(&s.rec, &req, &Stop::never(), |_, _| {})
            .expect("attribute")
    };
    let guided = run(Method::Guided);
    let cam = run(Method::GradCam);
    let both = run(Method::GuidedGradCam);
    let plane = TINY_SIZE * TINY_SIZE;
    for (k, &v) in both.values.iter().enumerate() {
        assert_eq!(v, guided.values[k] * cam.values[k % plane]);
    }
    assert!(both.values.iter().any(|&v| v != 0.0));
}

/// The derivative of `class`'s logit along the straight path from
/// `base` to `x` at `t`, by the engine and by central differences of the
/// reference's forward.
fn path_derivative(s: &Setup, n: NeuronAt, base: &[f32], t: f64) -> (f64, f64) {
    let x = &s.rec.input;
    let at = |t: f64| -> Vec<f64> {
        x.iter()
            .zip(base)
            .map(|(&xv, &bv)| bv as f64 + t * (xv as f64 - bv as f64))
            .collect()
    };
    let point: Vec<f32> = at(t).into_iter().map(|v| v as f32).collect();
    let (_, g) = s.engine.fov_gradient(n, &point).expect("gradient");
    let engine: f64 = g
        .iter()
        .zip(x.iter().zip(base))
        .map(|(&gv, (&xv, &bv))| gv as f64 * (xv - bv) as f64)
        .sum();
    let class = n.feature;
    let f = |t: f64| {
        let tr = s.reference.forward(&at(t));
        s.head.forward(&s.reference, &tr).pre[1][class]
    };
    let h = 1e-6;
    (engine, (f(t + h) - f(t - h)) / (2.0 * h))
}

#[test]
fn integrated_gradients_integrate_the_path_derivative_and_are_complete() {
    let s = setup();
    let class = 2;
    let n = s
        .engine
        .ascent_neuron("n", &(TINY_CONVS.len() + 2).to_string(), class, 0, 0)
        .expect("class neuron");
    for baseline in [Baseline::Black, Baseline::Blurred(4.0), Baseline::Noise(3)] {
        let base = s.engine.baseline(&s.rec, baseline);
        // The integrand, at the midpoints IG samples, against the reference.
        let steps = 64;
        let mut variation = 0.0;
        let mut midpoint_sum = 0.0;
        let mut straddling = 0;
        for i in 0..steps {
            let t = (i as f64 + 0.5) / steps as f64;
            let (engine, fd) = path_derivative(&s, n, &base, t);
            // A unit turning within the differences' step (or between the
            // float32 and float64 points) spoils one of them; not more.
            if (engine - fd).abs() > 1e-4 * fd.abs().max(1e-2) {
                straddling += 1;
                eprintln!("{baseline:?} t {t}: derivative {engine} vs {fd}");
            }
            variation += engine.abs() / steps as f64;
            midpoint_sum += engine / steps as f64;
        }
        assert!(
            straddling <= 2,
            "{baseline:?}: {straddling} derivatives differ"
        );
        let run = |steps| {
            let req = AttributeRequest {
                target: n,
                method: Method::IntegratedGradients,
                cam_layer: None,
                steps,
                baseline,
            };
            let mut seen = Vec::new();
            let got = s
                .engine
                .attribute(&s.rec, &req, &Stop::never(), |done, total| {
                    seen.push((done, total))
                })
                .expect("integrated gradients");
            assert_eq!(seen.last(), Some(&(steps + 2, steps + 2)));
            got
        };
        // IG is the midpoint rule over the checked derivative.
        let got = run(steps);
        let c = got.completeness.expect("completeness");
        assert!(
            (c.attribution_sum as f64 - midpoint_sum).abs() <= 1e-4 * variation,
            "{baseline:?}: sum {} vs the derivatives' mean {midpoint_sum}",
            c.attribution_sum
        );
        // The random tiny head's logit wiggles along the path (its
        // derivative swings far beyond the net change), so the quadrature
        // error is measured against the path's variation, at 256 points.
        let fine = run(256).completeness.expect("completeness");
        let error = (fine.attribution_sum - fine.objective_difference).abs() as f64;
        assert!(
            error <= 0.01 * (fine.objective_difference.abs() as f64 + variation),
            "{baseline:?}: sum {} vs difference {} (variation {variation})",
            fine.attribution_sum,
            fine.objective_difference
        );
        // The ends, against the reference forward.
        let end = |v: &[f32]| {
            let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            let t = s.reference.forward(&v);
            s.head.forward(&s.reference, &t).pre[1][class as usize]
        };
        let (b, x) = (end(&base), end(&s.rec.input));
        assert!((c.baseline_objective as f64 - b).abs() <= 1e-5 * b.abs().max(1.0));
        assert!((got.objective as f64 - x).abs() <= 1e-5 * x.abs().max(1.0));
    }
}

#[test]
fn attribution_refuses_conv_layers_and_bad_steps_and_stops_when_asked() {
    let s = setup();
    let n = s
        .engine
        .ascent_neuron("n", &(TINY_CONVS.len() + 2).to_string(), 0, 0, 0)
        .expect("class neuron");
    let mut req = AttributeRequest {
        target: n,
        method: Method::GradCam,
        cam_layer: Some(TINY_CONVS.len() + 1),
        steps: 8,
        baseline: Baseline::Black,
    };
    let err = s
        .engine
        .attribute(&s.rec, &req, &Stop::never(), |_, _| {})
        .expect_err("a dense layer is no Grad-CAM layer");
    assert!(err.to_string().contains("allowed 1..=5"), "{err}");
    req.method = Method::IntegratedGradients;
    req.steps = 0;
    let err = s
        .engine
        .attribute(&s.rec, &req, &Stop::never(), |_, _| {})
        .expect_err("zero steps");
    assert!(err.to_string().contains("steps"), "{err}");
    req.steps = 64;
    let stop = Stop::never().with_deadline(Some(std::time::Instant::now()));
    assert!(
        s.engine.attribute(&s.rec, &req, &stop, |_, _| {}).is_err(),
        "a passed deadline stops the path"
    );
    let err = s.engine.dense_neuron("3", 0).expect_err("a conv layer");
    assert!(err.to_string().contains("not a dense layer"), "{err}");
}
