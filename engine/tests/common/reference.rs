//! A plain-loop f64 reference of the tiny model: conv, ReLU, first-max
//! pooling, and the four backward modes over the whole image.

use fovea_engine::fixtures::TINY_CONVS;
use fovea_engine::probe::reconstruct::{Mode, NeuronAt};

/// One reference layer: (in, out, pooled, weight OIHW, bias).
pub type RefLayer = (usize, usize, bool, Vec<f64>, Vec<f64>);

/// Plain reference network (f64).
pub struct Reference {
    pub layers: Vec<RefLayer>,
    pub size: usize,
}

/// What the reference forward keeps.
pub struct Trace {
    /// Per layer: pre-activations [C, H, W].
    pub pre: Vec<Vec<f64>>,
    /// Per layer: (h, w).
    pub dims: Vec<(usize, usize)>,
    /// Per pooled layer i: for each pooled output index, the argmax index in
    /// layer i-1's grid.
    pub argmax: Vec<Option<Vec<usize>>>,
}

/// A 2x2/2 max pool's switches over `c` planes `h` x `w`: for each output,
/// the index of its window's first maximum (row-major).
pub fn first_max_pool(x: &[f64], c: usize, h: usize, w: usize) -> Vec<usize> {
    let (oh, ow) = (h / 2, w / 2);
    let mut arg = vec![0usize; c * oh * ow];
    for ch in 0..c {
        for y in 0..oh {
            for xx in 0..ow {
                let mut best = (ch * h + 2 * y) * w + 2 * xx;
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let i = (ch * h + 2 * y + dy) * w + 2 * xx + dx;
                    if x[i] > x[best] {
                        best = i;
                    }
                }
                arg[(ch * oh + y) * ow + xx] = best;
            }
        }
    }
    arg
}

pub fn conv(
    x: &[f64],
    cin: usize,
    h: usize,
    w: usize,
    wt: &[f64],
    b: &[f64],
    cout: usize,
) -> Vec<f64> {
    let mut out = vec![0f64; cout * h * w];
    for o in 0..cout {
        for y in 0..h {
            for xx in 0..w {
                let mut s = b[o];
                for i in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y as i64 + ky as i64 - 1, xx as i64 + kx as i64 - 1);
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                continue;
                            }
                            s += wt[((o * cin + i) * 3 + ky) * 3 + kx]
                                * x[(i * h + iy as usize) * w + ix as usize];
                        }
                    }
                }
                out[(o * h + y) * w + xx] = s;
            }
        }
    }
    out
}

/// Gradient of `conv` with respect to its input (the transposed convolution).
pub fn conv_t(g: &[f64], cin: usize, h: usize, w: usize, wt: &[f64], cout: usize) -> Vec<f64> {
    let mut out = vec![0f64; cin * h * w];
    for o in 0..cout {
        for y in 0..h {
            for xx in 0..w {
                let v = g[(o * h + y) * w + xx];
                if v == 0.0 {
                    continue;
                }
                for i in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y as i64 + ky as i64 - 1, xx as i64 + kx as i64 - 1);
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                continue;
                            }
                            out[(i * h + iy as usize) * w + ix as usize] +=
                                wt[((o * cin + i) * 3 + ky) * 3 + kx] * v;
                        }
                    }
                }
            }
        }
    }
    out
}

impl Reference {
    pub fn new(weights: Vec<(Vec<f32>, Vec<f32>)>, size: usize) -> Reference {
        Reference {
            layers: TINY_CONVS
                .iter()
                .zip(weights)
                .map(|(&(i, o, p), (w, b))| {
                    (
                        i,
                        o,
                        p,
                        w.iter().map(|&v| v as f64).collect(),
                        b.iter().map(|&v| v as f64).collect(),
                    )
                })
                .collect(),
            size,
        }
    }

    pub fn forward(&self, input: &[f64]) -> Trace {
        let (mut h, mut w) = (self.size, self.size);
        let mut x = input.to_vec();
        let mut trace = Trace {
            pre: vec![],
            dims: vec![],
            argmax: vec![],
        };
        for (cin, cout, pooled, wt, b) in &self.layers {
            if *pooled {
                let arg = first_max_pool(&x, *cin, h, w);
                x = arg.iter().map(|&i| x[i]).collect();
                h /= 2;
                w /= 2;
                trace.argmax.push(Some(arg));
            } else {
                trace.argmax.push(None);
            }
            let pre = conv(&x, *cin, h, w, wt, b, *cout);
            x = pre.iter().map(|&v| v.max(0.0)).collect();
            trace.pre.push(pre);
            trace.dims.push((h, w));
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
        mut x: Vec<f64>,
        mode: Mode,
        weights: &[Vec<f64>],
        mask_top: bool,
        stop: usize,
    ) -> Vec<f64> {
        for i in (stop + 1..=l).rev() {
            let (cin, cout, pooled, _, _) = &self.layers[i - 1];
            let (h, w) = trace.dims[i - 1];
            let masked = match mode {
                Mode::Deconvnet => false,
                _ => i != l || mask_top,
            };
            if masked {
                for (v, p) in x.iter_mut().zip(&trace.pre[i - 1]) {
                    if *p <= 0.0 {
                        *v = 0.0;
                    }
                }
            }
            let mut u = conv_t(&x, *cin, h, w, &weights[i - 1], *cout);
            if i == 1 {
                return u;
            }
            if mode != Mode::LinearFilter {
                u.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            if *pooled {
                let (ph, pw) = trace.dims[i - 2];
                let mut up = vec![0f64; cin * ph * pw];
                let arg = trace.argmax[i - 1]
                    .as_ref()
                    .expect("pooled layer has switches");
                for (k, &a) in arg.iter().enumerate() {
                    up[a] = u[k];
                }
                u = up;
            }
            if i - 1 == stop {
                return u;
            }
            x = u;
        }
        x
    }
}

/// The tiny head in f64: the last conv layer's 2x2/2 max pool (first max),
/// flattened, a dense layer with ReLU, the class layer.
pub struct Head {
    /// (weight [out, in], bias) per dense layer.
    pub dense: Vec<(Vec<f64>, Vec<f64>)>,
}

/// What the head's forward keeps.
pub struct HeadTrace {
    /// Index in the last conv layer's grid of each pooled feature.
    pub argmax: Vec<usize>,
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

impl Head {
    pub fn new(weights: [(Vec<f32>, Vec<f32>); 2]) -> Head {
        let f = |v: Vec<f32>| v.into_iter().map(|x| x as f64).collect::<Vec<f64>>();
        Head {
            dense: weights.into_iter().map(|(w, b)| (f(w), f(b))).collect(),
        }
    }

    pub fn forward(&self, r: &Reference, trace: &Trace) -> HeadTrace {
        let l = r.layers.len();
        let c = r.layers[l - 1].1;
        let (h, w) = trace.dims[l - 1];
        let a: Vec<f64> = trace.pre[l - 1].iter().map(|&v| v.max(0.0)).collect();
        let argmax = first_max_pool(&a, c, h, w);
        let pooled: Vec<f64> = argmax.iter().map(|&i| a[i]).collect();
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
        let l = r.layers.len();
        let mut top = vec![0f64; trace.pre[l - 1].len()];
        for (&a, &v) in ht.argmax.iter().zip(&g) {
            top[a] += v;
        }
        if mode != Mode::LinearFilter {
            top.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        r.backward_signal(trace, l, top, mode, conv_weights, true)
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
        let mut x: Vec<f64> = Vec::new();
        let mut dims = (r.size, r.size);
        for (i, (cin, cout, pooled, w, b)) in r.layers.iter().enumerate() {
            let (h, wd) = trace.dims[i];
            if *pooled {
                let arg = trace.argmax[i].as_ref().expect("switches");
                x = arg.iter().map(|&a| x[a]).collect();
            } else if i == 0 {
                x = vec![0.0; cin * dims.0 * dims.1];
            }
            dims = (h, wd);
            let z = conv(&x, *cin, h, wd, w, b, *cout);
            x = z
                .iter()
                .zip(&trace.pre[i])
                .map(|(&v, &p)| if p > 0.0 { v } else { 0.0 })
                .collect();
        }
        let mut f: Vec<f64> = ht.argmax.iter().map(|&a| x[a]).collect();
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
