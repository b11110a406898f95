//! Linear regions around an image (paper section 3.1). Under one
//! configuration of ReLU masks and pool switches the network is affine, so
//! along a line x(t) = x0 + t d every pre-activation, and every difference
//! between a pool window's maximum and another of its values, is affine in
//! t. The region of a neuron (its FOV tree's configuration) ends where the
//! first of them reaches zero; both ends are solved exactly from one run of
//! the affine graph over the FOV windows at the image and along d.
//!
//! The neuron's own ReLU does not enter its pre-activation, so the region is
//! that of the pre-activation's linear filter: masks of the layers below it
//! and the switches of the pools in its tree. A clipped ReLU (ReLU6) has two
//! boundaries, at zero and at its ceiling.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::graphs::GraphKind;
use crate::graphs::transposed::{region_graph, tree_of};
use crate::model::network::{
    Activation, ConvLayer, FovTree, PoolShape, Span, window_of, window_tree,
};
use crate::probe::patterns::clip;
use crate::probe::reconstruct::{GateSample, Mode, NeuronAt, Start, gate_batches, gate_inputs};
use crate::record::{LayerRecording, Recording, Switches};
use crate::runtime::sessions::poisoned;
use crate::stop::Stop;
use ort::value::TensorRef;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Which way to go from the recorded image.
#[derive(Debug, Clone, PartialEq)]
pub enum Direction {
    /// The neuron's own linear filter (the gradient of its pre-activation),
    /// unit norm.
    Gradient,
    /// Gaussian over the whole input, seeded (ChaCha8), unit norm.
    Random(u64),
    /// Toward another input: d = other - x0, so t = 1 reaches it.
    Toward(Vec<f32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlipKind {
    /// A ReLU changes state (the pre-activation crosses zero).
    Relu,
    /// A clipped ReLU reaches or leaves its ceiling.
    Ceiling,
    /// A pool window's maximum moves to this position.
    Switch,
}

/// The unit whose change ends a region: a position of conv layer `layer`'s
/// grid (for a switch, the pool window over that grid containing it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flip {
    pub kind: FlipKind,
    pub layer: usize,
    pub feature: usize,
    pub y: usize,
    pub x: usize,
    /// For a switch of a pool whose windows overlap (not 2x2/2): the pool
    /// output (row, column) whose maximum moves to (y, x).
    pub output: Option<(usize, usize)>,
    /// For a switch: the layer whose pool holds it (the next one in a
    /// chain; a branch's first layer in an Inception block); 0 otherwise.
    pub reader: usize,
}

/// One end of a region: where it is (in t from the base point), which unit
/// changes there, and the neuron's pre-activation there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boundary {
    pub t: f64,
    pub flip: Flip,
    pub value: f64,
}

/// The region of a neuron around a base point along a direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// The neuron's pre-activation at the base point and its derivative
    /// along the direction (constant inside the region).
    pub value: f64,
    pub slope: f64,
    /// The nearest boundary at t >= 0 and at t <= 0; None where the region
    /// is unbounded that way.
    pub forward: Option<Boundary>,
    pub backward: Option<Boundary>,
    /// The next boundary after `forward` as seen from this region.
    pub next_forward: Option<f64>,
    /// Constraints already at zero at the base point (a tie in a pool
    /// window, a pre-activation at 0, within float32 precision) that the
    /// line leaves at once on one side: the point sits on that many
    /// boundaries, and the region has zero width on that side.
    pub on_boundary: usize,
}

/// One linear piece of the neuron's profile along a walk: from t0 to t1 the
/// pre-activation goes linearly from v0 to v1 with derivative `slope`;
/// `end` is the unit that changes at t1 (None at the end of the walk).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub t0: f64,
    pub t1: f64,
    pub v0: f64,
    pub v1: f64,
    pub slope: f64,
    pub end: Option<Flip>,
}

/// The neuron's piecewise-linear profile over `[from, to]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub from: f64,
    pub to: f64,
    /// In order of t; one per region crossed.
    pub segments: Vec<Segment>,
    /// False when the walk stopped at its region bound before `to`.
    pub complete: bool,
}

/// The nearest zero crossings of constraints g(t) = g0 + t gd >= 0.
#[derive(Default)]
struct Crossings {
    forward: Option<(f64, Flip)>,
    second: Option<f64>,
    backward: Option<(f64, Flip)>,
    on_boundary: usize,
}

impl Crossings {
    fn consider(&mut self, g0: f32, gd: f32, flip: Flip) {
        // The configuration holds at the base point; a value a rounding
        // error below zero is at the boundary.
        if g0 <= 0.0 && gd != 0.0 {
            self.on_boundary += 1;
        }
        let (g0, gd) = ((g0 as f64).max(0.0), gd as f64);
        if gd < 0.0 {
            let t = g0 / -gd;
            match self.forward {
                Some((best, _)) if t >= best => {
                    if self.second.is_none_or(|s| t < s) {
                        self.second = Some(t);
                    }
                }
                _ => {
                    self.second = self.forward.map(|(b, _)| b);
                    self.forward = Some((t, flip));
                }
            }
        } else if gd > 0.0 {
            let t = -g0 / gd;
            if self.backward.is_none_or(|(best, _)| t > best) {
                self.backward = Some((t, flip));
            }
        }
    }
}

fn unit_norm(mut v: Vec<f32>, what: &str) -> Result<Vec<f32>> {
    let norm = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return Err(Error::invalid("direction", format!("{what} is zero")));
    }
    v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    Ok(v)
}

impl Engine {
    /// The vector `direction` stands for at `rec` for neuron `n`.
    pub fn direction(
        &self,
        rec: &Recording,
        n: NeuronAt,
        direction: &Direction,
    ) -> Result<Vec<f32>> {
        self.check_recording(rec)?;
        match direction {
            Direction::Gradient => {
                let filter = self
                    .reconstruct(rec, &[n], &[Mode::LinearFilter], Start::OneHot, 0)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::Runtime("the linear filter was not computed".into()))?;
                unit_norm(filter.values, "the neuron's linear filter")
            }
            Direction::Random(seed) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(*seed);
                let v = (0..rec.input.len())
                    .map(|_| StandardNormal.sample(&mut rng))
                    .collect();
                unit_norm(v, "the random direction")
            }
            Direction::Toward(other) => {
                if other.len() != rec.input.len() {
                    return Err(Error::invalid(
                        "direction",
                        "the other input has another size",
                    ));
                }
                let d: Vec<f32> = other.iter().zip(&rec.input).map(|(b, a)| b - a).collect();
                if d.iter().all(|&v| v == 0.0) {
                    return Err(Error::invalid(
                        "direction",
                        "the two recordings have the same input",
                    ));
                }
                Ok(d)
            }
        }
    }

    /// The region of neuron `n` around `rec`'s input along `d`, under
    /// `rec`'s configuration.
    pub fn linear_region(&self, rec: &Recording, n: NeuronAt, d: &[f32]) -> Result<Region> {
        self.check_recording(rec)?;
        self.region_at(rec, &rec.input, n, d)
    }

    /// The region around `base` along `d` under the masks and switches of
    /// `rec` (which must hold at `base`).
    fn region_at(&self, rec: &Recording, base: &[f32], n: NeuronAt, d: &[f32]) -> Result<Region> {
        if d.len() != base.len() {
            return Err(Error::invalid(
                "direction",
                format!("has {} values; the input has {}", d.len(), base.len()),
            ));
        }
        let convs = &self.network.convs;
        let layer = n.layer;
        let s = self.profile.input_size;
        let tree = window_tree(convs, layer, (n.y, n.x), s);
        let (wy, wx) = tree.out[0];
        let mut x = window_of(base, s, tree.out[0]);
        x.extend(window_of(d, s, tree.out[0]));
        // Both samples (the image and the direction) share the gates.
        let sample = GateSample { tree, masks: true };
        let gates = gate_batches(convs, rec, std::slice::from_ref(&sample), layer)?;
        let tree = sample.tree;
        let size_tree = tree_of(convs, layer, s);
        let session = self.cached_graph(layer, GraphKind::Region, || {
            Ok(region_graph(convs, layer, s))
        })?;
        let scale = [1f32, 0.0];
        let mut inputs = gate_inputs(convs, &size_tree, 1, &gates)?;
        inputs.push((
            "x".into(),
            TensorRef::from_array_view(([2, 3, wy.len, wx.len], x.as_slice()))?.into(),
        ));
        inputs.push((
            "bias_scale".into(),
            TensorRef::from_array_view(([2usize, 1, 1, 1], &scale[..]))?.into(),
        ));
        let mut crossings = Crossings::default();
        let (value, slope);
        {
            let mut session = session.lock().map_err(poisoned)?;
            let outputs = session.run(inputs)?;
            // Layers out of the tree (other branches of a block) have no
            // pre-activations here.
            let mut zs: Vec<&[f32]> = vec![&[]; layer];
            for i in (1..layer).filter(|&i| tree.live[i]) {
                zs[i] = outputs[format!("z{i}").as_str()]
                    .try_extract_tensor::<f32>()?
                    .1;
                relu_crossings(rec, &tree, (i, &convs[i - 1]), zs[i], &mut crossings);
            }
            // The switches of each pool, over each of its sources' channels.
            for j in (2..=layer).filter(|&j| tree.live[j]) {
                let Some(p) = convs[j - 1].max_pool() else {
                    continue;
                };
                for &i in convs[j - 1].sources.iter().filter(|&&i| i > 0) {
                    let unit = (i, convs[i - 1].activation);
                    if p.halves() {
                        switch_crossings(rec, &tree, unit, zs[i], &mut crossings);
                    } else {
                        let offset = channel_offset(convs, j, i);
                        cell_crossings(rec, &tree, unit, (j, offset, p), zs[i], &mut crossings);
                    }
                }
            }
            let (_, top) = outputs[format!("z{layer}").as_str()].try_extract_tensor::<f32>()?;
            let (ty, tx) = tree.out[layer];
            let per = convs[layer - 1].out_channels * ty.len * tx.len;
            let k = window_index(tree.out[layer], n.feature, n.y, n.x);
            value = top[k] as f64;
            slope = top[per + k] as f64;
        }
        let boundary = |(t, flip): (f64, Flip)| Boundary {
            t,
            flip,
            value: value + slope * t,
        };
        Ok(Region {
            value,
            slope,
            forward: crossings.forward.map(boundary),
            backward: crossings.backward.map(boundary),
            next_forward: crossings.second,
            on_boundary: crossings.on_boundary,
        })
    }

    /// The neuron's profile along `x0 + t d` for t in `[from, to]`, region by
    /// region, for at most `max_regions` regions: each region's forward end
    /// is solved, the unit that changes there is changed in the
    /// configuration, and the next region starts at that end. The walk
    /// never re-records near a boundary, where a forward pass in floating
    /// point could not tell the two sides apart; only the start is recorded
    /// (when it is not the recording's own input). Ends that coincide give
    /// no region of zero width. `progress` gets the regions so far and the
    /// t reached.
    #[allow(clippy::too_many_arguments)]
    pub fn walk_regions(
        &self,
        rec: &Recording,
        n: NeuronAt,
        d: &[f32],
        (from, to): (f64, f64),
        max_regions: usize,
        stop: &Stop,
        progress: &mut dyn FnMut(usize, f64),
    ) -> Result<Profile> {
        self.check_recording(rec)?;
        if !(from.is_finite() && to.is_finite() && from < to) {
            return Err(Error::invalid(
                "extent",
                "the walk needs from < to, both finite",
            ));
        }
        let at = |t: f64| -> Vec<f32> {
            rec.input
                .iter()
                .zip(d)
                .map(|(&x, &v)| (x as f64 + t * v as f64) as f32)
                .collect()
        };
        let mut config = if from == 0.0 {
            rec.clone()
        } else {
            self.record_tensor(at(from))?
        };
        let mut t = from;
        let mut segments = Vec::new();
        let done = |segments, complete| Profile {
            from,
            to,
            segments,
            complete,
        };
        // Coinciding ends cost a pass each without a region; bound them too.
        for _ in 0..max_regions.saturating_mul(8).max(64) {
            stop.check()?;
            let r = self.region_at(&config, &at(t), n, d)?;
            let value = |s: f64| r.value + r.slope * (s - t);
            let end = r.forward.map_or(f64::INFINITY, |b| t + b.t.max(0.0));
            if end > t || end >= to {
                let t1 = end.min(to);
                segments.push(Segment {
                    t0: t,
                    t1,
                    v0: value(t),
                    v1: value(t1),
                    slope: r.slope,
                    end: r.forward.filter(|_| end < to).map(|b| b.flip),
                });
                progress(segments.len(), t1);
                if end >= to {
                    return Ok(done(segments, true));
                }
                if segments.len() >= max_regions {
                    return Ok(done(segments, false));
                }
            }
            if let Some(b) = r.forward {
                cross(&self.network.convs, &mut config, b.flip);
            }
            t = end;
        }
        Ok(done(segments, false))
    }
}

/// The configuration on the far side of `flip`: its ReLU toggled (a
/// clipped unit's activation set to what stands for its new state), or the
/// pool window's switch moved to it.
fn cross(convs: &[ConvLayer], config: &mut Recording, flip: Flip) {
    let l = config.layer(flip.layer);
    let (h, w) = (l.height, l.width);
    let unit = |y: usize, x: usize| (flip.feature * h + y) * w + x;
    let activation = convs[flip.layer - 1].activation;
    let layer = &mut config.layers[flip.layer - 1];
    let at = unit(flip.y, flip.x);
    match flip.kind {
        FlipKind::Relu => {
            layer.mask.toggle(at);
            if !layer.mask.get(at) {
                layer.activations[at] = half::f16::ZERO;
            }
        }
        FlipKind::Ceiling => {
            layer.mask.toggle(at);
            if let (false, Activation::Clip(ceiling)) = (layer.mask.get(at), activation) {
                layer.activations[at] = half::f16::from_f32(ceiling);
            }
        }
        FlipKind::Switch => match (
            config.layers[flip.reader.saturating_sub(1)]
                .switches
                .as_mut(),
            flip.output,
        ) {
            (Some(Switches::Bits(switches)), _) => {
                let (wy, wx) = (flip.y & !1, flip.x & !1);
                for (y, x) in [(wy, wx), (wy, wx + 1), (wy + 1, wx), (wy + 1, wx + 1)] {
                    if switches.get(unit(y, x)) {
                        switches.toggle(unit(y, x));
                    }
                }
                switches.toggle(unit(flip.y, flip.x));
            }
            (Some(Switches::Cells(cells)), Some((oy, ox))) => {
                if let Some(pool) = convs[flip.reader.saturating_sub(1)].max_pool() {
                    let (oh, ow) = (pool.output_len(h, 0), pool.output_len(w, 1));
                    let channel = channel_offset(convs, flip.reader, flip.layer) + flip.feature;
                    if let Some(cell) = cells.get_mut((channel * oh + oy) * ow + ox) {
                        *cell = (flip.y * w + flip.x) as u32;
                    }
                }
            }
            _ => {}
        },
    }
}

/// Where layer `source`'s channels start in the input of layer `reader`
/// (the concatenation of its sources).
fn channel_offset(convs: &[ConvLayer], reader: usize, source: usize) -> usize {
    convs[reader - 1]
        .sources
        .iter()
        .take_while(|&&s| s != source)
        .map(|&s| if s == 0 { 3 } else { convs[s - 1].out_channels })
        .sum()
}

/// Where unit (c, y, x) of a layer's grid sits in its FOV window `w`
/// (`[C, w.0.len, w.1.len]`); the unit must lie inside the window.
fn window_index(w: (Span, Span), c: usize, y: usize, x: usize) -> usize {
    let (sy, sx) = w;
    (c * sy.len + (y as i64 - sy.start) as usize) * sx.len + (x as i64 - sx.start) as usize
}

/// Crossings of the activations of hidden layer `i` (layer `c`) inside the
/// tree; `z` holds the layer's window at the base point, then its
/// derivative.
fn relu_crossings(
    rec: &Recording,
    tree: &FovTree,
    (i, c): (usize, &ConvLayer),
    z: &[f32],
    out: &mut Crossings,
) {
    let activation = c.activation;
    if activation == Activation::Linear {
        // Both pieces pass everything: no boundary.
        return;
    }
    let l = rec.layer(i);
    let (sy, sx) = tree.out[i];
    let per = l.channels * sy.len * sx.len;
    let rect = clip(tree.out[i], l.height, l.width);
    for f in 0..l.channels {
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let k = window_index(tree.out[i], f, y, x);
                let (z0, zd) = (z[k], z[per + k]);
                let flip = |kind| Flip {
                    kind,
                    layer: i,
                    feature: f,
                    y,
                    x,
                    output: None,
                    reader: 0,
                };
                let unit = (f * l.height + y) * l.width + x;
                match (activation, l.state(activation, unit)) {
                    (_, 1) => out.consider(z0, zd, flip(FlipKind::Relu)),
                    (Activation::Clip(_), 0) => out.consider(-z0, -zd, flip(FlipKind::Relu)),
                    (Activation::Clip(ceiling), _) => {
                        out.consider(z0 - ceiling, zd, flip(FlipKind::Ceiling))
                    }
                    _ => out.consider(-z0, -zd, flip(FlipKind::Relu)),
                }
                if let (Activation::Clip(ceiling), true) = (activation, l.mask.get(unit)) {
                    out.consider(ceiling - z0, -zd, flip(FlipKind::Ceiling));
                }
            }
        }
    }
}

/// The value and derivative of unit `unit` of hidden layer `l` (window
/// index `k` of `z`, `per` values per sample) after its activation under
/// the configuration: what a pool after it compares. Active means
/// non-negative: a rounding error below zero would move a tie with a
/// window of zeros.
fn pooled_value(
    l: &LayerRecording,
    activation: Activation,
    (unit, k, per): (usize, usize, usize),
    z: &[f32],
) -> (f32, f32) {
    let state = l.state(activation, unit) as usize;
    let (slope, offset) = (activation.slopes()[state], activation.offsets()[state]);
    // A linear unit's recorded sign is never crossed: its value is z.
    let z0 = match (activation, state) {
        (Activation::Linear, _) => z[k],
        (_, 1) => z[k].max(0.0),
        _ => z[k].min(0.0),
    };
    (slope * z0 + offset, slope * z[per + k])
}

/// Crossings of the switches of the pool after hidden layer `i` inside the
/// tree: the window's maximum against each other value of the window.
fn switch_crossings(
    rec: &Recording,
    tree: &FovTree,
    (i, activation): (usize, Activation),
    z: &[f32],
    out: &mut Crossings,
) {
    let l = rec.layer(i);
    let Some(Switches::Bits(switches)) = rec.layer(i + 1).switches.as_ref() else {
        return;
    };
    let (h, w) = (l.height, l.width);
    let (sy, sx) = tree.out[i];
    let per = l.channels * sy.len * sx.len;
    let rect = clip(tree.out[i], h, w).pool_windows(h, w);
    for c in 0..l.channels {
        for wy in (rect.y0..rect.y1).step_by(2) {
            for wx in (rect.x0..rect.x1).step_by(2) {
                let cells = [(wy, wx), (wy, wx + 1), (wy + 1, wx), (wy + 1, wx + 1)];
                let value = |(y, x): (usize, usize)| {
                    let k = window_index(tree.out[i], c, y, x);
                    pooled_value(l, activation, ((c * h + y) * w + x, k, per), z)
                };
                let Some(&max) = cells
                    .iter()
                    .find(|&&(y, x)| switches.get((c * h + y) * w + x))
                else {
                    continue;
                };
                let (m0, md) = value(max);
                for &(y, x) in cells.iter().filter(|&&p| p != max) {
                    let (v0, vd) = value((y, x));
                    let flip = Flip {
                        kind: FlipKind::Switch,
                        layer: i,
                        feature: c,
                        y,
                        x,
                        output: None,
                        reader: i + 1,
                    };
                    out.consider(m0 - v0, md - vd, flip);
                }
            }
        }
    }
}

/// Crossings of the switches of `pool`, a pool other than 2x2/2 in front
/// of layer `j` reading hidden layer `i` (its channels from `offset` on in
/// the pool's input), inside the tree: each output's maximum against each
/// other value of its window inside the image.
fn cell_crossings(
    rec: &Recording,
    tree: &FovTree,
    (i, activation): (usize, Activation),
    (j, offset, pool): (usize, usize, PoolShape),
    z: &[f32],
    out: &mut Crossings,
) {
    let l = rec.layer(i);
    let Some(Switches::Cells(cells)) = rec.layer(j).switches.as_ref() else {
        return;
    };
    let (h, w) = (l.height, l.width);
    let (oh, ow) = (pool.output_len(h, 0), pool.output_len(w, 1));
    let (sy, sx) = tree.out[i];
    let per = l.channels * sy.len * sx.len;
    let outputs = clip(tree.conv_in[j], oh, ow);
    let k = pool.kernel as i64;
    let inside =
        |start: i64, len: usize| start.max(0) as usize..((start + k).max(0) as usize).min(len);
    for c in 0..l.channels {
        let value = |(y, x): (usize, usize)| {
            let k = window_index(tree.out[i], c, y, x);
            pooled_value(l, activation, ((c * h + y) * w + x, k, per), z)
        };
        for oy in outputs.y0..outputs.y1 {
            for ox in outputs.x0..outputs.x1 {
                let Some(&cell) = cells.get(((offset + c) * oh + oy) * ow + ox) else {
                    continue;
                };
                let cell = cell as usize;
                let max = (cell / w, cell % w);
                let (m0, md) = value(max);
                for y in inside(pool.window_start(oy, 0), h) {
                    for x in inside(pool.window_start(ox, 1), w) {
                        if (y, x) == max {
                            continue;
                        }
                        let (v0, vd) = value((y, x));
                        let flip = Flip {
                            kind: FlipKind::Switch,
                            layer: i,
                            feature: c,
                            y,
                            x,
                            output: Some((oy, ox)),
                            reader: j,
                        };
                        out.consider(m0 - v0, md - vd, flip);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flip(layer: usize) -> Flip {
        Flip {
            kind: FlipKind::Relu,
            layer,
            feature: 0,
            y: 0,
            x: 0,
            output: None,
            reader: 0,
        }
    }

    #[test]
    fn crossings_keep_the_nearest_each_way_and_the_next_forward() {
        let mut c = Crossings::default();
        c.consider(2.0, -1.0, flip(1)); // t = 2
        c.consider(1.0, -1.0, flip(2)); // t = 1
        c.consider(3.0, -1.0, flip(3)); // t = 3
        c.consider(1.5, -1.0, flip(4)); // t = 1.5
        c.consider(1.0, 2.0, flip(5)); // t = -0.5
        c.consider(3.0, 1.0, flip(6)); // t = -3
        c.consider(-1e-9, 0.0, flip(7)); // never
        assert_eq!(c.forward, Some((1.0, flip(2))));
        assert_eq!(c.second, Some(1.5));
        assert_eq!(c.backward, Some((-0.5, flip(5))));
    }
}
