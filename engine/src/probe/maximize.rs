//! Best-input selection (paper section 4, eq. 10): gradient ascent on the
//! input to maximize one neuron's pre-activation, from several seeded random
//! starts run as one batch, with the regularizers of Yosinski et al. (2015).
//!
//! Only the neuron's field of view is optimised: one generated graph runs the
//! forward pass over the FOV window and, fused with it, the backward pass of
//! the linear filter at the current image (the gradient), with the ReLU masks
//! and pooling switches of that same forward pass. A dense (fc or class)
//! neuron sees the whole image; its graph, which also runs the model's head,
//! is built in `head.rs`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::graphs::GraphKind;
use crate::graphs::ascent::{ascent_graph, whole_ascent_graph};
use crate::model::network::{LayerId, Span, inside_grid, put_window, window_of, window_tree};
use crate::probe::reconstruct::{NeuronAt, PixelBox, fov_box};
use crate::runtime::sessions::SharedSession;
use ort::value::TensorRef;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// The recommended settings of a maximization (Yosinski et al. 2015's
/// regularizers at strengths that suit VGG-16): one place for the engine's
/// defaults and every client's.
pub mod defaults {
    pub const STARTS: u32 = 3;
    pub const STEPS: u32 = 200;
    /// Input units per unit of the RMS-normalised gradient.
    pub const LEARNING_RATE: f32 = 1.0;
    pub const L2_DECAY: f32 = 0.0005;
    pub const BLUR_SIGMA: f32 = 0.5;
    pub const BLUR_EVERY: u32 = 4;
    pub const JITTER: u32 = 2;
}

/// Settings of one maximization.
#[derive(Debug, Clone, PartialEq)]
pub struct MaximizeOptions {
    /// Random starts, run as one batch (1..=16).
    pub starts: usize,
    /// Gradient steps (1..=10000).
    pub steps: usize,
    /// Step length in 0..255 pixel units per step, applied to the gradient
    /// normalised to unit RMS.
    pub learning_rate: f32,
    /// Image multiplied by (1 - l2_decay) after each step (pulls to the mean).
    pub l2_decay: f32,
    /// Gaussian blur of this sigma (pixels) every `blur_every` steps; 0 off.
    pub blur_sigma: f32,
    pub blur_every: usize,
    /// Random shift of up to this many pixels before each step.
    pub jitter: usize,
    /// Keep pixels within 0..=255.
    pub clip: bool,
    pub seed: u64,
}

impl Default for MaximizeOptions {
    fn default() -> Self {
        use defaults as d;
        MaximizeOptions {
            starts: d::STARTS as usize,
            steps: d::STEPS as usize,
            learning_rate: d::LEARNING_RATE,
            l2_decay: d::L2_DECAY,
            blur_sigma: d::BLUR_SIGMA,
            blur_every: d::BLUR_EVERY as usize,
            jitter: d::JITTER as usize,
            clip: true,
            seed: 0,
        }
    }
}

impl MaximizeOptions {
    /// Checks every field, naming it and its allowed range.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: String| Err(Error::invalid(f, m));
        check_run(self.starts, self.steps, self.jitter)?;
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 || self.learning_rate > 1e6
        {
            return bad(
                "learning_rate",
                format!("{} is outside (0, 1e6]", self.learning_rate),
            );
        }
        if !self.l2_decay.is_finite() || !(0.0..1.0).contains(&self.l2_decay) {
            return bad("l2_decay", format!("{} is outside [0, 1)", self.l2_decay));
        }
        if !self.blur_sigma.is_finite() || !(0.0..=10.0).contains(&self.blur_sigma) {
            return bad(
                "blur_sigma",
                format!("{} is outside [0, 10]", self.blur_sigma),
            );
        }
        if self.blur_every > 10_000 {
            return bad(
                "blur_every",
                format!("{} is outside 0..=10000", self.blur_every),
            );
        }
        Ok(())
    }
}

/// The limits every optimisation of an input shares: starts in one batch,
/// steps, and the random shift.
pub(crate) fn check_run(starts: usize, steps: usize, jitter: usize) -> Result<()> {
    if !(1..=16).contains(&starts) {
        return Err(Error::invalid(
            "starts",
            format!("{starts} is outside 1..=16"),
        ));
    }
    if !(1..=10_000).contains(&steps) {
        return Err(Error::invalid(
            "steps",
            format!("{steps} is outside 1..=10000"),
        ));
    }
    if jitter > 32 {
        return Err(Error::invalid(
            "jitter",
            format!("{jitter} is outside 0..=32"),
        ));
    }
    Ok(())
}

/// Progress after a step.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub step: usize,
    pub total: usize,
    /// Pre-activation of the neuron for each start.
    pub objective: &'a [f32],
    /// Current FOV crops, `[starts][3, h, w]` in input space.
    pub crops: &'a [Vec<f32>],
}

/// The outcome: one image per start.
#[derive(Debug, Clone)]
pub struct Maximized {
    /// `[3, H, W]` full frames (zero, the mean colour, outside the FOV).
    pub images: Vec<Vec<f32>>,
    pub objective: Vec<f32>,
    pub fov: PixelBox,
    /// Steps taken: fewer than asked when the run was ended early.
    pub steps: usize,
}

/// What a progress callback asks for after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop and discard the images (the client is gone).
    Cancel,
    /// Stop and return the images so far (shutdown, deadline).
    Finish,
}

/// A normalised 1-D Gaussian kernel.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

/// Separable Gaussian blur of each `h x w` plane, edges clamped.
pub(crate) fn blur(planes: &mut [f32], h: usize, w: usize, sigma: f32) {
    let k = gaussian_kernel(sigma);
    let mut tmp = vec![0f32; h * w];
    for plane in planes.chunks_mut(h * w) {
        blur_pass(plane, &mut tmp, (h, w), &k, true);
        blur_pass(&tmp, plane, (h, w), &k, false);
    }
}

/// One pass of a separable blur: `dst` is the `h x w` plane `src`
/// convolved with `k` along its rows (`along_rows`) or its columns, edges
/// clamped.
fn blur_pass(src: &[f32], dst: &mut [f32], (h, w): (usize, usize), k: &[f32], along_rows: bool) {
    let r = (k.len() / 2) as i64;
    let last = if along_rows { w } else { h } as i64 - 1;
    for y in 0..h {
        for x in 0..w {
            let at = if along_rows { x } else { y } as i64;
            let mut s = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let t = (at + j as i64 - r).clamp(0, last) as usize;
                s += kv * src[if along_rows { y * w + t } else { t * w + x }];
            }
            dst[y * w + x] = s;
        }
    }
}

/// Circular shift of each plane by (dy, dx).
fn roll(planes: &mut [f32], h: usize, w: usize, dy: i64, dx: i64) {
    if dy == 0 && dx == 0 {
        return;
    }
    let mut tmp = vec![0f32; h * w];
    for plane in planes.chunks_mut(h * w) {
        for y in 0..h {
            for x in 0..w {
                let ny = (y as i64 + dy).rem_euclid(h as i64) as usize;
                let nx = (x as i64 + dx).rem_euclid(w as i64) as usize;
                tmp[ny * w + nx] = plane[y * w + x];
            }
        }
        plane.copy_from_slice(&tmp);
    }
}

/// An input of an ascent graph besides the images.
struct Fed {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// The ascent graph of one neuron, with its per-position inputs.
struct Ascent {
    session: SharedSession,
    /// Top-left corner of the optimised window, in input pixels (negative
    /// where it reaches beyond the image).
    origin: (i64, i64),
    /// Size (h, w) of the optimised window.
    window: (usize, usize),
    /// The window clipped to the image.
    fov: PixelBox,
    fed: Vec<Fed>,
    /// Length of a row of the `objective` output, and the neuron's place in it.
    units: usize,
    feature: usize,
}

impl Ascent {
    fn new(engine: &Engine, n: NeuronAt) -> Result<Ascent> {
        let convs = &engine.network.convs;
        if n.layer > convs.len() {
            return Ascent::dense(engine, n);
        }
        let layer = n.layer;
        let tree = window_tree(convs, layer, (n.y, n.x), engine.profile.input_size);
        if tree.whole {
            return Ascent::whole(engine, n);
        }
        let session =
            engine.cached_graph(layer, GraphKind::Ascent, || Ok(ascent_graph(convs, layer)))?;
        // 1 where a window of a (rows, columns) grid lies on it.
        let inside = |name: String, window: (Span, Span), grid: (usize, usize)| Fed {
            name,
            shape: vec![1, 1, window.0.len, window.1.len],
            values: inside_grid(window, grid),
        };
        // Layers out of the tree (other branches of a block) have no inputs.
        let mut fed: Vec<Fed> = (1..layer)
            .filter(|&i| tree.live[i])
            .map(|i| {
                let g = &engine.geometry[i];
                inside(format!("inside{i}"), tree.out[i], (g.height, g.width))
            })
            .collect();
        for i in (2..=layer).filter(|&i| tree.live[i]) {
            if let Some(p) = convs[i - 1].pool {
                let g = &convs[i - 1].input_geom(&engine.geometry);
                let grid = (p.output_len(g.height, 0), p.output_len(g.width, 1));
                fed.push(inside(format!("inside_pool{i}"), tree.conv_in[i], grid));
            }
        }
        let units = convs[layer - 1].out_channels;
        fed.push(Fed {
            name: "seed".into(),
            shape: vec![1, units, 1, 1],
            values: one_hot(units, n.feature),
        });
        let (sy, sx) = tree.out[0];
        Ok(Ascent {
            session,
            origin: (sy.start, sx.start),
            window: (sy.len, sx.len),
            fov: fov_box(convs, n, engine.profile.input_size),
            fed,
            units,
            feature: n.feature,
        })
    }

    /// A conv neuron whose FOV window is larger than the image: the graph
    /// runs on every layer's whole grid and picks the neuron's position.
    fn whole(engine: &Engine, n: NeuronAt) -> Result<Ascent> {
        let convs = &engine.network.convs;
        let size = engine.profile.input_size;
        let session = engine.cached_graph(n.layer, GraphKind::Ascent, || {
            Ok(whole_ascent_graph(convs, n.layer, size))
        })?;
        let top = engine.geometry[n.layer];
        let units = top.channels;
        let mut at = vec![0f32; top.height * top.width];
        let cell = at.get_mut(n.y * top.width + n.x).ok_or_else(|| {
            Error::invalid(
                "neuron",
                format!(
                    "({}, {}) is outside the {}x{} grid",
                    n.y, n.x, top.height, top.width
                ),
            )
        })?;
        *cell = 1.0;
        Ok(Ascent {
            session,
            origin: (0, 0),
            window: (size, size),
            fov: fov_box(convs, n, size),
            fed: vec![
                Fed {
                    name: "seed".into(),
                    shape: vec![1, units, 1, 1],
                    values: one_hot(units, n.feature),
                },
                Fed {
                    name: "at".into(),
                    shape: vec![1, 1, top.height, top.width],
                    values: at,
                },
            ],
            units,
            feature: n.feature,
        })
    }

    /// A dense neuron sees the whole image: the graph runs the conv chain
    /// padded, then the model's own head, and back.
    fn dense(engine: &Engine, n: NeuronAt) -> Result<Ascent> {
        let net = &engine.network;
        let index = n.layer - net.convs.len() - 1;
        let units = net
            .dense
            .get(index)
            .ok_or_else(|| Error::invalid("neuron.layer", format!("{} is not a layer", n.layer)))?
            .units;
        let size = engine.profile.input_size;
        let session = engine.cached_graph(n.layer, GraphKind::Ascent, || {
            crate::graphs::head::dense_ascent_graph(&engine.model_file()?, net, size, index)
        })?;
        Ok(Ascent {
            session,
            origin: (0, 0),
            window: (size, size),
            fov: PixelBox {
                x0: 0,
                y0: 0,
                x1: size,
                y1: size,
            },
            fed: vec![Fed {
                name: "seed".into(),
                shape: vec![1, units],
                values: one_hot(units, n.feature),
            }],
            units,
            feature: n.feature,
        })
    }

    /// Pre-activations and gradients for a batch of windows.
    fn run(&self, batch: &[f32], starts: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let (h, w) = self.window;
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![(
            "x".into(),
            TensorRef::from_array_view(([starts, 3, h, w], batch))?.into(),
        )];
        for f in &self.fed {
            inputs.push((
                f.name.clone(),
                TensorRef::from_array_view((f.shape.clone(), f.values.as_slice()))?.into(),
            ));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::Runtime("session poisoned".into()))?;
        let out = session.run(inputs)?;
        let (_, obj) = out["objective"].try_extract_tensor::<f32>()?;
        let objective = (0..starts)
            .map(|s| obj[s * self.units + self.feature])
            .collect();
        Ok((
            objective,
            out["grad"].try_extract_tensor::<f32>()?.1.to_vec(),
        ))
    }

    /// The optimised window on the input's rows and columns.
    fn spans(&self) -> (Span, Span) {
        let ((oy, ox), (h, w)) = (self.origin, self.window);
        (Span { start: oy, len: h }, Span { start: ox, len: w })
    }
}

fn one_hot(n: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0f32; n];
    if let Some(x) = v.get_mut(i) {
        *x = 1.0;
    }
    v
}

impl Engine {
    /// Checks a neuron to maximize: a conv neuron, or a dense (fc or class)
    /// one when the model's head runs at the working size.
    pub fn ascent_neuron(
        &self,
        field: &str,
        layer: &str,
        feature: i64,
        y: i64,
        x: i64,
    ) -> Result<NeuronAt> {
        let net = &self.network;
        let LayerId::Dense(index) = net.resolve_layer(&format!("{field}.layer"), layer)? else {
            return self.neuron(field, layer, feature, y, x);
        };
        self.dense_at(
            (&format!("{field}.layer"), &format!("{field}.feature")),
            index,
            feature,
        )
    }

    /// Unit `unit` of dense layer `index` (into `Network::dense`), checked
    /// against the layer and the working size; `fields` name the layer and
    /// the unit in errors.
    pub(crate) fn dense_at(
        &self,
        (layer_field, unit_field): (&str, &str),
        index: usize,
        unit: i64,
    ) -> Result<NeuronAt> {
        let net = &self.network;
        let dense = net
            .dense
            .get(index)
            .ok_or_else(|| Error::invalid(layer_field, "not a dense layer"))?;
        if !self.head_enabled {
            let size = self.profile.input_size;
            let hint = match net.native_size {
                Some((h, w)) if h == w => format!("; start the daemon with --input-size {h}"),
                _ => String::new(),
            };
            return Err(Error::invalid(
                layer_field,
                format!(
                    "{} belongs to the model's head, which does not run at {size}x{size}{hint}",
                    dense.name
                ),
            ));
        }
        if unit < 0 || unit as usize >= dense.units {
            return Err(Error::invalid(
                unit_field,
                format!(
                    "{unit} is outside 0..={} for layer {}",
                    dense.units - 1,
                    dense.name
                ),
            ));
        }
        Ok(NeuronAt {
            layer: dense.number,
            feature: unit as usize,
            y: 0,
            x: 0,
        })
    }

    /// Size (h, w) of the window maximization works on: a conv neuron's
    /// unclipped FOV, or the whole image for a dense neuron and one whose
    /// FOV is larger than the image.
    pub fn fov_window(&self, n: NeuronAt) -> (usize, usize) {
        let size = self.profile.input_size;
        if n.layer > self.network.convs.len() {
            return (size, size);
        }
        let tree = window_tree(&self.network.convs, n.layer, (n.y, n.x), size);
        if tree.whole {
            return (size, size);
        }
        let (sy, sx) = tree.out[0];
        (sy.len, sx.len)
    }

    /// The neuron's pre-activation and its gradient with respect to a full
    /// `[3, H, W]` input, computed on the FOV window only (the whole image for
    /// a dense neuron).
    pub fn fov_gradient(&self, n: NeuronAt, input: &[f32]) -> Result<(f32, Vec<f32>)> {
        let size = self.profile.input_size;
        if input.len() != 3 * size * size {
            return Err(Error::invalid(
                "input",
                format!("expected 3x{size}x{size} values"),
            ));
        }
        let ascent = Ascent::new(self, n)?;
        let window = window_of(input, size, ascent.spans());
        let (obj, grad) = ascent.run(&window, 1)?;
        let mut frame = vec![0f32; 3 * size * size];
        put_window(&mut frame, size, ascent.spans(), &grad);
        Ok((obj[0], frame))
    }

    /// Maximizes a neuron's pre-activation. `progress` is called after
    /// every step and returns false to cancel (honoured within one step).
    pub fn maximize(
        &self,
        n: NeuronAt,
        opts: &MaximizeOptions,
        mut progress: impl FnMut(&Progress) -> bool,
    ) -> Result<Maximized> {
        self.maximize_with(n, opts, |p| {
            if progress(p) {
                Flow::Continue
            } else {
                Flow::Cancel
            }
        })
    }

    /// [`Self::maximize`] whose callback may also end the run early with
    /// the images so far ([`Flow::Finish`]).
    pub fn maximize_with(
        &self,
        n: NeuronAt,
        opts: &MaximizeOptions,
        mut progress: impl FnMut(&Progress) -> Flow,
    ) -> Result<Maximized> {
        opts.validate()?;
        let ascent = Ascent::new(self, n)?;
        let (sy, sx) = ascent.origin;
        let (h, w) = ascent.window;
        let size = self.profile.input_size;
        let plane = h * w;
        let starts = opts.starts;
        let p = &self.profile;
        // Per model channel: pixel units -> model units, and the valid range.
        let unit: Vec<f32> = (0..3).map(|c| p.scale / p.std[c]).collect();
        let lo: Vec<f32> = (0..3).map(|c| (0.0 - p.mean[c]) / p.std[c]).collect();
        let hi: Vec<f32> = (0..3)
            .map(|c| (255.0 * p.scale - p.mean[c]) / p.std[c])
            .collect();
        let inside_img: Vec<f32> = (0..plane)
            .map(|i| {
                let (y, x) = (sy + (i / w) as i64, sx + (i % w) as i64);
                (y >= 0 && x >= 0 && (y as usize) < size && (x as usize) < size) as u8 as f32
            })
            .collect();

        // Random starts: mid-grey plus noise of 20 pixel units, in model space.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
        let noise = Normal::new(0.0f32, 20.0).map_err(|e| Error::Runtime(e.to_string()))?;
        let mut crops: Vec<Vec<f32>> = (0..starts)
            .map(|_| {
                let mut v = vec![0f32; 3 * plane];
                for c in 0..3 {
                    for i in 0..plane {
                        let px = 128.0 + noise.sample(&mut rng);
                        v[c * plane + i] = (px * p.scale - p.mean[c]) / p.std[c] * inside_img[i];
                    }
                }
                v
            })
            .collect();
        let mut batch = vec![0f32; starts * 3 * plane];
        let mut objective = vec![0f32; starts];
        let mut steps = 0;
        for step in 1..=opts.steps {
            let (dy, dx) = if opts.jitter > 0 {
                let j = opts.jitter as i64;
                (rng.random_range(-j..=j), rng.random_range(-j..=j))
            } else {
                (0, 0)
            };
            for (s, crop) in crops.iter_mut().enumerate() {
                roll(crop, h, w, dy, dx);
                batch[s * 3 * plane..(s + 1) * 3 * plane].copy_from_slice(crop);
            }
            let (obj, grads) = ascent.run(&batch, starts)?;
            objective = obj;
            for (s, crop) in crops.iter_mut().enumerate() {
                let g = &grads[s * 3 * plane..(s + 1) * 3 * plane];
                let rms = (g.iter().map(|v| v * v).sum::<f32>() / g.len() as f32).sqrt();
                let step_len = if rms > 0.0 {
                    opts.learning_rate / rms
                } else {
                    0.0
                };
                for c in 0..3 {
                    for (i, inside) in inside_img.iter().enumerate() {
                        let k = c * plane + i;
                        let mut v = crop[k] + step_len * unit[c] * g[k];
                        v *= 1.0 - opts.l2_decay;
                        if opts.clip {
                            v = v.clamp(lo[c], hi[c]);
                        }
                        crop[k] = v * inside;
                    }
                }
                roll(crop, h, w, -dy, -dx);
                if opts.blur_sigma > 0.0 && opts.blur_every > 0 && step % opts.blur_every == 0 {
                    blur(crop, h, w, opts.blur_sigma);
                    for c in 0..3 {
                        for i in 0..plane {
                            crop[c * plane + i] *= inside_img[i];
                        }
                    }
                }
            }
            steps = step;
            match progress(&Progress {
                step,
                total: opts.steps,
                objective: &objective,
                crops: &crops,
            }) {
                Flow::Continue => {}
                Flow::Cancel => return Err(Error::Cancelled),
                Flow::Finish => break,
            }
        }
        // The objective of the final images.
        for (s, crop) in crops.iter().enumerate() {
            batch[s * 3 * plane..(s + 1) * 3 * plane].copy_from_slice(crop);
        }
        objective = ascent.run(&batch, starts)?.0;
        let images = crops
            .iter()
            .map(|crop| {
                let mut frame = vec![0f32; 3 * size * size];
                put_window(&mut frame, size, ascent.spans(), crop);
                frame
            })
            .collect();
        Ok(Maximized {
            images,
            objective,
            fov: ascent.fov,
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_the_mean_and_roll_round_trips() {
        let mut v: Vec<f32> = (0..25).map(|i| (i % 7) as f32).collect();
        let orig = v.clone();
        roll(&mut v, 5, 5, 2, -1);
        roll(&mut v, 5, 5, -2, 1);
        assert_eq!(v, orig);
        let mut flat = vec![3.0f32; 25];
        blur(&mut flat, 5, 5, 1.0);
        assert!(flat.iter().all(|&x| (x - 3.0).abs() < 1e-5));
    }

    #[test]
    fn options_are_validated() {
        assert!(MaximizeOptions::default().validate().is_ok());
        let nan = MaximizeOptions {
            learning_rate: f32::NAN,
            ..Default::default()
        };
        assert!(
            nan.validate()
                .unwrap_err()
                .to_string()
                .contains("learning_rate")
        );
        let many = MaximizeOptions {
            steps: 1_000_000_000,
            ..Default::default()
        };
        assert!(many.validate().unwrap_err().to_string().contains("steps"));
    }
}
