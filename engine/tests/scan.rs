//! The dataset scan against a brute-force computation (every image's full
//! forward pass, maxima taken here), on the tiny model and the real VGG-16;
//! shards merged equal the whole; an interrupted scan resumes to the same
//! result; a corrupt file is skipped and reported.

mod common;

use common::{runtime, tiny_engine};
use fovea_engine::engine::{Engine, EngineOptions};
use fovea_engine::model::network::Layout;
use fovea_engine::model::profile::{ImageLimits, decode_image};
use fovea_engine::paths::cache_dir;
use fovea_engine::probe::scan::{Hit, ScanResults, ScanSettings, list_images, merge, scan, shard};
use fovea_engine::supply::{ModelSource, resolve_model};
use std::path::{Path, PathBuf};

fn dataset(dir: &Path, n: u32) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    for i in 0..n {
        let sub = if i % 2 == 0 { "" } else { "nested/" };
        let png = fovea_engine::fixtures::test_image_png(40 + 7 * i, 30 + 5 * i);
        std::fs::write(dir.join(format!("{sub}img{i:02}.png")), png).unwrap();
    }
    std::fs::write(dir.join("nested/corrupt.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    list_images(dir).unwrap()
}

/// Top-k per (layer, feature) from full forward passes.
fn brute_force(
    engine: &Engine,
    list: &[PathBuf],
    layers: &[usize],
    k: usize,
) -> Vec<Vec<Vec<Hit>>> {
    let mut out: Vec<Vec<Vec<Hit>>> = layers
        .iter()
        .map(|&l| vec![Vec::new(); engine.network.convs[l - 1].out_channels])
        .collect();
    for path in list {
        let Ok(img) = decode_image(&std::fs::read(path).unwrap(), ImageLimits::default()) else {
            continue;
        };
        let (_, input) = engine.profile.preprocess(&img);
        let pass = engine.forward(&input).unwrap();
        for (li, &l) in layers.iter().enumerate() {
            let g = engine.geometry[l];
            let plane = g.height * g.width;
            for (hits, maps) in out[li]
                .iter_mut()
                .zip(pass.activations[l - 1].chunks(plane))
            {
                let (at, v) = maps
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    );
                hits.push(Hit {
                    value: v,
                    image: path.display().to_string(),
                    y: (at / g.width) as u32,
                    x: (at % g.width) as u32,
                });
            }
        }
    }
    for layer in &mut out {
        for hits in layer.iter_mut() {
            hits.sort_by(|a, b| {
                b.value
                    .total_cmp(&a.value)
                    .then(a.image.cmp(&b.image))
                    .then(a.y.cmp(&b.y))
                    .then(a.x.cmp(&b.x))
            });
            hits.truncate(k);
        }
    }
    out
}

fn assert_same(results: &ScanResults, want: &[Vec<Vec<Hit>>]) {
    for (lt, wl) in results.layers.iter().zip(want) {
        for (f, (got, w)) in lt.features.iter().zip(wl).enumerate() {
            assert_eq!(got.len(), w.len(), "layer {} feature {f}", lt.layer);
            for (a, b) in got.iter().zip(w) {
                assert!(
                    (a.value - b.value).abs() <= 1e-4 * b.value.abs().max(1e-3),
                    "layer {} f{f}: {a:?} vs {b:?}",
                    lt.layer
                );
                // Same image and place unless two values tie within noise.
                if (a.value - b.value).abs() <= 1e-6 * b.value.abs().max(1e-6) {
                    assert_eq!(
                        (&a.image, a.y, a.x),
                        (&b.image, b.y, b.x),
                        "layer {} f{f}",
                        lt.layer
                    );
                }
            }
        }
    }
}

fn settings(layers: Vec<usize>, k: usize, shard: (usize, usize)) -> ScanSettings {
    ScanSettings {
        k,
        layers,
        batch: 3,
        shard,
        ..Default::default()
    }
}

/// Both reductions (TopK in the graph, vector code over the activations)
/// give every feature's maximum and its first position in row-major order,
/// checked against a plain scan of the full forward pass; a flat image makes
/// whole regions tie.
#[test]
fn both_reductions_give_the_first_maximum() {
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let engine = tiny_engine(layout, false);
        let s = engine.profile.input_size;
        let flat = vec![0.5f32; 3 * s * s];
        let ramp: Vec<f32> = (0..3 * s * s)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let inputs = [flat, ramp];
        let mut batch = Vec::new();
        for i in &inputs {
            batch.extend_from_slice(&engine.model_layout(i).1);
        }
        let in_graph = engine.feature_maxima_by(&batch, 2, true).unwrap();
        let outside = engine.feature_maxima_by(&batch, 2, false).unwrap();
        assert_eq!(in_graph, outside, "{layout:?}");
        for (b, input) in inputs.iter().enumerate() {
            let pass = engine.forward(input).unwrap();
            for (l, acts) in pass.activations.iter().enumerate() {
                let g = engine.geometry[l + 1];
                for (f, plane) in acts.chunks(g.height * g.width).enumerate() {
                    let mut want = (f32::NEG_INFINITY, 0, 0);
                    for (i, &v) in plane.iter().enumerate() {
                        if v > want.0 {
                            want = (v, (i / g.width) as u32, (i % g.width) as u32);
                        }
                    }
                    assert_eq!(outside[l][b][f], want, "{layout:?} layer {} f{f}", l + 1);
                }
            }
        }
    }
}

#[test]
fn scan_equals_brute_force_and_skips_the_corrupt_file() {
    let engine = tiny_engine(Layout::Nchw, false);
    let dir = tempfile::tempdir().unwrap();
    let list = dataset(dir.path(), 7);
    assert_eq!(list.len(), 8);
    let layers: Vec<usize> = (1..=5).collect();
    let out = dir.path().join("results.json");
    let r = scan(
        &engine,
        &list,
        &settings(layers.clone(), 3, (0, 1)),
        &out,
        |_| true,
    )
    .unwrap();
    assert_eq!((r.scanned, r.skipped.len(), r.done, r.total), (7, 1, 8, 8));
    assert!(r.skipped[0].image.ends_with("corrupt.png"));
    assert_same(&r, &brute_force(&engine, &list, &layers, 3));
    assert_eq!(
        ScanResults::load(&out).unwrap(),
        r,
        "the file holds the results"
    );
    // The same input gives the same result.
    let again = scan(
        &engine,
        &list,
        &settings(layers, 3, (0, 1)),
        &dir.path().join("again.json"),
        |_| true,
    )
    .unwrap();
    assert_eq!(again.layers, r.layers);
}

#[test]
fn shards_merge_to_the_whole() {
    let engine = tiny_engine(Layout::Nchw, false);
    let dir = tempfile::tempdir().unwrap();
    let list = dataset(dir.path(), 9);
    let layers = vec![2, 5];
    let whole = scan(
        &engine,
        &list,
        &settings(layers.clone(), 4, (0, 1)),
        &dir.path().join("whole.json"),
        |_| true,
    )
    .unwrap();
    let parts: Vec<ScanResults> = (0..3)
        .map(|i| {
            let part = shard(&list, i, 3);
            scan(
                &engine,
                &part,
                &settings(layers.clone(), 4, (i, 3)),
                &dir.path().join(format!("part{i}.json")),
                |_| true,
            )
            .unwrap()
        })
        .collect();
    let merged = merge(&parts).unwrap();
    assert_eq!(merged.layers, whole.layers);
    assert_eq!(merged.scanned, whole.scanned);
    assert_eq!(merged.shards, vec![(0, 3), (1, 3), (2, 3)]);
    let reversed: Vec<ScanResults> = parts.iter().rev().cloned().collect();
    assert_eq!(
        merge(&reversed).unwrap(),
        merged,
        "merging is order-independent"
    );
}

#[test]
fn an_interrupted_scan_resumes_to_the_same_result() {
    let engine = tiny_engine(Layout::Nchw, false);
    let dir = tempfile::tempdir().unwrap();
    let list = dataset(dir.path(), 10);
    let layers = vec![1, 3, 5];
    let whole = scan(
        &engine,
        &list,
        &settings(layers.clone(), 3, (0, 1)),
        &dir.path().join("whole.json"),
        |_| true,
    )
    .unwrap();
    let out = dir.path().join("interrupted.json");
    let mut calls = 0;
    let stopped = scan(
        &engine,
        &list,
        &settings(layers.clone(), 3, (0, 1)),
        &out,
        |_| {
            calls += 1;
            calls < 2
        },
    );
    assert!(matches!(stopped, Err(fovea_engine::Error::Cancelled)));
    let checkpoint = ScanResults::load(&out).unwrap();
    assert!(
        checkpoint.done > 0 && checkpoint.done < list.len(),
        "checkpoint at {}",
        checkpoint.done
    );
    let resumed = scan(&engine, &list, &settings(layers, 3, (0, 1)), &out, |_| true).unwrap();
    assert_eq!(resumed.layers, whole.layers);
    assert_eq!(resumed.scanned, whole.scanned);
    // Results of another configuration are not silently mixed in.
    let other = scan(&engine, &list, &settings(vec![2], 3, (0, 1)), &out, |_| {
        true
    });
    assert!(other.is_err());
}

#[test]
fn scan_on_the_real_vgg16_equals_brute_force() {
    let (path, provenance) =
        resolve_model("vgg16", ModelSource::Package, &cache_dir()).expect("VGG-16");
    let engine =
        Engine::load(runtime(), &path, provenance, &EngineOptions::default()).expect("engine");
    let list: Vec<PathBuf> = fovea_samples::SAMPLES
        .iter()
        .map(|s| fovea_samples::source_path(s.name))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![10, 13];
    let r = scan(
        &engine,
        &list,
        &settings(layers.clone(), 2, (0, 1)),
        &dir.path().join("vgg.json"),
        |_| true,
    )
    .unwrap();
    assert_eq!(r.scanned, 3);
    assert_same(&r, &brute_force(&engine, &list, &layers, 2));
}
