//! Feature-visualisation objectives on the tiny model: values and
//! gradients against the plain-loop f64 reference (and its central
//! differences), the diversity term against a direct computation, the
//! optimisation loop's progress, cancellation and gain, and the parser's
//! errors.

mod common;

use common::reference::Reference;
use common::{TINY_SIZE, check_samples, tiny_engine};
use fovea_engine::fixtures::tiny_weights;
use fovea_engine::model::network::Layout;
use fovea_engine::probe::maximize::Flow;
use fovea_engine::probe::visualize::{Objective, Param, Term, VisualizeOptions};

const PLANE: usize = TINY_SIZE * TINY_SIZE;

fn inputs(n: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n * 3 * PLANE)
        .map(|_| rng.random_range(-1.5f32..1.5))
        .collect()
}

/// The reference's value of `channel(3,2) - 0.5*channel(5,1) +
/// 0.01*layer(4) + 2*neuron(2,1,3,4)` at one input.
fn reference_value(r: &Reference, x: &[f64]) -> f64 {
    let t = r.forward(x);
    let mean = |l: usize, c: usize| {
        let (h, w) = t.dims[l - 1];
        t.pre[l - 1][c * h * w..(c + 1) * h * w].iter().sum::<f64>() / (h * w) as f64
    };
    let squares: f64 = t.pre[3].iter().map(|&v| v.max(0.0).powi(2)).sum();
    let (h, w) = t.dims[1];
    mean(3, 2) - 0.5 * mean(5, 1) + 0.01 * squares + 2.0 * t.pre[1][(h + 3) * w + 4]
}

#[test]
fn a_weighted_objective_and_its_gradient_equal_the_reference() {
    let engine = tiny_engine(Layout::Nchw, false);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let objective = engine
        .parse_objective(
            "channel(3,2) - 0.5*channel(5,1) + 0.01*layer(4) + 2*neuron(2,1,3,4)",
            &[],
        )
        .expect("objective");
    assert_eq!(objective.terms.len(), 4);
    let opts = VisualizeOptions::new(objective);
    let batch = inputs(2, 1);
    let (values, diversity, grad) = engine
        .evaluate_objective(&opts, &batch, 2)
        .expect("evaluate");
    assert_eq!(diversity, 0.0);
    check_samples(
        |x| reference_value(&reference, x),
        &batch,
        &values,
        &grad,
        (PLANE, 29),
    );
}

/// A class logit mixed with a conv channel: the two parts run their own
/// graphs and their values and gradients add, against the reference's
/// forward through the head and its central differences.
#[test]
fn class_and_conv_terms_mix_in_one_objective() {
    use common::reference::Head;
    use fovea_engine::fixtures::tiny_head_weights;
    let engine = tiny_engine(Layout::Nchw, true);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let head = Head::new(tiny_head_weights(TINY_SIZE));
    let objective = engine
        .parse_objective("channel(3,2) - 0.5*class(1)", &[])
        .expect("objective");
    let value = |x: &[f64]| {
        let t = reference.forward(x);
        let (h, w) = t.dims[2];
        let mean = t.pre[2][2 * h * w..3 * h * w].iter().sum::<f64>() / (h * w) as f64;
        mean - 0.5 * head.forward(&reference, &t).pre[1][1]
    };
    let opts = VisualizeOptions::new(objective);
    let batch = inputs(2, 4);
    let (values, _, grad) = engine
        .evaluate_objective(&opts, &batch, 2)
        .expect("evaluate");
    check_samples(value, &batch, &values, &grad, (PLANE, 31));
}

/// Lucid's diversity of activations `a[s]` ([C, HW] each): the mean cosine
/// similarity of every two samples' Gram matrices.
fn reference_diversity(acts: &[Vec<f64>], c: usize) -> f64 {
    let grams: Vec<Vec<f64>> = acts
        .iter()
        .map(|a| {
            let hw = a.len() / c;
            let mut g = vec![0f64; c * c];
            for i in 0..c {
                for j in 0..c {
                    g[i * c + j] = (0..hw).map(|k| a[i * hw + k] * a[j * hw + k]).sum();
                }
            }
            let n = g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            g.iter().map(|v| v / n).collect()
        })
        .collect();
    let s = grams.len();
    let mut total = 0.0;
    for i in 0..s {
        for j in 0..s {
            if i != j {
                total += grams[i]
                    .iter()
                    .zip(&grams[j])
                    .map(|(a, b)| a * b)
                    .sum::<f64>();
            }
        }
    }
    total / (s * (s - 1)) as f64
}

#[test]
fn the_diversity_term_and_its_gradient_equal_the_reference() {
    let engine = tiny_engine(Layout::Nchw, false);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let mut opts = VisualizeOptions::new(
        engine
            .parse_objective("channel(5,0)", &[])
            .expect("objective"),
    );
    opts.diversity = 0.5;
    opts.diversity_layer = Some(4);
    let n = 3;
    let batch = inputs(n, 2);
    let (values, diversity, grad) = engine
        .evaluate_objective(&opts, &batch, n)
        .expect("evaluate");
    let sample = |k: usize| -> Vec<f64> {
        batch[k * 3 * PLANE..(k + 1) * 3 * PLANE]
            .iter()
            .map(|&v| v as f64)
            .collect()
    };
    let c = reference.layers[3].1;
    let total = |xs: &[Vec<f64>]| -> (f64, f64) {
        let traces: Vec<_> = xs.iter().map(|x| reference.forward(x)).collect();
        let acts: Vec<Vec<f64>> = traces
            .iter()
            .map(|t| t.pre[3].iter().map(|&v| v.max(0.0)).collect())
            .collect();
        let objective: f64 = traces
            .iter()
            .map(|t| {
                let (h, w) = t.dims[4];
                t.pre[4][..h * w].iter().sum::<f64>() / (h * w) as f64
            })
            .sum();
        (objective, reference_diversity(&acts, c))
    };
    let xs: Vec<Vec<f64>> = (0..n).map(sample).collect();
    let (sum, want) = total(&xs);
    assert!(
        (diversity as f64 - want).abs() <= 1e-4,
        "diversity {diversity} vs {want}"
    );
    let got_sum: f64 = values.iter().map(|&v| v as f64).sum();
    assert!((got_sum - sum).abs() <= 1e-4 * sum.abs().max(1.0));
    // The gradient of sum(objective) - 0.5 * diversity, for every sample.
    let mut straddling = 0;
    for k in 0..n {
        for i in (0..3 * PLANE).step_by(41) {
            let h = 1e-4;
            let at = |d: f64| {
                let mut ys = xs.clone();
                ys[k][i] += d;
                let (o, div) = total(&ys);
                o - 0.5 * div
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let g = grad[k * 3 * PLANE + i] as f64;
            if (fd - g).abs() > 1e-3 * fd.abs().max(1e-2) {
                straddling += 1;
                eprintln!("sample {k} input {i}: {g} vs {fd}");
            }
        }
    }
    assert!(straddling <= 3, "{straddling} gradients differ");
}

#[test]
fn a_one_hot_direction_is_its_channel() {
    let engine = tiny_engine(Layout::Nchw, false);
    let mut v = vec![0f32; 6];
    v[4] = 1.0;
    let batch = inputs(1, 3);
    let run = |expr: &str| {
        let opts = VisualizeOptions::new(engine.parse_objective(expr, &v).expect("objective"));
        engine
            .evaluate_objective(&opts, &batch, 1)
            .expect("evaluate")
    };
    let (a, _, ga) = run("direction(4)");
    let (b, _, gb) = run("channel(4,4)");
    assert!((a[0] - b[0]).abs() <= 1e-6 * b[0].abs().max(1.0));
    let worst = ga
        .iter()
        .zip(&gb)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst <= 1e-6, "{worst}");
}

#[test]
fn visualising_a_channel_raises_it_reports_every_step_and_stops_when_asked() {
    let engine = tiny_engine(Layout::Nchw, true);
    for param in [Param::Fourier, Param::Pixels] {
        let mut opts = VisualizeOptions::new(
            engine
                .parse_objective("channel(5,3)", &[])
                .expect("objective"),
        );
        opts.param = param;
        // Light transformations (the tiny model sees 32 x 32 pixels), and
        // none for plain pixels: shifted and resampled, a picture optimised
        // pixel by pixel does not add up on so small a model.
        opts.steps = 64;
        opts.starts = 2;
        let fourier = param == Param::Fourier;
        opts.jitter = usize::from(fourier);
        opts.scale = if fourier { 0.05 } else { 0.0 };
        opts.rotate = if fourier { 5.0 } else { 0.0 };
        let mut first = None;
        let mut steps = Vec::new();
        let done = engine
            .visualize(&opts, |p| {
                first.get_or_insert_with(|| p.objective.to_vec());
                steps.push(p.step);
                assert_eq!(p.crops.len(), 2);
                Flow::Continue
            })
            .expect("visualize");
        assert_eq!(steps, (1..=64).collect::<Vec<_>>());
        let first = first.expect("progress");
        assert_eq!(done.images.len(), 2);
        for (k, &o) in done.objective.iter().enumerate() {
            assert!(
                o > first[k] + 0.03,
                "{param:?} start {k}: {} -> {o}",
                first[k]
            );
        }
        // The images stay in the valid pixel range (the sigmoid).
        let p = &engine.profile;
        for img in &done.images {
            for (i, &v) in img.iter().enumerate() {
                let px = p.to_pixel(i / PLANE, v);
                assert!((-0.01..=255.01).contains(&px), "{px}");
            }
        }
    }
    let mut opts = VisualizeOptions::new(
        engine
            .parse_objective("class(2) - class(0)", &[])
            .expect("objective"),
    );
    opts.steps = 10;
    let early = engine
        .visualize(&opts, |p| {
            if p.step == 3 {
                Flow::Finish
            } else {
                Flow::Continue
            }
        })
        .expect("finished early");
    assert_eq!(early.steps, 3);
    let cancelled = engine.visualize(&opts, |_| Flow::Cancel);
    assert!(matches!(cancelled, Err(fovea_engine::Error::Cancelled)));
}

#[test]
fn objectives_that_make_no_sense_are_refused_by_name() {
    let engine = tiny_engine(Layout::Nchw, true);
    let err = |expr: &str, direction: &[f32]| {
        engine
            .parse_objective(expr, direction)
            .expect_err(expr)
            .to_string()
    };
    assert!(err("channel(9,0)", &[]).contains("layer 9 does not exist"));
    assert!(err("channel(3,99)", &[]).contains("outside 0..=5"));
    assert!(err("chanel(3,1)", &[]).contains("unknown term"));
    assert!(err("channel(3,1) * 2", &[]).contains("expected + or -"));
    assert!(err("x*channel(3,1)", &[]).contains("is not a weight"));
    assert!(err("channel(3,1", &[]).contains("closing parenthesis"));
    assert!(err("direction(3)", &[1.0]).contains("1 values given; layer 3 has 6"));
    assert!(err("class(9)", &[]).contains("unit: 9 is outside 0..=4"));
    assert!(err(&"channel(3,1)+".repeat(100), &[]).contains("at most 512"));
    // Terms built by hand are checked as well.
    let built = |terms: Vec<(f32, Term)>| {
        let opts = VisualizeOptions::new(Objective { terms });
        engine
            .evaluate_objective(&opts, &inputs(1, 0), 1)
            .expect_err("refused")
            .to_string()
    };
    assert!(built(vec![(1.0, Term::Layer { layer: 99 })]).contains("outside 1..=5"));
    let msg = built(vec![(
        1.0,
        Term::Channel {
            layer: 2,
            channel: 40,
        },
    )]);
    assert!(msg.contains("does not fit"), "{msg}");
    let msg = built(vec![
        (1.0, Term::Class { unit: 9 }),
        (1.0, Term::Class { unit: 0 }),
    ]);
    assert!(msg.contains("class 9 is outside"), "{msg}");
    let mut opts = VisualizeOptions::new(Objective {
        terms: vec![(1.0, Term::Class { unit: 0 })],
    });
    opts.diversity = 0.5;
    let msg = engine
        .evaluate_objective(&opts, &inputs(1, 0), 1)
        .expect_err("diversity without a conv term")
        .to_string();
    assert!(
        msg.contains("diversity") && msg.contains("conv layer"),
        "{msg}"
    );
    let msg = built(vec![(f32::NAN, Term::Layer { layer: 2 })]);
    assert!(msg.contains("not finite"), "{msg}");
}
