//! Backward reconstructions (paper section 3 and 3.1) as generated ONNX
//! graphs run on the engine's execution provider.
//!
//! A neuron's backward pass only touches its field-of-view tree, so every
//! graph works on windows: at each layer the window grows by one pixel per
//! side (a full 3x3 convolution with the kernel flipped and its channels
//! swapped) and doubles at each pool. All neurons of a layer share one graph;
//! what differs per neuron and mode is fed as inputs:
//! - `seed`: the start vector at the neuron (one-hot times the start value);
//! - `gate{i}`: a window per hidden layer i of gate states: the ReLU mask r_i
//!   (or, for the deconvnet, just "inside the image"), zero where the
//!   switches of a 2x2/2 pool that follows layer i are off, and for a leaky
//!   or clipped ReLU the state of its other piece. Unpooling is then nearest
//!   upsampling times each state's slope;
//! - `cells{i}`: for any other pool, each output's recorded maximum.
//!
//! The three deconvnet modes rectify after each transposed convolution (a
//! ReLU, fused into it by ONNX Runtime, or a leaky ReLU's slope); the
//! linear filter's graph leaves it out.
//!
//! The image-plane result is not rectified, so reconstructions keep their
//! sign; equations 4-7 are applied at every hidden layer.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::graphs::GraphKind;
use crate::graphs::transposed::{
    Kernels, affine_graph, backward_graph, random_shortcuts, random_weights, tree_of,
};
use crate::model::network::{
    Activation, ConvLayer, FovTree, fov_tree, inside_grid, put_window, window_tree,
};
use crate::record::{Recording, Switches};
use crate::runtime::sessions::poisoned;
use crate::simd::spread_flags;
use crate::stop::Stop;
use ort::session::Session;
use ort::value::TensorRef;
use std::collections::HashMap;
use std::sync::Mutex;

/// Reconstructions of some neurons of one recording.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconstructRequest {
    pub neurons: Vec<NeuronAt>,
    pub modes: Vec<Mode>,
    pub start: Start,
    pub seed: u64,
    /// Give the linear filter's results their effective bias.
    pub effective_bias: bool,
    /// Start behind each neuron's own ReLU (an inactive neuron gives an
    /// all-zero picture in every mode, a leaky one the start times its
    /// slope, a clipped one at its ceiling zero); otherwise every mode
    /// starts at the pre-activation.
    pub through_relu: bool,
}

/// The four backward modes of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Eq. 4-5: no forward masks, switches kept.
    Deconvnet,
    /// Eq. 6-7: forward masks and switches (guided backpropagation).
    Masked,
    /// Eq. 6-7 with Gaussian weights matching each layer's mean and std.
    RandomWeights,
    /// Eq. 8-9: the exact local linear filter (gradient of the pre-activation).
    LinearFilter,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::Deconvnet,
        Mode::Masked,
        Mode::RandomWeights,
        Mode::LinearFilter,
    ];

    fn uses_masks(self) -> bool {
        self != Mode::Deconvnet
    }

    fn linear(self) -> bool {
        self == Mode::LinearFilter
    }
}

/// The start vector's value at the neuron.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    #[default]
    OneHot,
    RecordedActivation,
}

/// A neuron, already validated against the network: a conv neuron, or a
/// dense one (`layer` past the conv layers, y = x = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeuronAt {
    pub layer: usize,
    pub feature: usize,
    pub y: usize,
    pub x: usize,
}

/// Input-pixel box `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PixelBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

/// One neuron's reconstruction in one mode.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    pub neuron_index: usize,
    pub mode: Mode,
    /// `[3, H, W]` in input space, channels in the model's order; zero
    /// outside the field of view.
    pub values: Vec<f32>,
    pub fov: PixelBox,
    /// Linear filter only, when asked for ([`Engine::effective_bias`]):
    /// pre-activation = <values, input> + effective_bias.
    pub effective_bias: Option<f32>,
    /// The neuron's recorded activation (after its ReLU; a class neuron's
    /// logit).
    pub activation: f32,
    /// The neuron's pre-activation is not positive (its ReLU is off).
    pub inactive: bool,
}

/// Samples per backward run. Small windows gain from batching; on large ones
/// batched convolutions run slower per sample than single ones on CPU (and
/// the memory of one run grows), so those go one at a time.
fn batch_size(convs: &[ConvLayer], layer: usize, size: usize) -> usize {
    let (sy, sx) = tree_of(convs, layer, size).out[0];
    match sy.len * sx.len {
        a if a >= 128 * 128 => 1,
        a if a >= 64 * 64 => 2,
        _ => 8,
    }
}

/// On whole grids, the `at` input of a batch of neurons at `positions` of
/// `layer`: one-hot maps of the top grid.
fn at_input(
    tree: &FovTree,
    layer: usize,
    positions: &[(usize, usize)],
) -> Result<Option<(String, ort::session::SessionInputValue<'static>)>> {
    if !tree.whole {
        return Ok(None);
    }
    let (sy, sx) = tree.out[layer];
    let plane = sy.len * sx.len;
    let mut at = vec![0f32; positions.len() * plane];
    for (k, &(y, x)) in positions.iter().enumerate() {
        if let Some(v) = at.get_mut(k * plane + y * sx.len + x) {
            *v = 1.0;
        }
    }
    let shape = [positions.len(), 1, sy.len, sx.len];
    Ok(Some((
        "at".into(),
        ort::value::Tensor::from_array((shape, at))?.into(),
    )))
}

/// The field-of-view box of a neuron, clipped to the input.
pub fn fov_box(convs: &[ConvLayer], n: NeuronAt, size: usize) -> PixelBox {
    let tree = fov_tree(convs, n.layer, n.y, n.x);
    let (sy, sx) = tree.out[0];
    let (y0, y1) = sy.clip(size);
    let (x0, x1) = sx.clip(size);
    PixelBox { x0, y0, x1, y1 }
}

/// One sample of a backward batch: its FOV tree and whether the mode uses the
/// ReLU masks (the deconvnet keeps the switches only).
pub(crate) struct GateSample {
    pub tree: FovTree,
    pub masks: bool,
}

/// The gate windows of hidden layer `i` for every sample, concatenated:
/// each unit's state under the masks (or 1 inside the image when the
/// sample keeps no masks), 0 where the switches of a following 2x2/2 pool
/// are off.
fn gate_batch(convs: &[ConvLayer], rec: &Recording, samples: &[GateSample], i: usize) -> Vec<u8> {
    let l = rec.layer(i);
    let activation = convs[i - 1].activation;
    // A 2x2/2 pool's switches gate its input; other pools' cells are
    // separate inputs (`cells{i + 1}`).
    let switches = match convs[i].pool {
        Some(p) if p.halves() => rec.layer(i + 1).switches.as_ref().and_then(Switches::bits),
        _ => None,
    };
    let (h, w) = (l.height, l.width);
    // Layers out of the tree (other branches of a block) have no gates.
    let Some(first) = samples.first().filter(|s| s.tree.live[i]) else {
        return Vec::new();
    };
    let (sy, sx) = first.tree.out[i];
    let per = l.channels * sy.len * sx.len;
    let mut out = vec![0u8; samples.len() * per];
    for (sample, out) in samples.iter().zip(out.chunks_mut(per)) {
        let (sy, sx) = sample.tree.out[i];
        let (y0, y1) = sy.clip(h);
        let (x0, x1) = sx.clip(w);
        for c in 0..l.channels {
            for y in y0..y1 {
                let row = (c * h + y) * w;
                let o = (c * sy.len + (y as i64 - sy.start) as usize) * sx.len;
                let dst = &mut out
                    [o + (x0 as i64 - sx.start) as usize..o + (x1 as i64 - sx.start) as usize];
                let mask_on = sample.masks;
                spread_flags(dst, |k| {
                    let at = row + x0 + k;
                    let mut bits = if mask_on {
                        l.mask.bits_at(at)
                    } else {
                        u64::MAX
                    };
                    if let Some(s) = switches {
                        bits &= s.bits_at(at);
                    }
                    bits
                });
                if mask_on && activation != Activation::Relu {
                    for (k, d) in dst.iter_mut().enumerate() {
                        let at = row + x0 + k;
                        if *d == 0 && switches.is_none_or(|s| s.get(at)) {
                            *d = l.state(activation, at);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The `cells{j}` input of pooled layer `j` (a pool other than 2x2/2) for
/// every sample: per output of the pool on the sample's window, the flat
/// index in the batch of the pool's input windows of its recorded maximum.
/// Outputs beyond the grid point at the first (or last) row or column of
/// their window, which lies beyond the image, where the gates are zero.
fn cell_batch(
    convs: &[ConvLayer],
    rec: &Recording,
    samples: &[GateSample],
    j: usize,
) -> Option<Vec<i64>> {
    let pool = convs[j - 1].max_pool().filter(|p| !p.halves())?;
    let Some(Switches::Cells(cells)) = rec.layer(j).switches.as_ref() else {
        return None;
    };
    let conv = &convs[j - 1];
    let below = rec.layer(conv.sources.first().copied().unwrap_or(0).max(1));
    let (h, w) = (below.height, below.width);
    let channels = conv.in_channels;
    let (oh, ow) = (pool.output_len(h, 0), pool.output_len(w, 1));
    let last = pool.kernel as i64 - 1;
    // The row (or column) of output `o`'s window the cell sits on when the
    // output lies beyond the grid of `len` outputs.
    let beyond = |o: i64, len: usize, axis: usize| -> Option<i64> {
        let start = o * pool.stride as i64 - pool.pads[axis] as i64;
        if o < 0 {
            Some(start)
        } else if o >= len as i64 {
            Some(start + last)
        } else {
            None
        }
    };
    let mut out = Vec::new();
    for (b, sample) in samples.iter().enumerate() {
        if !sample.tree.live[j] {
            continue;
        }
        let (cy, cx) = sample.tree.conv_in[j];
        let (sy, sx) = sample.tree.below[j];
        for c in 0..channels {
            let base = (b * channels + c) as i64 * (sy.len * sx.len) as i64;
            for oy in cy.start..cy.start + cy.len as i64 {
                for ox in cx.start..cx.start + cx.len as i64 {
                    let (y, x) = match (beyond(oy, oh, 0), beyond(ox, ow, 1)) {
                        (None, None) => {
                            let at = cells[(c * oh + oy as usize) * ow + ox as usize] as usize;
                            ((at / w) as i64, (at % w) as i64)
                        }
                        (y, x) => (
                            y.unwrap_or_else(|| pool.window_start(oy as usize, 0)),
                            x.unwrap_or_else(|| pool.window_start(ox as usize, 1)),
                        ),
                    };
                    out.push(base + (y - sy.start) * sx.len as i64 + (x - sx.start));
                }
            }
        }
    }
    Some(out)
}

/// What a backward or forward graph over a batch of FOV trees is fed: the
/// gates of hidden layers 1..layer (index i - 1 is `gate{i}`), per pooled
/// layer j whose max pool is not 2x2/2 its cells, and per layer j with an
/// average pool the window of its outputs on the pool's grid
/// (`inside_pool{j}`; beyond it the convolution reads padding) (index j -
/// 1).
pub(crate) struct Gates {
    pub gates: Vec<Vec<u8>>,
    pub cells: Vec<Option<Vec<i64>>>,
    pub insides: Vec<Option<Vec<f32>>>,
}

/// The [`Gates`] of a batch of samples, layers spread over the cores.
pub(crate) fn gate_batches(
    convs: &[ConvLayer],
    rec: &Recording,
    samples: &[GateSample],
    layer: usize,
) -> Result<Gates> {
    let gates = crate::parallel::map_by_cost(
        layer - 1,
        |k| {
            samples.first().map_or(0, |s| {
                let (sy, sx) = s.tree.out[k + 1];
                convs[k].out_channels * sy.len * sx.len
            })
        },
        |k| gate_batch(convs, rec, samples, k + 1),
    )
    .ok_or_else(|| Error::Runtime("a gate window was not computed".into()))?;
    let cells = (1..=layer)
        .map(|j| cell_batch(convs, rec, samples, j))
        .collect();
    let insides = (1..=layer)
        .map(|j| {
            let conv = &convs[j - 1];
            let pool = conv.pool.filter(|p| p.average)?;
            let below = rec.layer(conv.sources.first().copied().unwrap_or(0).max(1));
            let grid = (
                pool.output_len(below.height, 0),
                pool.output_len(below.width, 1),
            );
            Some(
                samples
                    .iter()
                    .flat_map(|s| inside_grid(s.tree.conv_in[j], grid))
                    .collect(),
            )
        })
        .collect();
    Ok(Gates {
        gates,
        cells,
        insides,
    })
}

impl Engine {
    /// Checks a neuron against the network and the working size.
    pub fn neuron(
        &self,
        field: &str,
        layer: &str,
        feature: i64,
        y: i64,
        x: i64,
    ) -> Result<NeuronAt> {
        let layer = self
            .network
            .resolve_conv(&format!("{field}.layer"), layer)?;
        let g = &self.geometry[layer];
        if feature < 0 || feature as usize >= g.channels {
            return Err(Error::invalid(
                format!("{field}.feature"),
                format!(
                    "{feature} is outside 0..={} for layer {layer}",
                    g.channels - 1
                ),
            ));
        }
        if y < 0 || y as usize >= g.height {
            return Err(Error::invalid(
                format!("{field}.y"),
                format!("{y} is outside 0..={} for layer {layer}", g.height - 1),
            ));
        }
        if x < 0 || x as usize >= g.width {
            return Err(Error::invalid(
                format!("{field}.x"),
                format!("{x} is outside 0..={} for layer {layer}", g.width - 1),
            ));
        }
        Ok(NeuronAt {
            layer,
            feature: feature as usize,
            y: y as usize,
            x: x as usize,
        })
    }

    /// Reconstructs every (neuron, mode) pair; results in neuron-major order.
    pub fn reconstruct(
        &self,
        rec: &Recording,
        neurons: &[NeuronAt],
        modes: &[Mode],
        start: Start,
        seed: u64,
    ) -> Result<Vec<Reconstruction>> {
        let req = ReconstructRequest {
            neurons: neurons.to_vec(),
            modes: modes.to_vec(),
            start,
            seed,
            effective_bias: false,
            through_relu: false,
        };
        self.reconstruct_request(rec, &req, &Stop::never())
    }

    /// Every reconstruction `req` asks of `rec` (results in neuron-major
    /// order), the linear filter's with its effective bias when asked;
    /// `stop` is checked before every batch.
    pub fn reconstruct_request(
        &self,
        rec: &Recording,
        req: &ReconstructRequest,
        stop: &Stop,
    ) -> Result<Vec<Reconstruction>> {
        let convs = self.network.convs.len();
        let conv_only = ReconstructRequest {
            neurons: req
                .neurons
                .iter()
                .copied()
                .filter(|n| n.layer <= convs)
                .collect(),
            ..req.clone()
        };
        let mut conv_results = self.reconstruct_jobs(rec, &conv_only, stop)?;
        if req.effective_bias && req.modes.contains(&Mode::LinearFilter) {
            let biases = self.effective_bias_until(rec, &conv_only.neurons, stop)?;
            for r in conv_results
                .iter_mut()
                .filter(|r| r.mode == Mode::LinearFilter)
            {
                r.effective_bias = biases.get(r.neuron_index).copied();
            }
        }
        // Back in the request's order, conv indices mapped to the request's.
        let mut conv_results = conv_results.into_iter();
        let mut conv_index = 0;
        let mut results = Vec::with_capacity(req.neurons.len() * req.modes.len());
        for (i, &n) in req.neurons.iter().enumerate() {
            if n.layer <= convs {
                for _ in &req.modes {
                    let mut r = conv_results.next().ok_or_else(|| {
                        Error::Runtime("a reconstruction was not computed".into())
                    })?;
                    debug_assert_eq!(r.neuron_index, conv_index);
                    r.neuron_index = i;
                    results.push(r);
                }
                conv_index += 1;
            } else {
                let mut dense = self.reconstruct_dense(rec, (i, n), req, stop)?;
                if !req.effective_bias {
                    dense.iter_mut().for_each(|r| r.effective_bias = None);
                }
                results.append(&mut dense);
            }
        }
        Ok(results)
    }

    fn reconstruct_jobs(
        &self,
        rec: &Recording,
        req: &ReconstructRequest,
        stop: &Stop,
    ) -> Result<Vec<Reconstruction>> {
        let (neurons, modes, start, seed) = (&req.neurons, &req.modes, req.start, req.seed);
        self.check_recording(rec)?;
        let mut jobs: Vec<(usize, NeuronAt, Mode)> = Vec::new();
        for (i, n) in neurons.iter().enumerate() {
            for &m in modes {
                jobs.push((i, *n, m));
            }
        }
        let mut results: Vec<Option<Reconstruction>> = vec![None; jobs.len()];
        // Group by (layer, weights) so each group is one graph.
        let mut groups: HashMap<(usize, GraphKind), Vec<usize>> = HashMap::new();
        for (j, (_, n, m)) in jobs.iter().enumerate() {
            let kind = match m {
                Mode::RandomWeights => GraphKind::Random(seed),
                _ => GraphKind::Trained { linear: m.linear() },
            };
            groups.entry((n.layer, kind)).or_default().push(j);
        }
        let mut keys: Vec<_> = groups.keys().copied().collect();
        keys.sort_by_key(|&(layer, kind)| {
            let order = match kind {
                GraphKind::Trained { linear } => linear as u8,
                _ => 2,
            };
            (layer, order)
        });
        let size = self.profile.input_size;
        for key in keys {
            let (layer, kind) = key;
            let session = self.cached_graph(layer, kind, || {
                let convs = &self.network.convs;
                let linear = kind == GraphKind::Trained { linear: true };
                Ok(match kind {
                    GraphKind::Random(s) => {
                        let (weights, shortcuts) =
                            (random_weights(convs, s), random_shortcuts(convs, s));
                        let kernels = Kernels::of(&weights, &shortcuts);
                        backward_graph(convs, layer, (&kernels, size), linear)
                    }
                    _ => backward_graph(convs, layer, (&Kernels::trained(convs), size), linear),
                })
            })?;
            for chunk in groups[&key].chunks(batch_size(&self.network.convs, layer, size)) {
                stop.check()?;
                let batch: Vec<(NeuronAt, Mode)> =
                    chunk.iter().map(|&j| (jobs[j].1, jobs[j].2)).collect();
                let images =
                    self.run_backward(&session, rec, layer, &batch, start, req.through_relu)?;
                for (&j, values) in chunk.iter().zip(images) {
                    let (index, n, mode) = jobs[j];
                    results[j] = Some(Reconstruction {
                        neuron_index: index,
                        mode,
                        values,
                        fov: fov_box(&self.network.convs, n, self.profile.input_size),
                        effective_bias: None,
                        activation: rec.layer(n.layer).activation(n.feature, n.y, n.x),
                        inactive: !rec.layer(n.layer).positive(
                            (n.feature * rec.layer(n.layer).height + n.y)
                                * rec.layer(n.layer).width
                                + n.x,
                        ),
                    });
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::Runtime("a reconstruction was not computed".into())))
            .collect()
    }

    /// Whether `rec` has this network's shape at the working size: its
    /// layers' grids, its input, and each pooled layer's switches (bits over
    /// the layer below for a 2x2/2 max pool, a cell per output for the other
    /// max pools, none for average pools).
    /// A recording read back from disk is used only when it fits.
    pub fn fits_recording(&self, rec: &Recording) -> bool {
        let convs = &self.network.convs;
        rec.layers.len() == convs.len()
            && rec.input.len() == 3 * self.profile.input_size.pow(2)
            && rec
                .layers
                .iter()
                .zip(&self.geometry[1..])
                .enumerate()
                .all(|(i, (l, g))| {
                    let below = &self.geometry[i];
                    let switches = match (convs[i].max_pool(), &l.switches) {
                        (None, None) => true,
                        (Some(p), Some(Switches::Bits(b))) if p.halves() => {
                            b.len() == below.channels * below.height * below.width
                        }
                        (Some(p), Some(Switches::Cells(c))) if !p.halves() => {
                            c.len()
                                == below.channels
                                    * p.output_len(below.height, 0)
                                    * p.output_len(below.width, 1)
                        }
                        _ => false,
                    };
                    (l.channels, l.height, l.width) == (g.channels, g.height, g.width)
                        && l.mask.len() == l.channels * l.height * l.width
                        && switches
                })
    }

    pub(crate) fn check_recording(&self, rec: &Recording) -> Result<()> {
        if rec.layers.len() != self.network.convs.len()
            || rec.input.len() != 3 * self.profile.input_size.pow(2)
        {
            return Err(Error::invalid(
                "recording",
                "was made with another model or input size",
            ));
        }
        Ok(())
    }

    fn run_backward(
        &self,
        session: &Mutex<Session>,
        rec: &Recording,
        layer: usize,
        batch: &[(NeuronAt, Mode)],
        start: Start,
        through_relu: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let convs = &self.network.convs;
        let n = batch.len();
        let c_top = convs[layer - 1].out_channels;
        let top = rec.layer(layer);
        let mut seed = vec![0f32; n * c_top];
        let s = self.profile.input_size;
        let size_tree = tree_of(convs, layer, s);
        let mut samples = Vec::with_capacity(n);
        for (k, (nr, mode)) in batch.iter().enumerate() {
            let act = top.activation(nr.feature, nr.y, nr.x);
            let mut v = match start {
                Start::OneHot => 1.0,
                Start::RecordedActivation => act,
            };
            if through_relu {
                let at = (nr.feature * top.height + nr.y) * top.width + nr.x;
                let activation = convs[layer - 1].activation;
                v *= activation.slopes()[top.state(activation, at) as usize];
            }
            seed[k * c_top + nr.feature] = v;
            samples.push(GateSample {
                tree: window_tree(convs, layer, (nr.y, nr.x), s),
                masks: mode.uses_masks(),
            });
        }
        let gate_batches = gate_batches(convs, rec, &samples, layer)?;
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::new();
        inputs.push((
            "seed".into(),
            TensorRef::from_array_view(([n, c_top, 1, 1], seed.as_slice()))?.into(),
        ));
        let positions: Vec<(usize, usize)> = batch.iter().map(|(nr, _)| (nr.y, nr.x)).collect();
        inputs.extend(at_input(&size_tree, layer, &positions)?);
        inputs.extend(gate_inputs(convs, &size_tree, n, &gate_batches)?);
        let mut session = session.lock().map_err(poisoned)?;
        let outputs = session.run(inputs)?;
        let (_, image) = outputs["image"].try_extract_tensor::<f32>()?;
        let (wy, wx) = size_tree.out[0];
        let per = 3 * wy.len * wx.len;
        let mut frames = Vec::with_capacity(n);
        for (k, (nr, _)) in batch.iter().enumerate() {
            let tree = window_tree(convs, layer, (nr.y, nr.x), s);
            let mut frame = vec![0f32; 3 * s * s];
            put_window(&mut frame, s, tree.out[0], &image[k * per..(k + 1) * per]);
            frames.push(frame);
        }
        Ok(frames)
    }

    /// Each neuron's pre-activation for a zero input under the recorded masks
    /// and switches (the `b_eff` of pre-activation = <filter, x0> + b_eff).
    pub fn effective_bias(&self, rec: &Recording, neurons: &[NeuronAt]) -> Result<Vec<f32>> {
        self.effective_bias_until(rec, neurons, &Stop::never())
    }

    /// [`Self::effective_bias`], checking `stop` before every batch.
    pub fn effective_bias_until(
        &self,
        rec: &Recording,
        neurons: &[NeuronAt],
        stop: &Stop,
    ) -> Result<Vec<f32>> {
        self.check_recording(rec)?;
        let convs = &self.network.convs;
        let mut out = vec![0f32; neurons.len()];
        let mut by_layer: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, n) in neurons.iter().enumerate() {
            by_layer.entry(n.layer).or_default().push(i);
        }
        for (layer, idx) in by_layer {
            if layer == 1 && convs[0].residual.is_none() {
                // No hidden layer: the bias is the whole affine offset.
                for i in idx {
                    out[i] = convs[0].bias[neurons[i].feature];
                }
                continue;
            }
            let size = self.profile.input_size;
            let session = self.cached_graph(layer, GraphKind::Affine, || {
                Ok(affine_graph(convs, layer, size))
            })?;
            let size_tree = tree_of(convs, layer, size);
            for chunk in idx.chunks(batch_size(convs, layer, size)) {
                stop.check()?;
                let n = chunk.len();
                let samples: Vec<GateSample> = chunk
                    .iter()
                    .map(|&i| GateSample {
                        tree: window_tree(convs, layer, (neurons[i].y, neurons[i].x), size),
                        masks: true,
                    })
                    .collect();
                let gate_batches = gate_batches(convs, rec, &samples, layer)?;
                let mut inputs = gate_inputs(convs, &size_tree, n, &gate_batches)?;
                let positions: Vec<(usize, usize)> = chunk
                    .iter()
                    .map(|&i| (neurons[i].y, neurons[i].x))
                    .collect();
                inputs.extend(at_input(&size_tree, layer, &positions)?);
                let mut session = session.lock().map_err(poisoned)?;
                let outputs = session.run(inputs)?;
                let (shape, pre) = outputs["preact"].try_extract_tensor::<f32>()?;
                let c_top = convs[layer - 1].out_channels;
                if shape.first().copied() != Some(n as i64) {
                    return Err(Error::Runtime(format!(
                        "affine graph returned shape {shape:?} for {n} neurons"
                    )));
                }
                for (k, &i) in chunk.iter().enumerate() {
                    out[i] = pre[k * c_top + neurons[i].feature];
                }
            }
        }
        Ok(out)
    }
}

/// The `gate{i}` and `cells{j}` inputs of a batch of `n` samples.
pub(crate) fn gate_inputs<'a>(
    convs: &[ConvLayer],
    size_tree: &FovTree,
    n: usize,
    batches: &'a Gates,
) -> Result<Vec<(String, ort::session::SessionInputValue<'a>)>> {
    let mut inputs = Vec::new();
    // Layers out of the tree (other branches of a block) have no inputs.
    let live = |k: usize| size_tree.live.get(k).copied().unwrap_or(false);
    for (i, g) in batches
        .gates
        .iter()
        .enumerate()
        .filter(|(i, _)| live(i + 1))
    {
        let (sy, sx) = size_tree.out[i + 1];
        let shape = [n, convs[i].out_channels, sy.len, sx.len];
        inputs.push((
            format!("gate{}", i + 1),
            TensorRef::from_array_view((shape, g.as_slice()))?.into(),
        ));
    }
    for (j, inside) in batches
        .insides
        .iter()
        .enumerate()
        .filter(|(j, _)| live(j + 1))
    {
        let Some(inside) = inside else { continue };
        let (cy, cx) = size_tree.conv_in[j + 1];
        inputs.push((
            format!("inside_pool{}", j + 1),
            TensorRef::from_array_view(([n, 1, cy.len, cx.len], inside.as_slice()))?.into(),
        ));
    }
    for (j, cells) in batches
        .cells
        .iter()
        .enumerate()
        .filter(|(j, _)| live(j + 1))
    {
        let Some(cells) = cells else { continue };
        let (cy, cx) = size_tree.conv_in[j + 1];
        let shape = [n, convs[j].in_channels, cy.len, cx.len];
        inputs.push((
            format!("cells{}", j + 1),
            TensorRef::from_array_view((shape, cells.as_slice()))?.into(),
        ));
    }
    Ok(inputs)
}
