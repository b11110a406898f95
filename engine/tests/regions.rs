//! Linear regions and pattern comparison on the generated tiny model,
//! checked against the plain-loop f64 reference: the affine prediction at a
//! boundary against a fresh forward pass there, the configuration just
//! inside and just outside, and the regions along a segment against a
//! brute-force scan.

mod common;

use common::reference::{Reference, Trace};
use common::{TINY_SIZE, tiny_engine};
use fovea_engine::engine::Engine;
use fovea_engine::fixtures::{TINY_CONVS, test_image_png, tiny_weights};
use fovea_engine::model::network::{Layout, fov_tree};
use fovea_engine::model::profile::ImageLimits;
use fovea_engine::probe::reconstruct::NeuronAt;
use fovea_engine::probe::regions::{Direction, Flip, FlipKind};
use fovea_engine::record::Recording;
use fovea_engine::stop::Stop;

fn record(engine: &Engine, w: u32, h: u32) -> Recording {
    engine
        .record(&test_image_png(w, h), "test", ImageLimits::default())
        .expect("record")
}

fn along(x0: &[f32], d: &[f32], t: f64) -> Vec<f64> {
    x0.iter()
        .zip(d)
        .map(|(&a, &b)| a as f64 + t * b as f64)
        .collect()
}

/// A unit of the configuration inside a neuron's FOV tree: a ReLU (layer,
/// index in its grid) or a switch (pooled layer, index of the pooled
/// output), with its state.
type Configuration = Vec<((FlipKind, usize, usize), usize)>;

/// The configuration of `trace` inside `n`'s FOV tree: masks of layers
/// below the neuron and the argmax of every pool window in the tree.
fn configuration(trace: &Trace, n: NeuronAt) -> Configuration {
    let convs: Vec<_> = engine_convs();
    let tree = fov_tree(&convs, n.layer, n.y, n.x);
    let mut out = Vec::new();
    for i in 1..n.layer {
        let (h, w) = trace.dims[i - 1];
        let (y0, y1) = tree.out[i].0.clip(h);
        let (x0, x1) = tree.out[i].1.clip(w);
        let c = TINY_CONVS[i - 1].1;
        for ch in 0..c {
            for y in y0..y1 {
                for x in x0..x1 {
                    let k = (ch * h + y) * w + x;
                    out.push(((FlipKind::Relu, i, k), (trace.pre[i - 1][k] > 0.0) as usize));
                }
            }
        }
    }
    for j in 2..=n.layer {
        let Some(arg) = &trace.argmax[j - 1] else {
            continue;
        };
        let (h, w) = trace.dims[j - 1];
        let (y0, y1) = tree.conv_in[j].0.clip(h);
        let (x0, x1) = tree.conv_in[j].1.clip(w);
        let c = TINY_CONVS[j - 1].0;
        for ch in 0..c {
            for y in y0..y1 {
                for x in x0..x1 {
                    let k = (ch * h + y) * w + x;
                    out.push(((FlipKind::Switch, j, k), arg[k]));
                }
            }
        }
    }
    out
}

/// Conv layers shaped like the tiny model's (the tree only needs the pools).
fn engine_convs() -> Vec<fovea_engine::model::network::ConvLayer> {
    TINY_CONVS
        .iter()
        .enumerate()
        .map(|(i, &(cin, cout, pooled))| {
            fovea_engine::model::network::ConvLayer::bare(
                i + 1,
                (cin, cout),
                fovea_engine::model::network::ConvShape::SAME_3X3,
                pooled.then_some(fovea_engine::model::network::PoolShape::HALVING),
            )
        })
        .collect()
}

fn differences(a: &Configuration, b: &Configuration) -> Vec<(FlipKind, usize, usize)> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, _)| x.0)
        .collect()
}

/// The reference's index of the unit a flip names: a ReLU by its layer and
/// unit; a switch by the pooled output of the window holding the position.
fn reference_unit(f: Flip) -> (FlipKind, usize, usize) {
    match f.kind {
        FlipKind::Relu | FlipKind::Ceiling => {
            let (h, w) = grid(f.layer);
            (FlipKind::Relu, f.layer, (f.feature * h + f.y) * w + f.x)
        }
        FlipKind::Switch => {
            let (h, w) = grid(f.layer + 1);
            (
                FlipKind::Switch,
                f.layer + 1,
                (f.feature * h + f.y / 2) * w + f.x / 2,
            )
        }
    }
}

fn grid(layer: usize) -> (usize, usize) {
    let pools = TINY_CONVS[..layer].iter().filter(|c| c.2).count();
    (TINY_SIZE >> pools, TINY_SIZE >> pools)
}

fn preact(reference: &Reference, x: &[f64], n: NeuronAt) -> f64 {
    let (h, w) = grid(n.layer);
    reference.forward(x).pre[n.layer - 1][(n.feature * h + n.y) * w + n.x]
}

fn neurons() -> Vec<NeuronAt> {
    vec![
        NeuronAt {
            layer: 5,
            feature: 3,
            y: 4,
            x: 3,
        },
        NeuronAt {
            layer: 4,
            feature: 1,
            y: 0,
            x: 7,
        },
        NeuronAt {
            layer: 3,
            feature: 2,
            y: 6,
            x: 5,
        },
        NeuronAt {
            layer: 2,
            feature: 0,
            y: 9,
            x: 20,
        },
    ]
}

#[test]
fn region_ends_are_exact_and_flip_exactly_the_reported_unit() {
    let engine = tiny_engine(Layout::Nchw, false);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let rec = record(&engine, 40, 36);
    let mut checked = 0;
    for n in neurons() {
        for direction in [
            Direction::Gradient,
            Direction::Random(3),
            Direction::Random(11),
        ] {
            let d = engine.direction(&rec, n, &direction).expect("direction");
            let norm: f64 = d.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{direction:?} has norm {norm}");
            let region = engine.linear_region(&rec, n, &d).expect("region");
            let x0: Vec<f64> = rec.input.iter().map(|&v| v as f64).collect();
            let base = configuration(&reference.forward(&x0), n);
            let want = preact(&reference, &x0, n);
            assert!(
                (region.value - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{n:?}: value {} != {want}",
                region.value
            );
            for (end, next) in [
                (region.forward, region.next_forward),
                (region.backward, None),
            ] {
                let b = end.expect("a bounded region on a random or gradient line");
                // The affine map's value at the end is the network's there.
                let at = along(&rec.input, &d, b.t);
                let fresh = preact(&reference, &at, n);
                assert!(
                    (b.value - fresh).abs() <= 1e-5 * fresh.abs().max(1.0),
                    "{n:?} {direction:?}: boundary value {} != forward {fresh}",
                    b.value
                );
                // Just inside: nothing changed; just outside: only the unit.
                let mut step = 1e-3 * b.t.abs();
                if let Some(next) = next {
                    step = step.min((next - b.t) / 2.0);
                }
                if step < 1e-6 * b.t.abs().max(1e-3) {
                    continue;
                }
                let sign = b.t.signum();
                let inside = configuration(
                    &reference.forward(&along(&rec.input, &d, b.t - sign * step)),
                    n,
                );
                assert!(differences(&base, &inside).is_empty(), "{n:?}: inside");
                let outside = configuration(
                    &reference.forward(&along(&rec.input, &d, b.t + sign * step)),
                    n,
                );
                assert_eq!(
                    differences(&base, &outside),
                    vec![reference_unit(b.flip)],
                    "{n:?} {direction:?}: outside {:?}",
                    b.flip
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 16,
        "only {checked} boundaries were far enough apart to check"
    );
}

#[test]
fn regions_along_a_segment_match_a_brute_force_scan() {
    let engine = tiny_engine(Layout::Nchw, false);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let a = record(&engine, 40, 36);
    let b = record(&engine, 29, 47);
    let n = NeuronAt {
        layer: 3,
        feature: 2,
        y: 6,
        x: 5,
    };
    let d = engine
        .direction(&a, n, &Direction::Toward(b.input.clone()))
        .expect("direction");
    let mut reported = Vec::new();
    let profile = engine
        .walk_regions(&a, n, &d, (0.0, 1.0), 1000, &Stop::never(), &mut |k, t| {
            reported.push((k, t))
        })
        .expect("walk");
    assert!(profile.complete);
    let regions = profile.segments.len();
    assert!(
        regions > 3,
        "only {regions} regions: the test needs a longer line"
    );
    assert_eq!(reported.len(), regions);
    // Segments tile [0, 1], and the profile is the network's value.
    assert_eq!(profile.segments[0].t0, 0.0);
    assert_eq!(profile.segments[regions - 1].t1, 1.0);
    for pair in profile.segments.windows(2) {
        assert_eq!(pair[0].t1, pair[1].t0);
        assert!(pair[0].end.is_some());
    }
    for s in &profile.segments {
        let mid = (s.t0 + s.t1) / 2.0;
        let want = preact(&reference, &along(&a.input, &d, mid), n);
        let got = (s.v0 + s.v1) / 2.0;
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "at t = {mid}: profile {got}, network {want}"
        );
    }
    // Brute force: configurations at fine steps; a step where the
    // configuration changes is bisected down to 1e-11 to count the distinct
    // points where it does (a ReLU turning on in a window of zeros takes the
    // switch at the same point: one boundary).
    let config_at = |t: f64| configuration(&reference.forward(&along(&a.input, &d, t)), n);
    fn crossings(
        at: &dyn Fn(f64) -> Configuration,
        (ta, ca): (f64, &Configuration),
        (tb, cb): (f64, &Configuration),
        found: &mut Vec<f64>,
    ) {
        if ca == cb {
        } else if tb - ta < 1e-11 {
            found.push(ta);
        } else {
            let tm = (ta + tb) / 2.0;
            let cm = at(tm);
            crossings(at, (ta, ca), (tm, &cm), found);
            crossings(at, (tm, &cm), (tb, cb), found);
        }
    }
    let steps = 2000;
    let mut found = Vec::new();
    let mut previous = config_at(0.0);
    for k in 1..=steps {
        let t = k as f64 / steps as f64;
        let now = config_at(t);
        let step = ((k - 1) as f64 / steps as f64, &previous);
        crossings(&config_at, step, (t, &now), &mut found);
        previous = now;
    }
    let count = found.len() + 1;
    assert_eq!(regions, count, "walk {regions} regions, scan {count}");
}

#[test]
fn directions_and_walks_refuse_what_they_cannot_do() {
    let engine = tiny_engine(Layout::Nchw, false);
    let a = record(&engine, 40, 36);
    let n = neurons()[0];
    assert!(
        engine
            .direction(&a, n, &Direction::Toward(a.input.clone()))
            .is_err()
    );
    assert!(
        engine
            .direction(&a, n, &Direction::Toward(vec![0.0; 5]))
            .is_err()
    );
    let d = engine
        .direction(&a, n, &Direction::Random(1))
        .expect("direction");
    assert!(engine.linear_region(&a, n, &d[1..]).is_err());
    let never = Stop::never();
    assert!(
        engine
            .walk_regions(&a, n, &d, (1.0, 1.0), 10, &never, &mut |_, _| ())
            .is_err()
    );
    let bounded = engine
        .walk_regions(&a, n, &d, (-50.0, 50.0), 2, &never, &mut |_, _| ())
        .expect("walk");
    assert_eq!(bounded.segments.len(), 2);
    assert!(!bounded.complete);
}

#[test]
fn the_same_image_has_the_same_patterns_and_a_neighbour_shares_the_filter_of_a_small_tree() {
    let engine = tiny_engine(Layout::Nchw, false);
    let a = record(&engine, 40, 36);
    let b = record(&engine, 29, 47);
    let same = engine.compare_patterns(&a, &a, None).expect("compare");
    for l in &same.layers {
        assert_eq!(l.same_state, l.units);
        assert_eq!(l.same_switch, l.windows);
        assert_eq!(l.jaccard(), 1.0);
    }
    let other = engine.compare_patterns(&a, &b, None).expect("compare");
    assert_eq!(other.layers.len(), TINY_CONVS.len());
    assert!(other.layers.iter().any(|l| l.same_state < l.units));
    assert!(other.layers[2].windows > 0 && other.layers[1].windows == 0);
    // Inside a neuron's region the configuration of its tree is the
    // image's: a point half-way to the boundary has the same linear filter.
    let n = neurons()[2];
    let d = engine
        .direction(&a, n, &Direction::Random(5))
        .expect("direction");
    let region = engine.linear_region(&a, n, &d).expect("region");
    let t = region.forward.expect("bounded").t / 2.0;
    let inside = engine
        .record_tensor(along(&a.input, &d, t).iter().map(|&v| v as f32).collect())
        .expect("record");
    let p = engine
        .compare_patterns(&a, &inside, Some(n))
        .expect("compare")
        .neuron
        .expect("neuron");
    assert!(p.same_linear_filter && p.first_difference.is_none());
    let far = engine
        .compare_patterns(&a, &b, Some(n))
        .expect("compare")
        .neuron
        .expect("neuron");
    assert!(!far.same_linear_filter);
    assert!(far.first_difference.is_some_and(|l| l <= n.layer));
}
