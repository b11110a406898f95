//! A plain-loop f64 reference of a generated chain: conv (any kernel,
//! stride, dilation, padding and grouping), ReLU, leaky ReLU or clipped
//! ReLU, first-max pooling, and the four backward modes over the whole
//! image.

use fovea_engine::fixtures::{ChainConv, tiny_chain};
use fovea_engine::model::network::{Activation, ConvShape, PoolShape};
use fovea_engine::probe::reconstruct::{Mode, NeuronAt};

/// One reference layer: (in, out, pool in front, weight OIHW, bias,
/// geometry).
pub type RefLayer = (
    usize,
    usize,
    Option<PoolShape>,
    Vec<f64>,
    Vec<f64>,
    ConvShape,
);

/// Plain reference network (f64).
pub struct Reference {
    pub layers: Vec<RefLayer>,
    /// Per layer, its activation.
    pub activations: Vec<Activation>,
    /// Per layer, a residual sum into its pre-activation.
    pub residuals: Vec<Option<RefResidual>>,
    /// Per layer, the layers (1-based, 0 the image) whose outputs it reads,
    /// concatenated on channels.
    pub sources: Vec<Vec<usize>>,
    /// The head averages the last layer's maps globally (else it pools as
    /// the last pooled layer does).
    pub averaged_head: bool,
    /// The layers whose outputs, concatenated, the head reads.
    pub end: Vec<usize>,
    pub size: usize,
}

/// A projection conv with its weights and bias.
pub type Projection = (ChainConv, (Vec<f32>, Vec<f32>));

/// A residual sum: the input of layer `from` (1-based, after its pool),
/// through a projection layer (its pool field unused) or as it is.
pub struct RefResidual {
    pub from: usize,
    pub projection: Option<RefLayer>,
}

/// The activation's value at `z`.
pub fn activate(a: Activation, z: f64) -> f64 {
    match a {
        Activation::Relu => z.max(0.0),
        Activation::Leaky(alpha) if z <= 0.0 => alpha as f64 * z,
        Activation::Leaky(_) => z,
        Activation::Clip(c) => z.clamp(0.0, c as f64),
        Activation::Linear => z,
    }
}

/// The activation's slope at `z` (0 at a ReLU's kink and at a ceiling).
pub fn slope(a: Activation, z: f64) -> f64 {
    match a {
        Activation::Relu => f64::from(z > 0.0),
        Activation::Leaky(alpha) if z <= 0.0 => alpha as f64,
        Activation::Leaky(_) => 1.0,
        Activation::Clip(c) => f64::from(z > 0.0 && z < c as f64),
        Activation::Linear => 1.0,
    }
}

/// The constant of the activation's piece at `z` (a clipped unit's
/// ceiling).
pub fn offset(a: Activation, z: f64) -> f64 {
    match a {
        Activation::Clip(c) if z >= c as f64 => c as f64,
        _ => 0.0,
    }
}

/// The deconvnet's rectification of a backward signal `v`: the slopes
/// chosen by its sign.
pub fn rectify(a: Activation, v: f64) -> f64 {
    match a {
        Activation::Linear => v,
        Activation::Leaky(alpha) if v <= 0.0 => alpha as f64 * v,
        Activation::Leaky(_) => v,
        _ => v.max(0.0),
    }
}

/// What the reference forward keeps.
pub struct Trace {
    /// Per layer: pre-activations [C, H, W].
    pub pre: Vec<Vec<f64>>,
    /// Per layer: (h, w).
    pub dims: Vec<(usize, usize)>,
    /// Per layer: (h, w) of the convolution's input (after its pool).
    pub inputs: Vec<(usize, usize)>,
    /// Per max-pooled layer i: for each pooled output index, the argmax
    /// index in layer i-1's grid.
    pub argmax: Vec<Option<Vec<usize>>>,
    /// Per pooled layer i: its pool as a linear map under the trace.
    pub pools: Vec<Option<PoolMap>>,
}

impl Trace {
    /// The mean pre-activation of channel `ch` of layer `l` (from 1).
    pub fn channel_mean(&self, l: usize, ch: usize) -> f64 {
        let (h, w) = self.dims[l - 1];
        self.pre[l - 1][ch * h * w..(ch + 1) * h * w]
            .iter()
            .sum::<f64>()
            / (h * w) as f64
    }

    /// The sum of layer `l`'s squared activations under `act`.
    pub fn squares(&self, l: usize, act: Activation) -> f64 {
        self.pre[l - 1]
            .iter()
            .map(|&v| activate(act, v).powi(2))
            .sum()
    }

    /// The pre-activation of unit (ch, y, x) of layer `l`.
    pub fn unit(&self, l: usize, (ch, y, x): (usize, usize, usize)) -> f64 {
        let (h, w) = self.dims[l - 1];
        self.pre[l - 1][(ch * h + y) * w + x]
    }
}

/// A pool as a linear map (under a trace's switches): per output, the
/// inputs it reads with their weights.
pub type PoolMap = Vec<Vec<(usize, f64)>>;

/// `map` applied to `x`.
pub fn pooled(map: &PoolMap, x: &[f64]) -> Vec<f64> {
    map.iter()
        .map(|reads| reads.iter().map(|&(i, w)| w * x[i]).sum())
        .collect()
}

/// The transpose of `map` (onto `inputs` values) applied to `g`: each
/// output's signal added into what it reads.
pub fn unpooled(map: &PoolMap, g: &[f64], inputs: usize) -> Vec<f64> {
    let mut up = vec![0f64; inputs];
    for (reads, &v) in map.iter().zip(g) {
        for &(i, w) in reads {
            up[i] += w * v;
        }
    }
    up
}

/// Pool `p` over `x` (`c` planes of `dims`) as a map: a max pool's first
/// maxima, or an average over each whole window, padding counted as zeros.
pub fn pool_map(
    x: &[f64],
    c: usize,
    dims: (usize, usize),
    p: PoolShape,
) -> (PoolMap, (usize, usize)) {
    if !p.average {
        let (arg, out) = first_max_pool(x, c, dims, p);
        return (arg.into_iter().map(|a| vec![(a, 1.0)]).collect(), out);
    }
    let (h, w) = dims;
    let (oh, ow) = pool_outputs(p, dims);
    let share = 1.0 / (p.kernel * p.kernel) as f64;
    let mut map = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut reads = Vec::new();
                for dy in 0..p.kernel {
                    for dx in 0..p.kernel {
                        let y = (oy * p.stride + dy) as i64 - p.pads[0] as i64;
                        let xx = (ox * p.stride + dx) as i64 - p.pads[1] as i64;
                        if y >= 0 && xx >= 0 && y < h as i64 && xx < w as i64 {
                            reads.push(((ch * h + y as usize) * w + xx as usize, share));
                        }
                    }
                }
                map.push(reads);
            }
        }
    }
    (map, (oh, ow))
}

/// A pool's output size (ceil mode adds a last window unless it would
/// start in the bottom/right padding).
fn pool_outputs(p: PoolShape, (h, w): (usize, usize)) -> (usize, usize) {
    let outputs = |len: usize, before: usize, after: usize| {
        let span = len + before + after - p.kernel;
        let mut n = if p.ceil {
            span.div_ceil(p.stride) + 1
        } else {
            span / p.stride + 1
        };
        if p.ceil && (n - 1) * p.stride >= len + before {
            n -= 1;
        }
        n
    };
    (
        outputs(h, p.pads[0], p.pads[2]),
        outputs(w, p.pads[1], p.pads[3]),
    )
}

/// A max pool's switches over `c` planes `h` x `w`: for each output, the
/// index of its window's first maximum (row-major, padding never), and the
/// output size (ceil mode adds a last window unless it would start in the
/// bottom/right padding).
pub fn first_max_pool(
    x: &[f64],
    c: usize,
    (h, w): (usize, usize),
    p: PoolShape,
) -> (Vec<usize>, (usize, usize)) {
    let (oh, ow) = pool_outputs(p, (h, w));
    let mut arg = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best: Option<usize> = None;
                for dy in 0..p.kernel {
                    for dx in 0..p.kernel {
                        let y = (oy * p.stride + dy) as i64 - p.pads[0] as i64;
                        let xx = (ox * p.stride + dx) as i64 - p.pads[1] as i64;
                        if y < 0 || xx < 0 || y >= h as i64 || xx >= w as i64 {
                            continue;
                        }
                        let i = (ch * h + y as usize) * w + xx as usize;
                        if best.is_none_or(|b| x[i] > x[b]) {
                            best = Some(i);
                        }
                    }
                }
                arg.push(best.expect("every window reads the input"));
            }
        }
    }
    (arg, (oh, ow))
}

/// For each output position along an axis, the input positions its kernel
/// taps read (None in the padding).
fn taps(s: &ConvShape, len: usize, axis: usize) -> Vec<Vec<Option<usize>>> {
    let pad = s.pad(axis).0 as i64;
    (0..s.output_len(len, axis))
        .map(|o| {
            (0..s.kernel)
                .map(|k| {
                    let i = (o * s.stride + k * s.dilation) as i64 - pad;
                    (i >= 0 && i < len as i64).then_some(i as usize)
                })
                .collect()
        })
        .collect()
}

/// Calls `f(output index, input index, weight index)` for every product a
/// convolution of `s` on `cin` planes of (h, w) into `cout` planes sums.
fn each_product(
    cin: usize,
    (h, w): (usize, usize),
    cout: usize,
    s: &ConvShape,
    mut f: impl FnMut(usize, usize, usize),
) -> (usize, usize) {
    let (ty, tx) = (taps(s, h, 0), taps(s, w, 1));
    let (oh, ow) = (ty.len(), tx.len());
    let (in_g, out_g) = (cin / s.groups, cout / s.groups);
    for o in 0..cout {
        for (y, row_taps) in ty.iter().enumerate() {
            for (x, col_taps) in tx.iter().enumerate() {
                let out = (o * oh + y) * ow + x;
                for i_g in 0..in_g {
                    let i = o / out_g * in_g + i_g;
                    for (ky, iy) in row_taps.iter().enumerate() {
                        for (kx, ix) in col_taps.iter().enumerate() {
                            if let (Some(iy), Some(ix)) = (iy, ix) {
                                let wi = ((o * in_g + i_g) * s.kernel + ky) * s.kernel + kx;
                                f(out, (i * h + iy) * w + ix, wi);
                            }
                        }
                    }
                }
            }
        }
    }
    (oh, ow)
}

/// The convolution of `x` ([cin, h, w]) and its output (h, w).
pub fn conv(
    x: &[f64],
    cin: usize,
    dims: (usize, usize),
    wt: &[f64],
    b: &[f64],
    cout: usize,
    s: &ConvShape,
) -> (Vec<f64>, (usize, usize)) {
    let (oh, ow) = (s.output_len(dims.0, 0), s.output_len(dims.1, 1));
    let mut out: Vec<f64> = (0..cout * oh * ow).map(|k| b[k / (oh * ow)]).collect();
    each_product(cin, dims, cout, s, |o, i, k| out[o] += wt[k] * x[i]);
    (out, (oh, ow))
}

/// Gradient of `conv` with respect to its input of `cin` planes (h, w).
pub fn conv_t(
    g: &[f64],
    cin: usize,
    dims: (usize, usize),
    wt: &[f64],
    cout: usize,
    s: &ConvShape,
) -> Vec<f64> {
    let mut out = vec![0f64; cin * dims.0 * dims.1];
    each_product(cin, dims, cout, s, |o, i, k| out[i] += wt[k] * g[o]);
    out
}

impl Reference {
    /// The tiny model's chain with `weights`.
    pub fn new(weights: Vec<(Vec<f32>, Vec<f32>)>, size: usize) -> Reference {
        Reference::of_chain(&tiny_chain(), weights, size)
    }

    /// The pool in front of the head: the chain's last; None for a global
    /// average (a chain without pools).
    pub fn head_pool(&self) -> Option<PoolShape> {
        if self.averaged_head {
            return None;
        }
        self.layers.iter().rev().find_map(|l| l.2)
    }

    /// The network with a head reading the concatenation of `end`.
    pub fn with_end(mut self, end: &[usize]) -> Reference {
        self.end = end.to_vec();
        self
    }

    /// The network with a head that averages the last layer's maps, pools
    /// below or not.
    pub fn with_averaged_head(mut self) -> Reference {
        self.averaged_head = true;
        self
    }

    pub fn of_chain(
        chain: &[ChainConv],
        weights: Vec<(Vec<f32>, Vec<f32>)>,
        size: usize,
    ) -> Reference {
        Reference {
            layers: chain
                .iter()
                .zip(weights)
                .map(|(c, (w, b))| {
                    (
                        c.in_channels,
                        c.out_channels,
                        c.pool,
                        w.iter().map(|&v| v as f64).collect(),
                        b.iter().map(|&v| v as f64).collect(),
                        c.shape,
                    )
                })
                .collect(),
            activations: chain.iter().map(|c| c.activation).collect(),
            residuals: chain.iter().map(|_| None).collect(),
            sources: (0..chain.len()).map(|i| vec![i]).collect(),
            averaged_head: false,
            end: vec![chain.len()],
            size,
        }
    }

    /// The network with each layer reading the concatenation of `sources`.
    pub fn with_sources(mut self, sources: &[&[usize]]) -> Reference {
        self.sources = sources.iter().map(|s| s.to_vec()).collect();
        self
    }

    /// (channels, rows, columns) of layer `s`'s output (0: the image) in
    /// `trace`.
    fn output_dims(&self, trace: &Trace, s: usize) -> (usize, usize, usize) {
        match s {
            0 => (3, self.size, self.size),
            s => (
                self.layers[s - 1].1,
                trace.dims[s - 1].0,
                trace.dims[s - 1].1,
            ),
        }
    }

    /// The chain with residual sums: per layer, the layer whose input it
    /// adds and the projection's (conv, weights) if any.
    pub fn with_residuals(mut self, links: Vec<Option<(usize, Option<Projection>)>>) -> Reference {
        self.residuals = links
            .into_iter()
            .map(|l| {
                l.map(|(from, projection)| RefResidual {
                    from,
                    projection: projection.map(|(c, (w, b))| {
                        (
                            c.in_channels,
                            c.out_channels,
                            None,
                            w.iter().map(|&v| v as f64).collect(),
                            b.iter().map(|&v| v as f64).collect(),
                            c.shape,
                        )
                    }),
                })
            })
            .collect();
        self
    }

    /// What layer `i`'s residual (0-based) adds, from the layers' `inputs`
    /// of `dims`.
    fn residual_sum(
        &self,
        i: usize,
        inputs: &[Vec<f64>],
        dims: &[(usize, usize)],
    ) -> Option<Vec<f64>> {
        let r = self.residuals[i].as_ref()?;
        let source = &inputs[r.from - 1];
        Some(match &r.projection {
            Some((pin, pout, _, pw, pb, ps)) => {
                conv(source, *pin, dims[r.from - 1], pw, pb, *pout, ps).0
            }
            None => source.clone(),
        })
    }

    /// The trained kernels the backward passes take: the layers', then per
    /// layer its projection's (empty without one).
    pub fn kernels(&self) -> Vec<Vec<f64>> {
        let projections = self.residuals.iter().map(|r| {
            r.as_ref()
                .and_then(|r| r.projection.as_ref())
                .map_or_else(Vec::new, |p| p.3.clone())
        });
        self.layers
            .iter()
            .map(|l| l.3.clone())
            .chain(projections)
            .collect()
    }

    pub fn forward(&self, input: &[f64]) -> Trace {
        // Each layer's output (0: the image), which the layers above read.
        let mut outs: Vec<Vec<f64>> = vec![input.to_vec()];
        let mut trace = Trace {
            pre: vec![],
            dims: vec![],
            inputs: vec![],
            argmax: vec![],
            pools: vec![],
        };
        // Each layer's input (after its pool), which residuals read.
        let mut inputs: Vec<Vec<f64>> = Vec::new();
        for (i, ((cin, cout, pool, wt, b, shape), &act)) in
            self.layers.iter().zip(&self.activations).enumerate()
        {
            let (_, mut h, mut w) = self.output_dims(&trace, self.sources[i][0]);
            let mut x: Vec<f64> = self.sources[i]
                .iter()
                .flat_map(|&s| outs[s].iter().copied())
                .collect();
            assert_eq!(x.len(), cin * h * w, "layer {}'s input", i + 1);
            if let Some(p) = pool {
                let (map, out) = pool_map(&x, *cin, (h, w), *p);
                x = pooled(&map, &x);
                (h, w) = out;
                trace
                    .argmax
                    .push((!p.average).then(|| map.iter().map(|r| r[0].0).collect()));
                trace.pools.push(Some(map));
            } else {
                trace.argmax.push(None);
                trace.pools.push(None);
            }
            trace.inputs.push((h, w));
            inputs.push(x.clone());
            let (mut pre, out) = conv(&x, *cin, (h, w), wt, b, *cout, shape);
            if let Some(added) = self.residual_sum(i, &inputs, &trace.inputs) {
                assert_eq!(added.len(), pre.len(), "the residual's shape");
                pre.iter_mut().zip(&added).for_each(|(p, a)| *p += a);
            }
            outs.push(pre.iter().map(|&v| activate(act, v)).collect());
            trace.pre.push(pre);
            trace.dims.push(out);
        }
        trace
    }

    /// Full-image backward from neuron n in `mode` with the given backward
    /// weights, under the masks and switches of `trace`, starting at the
    /// neuron's pre-activation.
    pub fn backward(
        &self,
        trace: &Trace,
        n: NeuronAt,
        mode: Mode,
        weights: &[Vec<f64>],
        value: f64,
    ) -> Vec<f64> {
        self.backward_through(trace, n, mode, weights, value, false)
    }

    /// [`Self::backward`], behind the neuron's own ReLU when `through_relu`.
    pub fn backward_through(
        &self,
        trace: &Trace,
        n: NeuronAt,
        mode: Mode,
        weights: &[Vec<f64>],
        value: f64,
        through_relu: bool,
    ) -> Vec<f64> {
        let l = n.layer;
        let (h, w) = trace.dims[l - 1];
        let cl = self.layers[l - 1].1;
        let mut x = vec![0f64; cl * h * w];
        x[(n.feature * h + n.y) * w + n.x] = value;
        self.backward_signal(trace, l, x, mode, weights, through_relu)
    }

    /// Back from a signal `x` at layer `l`'s output (the top's own ReLU mask
    /// applied when `mask_top`, except for the deconvnet) to the input.
    pub fn backward_signal(
        &self,
        trace: &Trace,
        l: usize,
        x: Vec<f64>,
        mode: Mode,
        weights: &[Vec<f64>],
        mask_top: bool,
    ) -> Vec<f64> {
        self.signal_at(trace, l, x, mode, weights, mask_top, 0)
    }

    /// [`Self::backward_signal`] stopped at layer `stop`'s activation (0:
    /// the input).
    #[allow(clippy::too_many_arguments)]
    pub fn signal_at(
        &self,
        trace: &Trace,
        l: usize,
        x: Vec<f64>,
        mode: Mode,
        weights: &[Vec<f64>],
        mask_top: bool,
        stop: usize,
    ) -> Vec<f64> {
        self.signal_from(
            trace,
            (l, Some(x), mask_top),
            Vec::new(),
            mode,
            weights,
            stop,
        )
    }

    /// Back from `seeds`, signals at layers' outputs before their
    /// rectification, and a signal `x` at layer `l`'s (the top's own mask
    /// applied when `mask_top`, except for the deconvnet), to layer
    /// `stop`'s activation.
    pub fn signal_from(
        &self,
        trace: &Trace,
        (l, x, mask_top): (usize, Option<Vec<f64>>, bool),
        seeds: Vec<(usize, Vec<f64>)>,
        mode: Mode,
        weights: &[Vec<f64>],
        stop: usize,
    ) -> Vec<f64> {
        // Signals sent down residual shortcuts, at their source's input.
        let mut waiting: Vec<Option<Vec<f64>>> = vec![None; l + 1];
        // Signals at each layer's output (0: the image), summed over its
        // readers.
        let mut arriving: Vec<Option<Vec<f64>>> = vec![None; l + 1];
        let add = |slot: &mut Option<Vec<f64>>, v: &[f64]| match slot {
            Some(acc) => acc.iter_mut().zip(v).for_each(|(a, v)| *a += v),
            None => *slot = Some(v.to_vec()),
        };
        // The rectification of layer s (the deconvnet's and the masked
        // modes'), on the sum of what its readers send.
        let rectified = |s: usize, mut u: Vec<f64>| {
            if mode != Mode::LinearFilter && s > 0 {
                let act = self.activations[s - 1];
                u.iter_mut().for_each(|v| *v = rectify(act, *v));
            }
            u
        };
        for (s, v) in seeds {
            add(&mut arriving[s], &v);
        }
        let mut top = x;
        for i in (stop + 1..=l).rev() {
            let mut x = match top.take() {
                Some(x) => x,
                None => match arriving[i].take() {
                    Some(v) => rectified(i, v),
                    // Not below the neuron (another branch of a block).
                    None => continue,
                },
            };
            let (cin, cout, _, _, _, shape) = &self.layers[i - 1];
            let masked = match mode {
                Mode::Deconvnet => false,
                _ => i != l || mask_top,
            };
            if masked {
                let act = self.activations[i - 1];
                for (v, &p) in x.iter_mut().zip(&trace.pre[i - 1]) {
                    *v *= slope(act, p);
                }
            }
            if let Some(r) = self.residuals[i - 1].as_ref().filter(|r| r.from > stop) {
                let sent = match &r.projection {
                    Some((pin, pout, _, _, _, ps)) => {
                        let pw = &weights[self.layers.len() + i - 1];
                        conv_t(&x, *pin, trace.inputs[r.from - 1], pw, *pout, ps)
                    }
                    None => x.clone(),
                };
                add(&mut waiting[r.from], &sent);
            }
            let mut u = conv_t(&x, *cin, trace.inputs[i - 1], &weights[i - 1], *cout, shape);
            if let Some(sent) = waiting[i].take() {
                u.iter_mut().zip(&sent).for_each(|(a, v)| *a += v);
            }
            let sources = &self.sources[i - 1];
            if let Some(map) = &trace.pools[i - 1] {
                // Unpooling adds: overlapping windows can share a maximum.
                let (_, ph, pw) = self.output_dims(trace, sources[0]);
                u = unpooled(map, &u, cin * ph * pw);
            }
            let mut offset = 0;
            for &s in sources {
                let (c, h, w) = self.output_dims(trace, s);
                add(&mut arriving[s], &u[offset..offset + c * h * w]);
                offset += c * h * w;
            }
        }
        let (c, h, w) = self.output_dims(trace, stop);
        let at_stop = arriving[stop]
            .take()
            .unwrap_or_else(|| vec![0.0; c * h * w]);
        rectified(stop, at_stop)
    }
}

/// The tiny head in f64: the last conv layer's max pool (first max; the
/// chain's last pool) or, for a chain without pools, its global average,
/// flattened, a dense layer with ReLU, the class layer.
pub struct Head {
    /// (weight [out, in], bias) per dense layer.
    pub dense: Vec<(Vec<f64>, Vec<f64>)>,
}

/// What the head's forward keeps.
pub struct HeadTrace {
    /// Index in the last conv layer's grid of each pooled feature (empty
    /// but for a max pool).
    pub argmax: Vec<usize>,
    /// The head's pool as a map.
    pub map: PoolMap,
    pub pooled: Vec<f64>,
    /// Pre-activations of each dense layer.
    pub pre: Vec<Vec<f64>>,
}

fn dense(w: &[f64], b: &[f64], x: &[f64]) -> Vec<f64> {
    b.iter()
        .enumerate()
        .map(|(o, &bo)| {
            bo + x
                .iter()
                .enumerate()
                .map(|(i, &v)| w[o * x.len() + i] * v)
                .sum::<f64>()
        })
        .collect()
}

fn dense_t(w: &[f64], g: &[f64], inputs: usize) -> Vec<f64> {
    (0..inputs)
        .map(|i| {
            g.iter()
                .enumerate()
                .map(|(o, &v)| w[o * inputs + i] * v)
                .sum()
        })
        .collect()
}

/// The head's pool over the last layer's activations `a` (`c` planes of
/// `dims`) as a map: the chain's last pool, or the global average.
fn head_pool_map(pool: Option<PoolShape>, a: &[f64], c: usize, dims: (usize, usize)) -> PoolMap {
    match pool {
        Some(pool) => pool_map(a, c, dims, pool).0,
        None => {
            let plane = dims.0 * dims.1;
            let share = 1.0 / plane as f64;
            (0..c)
                .map(|ch| (ch * plane..(ch + 1) * plane).map(|i| (i, share)).collect())
                .collect()
        }
    }
}

impl Head {
    pub fn new(weights: [(Vec<f32>, Vec<f32>); 2]) -> Head {
        let f = |v: Vec<f32>| v.into_iter().map(|x| x as f64).collect::<Vec<f64>>();
        Head {
            dense: weights.into_iter().map(|(w, b)| (f(w), f(b))).collect(),
        }
    }

    pub fn forward(&self, r: &Reference, trace: &Trace) -> HeadTrace {
        let c = r.end.iter().map(|&s| r.layers[s - 1].1).sum();
        let (h, w) = trace.dims[r.end[0] - 1];
        let a: Vec<f64> = r
            .end
            .iter()
            .flat_map(|&s| {
                let act = r.activations[s - 1];
                trace.pre[s - 1].iter().map(move |&v| activate(act, v))
            })
            .collect();
        let map = head_pool_map(r.head_pool(), &a, c, (h, w));
        let pooled = pooled(&map, &a);
        let argmax = match r.head_pool() {
            Some(p) if !p.average => map.iter().map(|r| r[0].0).collect(),
            _ => Vec::new(),
        };
        let mut pre = Vec::new();
        let mut x = pooled.clone();
        for (k, (w, b)) in self.dense.iter().enumerate() {
            let z = dense(w, b, &x);
            x = if k + 1 < self.dense.len() {
                z.iter().map(|&v| v.max(0.0)).collect()
            } else {
                z.clone()
            };
            pre.push(z);
        }
        HeadTrace {
            argmax,
            map,
            pooled,
            pre,
        }
    }

    /// Whole-image backward from unit `unit` of dense layer `index` in
    /// `mode` (`head` holds the backward dense weights), starting at its
    /// pre-activation.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        r: &Reference,
        trace: &Trace,
        ht: &HeadTrace,
        (index, unit): (usize, usize),
        mode: Mode,
        conv_weights: &[Vec<f64>],
        head: &[Vec<f64>],
    ) -> Vec<f64> {
        let through = |g: Vec<f64>, pre: &[f64]| -> Vec<f64> {
            g.iter()
                .zip(pre)
                .map(|(&v, &p)| match mode {
                    Mode::Deconvnet => v.max(0.0),
                    Mode::LinearFilter => {
                        if p > 0.0 {
                            v
                        } else {
                            0.0
                        }
                    }
                    _ => {
                        if p > 0.0 {
                            v.max(0.0)
                        } else {
                            0.0
                        }
                    }
                })
                .collect()
        };
        let mut g = vec![0f64; ht.pre[index].len()];
        g[unit] = 1.0;
        for k in (0..=index).rev() {
            let inputs = if k == 0 {
                ht.pooled.len()
            } else {
                ht.pre[k - 1].len()
            };
            g = dense_t(&head[k], &g, inputs);
            if k > 0 {
                g = through(g, &ht.pre[k - 1]);
            }
        }
        let features: usize = r.end.iter().map(|&s| trace.pre[s - 1].len()).sum();
        let top = unpooled(&ht.map, &g, features);
        // Each layer the head reads gets its part, rectified and masked as
        // it is met.
        let mut seeds = Vec::new();
        let mut offset = 0;
        for &s in &r.end {
            let n = trace.pre[s - 1].len();
            seeds.push((s, top[offset..offset + n].to_vec()));
            offset += n;
        }
        let l = r.layers.len();
        r.signal_from(trace, (l, None, true), seeds, mode, conv_weights, 0)
    }

    /// The unit's pre-activation for a zero input under the masks and
    /// switches of `trace` and `ht` (the effective bias).
    pub fn effective_bias(
        &self,
        r: &Reference,
        trace: &Trace,
        ht: &HeadTrace,
        (index, unit): (usize, usize),
    ) -> f64 {
        // The affine map with every gate fixed, run on a zero image.
        let mut outs: Vec<Vec<f64>> = vec![vec![0.0; 3 * r.size * r.size]];
        let mut inputs: Vec<Vec<f64>> = Vec::new();
        for (i, (cin, cout, _, w, b, shape)) in r.layers.iter().enumerate() {
            let mut x: Vec<f64> = r.sources[i]
                .iter()
                .flat_map(|&s| outs[s].iter().copied())
                .collect();
            if let Some(map) = &trace.pools[i] {
                x = pooled(map, &x);
            }
            inputs.push(x.clone());
            let (mut z, _) = conv(&x, *cin, trace.inputs[i], w, b, *cout, shape);
            if let Some(added) = r.residual_sum(i, &inputs, &trace.inputs) {
                z.iter_mut().zip(&added).for_each(|(p, a)| *p += a);
            }
            let act = r.activations[i];
            outs.push(
                z.iter()
                    .zip(&trace.pre[i])
                    .map(|(&v, &p)| slope(act, p) * v + offset(act, p))
                    .collect(),
            );
        }
        let x: Vec<f64> = r
            .end
            .iter()
            .flat_map(|&s| outs[s].iter().copied())
            .collect();
        let mut f = pooled(&ht.map, &x);
        for k in 0..=index {
            let z = dense(&self.dense[k].0, &self.dense[k].1, &f);
            if k == index {
                return z[unit];
            }
            f = z
                .iter()
                .zip(&ht.pre[k])
                .map(|(&v, &p)| if p > 0.0 { v } else { 0.0 })
                .collect();
        }
        unreachable!()
    }
}
