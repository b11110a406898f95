//! Activation patterns of two recordings compared (paper sections 1 and 6:
//! the information lies in which ReLUs are on and which pooling switches are
//! taken): per layer over the whole grid, or restricted to one neuron's FOV
//! tree, where an identical configuration means an identical linear filter.

use crate::engine::Engine;
use crate::error::Result;
use crate::model::network::{ConvLayer, Span, fov_tree};
use crate::probe::reconstruct::NeuronAt;
use crate::record::{Recording, Switches};

/// Rows `[y0, y1)` and columns `[x0, x1)` of a layer's grid, every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Rect {
    fn whole(h: usize, w: usize) -> Rect {
        Rect {
            y0: 0,
            y1: h,
            x0: 0,
            x1: w,
        }
    }

    fn area(self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }

    /// The part covering whole 2x2 pool windows of a `h x w` grid (a FOV
    /// tree's windows on a pooled grid start at even rows and columns).
    pub(crate) fn pool_windows(self, h: usize, w: usize) -> Rect {
        let up = |v: usize| v.div_ceil(2) * 2;
        let down = |v: usize, size: usize| v.min(size / 2 * 2) / 2 * 2;
        let (y0, x0) = (up(self.y0), up(self.x0));
        let (y1, x1) = (down(self.y1, h).max(y0), down(self.x1, w).max(x0));
        Rect { y0, y1, x0, x1 }
    }
}

/// The set bits of `f(word)` over `rect` of a `[C, h, w]` bit grid, where
/// `f` combines the words of the grids being compared at the same place.
fn count(channels: usize, h: usize, w: usize, rect: Rect, f: impl Fn(usize) -> u64) -> usize {
    let mut n = 0usize;
    for c in 0..channels {
        for y in rect.y0..rect.y1 {
            let row = (c * h + y) * w;
            let mut x = rect.x0;
            while x < rect.x1 {
                let len = (rect.x1 - x).min(64);
                let keep = if len == 64 { u64::MAX } else { (1 << len) - 1 };
                n += (f(row + x) & keep).count_ones() as usize;
                x += len;
            }
        }
    }
    n
}

/// How alike two recordings' configurations are at one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerAgreement {
    pub layer: usize,
    /// Units compared (channels x positions).
    pub units: usize,
    /// Units whose ReLU is in the same state in both.
    pub same_state: usize,
    pub active_a: usize,
    pub active_b: usize,
    pub active_both: usize,
    /// Max-pool windows feeding this layer (0 when it is not pooled).
    pub windows: usize,
    /// Windows whose maximum is at the same position in both.
    pub same_switch: usize,
}

impl LayerAgreement {
    /// Fraction of units in the same state (1 for no units).
    pub fn mask_agreement(&self) -> f64 {
        ratio(self.same_state, self.units)
    }

    /// |active in both| / |active in either| (1 when neither has any).
    pub fn jaccard(&self) -> f64 {
        ratio(
            self.active_both,
            self.active_a + self.active_b - self.active_both,
        )
    }

    /// Fraction of pool windows with the same switch (1 for no windows).
    pub fn switch_agreement(&self) -> f64 {
        ratio(self.same_switch, self.windows)
    }

    fn configuration_differs(&self) -> bool {
        self.same_state != self.units || self.same_switch != self.windows
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Two recordings compared, per layer from 1 up.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternComparison {
    pub layers: Vec<LayerAgreement>,
    /// With a neuron: the comparison is over its FOV tree (at the neuron's
    /// own layer, just the neuron).
    pub neuron: Option<NeuronPatterns>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeuronPatterns {
    pub neuron: NeuronAt,
    pub active_a: bool,
    pub active_b: bool,
    /// Every ReLU below the neuron and every switch in its FOV tree agree,
    /// so both images see the same linear filter (the neuron's own ReLU
    /// does not enter its pre-activation).
    pub same_linear_filter: bool,
    /// The lowest layer whose masks (or the switches of the pool folded
    /// into it) differ inside the tree; None when the filter is the same.
    pub first_difference: Option<usize>,
}

/// Compares `a` and `b` over the whole grids, or over `neuron`'s FOV tree.
pub fn compare_patterns(
    convs: &[ConvLayer],
    a: &Recording,
    b: &Recording,
    neuron: Option<NeuronAt>,
) -> PatternComparison {
    let top = neuron.map_or(convs.len(), |n| n.layer);
    let tree = neuron.map(|n| fov_tree(convs, n.layer, n.y, n.x));
    let mut layers = Vec::with_capacity(top);
    for i in 1..=top {
        let (la, lb) = (a.layer(i), b.layer(i));
        let (h, w) = (la.height, la.width);
        let (rect, channels) = match (&tree, neuron) {
            (_, Some(n)) if i == n.layer => (
                Rect {
                    y0: n.y,
                    y1: n.y + 1,
                    x0: n.x,
                    x1: n.x + 1,
                },
                1,
            ),
            (Some(t), _) => (clip(t.out[i], h, w), la.channels),
            _ => (Rect::whole(h, w), la.channels),
        };
        // At the neuron's layer only its own channel is compared.
        let offset = match neuron {
            Some(n) if i == n.layer => n.feature * h * w,
            _ => 0,
        };
        let (ma, mb) = (&la.mask, &lb.mask);
        let differ = count(channels, h, w, rect, |k| {
            ma.bits_at(offset + k) ^ mb.bits_at(offset + k)
        });
        let mut agreement = LayerAgreement {
            layer: i,
            units: channels * rect.area(),
            same_state: channels * rect.area() - differ,
            active_a: count(channels, h, w, rect, |k| ma.bits_at(offset + k)),
            active_b: count(channels, h, w, rect, |k| mb.bits_at(offset + k)),
            active_both: count(channels, h, w, rect, |k| {
                ma.bits_at(offset + k) & mb.bits_at(offset + k)
            }),
            ..LayerAgreement::default()
        };
        // A linear layer's signs change no linear map.
        if convs[i - 1].activation == crate::model::network::Activation::Linear {
            agreement.same_state = agreement.units;
        }
        // The grid the layer's pool reads: its sources' (layer 1 has no
        // pool in front, its switches are None), with all their channels.
        let conv = &convs[i - 1];
        let source = a.layer(conv.sources.first().copied().unwrap_or(0).max(1));
        let (ph, pw) = (source.height, source.width);
        let in_channels = conv.in_channels;
        match (&la.switches, &lb.switches, conv.pool) {
            (Some(Switches::Bits(sa)), Some(Switches::Bits(sb)), _) => {
                let grid = match &tree {
                    Some(t) => clip(t.below[i], ph, pw),
                    None => Rect::whole(ph, pw),
                };
                let windows = grid.pool_windows(ph, pw);
                agreement.windows = in_channels * windows.area() / 4;
                // A window holds one switch bit in each recording: a moved
                // switch differs in exactly two bits.
                let moved = count(in_channels, ph, pw, windows, |k| {
                    sa.bits_at(k) ^ sb.bits_at(k)
                }) / 2;
                agreement.same_switch = agreement.windows - moved;
            }
            (Some(Switches::Cells(sa)), Some(Switches::Cells(sb)), Some(pool)) => {
                let (oh, ow) = (pool.output_len(ph, 0), pool.output_len(pw, 1));
                let outputs = match &tree {
                    Some(t) => clip(t.conv_in[i], oh, ow),
                    None => Rect::whole(oh, ow),
                };
                agreement.windows = in_channels * outputs.area();
                let mut same = 0;
                for c in 0..in_channels {
                    for y in outputs.y0..outputs.y1 {
                        let row = (c * oh + y) * ow;
                        same += (outputs.x0..outputs.x1)
                            .filter(|&x| sa[row + x] == sb[row + x])
                            .count();
                    }
                }
                agreement.same_switch = same;
            }
            _ => {}
        }
        layers.push(agreement);
    }
    let neuron = neuron.map(|n| {
        let bit = |r: &Recording| {
            let l = r.layer(n.layer);
            l.mask.get((n.feature * l.height + n.y) * l.width + n.x)
        };
        // The neuron's own mask is the last entry and does not count.
        let first_difference = layers
            .iter()
            .find(|l| {
                if l.layer == n.layer {
                    l.same_switch != l.windows
                } else {
                    l.configuration_differs()
                }
            })
            .map(|l| l.layer);
        NeuronPatterns {
            neuron: n,
            active_a: bit(a),
            active_b: bit(b),
            same_linear_filter: first_difference.is_none(),
            first_difference,
        }
    });
    PatternComparison { layers, neuron }
}

pub(crate) fn clip(s: (Span, Span), h: usize, w: usize) -> Rect {
    let (y0, y1) = s.0.clip(h);
    let (x0, x1) = s.1.clip(w);
    Rect { y0, y1, x0, x1 }
}

impl Engine {
    /// [`compare_patterns`] for two recordings of this engine's model.
    pub fn compare_patterns(
        &self,
        a: &Recording,
        b: &Recording,
        neuron: Option<NeuronAt>,
    ) -> Result<PatternComparison> {
        self.check_recording(a)?;
        self.check_recording(b)?;
        Ok(compare_patterns(&self.network.convs, a, b, neuron))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::network::{Activation, ConvShape, PoolShape};
    use crate::record::{LayerRecording, PoolInput};

    fn recording(layers: Vec<LayerRecording>) -> Recording {
        Recording {
            id: String::new(),
            label: String::new(),
            original_width: 0,
            original_height: 0,
            image: image::RgbImage::new(1, 1),
            input: vec![],
            layers,
            scores: vec![],
        }
    }

    fn conv(number: usize, channels: usize, pooled: bool) -> ConvLayer {
        ConvLayer::bare(
            number,
            (channels, channels),
            ConvShape::SAME_3X3,
            pooled.then_some(PoolShape::HALVING),
        )
    }

    /// Plain-loop count of the same quantities, unit by unit.
    fn plain(a: &LayerRecording, b: &LayerRecording) -> (usize, usize, usize, usize, usize) {
        let n = a.mask.len();
        let same = (0..n).filter(|&i| a.mask.get(i) == b.mask.get(i)).count();
        let act_a = (0..n).filter(|&i| a.mask.get(i)).count();
        let act_b = (0..n).filter(|&i| b.mask.get(i)).count();
        let both = (0..n).filter(|&i| a.mask.get(i) && b.mask.get(i)).count();
        (n, same, act_a, act_b, both)
    }

    fn layer(
        c: usize,
        h: usize,
        w: usize,
        values: &[f32],
        below: Option<&[f32]>,
    ) -> LayerRecording {
        let below = below.map(|values| PoolInput {
            values,
            channels: c,
            height: 2 * h,
            width: 2 * w,
            pool: PoolShape::HALVING,
        });
        LayerRecording::from_f32((c, h, w), Activation::Relu, values, below)
    }

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(97));
                ((v >> 8) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn whole_grid_counts_match_a_plain_loop() {
        let (c, h, w) = (3, 10, 70);
        let (a1, b1) = (noise(c * h * w, 1), noise(c * h * w, 2));
        let (a2, b2) = (noise(c * 5 * 35, 3), noise(c * 5 * 35, 4));
        let ra = recording(vec![
            layer(c, h, w, &a1, None),
            layer(c, 5, 35, &a2, Some(&a1)),
        ]);
        let rb = recording(vec![
            layer(c, h, w, &b1, None),
            layer(c, 5, 35, &b2, Some(&b1)),
        ]);
        let convs = [conv(1, c, false), conv(2, c, true)];
        let cmp = compare_patterns(&convs, &ra, &rb, None);
        for (i, l) in cmp.layers.iter().enumerate() {
            let (n, same, act_a, act_b, both) = plain(&ra.layers[i], &rb.layers[i]);
            assert_eq!(
                (l.units, l.same_state, l.active_a, l.active_b, l.active_both),
                (n, same, act_a, act_b, both)
            );
        }
        // Switches: argmax of each window, compared window by window.
        let argmax = |v: &[f32], ch: usize, wy: usize, wx: usize| {
            let at = |dy: usize, dx: usize| v[(ch * h + 2 * wy + dy) * w + 2 * wx + dx];
            let mut best = (0, 0);
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                if at(dy, dx) > at(best.0, best.1) {
                    best = (dy, dx);
                }
            }
            best
        };
        let mut same = 0;
        for ch in 0..c {
            for wy in 0..h / 2 {
                for wx in 0..w / 2 {
                    same += (argmax(&a1, ch, wy, wx) == argmax(&b1, ch, wy, wx)) as usize;
                }
            }
        }
        assert_eq!(cmp.layers[1].windows, c * 5 * 35);
        assert_eq!(cmp.layers[1].same_switch, same);
        assert!(cmp.layers[1].same_switch < cmp.layers[1].windows);
        assert_eq!(cmp.layers[0].windows, 0);
        assert!(cmp.neuron.is_none());
    }

    #[test]
    fn a_change_outside_the_fov_tree_keeps_the_linear_filter() {
        let (h, w) = (12, 12);
        let a1 = noise(h * w, 5);
        let mut b1 = a1.clone();
        // Layer 2 (3x3 after a 2x2 pool) at (0, 0) sees layer-1 rows and
        // columns -2..4: flip a unit far from it, then one inside.
        b1[10 * w + 10] = if a1[10 * w + 10] > 0.0 { -1.0 } else { 1.0 };
        let a2 = noise(36, 6);
        let ra = recording(vec![
            layer(1, h, w, &a1, None),
            layer(1, 6, 6, &a2, Some(&a1)),
        ]);
        let rb = recording(vec![
            layer(1, h, w, &b1, None),
            layer(1, 6, 6, &a2, Some(&b1)),
        ]);
        let convs = [conv(1, 1, false), conv(2, 1, true)];
        let n = NeuronAt {
            layer: 2,
            feature: 0,
            y: 0,
            x: 0,
        };
        let cmp = compare_patterns(&convs, &ra, &rb, Some(n));
        let p = cmp.neuron.expect("neuron comparison");
        assert!(p.same_linear_filter, "{cmp:?}");
        assert_eq!(cmp.layers[0].units, 4 * 4);
        assert_eq!(cmp.layers[1].units, 1);
        assert!(compare_patterns(&convs, &ra, &rb, None).layers[0].same_state < h * w);

        let mut b1 = a1.clone();
        b1[w + 2] = if a1[w + 2] > 0.0 { -1.0 } else { 1.0 };
        let rb = recording(vec![
            layer(1, h, w, &b1, None),
            layer(1, 6, 6, &a2, Some(&b1)),
        ]);
        let p = compare_patterns(&convs, &ra, &rb, Some(n))
            .neuron
            .expect("neuron comparison");
        assert!(!p.same_linear_filter);
        assert_eq!(p.first_difference, Some(1));
    }
}
