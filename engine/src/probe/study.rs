//! The random-weights claim measured (paper section 3.1): for a set of
//! images and the strongest neurons of a layer, how much of the masked
//! reconstruction with trained weights the same masks with random weights
//! keep, against two controls (random weights with another image's masks,
//! and trained weights without masks: the deconvnet), and how much of the
//! image patch each carries. A second measure checks the claim that linear
//! filters look like gradients: their share of energy at high spatial
//! frequencies against the image patch's.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::probe::fourier::{fft2, freq};
use crate::probe::reconstruct::{
    Mode, NeuronAt, PixelBox, ReconstructRequest, Reconstruction, Start,
};
use crate::record::{Recording, top_activations};
use crate::stop::Stop;
use rustfft::num_complex::Complex;

/// What a study asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StudySettings {
    pub layer: usize,
    /// The strongest active neurons of distinct features, per image.
    pub neurons_per_image: usize,
    /// Seed of the random weights.
    pub seed: u64,
}

/// The reconstructions compared, in the order of a row's arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Masks and switches of the image, trained weights (the reference).
    TrainedMasks,
    /// The image's masks and switches, random weights.
    RandomMasks,
    /// Control: random weights, masks and switches of another image.
    RandomOtherMasks,
    /// Control: trained weights, no masks (the deconvnet).
    Deconvnet,
}

impl Condition {
    pub const ALL: [Condition; 4] = [
        Condition::TrainedMasks,
        Condition::RandomMasks,
        Condition::RandomOtherMasks,
        Condition::Deconvnet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Condition::TrainedMasks => "trained weights, own masks",
            Condition::RandomMasks => "random weights, own masks",
            Condition::RandomOtherMasks => "random weights, other image's masks",
            Condition::Deconvnet => "trained weights, no masks (deconvnet)",
        }
    }

    /// Short name for tables and files.
    pub fn key(self) -> &'static str {
        match self {
            Condition::TrainedMasks => "trained_masks",
            Condition::RandomMasks => "random_masks",
            Condition::RandomOtherMasks => "random_other_masks",
            Condition::Deconvnet => "deconvnet",
        }
    }
}

/// Pearson correlation and SSIM of two pictures inside the FOV.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Similarity {
    pub pearson: f64,
    pub ssim: f64,
}

/// One image and neuron of a study.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRow {
    /// Index of the image, and of the image whose masks the control uses.
    pub image: usize,
    pub other: usize,
    pub neuron: NeuronAt,
    pub activation: f32,
    pub fov: PixelBox,
    /// Per condition (in [`Condition::ALL`] order): similarity to the
    /// trained-weight masked reconstruction (1 for itself) and to the image
    /// patch in input space.
    pub to_trained: [Similarity; 4],
    pub to_image: [Similarity; 4],
    /// Share of spectral energy above half the Nyquist frequency (DC left
    /// out), of the linear filter and of the image patch, in the FOV.
    pub filter_high_frequency: f64,
    pub patch_high_frequency: f64,
}

impl Engine {
    /// Runs a study over `recs` (at least two: the control borrows the
    /// next image's masks); `progress(done, total)` after each image.
    pub fn study(
        &self,
        recs: &[&Recording],
        settings: &StudySettings,
        stop: &Stop,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<StudyRow>> {
        if recs.len() < 2 {
            return Err(Error::invalid(
                "recording_ids",
                "a study needs at least 2 recordings (the control uses another image's masks)",
            ));
        }
        for r in recs {
            self.check_recording(r)?;
        }
        let layer = settings.layer;
        let size = self.profile.input_size;
        let mut rows = Vec::new();
        for (i, rec) in recs.iter().enumerate() {
            stop.check()?;
            let other = (i + 1) % recs.len();
            let neurons: Vec<(NeuronAt, f32)> =
                top_activations(rec.layer(layer), settings.neurons_per_image, None, true)
                    .into_iter()
                    .filter(|h| h.value > 0.0)
                    .map(|h| {
                        let n = NeuronAt {
                            layer,
                            feature: h.feature,
                            y: h.y,
                            x: h.x,
                        };
                        (n, h.value)
                    })
                    .collect();
            if neurons.is_empty() {
                progress(i + 1, recs.len());
                continue;
            }
            let at: Vec<NeuronAt> = neurons.iter().map(|n| n.0).collect();
            let modes = [
                Mode::Masked,
                Mode::RandomWeights,
                Mode::Deconvnet,
                Mode::LinearFilter,
            ];
            let own = self.reconstruct_request(
                rec,
                &ReconstructRequest {
                    neurons: at.clone(),
                    modes: modes.to_vec(),
                    start: Start::OneHot,
                    seed: settings.seed,
                    effective_bias: false,
                    through_relu: false,
                },
                stop,
            )?;
            // The other image's configuration; every reconstruction starts
            // at the neuron's pre-activation, so the neuron itself is let
            // through whatever its state there.
            let control = self.reconstruct_request(
                recs[other],
                &ReconstructRequest {
                    neurons: at.clone(),
                    modes: vec![Mode::RandomWeights],
                    start: Start::OneHot,
                    seed: settings.seed,
                    effective_bias: false,
                    through_relu: false,
                },
                stop,
            )?;
            for (k, &(n, activation)) in neurons.iter().enumerate() {
                let pick = |results, m| pick(results, k, m);
                let fov = pick(&own, Mode::Masked)?.fov;
                let crop = |v: &[f32]| crop(v, size, fov);
                let pictures = [
                    crop(&pick(&own, Mode::Masked)?.values),
                    crop(&pick(&own, Mode::RandomWeights)?.values),
                    crop(&pick(&control, Mode::RandomWeights)?.values),
                    crop(&pick(&own, Mode::Deconvnet)?.values),
                ];
                let patch = crop(&rec.input);
                let (h, w) = (fov.y1 - fov.y0, fov.x1 - fov.x0);
                let similar = |a: &[f32], b: &[f32]| Similarity {
                    pearson: pearson(a, b),
                    ssim: ssim(a, b, h, w),
                };
                let filter = crop(&pick(&own, Mode::LinearFilter)?.values);
                rows.push(StudyRow {
                    image: i,
                    other,
                    neuron: n,
                    activation,
                    fov,
                    to_trained: pictures.each_ref().map(|p| similar(p, &pictures[0])),
                    to_image: pictures.each_ref().map(|p| similar(p, &patch)),
                    filter_high_frequency: high_frequency_share(&grey(&filter, h, w), h, w),
                    patch_high_frequency: high_frequency_share(&grey(&patch, h, w), h, w),
                });
            }
            progress(i + 1, recs.len());
        }
        Ok(rows)
    }
}

fn pick(results: &[Reconstruction], neuron: usize, mode: Mode) -> Result<&Reconstruction> {
    results
        .iter()
        .find(|r| r.neuron_index == neuron && r.mode == mode)
        .ok_or_else(|| Error::Runtime("a study reconstruction is missing".into()))
}

/// The `[3, h, w]` crop of a `[3, size, size]` frame inside `fov`.
pub fn crop(v: &[f32], size: usize, fov: PixelBox) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * (fov.y1 - fov.y0) * (fov.x1 - fov.x0));
    for c in 0..3 {
        for y in fov.y0..fov.y1 {
            let row = (c * size + y) * size;
            out.extend_from_slice(&v[row + fov.x0..row + fov.x1]);
        }
    }
    out
}

/// Pearson correlation of two equally long vectors (0 when either is
/// constant).
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// The mean over channels of a `[3, h, w]` picture.
pub fn grey(v: &[f32], h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    (0..plane)
        .map(|i| (v[i] + v[plane + i] + v[2 * plane + i]) / 3.0)
        .collect()
}

/// Mean SSIM (image-compare's, over 8x8 windows) of the grey versions of
/// two `[3, h, w]` pictures, each scaled from its own min..max to 0..255:
/// reconstructions in different modes differ in scale and sign
/// convention only up to an affine map, which SSIM would otherwise count.
pub fn ssim(a: &[f32], b: &[f32], h: usize, w: usize) -> f64 {
    let eight_bit = |v: &[f32]| {
        let g = grey(v, h, w);
        let (lo, hi) = g
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let bytes = g
            .iter()
            .map(|&x| (255.0 * (x - lo) / span).round() as u8)
            .collect();
        image::GrayImage::from_raw(w as u32, h as u32, bytes)
    };
    match (eight_bit(a), eight_bit(b)) {
        (Some(x), Some(y)) => {
            image_compare::gray_similarity_structure(&image_compare::Algorithm::MSSIMSimple, &x, &y)
                .map_or(0.0, |s| s.score)
        }
        _ => 0.0,
    }
}

/// The share of a grey `h x w` picture's spectral energy (its mean left
/// out) at radial frequencies above a quarter cycle per pixel, half the
/// Nyquist frequency.
pub fn high_frequency_share(g: &[f32], h: usize, w: usize) -> f64 {
    if h == 0 || w == 0 {
        return 0.0;
    }
    let mean = g.iter().map(|&x| x as f64).sum::<f64>() / g.len() as f64;
    let mut data: Vec<Complex<f64>> = g
        .iter()
        .map(|&x| Complex::new(x as f64 - mean, 0.0))
        .collect();
    fft2(&mut data, h, w, false);
    let (mut high, mut total) = (0f64, 0f64);
    for y in 0..h {
        for x in 0..w {
            let p = data[y * w + x].norm_sqr();
            total += p;
            if freq(y, h).hypot(freq(x, w)) > 0.25 {
                high += p;
            }
        }
    }
    if total == 0.0 { 0.0 } else { high / total }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_sees_affine_maps_and_constants() {
        let a: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = a.iter().map(|&x| 3.0 * x - 2.0).collect();
        let c: Vec<f32> = a.iter().map(|&x| -x).collect();
        assert!((pearson(&a, &b) - 1.0).abs() < 1e-12);
        assert!((pearson(&a, &c) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&a, &[5.0; 50]), 0.0);
    }

    #[test]
    fn ssim_is_one_for_a_rescaled_copy_and_lower_for_noise() {
        let (h, w) = (24, 24);
        let a: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i % w) as f32 * 0.4).sin() + ((i / w % h) as f32 * 0.3).cos())
            .collect();
        let b: Vec<f32> = a.iter().map(|&x| 10.0 * x + 4.0).collect();
        assert!((ssim(&a, &b, h, w) - 1.0).abs() < 1e-6);
        let noise: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 20) as f32)
            .collect();
        assert!(ssim(&a, &noise, h, w) < 0.5);
    }

    /// A plain DFT of the same share: the FFT path against it.
    fn share_by_dft(g: &[f32], h: usize, w: usize) -> f64 {
        let mean = g.iter().map(|&x| x as f64).sum::<f64>() / g.len() as f64;
        let (mut high, mut total) = (0f64, 0f64);
        for ky in 0..h {
            for kx in 0..w {
                let (mut re, mut im) = (0f64, 0f64);
                for y in 0..h {
                    for x in 0..w {
                        let phase = -2.0
                            * std::f64::consts::PI
                            * (ky as f64 * y as f64 / h as f64 + kx as f64 * x as f64 / w as f64);
                        let v = g[y * w + x] as f64 - mean;
                        re += v * phase.cos();
                        im += v * phase.sin();
                    }
                }
                let p = re * re + im * im;
                total += p;
                if freq(ky, h).hypot(freq(kx, w)) > 0.25 {
                    high += p;
                }
            }
        }
        high / total
    }

    #[test]
    fn high_frequency_share_matches_a_plain_dft_and_its_extremes() {
        let (h, w) = (12, 10);
        let g: Vec<f32> = (0..h * w)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 22) as f32)
            .collect();
        let fast = high_frequency_share(&g, h, w);
        assert!((fast - share_by_dft(&g, h, w)).abs() < 1e-9, "{fast}");
        let checker: Vec<f32> = (0..16 * 16)
            .map(|i| ((i / 16 + i % 16) % 2) as f32)
            .collect();
        assert!(high_frequency_share(&checker, 16, 16) > 0.99);
        let slow: Vec<f32> = (0..32 * 32)
            .map(|i| ((i % 32) as f32 * std::f32::consts::TAU / 32.0).sin())
            .collect();
        assert!(high_frequency_share(&slow, 32, 32) < 1e-6);
    }
}
