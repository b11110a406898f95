//! Feature visualisation (Olah et al. 2017, Lucid): an image optimised for
//! an objective over whole conv layers or classes (a channel's mean, a
//! layer's squared activations, a direction in a layer, a neuron, a class
//! logit, and weighted sums of these), in a decorrelated Fourier
//! parameterisation or plain pixels, with random jitter, scale and rotation
//! at every step and an optional diversity term across the starts.
//!
//! The image lives in [0, 1] RGB through a sigmoid: pixel = sigmoid(C s +
//! logit(mean)), where s is the parameter's spatial picture (for Fourier,
//! the real inverse DFT of the spectrum scaled by 1/frequency), C the square
//! root of ImageNet's colour covariance and `mean` ImageNet's mean colour,
//! so an all-zero parameter is the mean colour. The gradient goes back
//! through the network (one generated graph), the transformation's adjoint,
//! the preprocessing, the sigmoid, the colour map and the DFT; Adam steps.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::graphs::GraphKind;
use crate::graphs::head::dense_ascent_graph;
use crate::graphs::objective::{ObjectiveLayout, objective_graph};
use crate::model::network::LayerId;
use crate::probe::fourier::{fft2, freq};
use crate::probe::maximize::{Flow, Maximized, Progress, check_run};
use crate::probe::reconstruct::PixelBox;
use crate::runtime::sessions::{SharedSession, poisoned};
use ort::value::TensorRef;
use rand::{Rng, SeedableRng};
use rustfft::num_complex::Complex;
use std::collections::BTreeMap;

/// One term of an objective.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// A conv neuron's pre-activation.
    Neuron {
        layer: usize,
        feature: usize,
        y: usize,
        x: usize,
    },
    /// The mean of a channel's pre-activations over the layer's grid.
    Channel { layer: usize, channel: usize },
    /// The sum of the layer's squared activations (DeepDream).
    Layer { layer: usize },
    /// The mean over the grid of <vector, pre-activations>.
    Direction { layer: usize, vector: Vec<f32> },
    /// A unit of the head's last dense layer (a class logit).
    Class { unit: usize },
}

/// A weighted sum of terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub terms: Vec<(f32, Term)>,
}

/// How the optimised image is parameterised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Pixels,
    Fourier,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisualizeOptions {
    pub objective: Objective,
    pub param: Param,
    /// Starts, 1..=16, run as one batch.
    pub starts: usize,
    /// Steps, 1..=10000.
    pub steps: usize,
    /// Adam's step size, (0, 10].
    pub learning_rate: f32,
    /// Random shift of up to this many pixels each step, 0..=32.
    pub jitter: usize,
    /// Random scale in [1 - scale, 1 + scale] each step, [0, 0.5].
    pub scale: f32,
    /// Random rotation in [-rotate, rotate] degrees each step, [0, 45].
    pub rotate: f32,
    /// Weight of the diversity penalty across the starts (0: none), at
    /// `diversity_layer` (default the objective's deepest conv layer).
    pub diversity: f32,
    pub diversity_layer: Option<usize>,
    pub seed: u64,
}

impl VisualizeOptions {
    /// Lucid's defaults for `objective`: Fourier with colour
    /// decorrelation, Adam at 0.05, jitter 8, scale 10%, rotation 10 deg.
    pub fn new(objective: Objective) -> VisualizeOptions {
        VisualizeOptions {
            objective,
            param: Param::Fourier,
            starts: 1,
            steps: 256,
            learning_rate: 0.05,
            jitter: 8,
            scale: 0.1,
            rotate: 10.0,
            diversity: 0.0,
            diversity_layer: None,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: String| Err(Error::invalid(f, m));
        check_run(self.starts, self.steps, self.jitter)?;
        if !(self.learning_rate > 0.0 && self.learning_rate <= 10.0) {
            return bad(
                "learning_rate",
                format!("{} is outside (0, 10] for an objective", self.learning_rate),
            );
        }
        if !(0.0..=0.5).contains(&self.scale) {
            return bad("scale", format!("{} is outside [0, 0.5]", self.scale));
        }
        if !(0.0..=45.0).contains(&self.rotate) {
            return bad("rotate", format!("{} is outside [0, 45]", self.rotate));
        }
        if !(0.0..=1e6).contains(&self.diversity) {
            return bad(
                "diversity",
                format!("{} is outside [0, 1e6]", self.diversity),
            );
        }
        if self.objective.terms.is_empty() {
            return bad("objective", "has no term".into());
        }
        Ok(())
    }
}

/// Longest objective expression accepted.
pub const MAX_EXPRESSION: usize = 512;

impl Engine {
    /// Parses an objective such as `channel(10,42) - 0.5*channel(10,7)`:
    /// terms `neuron(L,F,Y,X)`, `channel(L,C)`, `layer(L)`,
    /// `direction(L)` (the vector given beside it), `class(K)`, each with
    /// an optional `W*` before it, joined by `+` and `-`. Layers by number
    /// or name.
    pub fn parse_objective(&self, expr: &str, direction: &[f32]) -> Result<Objective> {
        let field = "objective";
        if expr.len() > MAX_EXPRESSION {
            return Err(Error::invalid(
                field,
                format!("{} characters; at most {MAX_EXPRESSION}", expr.len()),
            ));
        }
        let text: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = |why: String| Error::invalid(field, why);
        let mut terms = Vec::new();
        let mut rest = text.as_str();
        let mut sign = 1.0f32;
        if let Some(r) = rest.strip_prefix('-') {
            sign = -1.0;
            rest = r;
        } else if let Some(r) = rest.strip_prefix('+') {
            rest = r;
        }
        loop {
            let close = rest
                .find(')')
                .ok_or_else(|| bad("a term lacks its closing parenthesis".into()))?;
            let (term, after) = rest.split_at(close + 1);
            let (weight, call) = match term.split_once('*') {
                Some((w, call)) => (
                    w.parse::<f32>()
                        .ok()
                        .filter(|w| w.is_finite())
                        .ok_or_else(|| {
                            bad(format!("{} is not a weight", crate::error::quote(w)))
                        })?,
                    call,
                ),
                None => (1.0, term),
            };
            terms.push((sign * weight, self.parse_term(call, direction)?));
            if after.is_empty() {
                break;
            }
            rest = match (after.strip_prefix('+'), after.strip_prefix('-')) {
                (Some(r), _) => {
                    sign = 1.0;
                    r
                }
                (_, Some(r)) => {
                    sign = -1.0;
                    r
                }
                _ => {
                    return Err(bad(format!(
                        "expected + or - before {}",
                        crate::error::quote(after)
                    )));
                }
            };
        }
        Ok(Objective { terms })
    }

    fn parse_term(&self, call: &str, direction: &[f32]) -> Result<Term> {
        let bad = |why: String| Error::invalid("objective", why);
        let (name, args) = call
            .strip_suffix(')')
            .and_then(|c| c.split_once('('))
            .ok_or_else(|| bad(format!("{} is not a term", crate::error::quote(call))))?;
        let args: Vec<&str> = args.split(',').filter(|a| !a.is_empty()).collect();
        let number = |i: usize, what: &str| -> Result<usize> {
            args.get(i)
                .and_then(|a| a.parse::<usize>().ok())
                .ok_or_else(|| bad(format!("{name}(...): {what} is not a whole number")))
        };
        let conv = |i: usize| -> Result<usize> {
            let spec = args
                .get(i)
                .ok_or_else(|| bad(format!("{name}(...) needs a layer")))?;
            self.network.resolve_conv("objective", spec)
        };
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(bad(format!(
                    "{name}(...) takes {n} arguments, got {}",
                    args.len()
                )))
            }
        };
        let term = match name {
            "channel" => {
                arity(2)?;
                Term::Channel {
                    layer: conv(0)?,
                    channel: number(1, "the channel")?,
                }
            }
            "layer" => {
                arity(1)?;
                Term::Layer { layer: conv(0)? }
            }
            "direction" => {
                arity(1)?;
                Term::Direction {
                    layer: conv(0)?,
                    vector: direction.to_vec(),
                }
            }
            "neuron" => {
                arity(4)?;
                let n = self.neuron(
                    "objective",
                    args[0],
                    number(1, "the feature")? as i64,
                    number(2, "y")? as i64,
                    number(3, "x")? as i64,
                )?;
                Term::Neuron {
                    layer: n.layer,
                    feature: n.feature,
                    y: n.y,
                    x: n.x,
                }
            }
            "class" => {
                arity(1)?;
                let last = self.network.convs.len() + self.network.dense.len();
                let n = self.dense_neuron(&last.to_string(), number(0, "the class")? as i64)?;
                Term::Class { unit: n.feature }
            }
            _ => {
                return Err(bad(format!(
                    "unknown term {}; allowed neuron, channel, layer, direction, class",
                    crate::error::quote(name)
                )));
            }
        };
        // Ranges the parser could not check.
        match &term {
            Term::Channel { layer, channel } if *channel >= self.geometry[*layer].channels => {
                Err(bad(format!(
                    "channel({layer},{channel}): the channel is outside 0..={}",
                    self.geometry[*layer].channels - 1
                )))
            }
            Term::Direction { layer, vector } if vector.len() != self.geometry[*layer].channels => {
                Err(Error::invalid(
                    "direction",
                    format!(
                        "{} values given; layer {layer} has {} channels",
                        vector.len(),
                        self.geometry[*layer].channels
                    ),
                ))
            }
            _ => Ok(term),
        }
    }

    /// Checks terms built without the parser against the network.
    fn check_terms(&self, terms: &[(f32, Term)]) -> Result<()> {
        let convs = self.network.convs.len();
        let bad = |why: String| Err(Error::invalid("objective", why));
        for (w, t) in terms {
            if !w.is_finite() {
                return bad(format!("the weight {w} is not finite"));
            }
            let layer = match t {
                Term::Neuron { layer, .. }
                | Term::Channel { layer, .. }
                | Term::Layer { layer }
                | Term::Direction { layer, .. } => *layer,
                Term::Class { unit } => {
                    let units = self.network.dense.last().map_or(0, |d| d.units);
                    if *unit >= units {
                        return bad(format!("class {unit} is outside the head's {units} units"));
                    }
                    continue;
                }
            };
            let Some(g) = self
                .geometry
                .get(layer)
                .filter(|_| (1..=convs).contains(&layer))
            else {
                return bad(format!("layer {layer} is outside 1..={convs}"));
            };
            let fits = match t {
                Term::Neuron { feature, y, x, .. } => {
                    *feature < g.channels && *y < g.height && *x < g.width
                }
                Term::Channel { channel, .. } => *channel < g.channels,
                Term::Direction { vector, .. } => vector.len() == g.channels,
                _ => true,
            };
            if !fits {
                return bad(format!(
                    "a term of layer {layer} does not fit its {} channels and {}x{} grid",
                    g.channels, g.height, g.width
                ));
            }
        }
        Ok(())
    }

    /// The graphs of an objective: one for its conv terms, one for its
    /// class terms (the head's units share no layer with the conv terms, so
    /// each part runs its own graph and their values and gradients add).
    fn objective_run(&self, opts: &VisualizeOptions) -> Result<ObjectiveRuns> {
        let terms = &opts.objective.terms;
        self.check_terms(terms)?;
        let (classes, convs): (Vec<_>, Vec<_>) = terms
            .iter()
            .cloned()
            .partition(|t| matches!(t.1, Term::Class { .. }));
        let mut parts = Vec::new();
        if !convs.is_empty() {
            parts.push(self.conv_objective_run(&convs, opts)?);
        } else if opts.diversity > 0.0 {
            return Err(Error::invalid(
                "diversity",
                "needs a conv layer; class objectives have none",
            ));
        }
        if !classes.is_empty() {
            parts.push(self.class_objective_run(&classes)?);
        }
        Ok(ObjectiveRuns { parts })
    }

    /// The graph of class terms: the whole network's gradient of the
    /// weighted sum of the head's last units.
    fn class_objective_run(&self, terms: &[(f32, Term)]) -> Result<ObjectiveRun> {
        let size = self.profile.input_size;
        let index = self.network.dense.len().saturating_sub(1);
        let units = self.network.dense.get(index).map_or(0, |d| d.units);
        let mut seed = vec![0f32; units];
        for (w, t) in terms {
            if let Term::Class { unit } = t
                && let Some(s) = seed.get_mut(*unit)
            {
                *s += w;
            }
        }
        let layer = match self.network.resolve_layer(
            "objective",
            &(self.network.convs.len() + 1 + index).to_string(),
        )? {
            LayerId::Dense(_) => self.network.convs.len() + 1 + index,
            _ => return Err(Error::Runtime("the head's last layer is not dense".into())),
        };
        let session = self.cached_graph(layer, GraphKind::Ascent, || {
            dense_ascent_graph(&self.model_file()?, &self.network, size, index)
        })?;
        Ok(ObjectiveRun {
            session,
            fed: vec![("seed".into(), vec![1, units], seed.clone())],
            class_seed: Some(seed),
            diversity: Default::default(),
        })
    }

    /// The graph of conv terms (and the diversity across the starts).
    fn conv_objective_run(
        &self,
        terms: &[(f32, Term)],
        opts: &VisualizeOptions,
    ) -> Result<ObjectiveRun> {
        let size = self.profile.input_size;
        let mut layout = ObjectiveLayout::default();
        let mut seeds: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        for (w, t) in terms {
            let layer = match t {
                Term::Neuron { layer, .. }
                | Term::Channel { layer, .. }
                | Term::Direction { layer, .. } => *layer,
                Term::Layer { layer } => {
                    layout.squared.push((*layer, *w));
                    continue;
                }
                Term::Class { .. } => continue,
            };
            let g = &self.geometry[layer];
            let plane = g.height * g.width;
            let map = seeds
                .entry(layer)
                .or_insert_with(|| vec![0f32; g.channels * plane]);
            match t {
                Term::Neuron { feature, y, x, .. } => {
                    map[feature * plane + y * g.width + x] += w;
                }
                Term::Channel { channel, .. } => {
                    let v = w / plane as f32;
                    map[channel * plane..(channel + 1) * plane]
                        .iter_mut()
                        .for_each(|m| *m += v);
                }
                Term::Direction { vector, .. } => {
                    for (c, &d) in vector.iter().enumerate() {
                        let v = w * d / plane as f32;
                        map[c * plane..(c + 1) * plane]
                            .iter_mut()
                            .for_each(|m| *m += v);
                    }
                }
                _ => {}
            }
        }
        layout.linear = seeds.keys().copied().collect();
        if opts.diversity > 0.0 {
            let layer = opts.diversity_layer.unwrap_or_else(|| layout.top());
            if !(1..=self.network.convs.len()).contains(&layer) {
                return Err(Error::invalid(
                    "diversity_layer",
                    format!("{layer} is outside 1..={}", self.network.convs.len()),
                ));
            }
            layout.diversity = Some((layer, opts.diversity));
        }
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            layout.linear.hash(&mut h);
            for (l, w) in &layout.squared {
                (l, w.to_bits()).hash(&mut h);
            }
            layout.diversity.map(|(l, w)| (l, w.to_bits())).hash(&mut h);
            h.finish()
        };
        let convs = &self.network.convs;
        let session = self.cached_graph(layout.top(), GraphKind::Objective(key), || {
            Ok(objective_graph(convs, size, &layout))
        })?;
        let fed = seeds
            .into_iter()
            .map(|(l, v)| {
                let g = &self.geometry[l];
                (
                    format!("seed{l}"),
                    vec![1, g.channels, g.height, g.width],
                    v,
                )
            })
            .collect();
        Ok(ObjectiveRun {
            session,
            fed,
            class_seed: None,
            diversity: Default::default(),
        })
    }

    /// The objective of each input of a batch (`[n, 3, S, S]`, input
    /// space), the diversity across them, and the gradient of objective -
    /// diversity weight * diversity with respect to them.
    pub fn evaluate_objective(
        &self,
        opts: &VisualizeOptions,
        batch: &[f32],
        n: usize,
    ) -> Result<(Vec<f32>, f32, Vec<f32>)> {
        let size = self.profile.input_size;
        if n == 0 || batch.len() != n * 3 * size * size {
            return Err(Error::invalid(
                "batch",
                format!("expected {n} x 3 x {size} x {size} values"),
            ));
        }
        let run = self.objective_run(opts)?;
        let (objective, grad) = run.run(batch, n, size)?;
        Ok((objective, run.last_diversity(), grad))
    }

    /// Optimises `opts.starts` images for the objective. `progress` after
    /// every step may continue, cancel or finish early with the images so
    /// far.
    pub fn visualize(
        &self,
        opts: &VisualizeOptions,
        mut progress: impl FnMut(&Progress) -> Flow,
    ) -> Result<Maximized> {
        opts.validate()?;
        let run = self.objective_run(opts)?;
        let size = self.profile.input_size;
        let n = opts.starts;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
        let mut params: Vec<Parameter> = (0..n)
            .map(|_| Parameter::random(opts.param, size, &mut rng))
            .collect();
        let mut adam: Vec<Adam> = params.iter().map(|p| Adam::new(p.values.len())).collect();
        let pre = Preprocess::of(self);
        let mut steps_done = 0;
        let mut objective = vec![0f32; n];
        for step in 1..=opts.steps {
            let pictures: Vec<Vec<f32>> = params.iter().map(Parameter::pixels).collect();
            let moves: Vec<Transform> = (0..n).map(|_| Transform::random(opts, &mut rng)).collect();
            let mut batch = Vec::with_capacity(n * 3 * size * size);
            for (p, t) in pictures.iter().zip(&moves) {
                batch.extend(pre.input(&t.apply(p, size)));
            }
            let (obj, grad) = run.run(&batch, n, size)?;
            objective = obj;
            for (k, ((param, t), adam)) in params
                .iter_mut()
                .zip(&moves)
                .zip(adam.iter_mut())
                .enumerate()
            {
                let g = &grad[k * 3 * size * size..(k + 1) * 3 * size * size];
                let at_pixels = t.adjoint(&pre.back(g), size);
                let g_param = param.gradient(&pictures[k], &at_pixels);
                adam.ascend(&mut param.values, &g_param, opts.learning_rate);
            }
            steps_done = step;
            let crops: Vec<Vec<f32>> = params.iter().map(|p| pre.input(&p.pixels())).collect();
            let flow = progress(&Progress {
                step,
                total: opts.steps,
                objective: &objective,
                crops: &crops,
            });
            match flow {
                Flow::Continue => {}
                Flow::Cancel => return Err(Error::Cancelled),
                Flow::Finish => break,
            }
        }
        // The objective of the final images, untransformed.
        let images: Vec<Vec<f32>> = params.iter().map(|p| pre.input(&p.pixels())).collect();
        let (final_objective, _) = run.run(&images.concat(), n, size)?;
        if steps_done > 0 {
            objective = final_objective;
        }
        Ok(Maximized {
            images,
            objective,
            fov: PixelBox {
                x0: 0,
                y0: 0,
                x1: size,
                y1: size,
            },
            steps: steps_done,
        })
    }
}

/// An objective's graphs; values and gradients add.
struct ObjectiveRuns {
    parts: Vec<ObjectiveRun>,
}

impl ObjectiveRuns {
    fn last_diversity(&self) -> f32 {
        self.parts.first().map_or(0.0, ObjectiveRun::last_diversity)
    }

    fn run(&self, batch: &[f32], n: usize, size: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut total: Option<(Vec<f32>, Vec<f32>)> = None;
        for part in &self.parts {
            let (obj, grad) = part.run(batch, n, size)?;
            total = Some(match total {
                None => (obj, grad),
                Some((mut o, mut g)) => {
                    o.iter_mut().zip(&obj).for_each(|(a, b)| *a += b);
                    g.iter_mut().zip(&grad).for_each(|(a, b)| *a += b);
                    (o, g)
                }
            });
        }
        total.ok_or_else(|| Error::invalid("objective", "has no terms"))
    }
}

/// An objective's graph and its fixed inputs.
struct ObjectiveRun {
    session: SharedSession,
    fed: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Class objectives: the weights over the head's units.
    class_seed: Option<Vec<f32>>,
    /// The diversity of the last run's batch.
    diversity: std::cell::Cell<f32>,
}

impl ObjectiveRun {
    fn last_diversity(&self) -> f32 {
        self.diversity.get()
    }

    /// Objective per sample and the gradient, for a batch of inputs.
    fn run(&self, batch: &[f32], n: usize, size: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![(
            "x".into(),
            TensorRef::from_array_view(([n, 3, size, size], batch))?.into(),
        )];
        for (name, shape, values) in &self.fed {
            inputs.push((
                name.clone(),
                TensorRef::from_array_view((shape.clone(), values.as_slice()))?.into(),
            ));
        }
        let mut session = self.session.lock().map_err(poisoned)?;
        let out = session.run(inputs)?;
        let obj = out["objective"].try_extract_tensor::<f32>()?.1.to_vec();
        let grad = out["grad"].try_extract_tensor::<f32>()?.1.to_vec();
        if let Some(d) = out.get("diversity") {
            let d = d
                .try_extract_tensor::<f32>()?
                .1
                .first()
                .copied()
                .unwrap_or(0.0);
            self.diversity.set(d);
        }
        let objective = match &self.class_seed {
            // Per unit: the weighted sum over the units.
            Some(seed) => obj
                .chunks(seed.len())
                .map(|row| row.iter().zip(seed).map(|(a, b)| a * b).sum())
                .collect(),
            None => obj,
        };
        Ok((objective, grad))
    }
}

/// From [0, 1] RGB pixels to the model's input and back (the gradient).
struct Preprocess {
    /// Per model channel: its RGB channel, and input = pixel * gain + offset.
    channels: [(usize, f32, f32); 3],
}

impl Preprocess {
    fn of(engine: &Engine) -> Preprocess {
        let p = &engine.profile;
        let ch = |c: usize| {
            (
                p.rgb_of(c),
                255.0 * p.scale / p.std[c],
                -p.mean[c] / p.std[c],
            )
        };
        Preprocess {
            channels: [ch(0), ch(1), ch(2)],
        }
    }

    /// `[3, S, S]` RGB in [0, 1] to the input `[3, S, S]` (model order).
    fn input(&self, rgb: &[f32]) -> Vec<f32> {
        let plane = rgb.len() / 3;
        let mut out = vec![0f32; rgb.len()];
        for (c, &(src, gain, offset)) in self.channels.iter().enumerate() {
            for (o, &v) in out[c * plane..(c + 1) * plane]
                .iter_mut()
                .zip(&rgb[src * plane..(src + 1) * plane])
            {
                *o = v * gain + offset;
            }
        }
        out
    }

    /// The gradient at the input back to the RGB pixels.
    fn back(&self, grad: &[f32]) -> Vec<f32> {
        let plane = grad.len() / 3;
        let mut out = vec![0f32; grad.len()];
        for (c, &(src, gain, _)) in self.channels.iter().enumerate() {
            for (o, &g) in out[src * plane..(src + 1) * plane]
                .iter_mut()
                .zip(&grad[c * plane..(c + 1) * plane])
            {
                *o = g * gain;
            }
        }
        out
    }
}

/// The square root of ImageNet's colour covariance (Lucid's
/// `color_correlation_svd_sqrt`), normalised by its largest column norm.
const COLOUR_SQRT: [[f32; 3]; 3] = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];
/// ImageNet's mean colour, RGB in [0, 1].
const MEAN_RGB: [f32; 3] = [0.485, 0.456, 0.406];

fn colour_matrix() -> [[f32; 3]; 3] {
    let norm = (0..3)
        .map(|j| {
            (0..3)
                .map(|i| COLOUR_SQRT[i][j].powi(2))
                .sum::<f32>()
                .sqrt()
        })
        .fold(0f32, f32::max);
    COLOUR_SQRT.map(|row| row.map(|v| v / norm))
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// The optimised parameter of one start: the spatial picture (pixels) or
/// its spectrum (Fourier, complex values interleaved), per decorrelated
/// colour channel.
pub struct Parameter {
    pub kind: Param,
    pub size: usize,
    pub values: Vec<f32>,
}

impl Parameter {
    /// Lucid's start: small Gaussian values (std 0.01).
    fn random(kind: Param, size: usize, rng: &mut impl Rng) -> Parameter {
        let per = match kind {
            Param::Pixels => 3 * size * size,
            Param::Fourier => 2 * 3 * size * size,
        };
        let values = (0..per)
            .map(|_| {
                let (a, b): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random_range(0.0..1.0));
                // Box-Muller.
                0.01 * (-2.0 * a.ln()).sqrt() * (std::f32::consts::TAU * b).cos()
            })
            .collect();
        Parameter { kind, size, values }
    }

    /// The all-zero parameter.
    pub fn zeros(kind: Param, size: usize) -> Parameter {
        let per = match kind {
            Param::Pixels => 3 * size * size,
            Param::Fourier => 2 * 3 * size * size,
        };
        Parameter {
            kind,
            size,
            values: vec![0.0; per],
        }
    }

    /// The decorrelated spatial picture `[3, S, S]`.
    fn spatial(&self) -> Vec<f32> {
        match self.kind {
            Param::Pixels => self.values.clone(),
            Param::Fourier => {
                let spectrum = Spectrum::new(self.size);
                spectrum.to_spatial(&self.values)
            }
        }
    }

    /// The RGB picture in [0, 1], `[3, S, S]`.
    pub fn pixels(&self) -> Vec<f32> {
        let s = self.spatial();
        let plane = self.size * self.size;
        let m = colour_matrix();
        let mut out = vec![0f32; 3 * plane];
        for c in 0..3 {
            let shift = (MEAN_RGB[c] / (1.0 - MEAN_RGB[c])).ln();
            for k in 0..plane {
                let v: f32 = (0..3).map(|d| m[c][d] * s[d * plane + k]).sum();
                out[c * plane + k] = sigmoid(v + shift);
            }
        }
        out
    }

    /// The parameter whose picture is `rgb` (in (0, 1)): the inverse of
    /// [`Self::pixels`].
    pub fn from_pixels(kind: Param, size: usize, rgb: &[f32]) -> Result<Parameter> {
        let plane = size * size;
        let m = colour_matrix();
        let inv = invert3(&m).ok_or_else(|| Error::Runtime("the colour map is singular".into()))?;
        let mut spatial = vec![0f32; 3 * plane];
        for k in 0..plane {
            let pre: [f32; 3] = std::array::from_fn(|c| {
                let p = rgb[c * plane + k].clamp(1e-6, 1.0 - 1e-6);
                (p / (1.0 - p)).ln() - (MEAN_RGB[c] / (1.0 - MEAN_RGB[c])).ln()
            });
            for d in 0..3 {
                spatial[d * plane + k] = (0..3).map(|c| inv[d][c] * pre[c]).sum();
            }
        }
        let values = match kind {
            Param::Pixels => spatial,
            Param::Fourier => Spectrum::new(size).spectrum_of(&spatial),
        };
        Ok(Parameter { kind, size, values })
    }

    /// The gradient with respect to the values, from the gradient at the
    /// pixels `at` (the pixels being `rgb`).
    fn gradient(&self, rgb: &[f32], at: &[f32]) -> Vec<f32> {
        let plane = self.size * self.size;
        let m = colour_matrix();
        let mut spatial = vec![0f32; 3 * plane];
        for k in 0..plane {
            for c in 0..3 {
                let p = rgb[c * plane + k];
                let pre = at[c * plane + k] * p * (1.0 - p);
                for d in 0..3 {
                    spatial[d * plane + k] += m[c][d] * pre;
                }
            }
        }
        match self.kind {
            Param::Pixels => spatial,
            Param::Fourier => Spectrum::new(self.size).gradient(&spatial),
        }
    }
}

fn invert3(m: &[[f32; 3]; 3]) -> Option<[[f32; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let c = |i: usize, j: usize| {
        let (r0, r1) = ((i + 1) % 3, (i + 2) % 3);
        let (c0, c1) = ((j + 1) % 3, (j + 2) % 3);
        m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
    };
    Some(std::array::from_fn(|i| {
        std::array::from_fn(|j| c(j, i) / det)
    }))
}

/// The Fourier parameterisation of a `size` x `size` picture: spatial =
/// Re(IDFT(spectrum * scale)) / (4 sqrt(N)), scale = 1 / max(f, 1/size)
/// with f the frequency's magnitude in cycles per pixel (Lucid's
/// `fft_image`; the full complex spectrum rather than the real one, so
/// the adjoint is one forward DFT).
struct Spectrum {
    size: usize,
    scale: Vec<f32>,
}

impl Spectrum {
    fn new(size: usize) -> Spectrum {
        let floor = 1.0 / size as f64;
        let scale = (0..size * size)
            .map(|i| (1.0 / freq(i / size, size).hypot(freq(i % size, size)).max(floor)) as f32)
            .collect();
        Spectrum { size, scale }
    }

    fn norm(&self) -> f32 {
        4.0 * (self.size as f32)
    }

    fn dft(&self, planes: &mut [Complex<f32>], inverse: bool) {
        fft2(planes, self.size, self.size, inverse);
    }

    fn to_spatial(&self, values: &[f32]) -> Vec<f32> {
        let plane = self.size * self.size;
        let mut c: Vec<Complex<f32>> = values
            .chunks(2)
            .enumerate()
            .map(|(i, v)| {
                Complex::new(v[0], v.get(1).copied().unwrap_or(0.0)) * self.scale[i % plane]
            })
            .collect();
        self.dft(&mut c, true);
        let norm = self.norm();
        c.iter().map(|v| v.re / norm).collect()
    }

    fn spectrum_of(&self, spatial: &[f32]) -> Vec<f32> {
        let plane = self.size * self.size;
        let mut c: Vec<Complex<f32>> = spatial.iter().map(|&v| Complex::new(v, 0.0)).collect();
        self.dft(&mut c, false);
        // IDFT(DFT(x)) = N x; the spatial map divides by norm.
        let k = self.norm() / plane as f32;
        c.iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let v = *v * (k / self.scale[i % plane]);
                [v.re, v.im]
            })
            .collect()
    }

    /// The gradient at the (interleaved) spectrum from the gradient at the
    /// spatial picture: scale * DFT(g) / norm.
    fn gradient(&self, g: &[f32]) -> Vec<f32> {
        let plane = self.size * self.size;
        let mut c: Vec<Complex<f32>> = g.iter().map(|&v| Complex::new(v, 0.0)).collect();
        self.dft(&mut c, false);
        let norm = self.norm();
        c.iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let v = *v * (self.scale[i % plane] / norm);
                [v.re, v.im]
            })
            .collect()
    }
}

/// One step's random transformation: scale and rotation about the centre,
/// then a shift, sampled bilinearly with the edges clamped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub scale: f32,
    pub angle: f32,
    pub shift: (f32, f32),
}

impl Transform {
    fn random(opts: &VisualizeOptions, rng: &mut impl Rng) -> Transform {
        let j = opts.jitter as i64;
        let mut uniform = |r: f32| {
            if r > 0.0 {
                rng.random_range(-r..=r)
            } else {
                0.0
            }
        };
        Transform {
            scale: 1.0 + uniform(opts.scale),
            angle: uniform(opts.rotate).to_radians(),
            shift: (uniform(j as f32).round(), uniform(j as f32).round()),
        }
    }

    /// For output pixel (y, x): the four source pixels and their weights.
    fn taps(&self, size: usize, y: usize, x: usize) -> [(usize, f32); 4] {
        let c = (size as f32 - 1.0) / 2.0;
        let (dy, dx) = (y as f32 - c - self.shift.0, x as f32 - c - self.shift.1);
        let (sin, cos) = self.angle.sin_cos();
        // The inverse map: rotate back by the angle, divide by the scale.
        let sy = (cos * dy - sin * dx) / self.scale + c;
        let sx = (sin * dy + cos * dx) / self.scale + c;
        let last = size as f32 - 1.0;
        let (sy, sx) = (sy.clamp(0.0, last), sx.clamp(0.0, last));
        let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(size - 1), (x0 + 1).min(size - 1));
        let (fy, fx) = (sy - y0 as f32, sx - x0 as f32);
        [
            (y0 * size + x0, (1.0 - fy) * (1.0 - fx)),
            (y0 * size + x1, (1.0 - fy) * fx),
            (y1 * size + x0, fy * (1.0 - fx)),
            (y1 * size + x1, fy * fx),
        ]
    }

    fn identity(&self) -> bool {
        self.scale == 1.0 && self.angle == 0.0 && self.shift == (0.0, 0.0)
    }

    /// The transformed picture (`[C, S, S]`).
    pub fn apply(&self, pic: &[f32], size: usize) -> Vec<f32> {
        if self.identity() {
            return pic.to_vec();
        }
        let plane = size * size;
        let mut out = vec![0f32; pic.len()];
        for y in 0..size {
            for x in 0..size {
                let taps = self.taps(size, y, x);
                for (src, dst) in pic.chunks(plane).zip(out.chunks_mut(plane)) {
                    dst[y * size + x] = taps.iter().map(|&(i, w)| w * src[i]).sum();
                }
            }
        }
        out
    }

    /// The adjoint: the gradient at the transformed picture back to the
    /// picture.
    pub fn adjoint(&self, grad: &[f32], size: usize) -> Vec<f32> {
        if self.identity() {
            return grad.to_vec();
        }
        let plane = size * size;
        let mut out = vec![0f32; grad.len()];
        for y in 0..size {
            for x in 0..size {
                let taps = self.taps(size, y, x);
                for (g, dst) in grad.chunks(plane).zip(out.chunks_mut(plane)) {
                    let v = g[y * size + x];
                    for &(i, w) in &taps {
                        dst[i] += w * v;
                    }
                }
            }
        }
        out
    }
}

/// Adam (Kingma and Ba), ascending.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    fn new(n: usize) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    fn ascend(&mut self, x: &mut [f32], g: &[f32], lr: f32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        self.t += 1;
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for (((x, &g), m), v) in x.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *x += lr * (*m / c1) / ((*v / c2).sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_all_zero_parameter_is_the_mean_colour() {
        for kind in [Param::Pixels, Param::Fourier] {
            let p = Parameter::zeros(kind, 8).pixels();
            for c in 0..3 {
                assert!(
                    p[c * 64..(c + 1) * 64]
                        .iter()
                        .all(|&v| (v - MEAN_RGB[c]).abs() < 1e-6),
                    "{kind:?} channel {c}"
                );
            }
        }
    }

    #[test]
    fn picture_to_parameter_to_picture_is_exact() {
        let size = 12;
        let rgb: Vec<f32> = (0..3 * size * size)
            .map(|i| 0.05 + 0.9 * ((i * 37 % 101) as f32 / 100.0))
            .collect();
        for kind in [Param::Pixels, Param::Fourier] {
            let p = Parameter::from_pixels(kind, size, &rgb).expect("parameter");
            let back = p.pixels();
            let worst = rgb
                .iter()
                .zip(&back)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-4, "{kind:?}: {worst}");
        }
    }

    #[test]
    fn parameter_gradients_equal_central_differences() {
        let size = 6;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for kind in [Param::Pixels, Param::Fourier] {
            let mut p = Parameter::random(kind, size, &mut rng);
            // Away from the sigmoid's middle, where it bends.
            p.values.iter_mut().for_each(|v| *v *= 50.0);
            // A linear function of the pixels: L = <w, pixels>.
            let w: Vec<f32> = (0..3 * size * size)
                .map(|i| ((i % 7) as f32 - 3.0) / 3.0)
                .collect();
            let loss = |p: &Parameter| -> f64 {
                p.pixels()
                    .iter()
                    .zip(&w)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum()
            };
            let g = p.gradient(&p.pixels(), &w);
            for k in (0..p.values.len()).step_by(11) {
                let h = 1e-2;
                let at = |d: f32| {
                    let mut values = p.values.clone();
                    values[k] += d;
                    loss(&Parameter { kind, size, values })
                };
                let fd = (at(h) - at(-h)) / (2.0 * h as f64);
                // The differences' own error through the sigmoid at this
                // step is a few 1e-3.
                assert!(
                    (fd - g[k] as f64).abs() <= 5e-3 * fd.abs().max(1e-2),
                    "{kind:?} value {k}: {fd} vs {}",
                    g[k]
                );
            }
        }
    }

    #[test]
    fn a_transform_and_its_adjoint_agree() {
        let size = 10;
        let t = Transform {
            scale: 1.07,
            angle: 0.2,
            shift: (2.0, -3.0),
        };
        let a: Vec<f32> = (0..size * size)
            .map(|i| ((i * 13 % 17) as f32) / 17.0)
            .collect();
        let b: Vec<f32> = (0..size * size)
            .map(|i| ((i * 7 % 11) as f32) / 11.0)
            .collect();
        // <T a, b> = <a, T* b>.
        let left: f32 = t.apply(&a, size).iter().zip(&b).map(|(x, y)| x * y).sum();
        let right: f32 = a.iter().zip(t.adjoint(&b, size)).map(|(x, y)| x * y).sum();
        assert!((left - right).abs() < 1e-4, "{left} vs {right}");
    }
}
