//! The random-weights study on the tiny model: every compared picture
//! against the plain-loop f64 reference's backward pass (the control with
//! the other image's masks, the neuron itself let through), and the
//! study's measures of them.

mod common;

use common::reference::Reference;
use common::{TINY_SIZE, tiny_engine};
use fovea_engine::fixtures::{test_image_png, tiny_weights};
use fovea_engine::graphs::transposed::random_weights;
use fovea_engine::model::network::Layout;
use fovea_engine::model::profile::ImageLimits;
use fovea_engine::probe::reconstruct::Mode;
use fovea_engine::probe::study::{StudySettings, crop, pearson, ssim};
use fovea_engine::stop::Stop;

#[test]
fn every_condition_is_the_reference_backward_and_its_measures_follow() {
    let engine = tiny_engine(Layout::Nchw, false);
    let reference = Reference::new(tiny_weights(), TINY_SIZE);
    let recs: Vec<_> = [(40, 36), (29, 47)]
        .iter()
        .map(|&(w, h)| {
            engine
                .record(&test_image_png(w, h), "", ImageLimits::default())
                .expect("record")
        })
        .collect();
    let settings = StudySettings {
        layer: 4,
        neurons_per_image: 3,
        seed: 9,
    };
    let mut steps = Vec::new();
    let rows = engine
        .study(
            &recs.iter().collect::<Vec<_>>(),
            &settings,
            &Stop::never(),
            &mut |done, total| steps.push((done, total)),
        )
        .expect("study");
    assert_eq!(steps, vec![(1, 2), (2, 2)]);
    assert_eq!(rows.len(), 6);
    let trained: Vec<Vec<f64>> = reference.layers.iter().map(|l| l.3.clone()).collect();
    let random: Vec<Vec<f64>> = random_weights(&engine.network.convs, settings.seed)
        .into_iter()
        .map(|w| w.into_iter().map(|v| v as f64).collect())
        .collect();
    let input = |i: usize| -> Vec<f64> { recs[i].input.iter().map(|&v| v as f64).collect() };
    for row in &rows {
        let n = row.neuron;
        let own = reference.forward(&input(row.image));
        let other = reference.forward(&input(row.other));
        let pictures = [
            reference.backward(&own, n, Mode::Masked, &trained, 1.0),
            reference.backward(&own, n, Mode::RandomWeights, &random, 1.0),
            reference.backward(&other, n, Mode::RandomWeights, &random, 1.0),
            reference.backward(&own, n, Mode::Deconvnet, &trained, 1.0),
        ]
        .map(|p| {
            let p: Vec<f32> = p.iter().map(|&v| v as f32).collect();
            crop(&p, TINY_SIZE, row.fov)
        });
        let patch = crop(&recs[row.image].input, TINY_SIZE, row.fov);
        let (fh, fw) = (row.fov.y1 - row.fov.y0, row.fov.x1 - row.fov.x0);
        for (k, p) in pictures.iter().enumerate() {
            let want = pearson(p, &pictures[0]);
            let got = row.to_trained[k].pearson;
            assert!(
                (got - want).abs() <= 1e-4,
                "{n:?} condition {k}: {got} vs {want}"
            );
            let want = pearson(p, &patch);
            let got = row.to_image[k].pearson;
            assert!(
                (got - want).abs() <= 1e-4,
                "{n:?} condition {k}: {got} vs {want}"
            );
            let want = ssim(p, &pictures[0], fh, fw);
            assert!((row.to_trained[k].ssim - want).abs() <= 2e-2, "{n:?} {k}");
        }
        assert_eq!(row.to_trained[0].pearson, 1.0);
        assert!((0.0..=1.0).contains(&row.filter_high_frequency));
        assert!((0.0..=1.0).contains(&row.patch_high_frequency));
    }
    // One image cannot be its own control.
    assert!(
        engine
            .study(&[&recs[0]], &settings, &Stop::never(), &mut |_, _| ())
            .is_err()
    );
}
