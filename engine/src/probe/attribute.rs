//! Dense (fc and class) neurons probed over the whole image: the paper's
//! four backward modes from a class, and the attributions people know from
//! Captum: Grad-CAM, Guided Grad-CAM and integrated gradients.
//!
//! Every pass runs one generated graph: the recorded input forward through
//! the conv chain and the model's own head (so the masks and switches are the
//! recorded pass's), then back from the unit by the mode's rule.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::graphs::GraphKind;
use crate::graphs::ascent::Rule;
use crate::graphs::head::{HeadBackward, head_graph};
use crate::model::network::LayerId;
use crate::probe::maximize::blur;
use crate::probe::reconstruct::{
    Mode, NeuronAt, PixelBox, ReconstructRequest, Reconstruction, Start,
};
use crate::record::Recording;
use crate::runtime::sessions::poisoned;
use crate::stop::Stop;
use ort::value::TensorRef;
use rand::{Rng, SeedableRng};

/// The attribution methods of [`Engine::attribute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The gradient of the unit (Simonyan et al.): the class's linear filter.
    Saliency,
    /// Guided backpropagation (the paper's masked deconvnet) from the unit.
    Guided,
    /// Grad-CAM at a conv layer, upsampled to the input.
    GradCam,
    /// Guided backpropagation times Grad-CAM.
    GuidedGradCam,
    /// Integrated gradients from a baseline.
    IntegratedGradients,
}

/// The start of integrated gradients' straight path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline {
    /// Black pixels, preprocessed as the model expects them.
    Black,
    /// The image under a Gaussian blur of this sigma (input pixels).
    Blurred(f32),
    /// Uniform noise over the pixel range, seeded.
    Noise(u64),
}

/// What to attribute and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttributeRequest {
    /// A dense neuron (from [`Engine::ascent_neuron`]).
    pub target: NeuronAt,
    pub method: Method,
    /// Grad-CAM's conv layer; the last conv layer when `None`.
    pub cam_layer: Option<usize>,
    /// Integrated gradients: points on the path, 1..=[`MAX_STEPS`].
    pub steps: usize,
    pub baseline: Baseline,
}

pub const MAX_STEPS: usize = 1024;

/// Grad-CAM's map: on the conv layer's grid and upsampled to the input.
#[derive(Debug, Clone, PartialEq)]
pub struct CamMap {
    pub layer: usize,
    pub height: usize,
    pub width: usize,
    /// ReLU(sum_c w_c A_c) on the layer's grid, row-major.
    pub grid: Vec<f32>,
    /// The channel weights: the spatial mean of the gradient.
    pub weights: Vec<f32>,
    /// `grid` bilinearly upsampled to the input (half-pixel centres).
    pub upsampled: Vec<f32>,
}

/// Integrated gradients' completeness: the attributions should sum to the
/// unit's change from the baseline to the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completeness {
    pub attribution_sum: f32,
    pub objective_difference: f32,
    pub baseline_objective: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// `[3, H, W]` in input space for the pixel methods; Grad-CAM's map
    /// upsampled, `[H, W]`.
    pub values: Vec<f32>,
    pub cam: Option<CamMap>,
    /// The unit's pre-activation at the image.
    pub objective: f32,
    pub completeness: Option<Completeness>,
}

/// Integrated-gradient samples per run of the graph.
const PATH_BATCH: usize = 4;

/// What one run of a head graph gives.
struct HeadRun {
    objective: Vec<f32>,
    /// `grad`, or `act` and `at_act` for a Grad-CAM graph.
    outputs: Vec<Vec<f32>>,
}

impl Engine {
    /// A dense neuron's index into `Network::dense`, or why there is none.
    fn dense_index(&self, n: NeuronAt) -> Result<usize> {
        let convs = self.network.convs.len();
        n.layer
            .checked_sub(convs + 1)
            .filter(|&i| i < self.network.dense.len())
            .ok_or_else(|| {
                Error::invalid(
                    "neuron.layer",
                    format!("{} is not a dense layer of this model", n.layer),
                )
            })
    }

    /// Whether the dense neuron's layer has a ReLU after it (all but the
    /// head's last layer, which gives the classes).
    pub fn dense_has_relu(&self, n: NeuronAt) -> bool {
        self.dense_index(n)
            .is_ok_and(|i| i + 1 < self.network.dense.len())
    }

    fn run_head(&self, spec: HeadBackward, x: &[f32], seed: &[f32]) -> Result<HeadRun> {
        let net = &self.network;
        let size = self.profile.input_size;
        let layer = net.convs.len() + 1 + spec.index;
        let session = self.cached_graph(layer, GraphKind::Head(spec), || {
            head_graph(&self.model_file()?, net, size, spec)
        })?;
        let samples = x.len() / (3 * size * size);
        let names: &[&str] = if spec.cam_layer.is_some() {
            &["act", "at_act"]
        } else {
            &["grad"]
        };
        let inputs = ort::inputs![
            "x" => TensorRef::from_array_view(([samples, 3, size, size], x))?,
            "seed" => TensorRef::from_array_view(([1, seed.len()], seed))?,
        ];
        let mut session = session.lock().map_err(poisoned)?;
        let out = session.run(inputs)?;
        let objective = out["objective"].try_extract_tensor::<f32>()?.1.to_vec();
        let outputs = names
            .iter()
            .map(|&name| Ok(out[name].try_extract_tensor::<f32>()?.1.to_vec()))
            .collect::<Result<Vec<_>>>()?;
        Ok(HeadRun { objective, outputs })
    }

    fn one_hot_seed(&self, n: NeuronAt, value: f32) -> Result<Vec<f32>> {
        let units = self.network.dense[self.dense_index(n)?].units;
        let mut seed = vec![0f32; units];
        if let Some(v) = seed.get_mut(n.feature) {
            *v = value;
        }
        Ok(seed)
    }

    /// The paper's four modes from a dense neuron, over the whole image,
    /// with the recorded pass's masks and switches. `through_relu` starts
    /// behind the neuron's own ReLU (an inactive neuron gives zeros);
    /// otherwise every mode starts at its pre-activation.
    pub(crate) fn reconstruct_dense(
        &self,
        rec: &Recording,
        (neuron_index, n): (usize, NeuronAt),
        req: &ReconstructRequest,
        stop: &Stop,
    ) -> Result<Vec<Reconstruction>> {
        let (modes, start, seed, through_relu) =
            (&req.modes, req.start, req.seed, req.through_relu);
        let index = self.dense_index(n)?;
        let size = self.profile.input_size;
        let mut out = Vec::with_capacity(modes.len());
        for &mode in modes.iter() {
            stop.check()?;
            let spec = HeadBackward {
                index,
                rule: match mode {
                    Mode::Deconvnet => Rule::Deconvnet,
                    Mode::Masked | Mode::RandomWeights => Rule::Guided,
                    Mode::LinearFilter => Rule::Gradient,
                },
                random: (mode == Mode::RandomWeights).then_some(seed),
                cam_layer: None,
            };
            let run = self.run_head(spec, &rec.input, &self.one_hot_seed(n, 1.0)?)?;
            let pre = run.objective.get(n.feature).copied().unwrap_or(0.0);
            let inactive = pre <= 0.0 && self.dense_has_relu(n);
            let activation = if self.dense_has_relu(n) {
                pre.max(0.0)
            } else {
                pre
            };
            let scale = match start {
                _ if through_relu && inactive => 0.0,
                Start::OneHot => 1.0,
                Start::RecordedActivation => activation,
            };
            let mut values = run.outputs.into_iter().next().unwrap_or_default();
            values.iter_mut().for_each(|v| *v *= scale);
            let effective_bias = (mode == Mode::LinearFilter).then(|| {
                // The identity's offset: what the affine map gives beyond
                // <filter, input> (start one-hot).
                let dot: f64 = values
                    .iter()
                    .zip(&rec.input)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                (pre as f64 - dot) as f32
            });
            out.push(Reconstruction {
                neuron_index,
                mode,
                values,
                fov: PixelBox {
                    x0: 0,
                    y0: 0,
                    x1: size,
                    y1: size,
                },
                effective_bias,
                activation,
                inactive,
            });
        }
        Ok(out)
    }

    /// Attributes a dense unit's pre-activation at the recorded image to the
    /// input pixels (or, for Grad-CAM, to the places of a conv layer).
    /// `progress(done, total)` follows integrated gradients' path.
    pub fn attribute(
        &self,
        rec: &Recording,
        req: &AttributeRequest,
        stop: &Stop,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Attribution> {
        self.check_recording(rec)?;
        let index = self.dense_index(req.target)?;
        let n = req.target;
        let seed = self.one_hot_seed(n, 1.0)?;
        let top = self.network.convs.len();
        let cam_layer = req.cam_layer.unwrap_or(top);
        let uses_cam = matches!(req.method, Method::GradCam | Method::GuidedGradCam);
        if uses_cam && !(1..=top).contains(&cam_layer) {
            return Err(Error::invalid(
                "layer",
                format!("{cam_layer} is not a conv layer; allowed 1..={top}"),
            ));
        }
        let pixel = |rule| -> Result<(f32, Vec<f32>)> {
            let spec = HeadBackward {
                index,
                rule,
                random: None,
                cam_layer: None,
            };
            let run = self.run_head(spec, &rec.input, &seed)?;
            let values = run.outputs.into_iter().next().unwrap_or_default();
            Ok((run.objective.get(n.feature).copied().unwrap_or(0.0), values))
        };
        let cam = |stop: &Stop| -> Result<(f32, CamMap)> {
            stop.check()?;
            let spec = HeadBackward {
                index,
                rule: Rule::Gradient,
                random: None,
                cam_layer: Some(cam_layer),
            };
            let run = self.run_head(spec, &rec.input, &seed)?;
            let g = &self.geometry[cam_layer];
            let (act, at) = match run.outputs.as_slice() {
                [a, b] => (a, b),
                _ => return Err(Error::Runtime("the Grad-CAM graph gave no maps".into())),
            };
            let map = grad_cam(
                act,
                at,
                (g.channels, g.height, g.width),
                self.profile.input_size,
            );
            let objective = run.objective.get(n.feature).copied().unwrap_or(0.0);
            Ok((
                objective,
                CamMap {
                    layer: cam_layer,
                    ..map
                },
            ))
        };
        let plain = |(objective, values): (f32, Vec<f32>)| Attribution {
            values,
            cam: None,
            objective,
            completeness: None,
        };
        match req.method {
            Method::Saliency => Ok(plain(pixel(Rule::Gradient)?)),
            Method::Guided => Ok(plain(pixel(Rule::Guided)?)),
            Method::GradCam => {
                let (objective, map) = cam(stop)?;
                Ok(Attribution {
                    values: map.upsampled.clone(),
                    cam: Some(map),
                    objective,
                    completeness: None,
                })
            }
            Method::GuidedGradCam => {
                let (objective, map) = cam(stop)?;
                stop.check()?;
                let (_, mut values) = pixel(Rule::Guided)?;
                let plane = map.upsampled.len();
                for (k, v) in values.iter_mut().enumerate() {
                    *v *= map.upsampled[k % plane];
                }
                Ok(Attribution {
                    values,
                    cam: Some(map),
                    objective,
                    completeness: None,
                })
            }
            Method::IntegratedGradients => {
                self.integrated_gradients(rec, req, index, &seed, stop, &mut progress)
            }
        }
    }

    /// The baseline of integrated gradients in input space.
    pub fn baseline(&self, rec: &Recording, baseline: Baseline) -> Vec<f32> {
        let size = self.profile.input_size;
        let plane = size * size;
        let p = &self.profile;
        let from_pixel = |c: usize, v: f32| (v * p.scale - p.mean[c]) / p.std[c];
        match baseline {
            Baseline::Black => (0..3 * plane).map(|k| from_pixel(k / plane, 0.0)).collect(),
            Baseline::Blurred(sigma) => {
                let mut x = rec.input.clone();
                blur(&mut x, size, size, sigma);
                x
            }
            Baseline::Noise(seed) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                (0..3 * plane)
                    .map(|k| from_pixel(k / plane, rng.random_range(0.0..=255.0)))
                    .collect()
            }
        }
    }

    fn integrated_gradients(
        &self,
        rec: &Recording,
        req: &AttributeRequest,
        index: usize,
        seed: &[f32],
        stop: &Stop,
        progress: &mut impl FnMut(usize, usize),
    ) -> Result<Attribution> {
        let steps = req.steps;
        if !(1..=MAX_STEPS).contains(&steps) {
            return Err(Error::invalid(
                "steps",
                format!("{steps} is outside 1..={MAX_STEPS}"),
            ));
        }
        let spec = HeadBackward::gradient(index);
        let feature = req.target.feature;
        let units = seed.len();
        let x = &rec.input;
        let base = self.baseline(rec, req.baseline);
        // The midpoint rule on [0, 1], then the two ends for completeness.
        let mut alphas: Vec<f32> = (0..steps)
            .map(|i| (i as f32 + 0.5) / steps as f32)
            .collect();
        alphas.extend([0.0, 1.0]);
        let mut sum = vec![0f64; x.len()];
        let mut ends = [0f32; 2];
        let total = alphas.len();
        for (b, chunk) in alphas.chunks(PATH_BATCH).enumerate() {
            stop.check()?;
            let batch: Vec<f32> = chunk
                .iter()
                .flat_map(|&a| {
                    x.iter()
                        .zip(&base)
                        .map(move |(&xv, &bv)| bv + a * (xv - bv))
                })
                .collect();
            let run = self.run_head(spec, &batch, seed)?;
            let grads = run.outputs.into_iter().next().unwrap_or_default();
            for (k, g) in grads.chunks(x.len()).enumerate() {
                let at = b * PATH_BATCH + k;
                if at < steps {
                    sum.iter_mut().zip(g).for_each(|(s, &v)| *s += v as f64);
                } else if let Some(e) = ends.get_mut(at - steps) {
                    *e = run
                        .objective
                        .get(k * units + feature)
                        .copied()
                        .unwrap_or(0.0);
                }
            }
            progress((b * PATH_BATCH + chunk.len()).min(total), total);
        }
        let values: Vec<f32> = sum
            .iter()
            .zip(x.iter().zip(&base))
            .map(|(s, (&xv, &bv))| ((xv - bv) as f64 * s / steps as f64) as f32)
            .collect();
        let attribution_sum = values.iter().map(|&v| v as f64).sum::<f64>() as f32;
        Ok(Attribution {
            values,
            cam: None,
            objective: ends[1],
            completeness: Some(Completeness {
                attribution_sum,
                objective_difference: ends[1] - ends[0],
                baseline_objective: ends[0],
            }),
        })
    }

    /// Unit `unit` of dense layer `layer` (number or name), or why not;
    /// errors name the fields `layer` and `unit`.
    pub fn dense_neuron(&self, layer: &str, unit: i64) -> Result<NeuronAt> {
        match self.network.resolve_layer("layer", layer)? {
            LayerId::Dense(index) => self.dense_at(("layer", "unit"), index, unit),
            _ => Err(Error::invalid(
                "layer",
                format!(
                    "{} is not a dense layer; allowed {}..={}",
                    crate::error::quote(layer),
                    self.network.convs.len() + 1,
                    self.network.convs.len() + self.network.dense.len()
                ),
            )),
        }
    }
}

/// Grad-CAM from a layer's activations `act` and the gradient there `at`
/// (both `[C, h, w]`): w_c = mean of the gradient over the grid, the map
/// ReLU(sum_c w_c A_c), and that map upsampled to `size` x `size`.
pub fn grad_cam(act: &[f32], at: &[f32], (c, h, w): (usize, usize, usize), size: usize) -> CamMap {
    let plane = h * w;
    let weights: Vec<f32> = at
        .chunks(plane)
        .take(c)
        .map(|g| (g.iter().map(|&v| v as f64).sum::<f64>() / plane.max(1) as f64) as f32)
        .collect();
    let mut grid = vec![0f32; plane];
    for (a, &wc) in act.chunks(plane).zip(&weights) {
        grid.iter_mut().zip(a).for_each(|(m, &v)| *m += wc * v);
    }
    grid.iter_mut().for_each(|v| *v = v.max(0.0));
    let upsampled = upsample_bilinear(&grid, h, w, size);
    CamMap {
        layer: 0,
        height: h,
        width: w,
        grid,
        weights,
        upsampled,
    }
}

/// Bilinear upsampling with half-pixel centres and clamped edges (as
/// `torch.nn.functional.interpolate(..., align_corners=False)`).
pub fn upsample_bilinear(grid: &[f32], h: usize, w: usize, size: usize) -> Vec<f32> {
    let mut out = vec![0f32; size * size];
    if h == 0 || w == 0 {
        return out;
    }
    let coord = |o: usize, n: usize| {
        let s = ((o as f32 + 0.5) * n as f32 / size as f32 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, s - i0 as f32)
    };
    for y in 0..size {
        let (y0, y1, fy) = coord(y, h);
        for x in 0..size {
            let (x0, x1, fx) = coord(x, w);
            let top = grid[y0 * w + x0] * (1.0 - fx) + grid[y0 * w + x1] * fx;
            let bottom = grid[y1 * w + x0] * (1.0 - fx) + grid[y1 * w + x1] * fx;
            out[y * size + x] = top * (1.0 - fy) + bottom * fy;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_a_constant_and_interpolates_between_centres() {
        assert!(
            upsample_bilinear(&[2.0; 4], 2, 2, 6)
                .iter()
                .all(|&v| (v - 2.0).abs() < 1e-6)
        );
        // Two cells 0 and 1 over 4 pixels: centres at 0.5 and 2.5 of the
        // output hold the cells' values; beyond them the edges are clamped.
        let row = upsample_bilinear(&[0.0, 1.0], 1, 2, 4);
        assert_eq!(&row[..4], &[0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn grad_cam_weights_channels_by_their_mean_gradient() {
        // Two channels on a 1x2 grid; gradient means 1 and -1.
        let act = [1.0, 3.0, 2.0, 0.0];
        let at = [2.0, 0.0, -1.0, -1.0];
        let m = grad_cam(&act, &at, (2, 1, 2), 2);
        assert_eq!(m.weights, vec![1.0, -1.0]);
        // 1*[1,3] - 1*[2,0] = [-1, 3] -> ReLU [0, 3].
        assert_eq!(m.grid, vec![0.0, 3.0]);
    }
}
