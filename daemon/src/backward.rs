//! Backward reconstructions (paper section 3 and 3.1) as generated ONNX
//! graphs run on the engine's execution provider.
//!
//! A neuron's backward pass only touches its field-of-view tree, so every
//! graph works on windows: at each layer the window grows by one pixel per
//! side (a full 3x3 convolution with the kernel flipped and its channels
//! swapped) and doubles at each pool. All neurons of a layer share one graph;
//! what differs per neuron and mode is fed as inputs:
//! - `seed`: the start vector at the neuron (one-hot times the start value);
//! - `gate{i}`: a 0/1 window per hidden layer i: the ReLU mask r_i (or, for
//!   the deconvnet, just "inside the image"), times the switches of the pool
//!   that follows layer i. Unpooling is then nearest upsampling times it.
//!
//! The three deconvnet modes apply a ReLU after each transposed convolution
//! (fused into it by ONNX Runtime); the linear filter's graph leaves it out.
//!
//! The image-plane result is not rectified, so reconstructions keep their
//! sign; equations 4-7 are applied at every hidden layer.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::network::{ConvLayer, FovTree, Span, fov_tree};
use crate::onnx::{Attr, Dim, GraphBuilder, f32_tensor, i64_tensor};
use crate::recording::Recording;
use crate::stop::Stop;
use fovea_proto::onnx::{ModelProto, tensor_proto::DataType};
use ort::session::Session;
use ort::value::TensorRef;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

/// A conv neuron, already validated against the network.
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
    pub activation: f32,
}

/// The generated graphs, per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GraphKind {
    /// Trained weights, rectified (deconvnet, masked) or not (linear filter).
    Trained {
        linear: bool,
    },
    /// Random weights from a seed, rectified.
    Random(u64),
    Affine,
    /// Forward + gradient over the FOV window, for maximization.
    Ascent,
}

/// Sessions of generated graphs, built on first use.
pub(crate) type SharedSession = Arc<Mutex<Session>>;

#[derive(Default)]
pub struct BackwardCache {
    sessions: Mutex<HashMap<(usize, GraphKind), SharedSession>>,
    random_order: Mutex<Vec<(usize, GraphKind)>>,
}

/// Random-weight sessions kept at once (one per layer and seed).
const RANDOM_SESSIONS: usize = 8;
/// Samples per backward run. Small windows gain from batching; on large ones
/// batched convolutions run slower per sample than single ones on CPU (and
/// the memory of one run grows), so those go one at a time.
fn batch_size(convs: &[ConvLayer], layer: usize) -> usize {
    let (sy, sx) = tree_of(convs, layer).out[0];
    match sy.len * sx.len {
        a if a >= 128 * 128 => 1,
        a if a >= 64 * 64 => 2,
        _ => 8,
    }
}

/// The field-of-view box of a neuron, clipped to the input.
pub fn fov_box(convs: &[ConvLayer], n: NeuronAt, size: usize) -> PixelBox {
    let tree = fov_tree(convs, n.layer, n.y, n.x);
    let (sy, sx) = tree.out[0];
    let (y0, y1) = sy.clip(size);
    let (x0, x1) = sx.clip(size);
    PixelBox { x0, y0, x1, y1 }
}

/// Gaussian weights with each layer's weight mean and std, reproducible from
/// the seed (ChaCha8, one stream per layer), OIHW like the trained ones.
pub fn random_weights(convs: &[ConvLayer], seed: u64) -> Vec<Vec<f32>> {
    convs
        .iter()
        .map(|c| {
            let n = c.weight.len() as f64;
            let mean = c.weight.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = c
                .weight
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let std = var.sqrt().max(f64::MIN_POSITIVE);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(c.number as u64);
            match Normal::new(mean, std) {
                Ok(dist) => (0..c.weight.len())
                    .map(|_| dist.sample(&mut rng) as f32)
                    .collect(),
                Err(_) => vec![mean as f32; c.weight.len()],
            }
        })
        .collect()
}

/// `[in, out, 3, 3]` kernel of the transposed convolution: channels swapped
/// and the 3x3 kernel rotated by 180 degrees.
pub(crate) fn transposed_kernel(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for o in 0..out_ch {
        for i in 0..in_ch {
            for k in 0..9 {
                t[(i * out_ch + o) * 9 + (8 - k)] = w[(o * in_ch + i) * 9 + k];
            }
        }
    }
    t
}

fn dims(n: &'static str, c: usize, s: (Span, Span)) -> [Dim; 4] {
    [
        Dim::Named(n),
        Dim::Fixed(c as i64),
        Dim::Fixed(s.0.len as i64),
        Dim::Fixed(s.1.len as i64),
    ]
}

/// The window sizes of any neuron of `layer` (they do not depend on where
/// it is, only the offsets do).
fn tree_of(convs: &[ConvLayer], layer: usize) -> FovTree {
    fov_tree(convs, layer, 0, 0)
}

/// A layer's forward convolution with its trained weights and bias, padded by
/// `pad` (0 on a window whose border the caller accounts for, 1 on a whole
/// image).
pub(crate) fn forward_conv(g: &mut GraphBuilder, c: &ConvLayer, x: &str, pad: i64) -> String {
    let i = c.number;
    let w = g.initializer(f32_tensor(
        &format!("w{i}"),
        &[c.out_channels as i64, c.in_channels as i64, 3, 3],
        &c.weight,
    ));
    let b = g.initializer(f32_tensor(
        &format!("b{i}"),
        &[c.out_channels as i64],
        &c.bias,
    ));
    g.node(
        "Conv",
        &[x, &w, &b],
        vec![
            ("pads", Attr::Ints(vec![pad; 4])),
            ("kernel_shape", Attr::Ints(vec![3, 3])),
        ],
    )
}

/// The transposed convolution of a layer with `weight` (OIHW), as an ordinary
/// convolution padded by `pad`: 2 grows a window by one pixel per side (a
/// full convolution), 1 keeps a whole image's size.
pub(crate) fn transposed_conv(
    g: &mut GraphBuilder,
    c: &ConvLayer,
    weight: &[f32],
    x: &str,
    pad: i64,
) -> String {
    let i = c.number;
    let k = g.initializer(f32_tensor(
        &format!("wt{i}"),
        &[c.in_channels as i64, c.out_channels as i64, 3, 3],
        &transposed_kernel(weight, c.out_channels, c.in_channels),
    ));
    g.node(
        "Conv",
        &[x, &k],
        vec![
            ("pads", Attr::Ints(vec![pad; 4])),
            ("kernel_shape", Attr::Ints(vec![3, 3])),
        ],
    )
}

/// Backward graph from conv layer `layer` to the input plane.
fn backward_graph(
    convs: &[ConvLayer],
    layer: usize,
    weights: &[Vec<f32>],
    linear: bool,
) -> ModelProto {
    let tree = tree_of(convs, layer);
    let mut g = GraphBuilder::new(&format!("backward_l{layer}"));
    let top = &convs[layer - 1];
    let mut x = g.input(
        "seed",
        DataType::Float,
        &[
            Dim::Named("n"),
            Dim::Fixed(top.out_channels as i64),
            Dim::Fixed(1),
            Dim::Fixed(1),
        ],
    );
    for i in (1..=layer).rev() {
        let c = &convs[i - 1];
        let u = transposed_conv(&mut g, c, &weights[i - 1], &x, 2);
        if i == 1 {
            g.node_named("Identity", &[&u], "image", vec![]);
            break;
        }
        let mut v = if linear {
            u
        } else {
            g.node("Relu", &[&u], vec![])
        };
        if c.pooled {
            v = g.upsample2(&v);
        }
        let gate = g.input(
            &format!("gate{}", i - 1),
            DataType::Uint8,
            &dims("n", c.in_channels, tree.out[i - 1]),
        );
        let gate_f = g.to_float(&gate);
        x = g.node("Mul", &[&v, &gate_f], vec![]);
    }
    g.output("image", DataType::Float, &dims("n", 3, tree.out[0]));
    g.finish()
}

/// Forward graph of the affine map fixed by the recorded masks and switches,
/// on the FOV windows, from a zero input: its output is the neuron's
/// effective bias (pre-activation for input 0).
fn affine_graph(convs: &[ConvLayer], layer: usize) -> ModelProto {
    let tree = tree_of(convs, layer);
    let mut g = GraphBuilder::new(&format!("affine_l{layer}"));
    let zeros_shape = g.initializer(i64_tensor(
        "zeros_shape",
        &[3],
        &[3, tree.out[0].0.len as i64, tree.out[0].1.len as i64],
    ));
    let zeros = g.node("ConstantOfShape", &[&zeros_shape], vec![]);
    let axes = g.initializer(i64_tensor("axes0", &[1], &[0]));
    let mut a = g.node("Unsqueeze", &[&zeros, &axes], vec![]);
    let top = &convs[layer - 1];
    for i in 1..=layer {
        let c = &convs[i - 1];
        if c.pooled {
            let pooled = g.node(
                "AveragePool",
                &[&a],
                vec![
                    ("kernel_shape", Attr::Ints(vec![2, 2])),
                    ("strides", Attr::Ints(vec![2, 2])),
                ],
            );
            let four = g.initializer(f32_tensor(&format!("four{i}"), &[], &[4.0]));
            a = g.node("Mul", &[&pooled, &four], vec![]);
        }
        let z = forward_conv(&mut g, c, &a, 0);
        if i == layer {
            g.node_named("Identity", &[&z], "preact", vec![]);
            break;
        }
        let gate = g.input(
            &format!("gate{i}"),
            DataType::Uint8,
            &dims("n", c.out_channels, tree.out[i]),
        );
        let gate_f = g.to_float(&gate);
        // The batch comes in with the first gate (the zero image has batch 1).
        a = g.node("Mul", &[&z, &gate_f], vec![]);
    }
    g.output(
        "preact",
        DataType::Float,
        &[
            Dim::Named("n"),
            Dim::Fixed(top.out_channels as i64),
            Dim::Fixed(1),
            Dim::Fixed(1),
        ],
    );
    g.finish()
}

/// Byte b spread to eight 0/1 bytes (bit i to byte i).
const SPREAD: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut v = 0u64;
        let mut i = 0;
        while i < 8 {
            v |= (((b >> i) & 1) as u64) << (8 * i);
            i += 1;
        }
        t[b] = v;
        b += 1;
    }
    t
};

/// One sample of a backward batch: its FOV tree and whether the mode uses the
/// ReLU masks (the deconvnet keeps the switches only).
struct GateSample {
    tree: FovTree,
    masks: bool,
}

/// The 0/1 gate windows of hidden layer `i` for every sample, concatenated.
fn gate_batch(convs: &[ConvLayer], rec: &Recording, samples: &[GateSample], i: usize) -> Vec<u8> {
    let l = rec.layer(i);
    let switches = if convs[i].pooled {
        rec.layer(i + 1).switches.as_ref()
    } else {
        None
    };
    let (h, w) = (l.height, l.width);
    let Some(first) = samples.first() else {
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
            }
        }
    }
    out
}

/// `dst[k] = 1` where flag k is set, else 0; `flags(k)` gives the 64 flags
/// from k on. Sixty-four bytes a store with AVX-512BW, else eight at a time
/// from a table: a layer-13 backward pass spreads 8.6 million flags.
fn spread_flags(dst: &mut [u8], flags: impl Fn(usize) -> u64) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has just been found to support AVX-512BW.
            unsafe { spread_flags_avx512(dst, flags) };
            return;
        }
    }
    spread_flags_by_8(dst, flags);
}

#[inline(always)]
fn spread_flags_by_8(dst: &mut [u8], flags: impl Fn(usize) -> u64) {
    for (k, chunk) in dst.chunks_mut(8).enumerate() {
        let bytes = SPREAD[(flags(8 * k) & 0xff) as usize].to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512bw")]
fn spread_flags_avx512(dst: &mut [u8], flags: impl Fn(usize) -> u64) {
    use std::arch::x86_64::{_mm512_mask_storeu_epi8, _mm512_maskz_mov_epi8, _mm512_set1_epi8};
    let ones = _mm512_set1_epi8(1);
    for start in (0..dst.len()).step_by(64) {
        let n = (dst.len() - start).min(64);
        let keep = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let v = _mm512_maskz_mov_epi8(flags(start), ones);
        // SAFETY: the masked store writes only the `n` bytes of
        // `dst[start..start + n]`.
        unsafe { _mm512_mask_storeu_epi8(dst.as_mut_ptr().add(start).cast(), keep, v) };
    }
}

/// The gate batches of hidden layers 1..layer (index i - 1 is `gate{i}`),
/// layers spread over the cores.
fn gate_batches(
    convs: &[ConvLayer],
    rec: &Recording,
    samples: &[GateSample],
    layer: usize,
) -> Result<Vec<Vec<u8>>> {
    let sizes = tree_of(convs, layer);
    crate::parallel::map_by_cost(
        layer - 1,
        |k| {
            let (sy, sx) = sizes.out[k + 1];
            convs[k].out_channels * sy.len * sx.len
        },
        |k| gate_batch(convs, rec, samples, k + 1),
    )
    .ok_or_else(|| Error::Runtime("a gate window was not computed".into()))
}

impl Engine {
    pub(crate) fn cached_graph(
        &self,
        layer: usize,
        kind: GraphKind,
        build: impl FnOnce() -> Result<ModelProto>,
    ) -> Result<SharedSession> {
        let key = (layer, kind);
        if let Some(s) = self.backward.sessions.lock().map_err(poisoned)?.get(&key) {
            return Ok(s.clone());
        }
        let model = build()?;
        self.dump(
            &match kind {
                GraphKind::Trained { linear: false } => format!("backward_l{layer}"),
                GraphKind::Trained { linear: true } => format!("backward_l{layer}_linear"),
                GraphKind::Random(seed) => format!("backward_l{layer}_random{seed}"),
                GraphKind::Affine => format!("affine_l{layer}"),
                GraphKind::Ascent => format!("ascent_l{layer}"),
            },
            &model,
        );
        let session = Arc::new(Mutex::new(self.session(&model)?));
        let mut sessions = self.backward.sessions.lock().map_err(poisoned)?;
        if let GraphKind::Random(_) = kind {
            let mut order = self.backward.random_order.lock().map_err(poisoned)?;
            order.push(key);
            if order.len() > RANDOM_SESSIONS {
                let old = order.remove(0);
                sessions.remove(&old);
            }
        }
        Ok(sessions.entry(key).or_insert(session).clone())
    }

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
        self.reconstruct_until(rec, neurons, modes, start, seed, &Stop::never())
    }

    /// [`Self::reconstruct`], checking `stop` before every batch.
    pub fn reconstruct_until(
        &self,
        rec: &Recording,
        neurons: &[NeuronAt],
        modes: &[Mode],
        start: Start,
        seed: u64,
        stop: &Stop,
    ) -> Result<Vec<Reconstruction>> {
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
        for key in keys {
            let (layer, kind) = key;
            let session = self.cached_graph(layer, kind, || {
                let weights = match kind {
                    GraphKind::Random(s) => random_weights(&self.network.convs, s),
                    _ => self
                        .network
                        .convs
                        .iter()
                        .map(|c| c.weight.clone())
                        .collect(),
                };
                let linear = kind == GraphKind::Trained { linear: true };
                Ok(backward_graph(&self.network.convs, layer, &weights, linear))
            })?;
            for chunk in groups[&key].chunks(batch_size(&self.network.convs, layer)) {
                stop.check()?;
                let batch: Vec<(NeuronAt, Mode)> =
                    chunk.iter().map(|&j| (jobs[j].1, jobs[j].2)).collect();
                let images = self.run_backward(&session, rec, layer, &batch, start)?;
                for (&j, values) in chunk.iter().zip(images) {
                    let (index, n, mode) = jobs[j];
                    results[j] = Some(Reconstruction {
                        neuron_index: index,
                        mode,
                        values,
                        fov: fov_box(&self.network.convs, n, self.profile.input_size),
                        effective_bias: None,
                        activation: rec.layer(n.layer).activation(n.feature, n.y, n.x),
                    });
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::Runtime("a reconstruction was not computed".into())))
            .collect()
    }

    fn check_recording(&self, rec: &Recording) -> Result<()> {
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
    ) -> Result<Vec<Vec<f32>>> {
        let convs = &self.network.convs;
        let n = batch.len();
        let c_top = convs[layer - 1].out_channels;
        let top = rec.layer(layer);
        let mut seed = vec![0f32; n * c_top];
        let size_tree = tree_of(convs, layer);
        let mut samples = Vec::with_capacity(n);
        for (k, (nr, mode)) in batch.iter().enumerate() {
            let act = top.activation(nr.feature, nr.y, nr.x);
            let mut v = match start {
                Start::OneHot => 1.0,
                Start::RecordedActivation => act,
            };
            if mode.uses_masks()
                && !mode.linear()
                && !top
                    .mask
                    .get((nr.feature * top.height + nr.y) * top.width + nr.x)
            {
                v = 0.0;
            }
            seed[k * c_top + nr.feature] = v;
            samples.push(GateSample {
                tree: fov_tree(convs, layer, nr.y, nr.x),
                masks: mode.uses_masks(),
            });
        }
        let gate_batches = gate_batches(convs, rec, &samples, layer)?;
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::new();
        inputs.push((
            "seed".into(),
            TensorRef::from_array_view(([n, c_top, 1, 1], seed.as_slice()))?.into(),
        ));
        inputs.extend(gate_inputs(convs, &size_tree, n, &gate_batches)?);
        let mut session = session.lock().map_err(poisoned)?;
        let outputs = session.run(inputs)?;
        let (_, image) = outputs["image"].try_extract_tensor::<f32>()?;
        let (wy, wx) = size_tree.out[0];
        let s = self.profile.input_size;
        let per = 3 * wy.len * wx.len;
        let mut frames = Vec::with_capacity(n);
        for (k, (nr, _)) in batch.iter().enumerate() {
            let tree = fov_tree(convs, layer, nr.y, nr.x);
            let (sy, sx) = tree.out[0];
            let mut frame = vec![0f32; 3 * s * s];
            let (y0, y1) = sy.clip(s);
            let (x0, x1) = sx.clip(s);
            for c in 0..3 {
                for y in y0..y1 {
                    let src = k * per + (c * wy.len + (y as i64 - sy.start) as usize) * wx.len;
                    let dst = (c * s + y) * s;
                    for x in x0..x1 {
                        frame[dst + x] = image[src + (x as i64 - sx.start) as usize];
                    }
                }
            }
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
            if layer == 1 {
                // No hidden layer: the bias is the whole affine offset.
                for i in idx {
                    out[i] = convs[0].bias[neurons[i].feature];
                }
                continue;
            }
            let session =
                self.cached_graph(layer, GraphKind::Affine, || Ok(affine_graph(convs, layer)))?;
            let size_tree = tree_of(convs, layer);
            for chunk in idx.chunks(batch_size(convs, layer)) {
                stop.check()?;
                let n = chunk.len();
                let samples: Vec<GateSample> = chunk
                    .iter()
                    .map(|&i| GateSample {
                        tree: fov_tree(convs, layer, neurons[i].y, neurons[i].x),
                        masks: true,
                    })
                    .collect();
                let gate_batches = gate_batches(convs, rec, &samples, layer)?;
                let inputs = gate_inputs(convs, &size_tree, n, &gate_batches)?;
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

/// The `gate{i}` inputs of a batch of `n` samples.
fn gate_inputs<'a>(
    convs: &[ConvLayer],
    size_tree: &FovTree,
    n: usize,
    gate_batches: &'a [Vec<u8>],
) -> Result<Vec<(String, ort::session::SessionInputValue<'a>)>> {
    gate_batches
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let (sy, sx) = size_tree.out[i + 1];
            let shape = [n, convs[i].out_channels, sy.len, sx.len];
            Ok((
                format!("gate{}", i + 1),
                TensorRef::from_array_view((shape, g.as_slice()))?.into(),
            ))
        })
        .collect()
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::Runtime("a session lock was poisoned by an earlier failure".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_flags_writes_each_flag_as_a_byte() {
        let words = [0x8000_0000_0000_0001u64, 0x1234_5678_9abc_def0, u64::MAX];
        let flag = |i: usize| words.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1);
        let bits = |k: usize| (0..64).fold(0u64, |b, j| b | u64::from(flag(k + j)) << j);
        for len in [0, 1, 7, 8, 63, 64, 65, 150, 192] {
            let want: Vec<u8> = (0..len).map(|i| u8::from(flag(i))).collect();
            let mut got = vec![7u8; len + 1];
            spread_flags(&mut got[..len], bits);
            assert_eq!(&got[..len], want.as_slice(), "{len}");
            assert_eq!(got[len], 7, "nothing written past the end");
            let mut by_8 = vec![7u8; len];
            spread_flags_by_8(&mut by_8, bits);
            assert_eq!(by_8, want);
        }
    }

    #[test]
    fn transposed_kernel_swaps_channels_and_rotates() {
        // 2 out x 1 in, kernels 0..9 and 9..18.
        let w: Vec<f32> = (0..18).map(|v| v as f32).collect();
        let t = transposed_kernel(&w, 2, 1);
        assert_eq!(&t[..9], &[8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
        assert_eq!(t[9], 17.0);
    }
}
