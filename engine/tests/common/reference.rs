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
                let (oh, ow) = (h / 2, w / 2);
                let mut px = vec![0f64; cin * oh * ow];
                let mut arg = vec![0usize; cin * oh * ow];
                for c in 0..*cin {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let mut best = (c * h + 2 * y) * w + 2 * xx;
                            for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                                let i = (c * h + 2 * y + dy) * w + 2 * xx + dx;
                                if x[i] > x[best] {
                                    best = i;
                                }
                            }
                            px[(c * oh + y) * ow + xx] = x[best];
                            arg[(c * oh + y) * ow + xx] = best;
                        }
                    }
                }
                x = px;
                h = oh;
                w = ow;
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
    /// weights, under the masks and switches of `trace`.
    pub fn backward(
        &self,
        trace: &Trace,
        n: NeuronAt,
        mode: Mode,
        weights: &[Vec<f64>],
        value: f64,
    ) -> Vec<f64> {
        let l = n.layer;
        let (h, w) = trace.dims[l - 1];
        let cl = self.layers[l - 1].1;
        let mut x = vec![0f64; cl * h * w];
        x[(n.feature * h + n.y) * w + n.x] = value;
        for i in (1..=l).rev() {
            let (cin, cout, pooled, _, _) = &self.layers[i - 1];
            let (h, w) = trace.dims[i - 1];
            let masked = match mode {
                Mode::Deconvnet => false,
                Mode::LinearFilter => i != l,
                _ => true,
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
            x = u;
        }
        unreachable!()
    }
}
