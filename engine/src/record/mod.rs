//! One recorded forward pass: activations (half precision, for display and
//! start values), ReLU masks and max-pool switches (bit-packed), and what the
//! statistics and top-k queries compute from them.

use crate::model::network::{Activation, ConvLayer, PoolShape};
use crate::simd::{halves_and_flags, pack64};
use half::f16;
use image::RgbImage;

/// A packed bit vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    pub fn zeros(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    pub fn from_fn(len: usize, f: impl Fn(usize) -> bool) -> Bits {
        let mut b = Bits::zeros(len);
        for i in 0..len {
            if f(i) {
                b.set(i);
            }
        }
        b
    }

    #[inline]
    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    #[inline]
    pub fn toggle(&mut self, i: usize) {
        self.words[i / 64] ^= 1 << (i % 64);
    }

    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The 64 bits starting at bit `i` (bit i in the lowest position); bits
    /// past the end read as 0.
    #[inline]
    pub fn bits_at(&self, i: usize) -> u64 {
        let (w, o) = (i / 64, i % 64);
        let lo = self.words.get(w).copied().unwrap_or(0) >> o;
        if o == 0 {
            lo
        } else {
            lo | self.words.get(w + 1).copied().unwrap_or(0) << (64 - o)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Packs a slice of flags, 64 to a word.
    pub fn from_bools(flags: &[bool]) -> Bits {
        let mut words = Vec::with_capacity(flags.len().div_ceil(64));
        let mut chunks = flags.chunks_exact(64);
        for chunk in &mut chunks {
            words.push(pack64(chunk));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            words.push(
                rest.iter()
                    .enumerate()
                    .fold(0u64, |w, (k, &f)| w | (f as u64) << k),
            );
        }
        Bits {
            words,
            len: flags.len(),
        }
    }

    /// ORs `v` into the 64 bits starting at bit `i` (bits past the end are
    /// dropped).
    #[inline]
    fn or_at(&mut self, i: usize, v: u64) {
        let (w, o) = (i / 64, i % 64);
        if let Some(word) = self.words.get_mut(w) {
            *word |= v << o;
        }
        if o > 0
            && let Some(word) = self.words.get_mut(w + 1)
        {
            *word |= v >> (64 - o);
        }
    }

    pub fn from_words(words: Vec<u64>, len: usize) -> Option<Bits> {
        (words.len() == len.div_ceil(64)).then_some(Bits { words, len })
    }
}

/// What one conv layer recorded.
#[derive(Debug, Clone)]
pub struct LayerRecording {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `[C, H, W]` activations after the ReLU (or the layer's activation).
    pub activations: Vec<f16>,
    /// `[C, H, W]`: 1 where the unit is active: on its activation's
    /// identity piece (for a ReLU, pre-activation > 0; a clipped unit at its
    /// ceiling is not).
    pub mask: Bits,
    /// For a pooled layer: the switches of the pool feeding it.
    pub switches: Option<Switches>,
}

/// Where each window of a max pool found its maximum (the first one in
/// row-major order on ties, as PyTorch and ONNX Runtime pick it; the
/// padding never).
#[derive(Debug, Clone, PartialEq)]
pub enum Switches {
    /// A 2x2/2 pool, whose windows tile its input: on the grid of the
    /// previous layer (`[C', H', W']`), 1 at each window's maximum.
    Bits(Bits),
    /// Any other pool (overlapping or padded windows, where one input can
    /// be the maximum of several outputs): per output `[C', Ho, Wo]`, the
    /// plane index `y * W' + x` of its maximum in the previous layer.
    Cells(Vec<u32>),
}

impl Switches {
    pub fn bytes(&self) -> usize {
        match self {
            Switches::Bits(b) => b.bytes(),
            Switches::Cells(c) => c.len() * 4,
        }
    }

    /// The bits of a 2x2/2 pool's switches.
    pub fn bits(&self) -> Option<&Bits> {
        match self {
            Switches::Bits(b) => Some(b),
            Switches::Cells(_) => None,
        }
    }
}

/// A pooled layer's input: the previous layer's f32 activations and the
/// pool between them.
#[derive(Debug, Clone, Copy)]
pub struct PoolInput<'a> {
    pub values: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pool: PoolShape,
}

impl PoolInput<'_> {
    /// The pool's switches, computed from the f32 values.
    pub fn switches(&self) -> Switches {
        let (c, h, w) = (self.channels, self.height, self.width);
        if self.pool.halves() {
            Switches::Bits(switches_from_maxima(
                &window_maxima(self.values, c, h, w),
                c,
                h,
                w,
            ))
        } else {
            Switches::Cells(pool_cells(self.values, c, h, w, self.pool))
        }
    }
}

/// For each output of `pool` over `[C, H, W]`, the plane index of the first
/// maximum of its window in row-major order (the padding never picked).
pub fn pool_cells(x: &[f32], c: usize, h: usize, w: usize, pool: PoolShape) -> Vec<u32> {
    let (oh, ow) = (pool.output_len(h, 0), pool.output_len(w, 1));
    let k = pool.kernel as i64;
    let inside =
        |start: i64, len: usize| start.max(0) as usize..((start + k).max(0) as usize).min(len);
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            let rows = inside(pool.window_start(oy, 0), h);
            for ox in 0..ow {
                let cols = inside(pool.window_start(ox, 1), w);
                let mut best: Option<(usize, f32)> = None;
                for y in rows.clone() {
                    for xx in cols.clone() {
                        let v = plane[y * w + xx];
                        if best.is_none_or(|(_, m)| v > m) {
                            best = Some((y * w + xx, v));
                        }
                    }
                }
                out.push(best.map_or(0, |(i, _)| i as u32));
            }
        }
    }
    out
}

impl LayerRecording {
    /// A conv layer's recording from its f32 activations `[C, H, W]`, as
    /// the compact recording graph makes it: float16 values rounded to
    /// nearest even, flags of the activation's identity piece, and for a
    /// pooled layer the switches of the
    /// pool over the previous layer's activations.
    pub fn from_f32(
        (channels, height, width): (usize, usize, usize),
        activation: Activation,
        activations: &[f32],
        pooled_from: Option<PoolInput>,
    ) -> LayerRecording {
        let (halves, words) = halves_and_flags(activations);
        let mut mask = Bits {
            words,
            len: activations.len(),
        };
        if let Activation::Clip(ceiling) = activation {
            // A unit at its ceiling is off the identity piece.
            for (i, _) in activations
                .iter()
                .enumerate()
                .filter(|(_, a)| **a >= ceiling)
            {
                mask.toggle(i);
            }
        }
        LayerRecording {
            channels,
            height,
            width,
            activations: halves,
            mask,
            switches: pooled_from.map(|p| p.switches()),
        }
    }

    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    /// The gate state of unit `at` under `activation` (0, 1 or
    /// [`Activation::OTHER`]).
    pub fn state(&self, activation: Activation, at: usize) -> u8 {
        if self.mask.get(at) {
            1
        } else if activation.other(self.activations[at].to_f32()) {
            Activation::OTHER
        } else {
            0
        }
    }

    /// Whether unit `at`'s pre-activation is positive.
    pub fn positive(&self, at: usize) -> bool {
        self.mask.get(at) || self.activations[at].to_f32() > 0.0
    }

    /// Units whose pre-activation is positive: the mask's, and for a
    /// clipped ReLU those at its ceiling.
    pub fn positive_count(&self, activation: Activation) -> usize {
        match activation {
            Activation::Clip(_) => (0..self.mask.len()).filter(|&i| self.positive(i)).count(),
            Activation::Relu | Activation::Leaky(_) | Activation::Linear => self.mask.count_ones(),
        }
    }

    pub fn activation(&self, c: usize, y: usize, x: usize) -> f32 {
        self.activations[(c * self.height + y) * self.width + x].to_f32()
    }

    pub fn bytes(&self) -> usize {
        self.activations.len() * 2
            + self.mask.bytes()
            + self.switches.as_ref().map_or(0, Switches::bytes)
    }
}

/// One image's forward pass, everything kept.
#[derive(Debug, Clone)]
pub struct Recording {
    pub id: String,
    pub label: String,
    pub original_width: u32,
    pub original_height: u32,
    /// The resized image the network saw.
    pub image: RgbImage,
    /// `[3, H, W]` input tensor in the model's channel order.
    pub input: Vec<f32>,
    /// Index i is conv layer i + 1.
    pub layers: Vec<LayerRecording>,
    /// Head output (class scores), empty without a head.
    pub scores: Vec<f32>,
}

impl Recording {
    pub fn layer(&self, number: usize) -> &LayerRecording {
        &self.layers[number - 1]
    }

    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerRecording::bytes).sum::<usize>()
            + self.input.len() * 4
            + self.image.as_raw().len()
            + self.scores.len() * 4
            + self.id.len()
            + self.label.len()
    }

    /// Fraction of units active (pre-activation positive), per conv layer
    /// of `convs`.
    pub fn activity(&self, convs: &[ConvLayer]) -> Vec<f32> {
        self.layers
            .iter()
            .zip(convs)
            .map(|(l, c)| l.positive_count(c.activation) as f32 / l.mask.len().max(1) as f32)
            .collect()
    }
}

/// Flags at every position of `[C, H, W]` equal to its 2x2 window's maximum,
/// on the grid [`switches_from_maxima`] reads (rows and columns left over by
/// an odd size dropped).
pub fn window_maxima(x: &[f32], c: usize, h: usize, w: usize) -> Vec<bool> {
    let (eh, ew) = (h / 2 * 2, w / 2 * 2);
    let mut out = vec![false; c * eh * ew];
    if x.len() < c * h * w || ew == 0 {
        return out;
    }
    let mut rows = out.chunks_exact_mut(ew);
    for ch in 0..c {
        for y in (0..eh).step_by(2) {
            let top = &x[(ch * h + y) * w..][..ew];
            let bottom = &x[(ch * h + y + 1) * w..][..ew];
            let (Some(ft), Some(fb)) = (rows.next(), rows.next()) else {
                return out;
            };
            let windows = top
                .chunks_exact(2)
                .zip(bottom.chunks_exact(2))
                .zip(ft.chunks_exact_mut(2).zip(fb.chunks_exact_mut(2)));
            for ((t, b), (ft, fb)) in windows {
                let m = t[0].max(t[1]).max(b[0].max(b[1]));
                ft[0] = t[0] == m;
                ft[1] = t[1] == m;
                fb[0] = b[0] == m;
                fb[1] = b[1] == m;
            }
        }
    }
    out
}

/// Switch bits on a `[C, H, W]` grid from flags at every position equal to
/// its 2x2 window's maximum (`[C, 2*(H/2), 2*(W/2)]`, rows and columns left
/// over by an odd size dropped): in each window the first flag in row-major
/// order wins. Works on 64 positions at a time; flags of a window's pair of
/// columns sit at an even and the following odd bit.
pub fn switches_from_maxima(at_max: &[bool], c: usize, h: usize, w: usize) -> Bits {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    // Keeps the odd bit of a pair only where the even one is clear.
    let first_of_pairs = |v: u64| v & (EVEN | !((v & EVEN) << 1));
    let (eh, ew) = (h / 2 * 2, w / 2 * 2);
    let mut out = Bits::zeros(c * h * w);
    if at_max.len() < c * eh * ew {
        return out;
    }
    let flags = Bits::from_bools(at_max);
    for ch in 0..c {
        for y in (0..eh).step_by(2) {
            let src = (ch * eh + y) * ew;
            let dst = (ch * h + y) * w;
            for x in (0..ew).step_by(64) {
                let n = (ew - x).min(64);
                let keep = if n == 64 { u64::MAX } else { (1 << n) - 1 };
                let top = flags.bits_at(src + x) & keep;
                let bottom = flags.bits_at(src + ew + x) & keep;
                let top_any = (top | top >> 1) & EVEN;
                let bottom = bottom & !(top_any | top_any << 1);
                out.or_at(dst + x, first_of_pairs(top));
                out.or_at(dst + w + x, first_of_pairs(bottom));
            }
        }
    }
    out
}

/// Per-layer activation statistics (paper section 5, figure 6).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    pub layer: usize,
    pub features: usize,
    pub locations: usize,
    /// `histogram[n]`: locations with exactly n active features.
    pub histogram: Vec<u32>,
    pub fraction_active: f32,
    pub feature_fraction_active: Vec<f32>,
}

pub fn layer_stats(number: usize, l: &LayerRecording) -> LayerStats {
    let plane = l.plane();
    let mut counts = vec![0u32; plane];
    let mut per_feature = vec![0f32; l.channels];
    for (c, pf) in per_feature.iter_mut().enumerate() {
        let mut n = 0usize;
        for (i, count) in counts.iter_mut().enumerate() {
            if l.positive(c * plane + i) {
                *count += 1;
                n += 1;
            }
        }
        *pf = n as f32 / plane.max(1) as f32;
    }
    let mut histogram = vec![0u32; l.channels + 1];
    for &n in &counts {
        histogram[n as usize] += 1;
    }
    let total: u64 = counts.iter().map(|&n| n as u64).sum();
    LayerStats {
        layer: number,
        features: l.channels,
        locations: plane,
        histogram,
        fraction_active: total as f32 / (plane * l.channels).max(1) as f32,
        feature_fraction_active: per_feature,
    }
}

/// A neuron and its activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub feature: usize,
    pub y: usize,
    pub x: usize,
    pub value: f32,
}

/// The k strongest activations of a layer, strongest first; ties broken by
/// (feature, y, x) so the answer is deterministic.
pub fn top_activations(
    l: &LayerRecording,
    k: usize,
    feature: Option<usize>,
    distinct: bool,
) -> Vec<Hit> {
    let plane = l.plane();
    let features: Vec<usize> = match feature {
        Some(f) => vec![f],
        None => (0..l.channels).collect(),
    };
    let mut hits: Vec<Hit> = Vec::new();
    for f in features {
        let slice = &l.activations[f * plane..(f + 1) * plane];
        if distinct {
            let (i, v) = slice
                .iter()
                .enumerate()
                .fold((0, f16::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                });
            hits.push(Hit {
                feature: f,
                y: i / l.width,
                x: i % l.width,
                value: v.to_f32(),
            });
        } else {
            for (i, &v) in slice.iter().enumerate() {
                hits.push(Hit {
                    feature: f,
                    y: i / l.width,
                    x: i % l.width,
                    value: v.to_f32(),
                });
            }
        }
        // Keep memory bounded on large layers: trim to k now and then.
        if hits.len() > 4 * k.max(1024) {
            sort_hits(&mut hits);
            hits.truncate(k);
        }
    }
    sort_hits(&mut hits);
    hits.truncate(k);
    hits
}

fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then(a.feature.cmp(&b.feature))
            .then(a.y.cmp(&b.y))
            .then(a.x.cmp(&b.x))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a layer's record from its f32 activations; `previous` (the layer
    /// before, f32) is needed when the layer is pooled, for the switches.
    fn layer_recording(
        channels: usize,
        height: usize,
        width: usize,
        activations: &[f32],
        pooled_from: Option<(&[f32], usize, usize)>,
    ) -> LayerRecording {
        // One pass: mask bits and half-precision values together.
        let mut words = Vec::with_capacity(activations.len().div_ceil(64));
        let mut halves = Vec::with_capacity(activations.len());
        for chunk in activations.chunks(64) {
            let mut w = 0u64;
            for (i, &v) in chunk.iter().enumerate() {
                w |= ((v > 0.0) as u64) << i;
                halves.push(f16::from_f32(v));
            }
            words.push(w);
        }
        let mask = Bits {
            words,
            len: activations.len(),
        };
        let switches = pooled_from.map(|(prev, ph, pw)| {
            Switches::Bits(pool_switches(prev, prev.len() / (ph * pw), ph, pw))
        });
        LayerRecording {
            channels,
            height,
            width,
            activations: halves,
            mask,
            switches,
        }
    }

    /// Switches of a 2x2/2 max pool over `[C, H, W]`: in each window the first
    /// maximum in row-major order wins (PyTorch's rule; ties are common after a
    /// ReLU). Rows or columns left over by an odd size get no switch.
    fn pool_switches(x: &[f32], c: usize, h: usize, w: usize) -> Bits {
        let mut bits = Bits::zeros(c * h * w);
        let (oh, ow) = (h / 2, w / 2);
        for ch in 0..c {
            let base = ch * h * w;
            for py in 0..oh {
                for px in 0..ow {
                    let candidates = [
                        base + 2 * py * w + 2 * px,
                        base + 2 * py * w + 2 * px + 1,
                        base + (2 * py + 1) * w + 2 * px,
                        base + (2 * py + 1) * w + 2 * px + 1,
                    ];
                    let mut best = candidates[0];
                    for &i in &candidates[1..] {
                        if x[i] > x[best] {
                            best = i;
                        }
                    }
                    bits.set(best);
                }
            }
        }
        bits
    }

    #[test]
    fn bits_at_reads_across_words() {
        let b = Bits::from_fn(200, |i| i % 3 == 0 || i == 130);
        for start in [0, 1, 63, 64, 100, 127, 190] {
            let w = b.bits_at(start);
            for k in 0..64 {
                let want = start + k < 200 && b.get(start + k);
                assert_eq!(w >> k & 1 == 1, want, "start {start} bit {k}");
            }
        }
    }

    #[test]
    fn packing_flags() {
        // Full words and a remainder, every bit position of a word exercised.
        let flags: Vec<bool> = (0..1000u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 5) & 1 == 1 || i % 64 == 63)
            .collect();
        let b = Bits::from_bools(&flags);
        assert_eq!(b.len(), 1000);
        for (i, &f) in flags.iter().enumerate() {
            assert_eq!(b.get(i), f, "{i}");
        }
    }

    /// Flags at each window's maxima, as the recording graph computes them.
    fn window_maxima_reference(x: &[f32], c: usize, h: usize, w: usize) -> Vec<bool> {
        let (eh, ew) = (h / 2 * 2, w / 2 * 2);
        let mut out = Vec::with_capacity(c * eh * ew);
        for ch in 0..c {
            for y in 0..eh {
                for xx in 0..ew {
                    let at = |yy: usize, xx: usize| x[(ch * h + yy) * w + xx];
                    let (y0, x0) = (y / 2 * 2, xx / 2 * 2);
                    let m = at(y0, x0)
                        .max(at(y0, x0 + 1))
                        .max(at(y0 + 1, x0))
                        .max(at(y0 + 1, x0 + 1));
                    out.push(at(y, xx) == m);
                }
            }
        }
        out
    }

    #[test]
    fn switches_from_maxima_match_the_first_maximum_rule() {
        // Few distinct values so ties are everywhere; odd and wide sizes so
        // rows cross word boundaries and leftover rows and columns occur.
        let mut state = 12345u64;
        for (c, h, w) in [(1, 2, 4), (3, 5, 7), (2, 6, 130), (4, 9, 67), (1, 4, 64)] {
            let x: Vec<f32> = (0..c * h * w)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % 3) as f32
                })
                .collect();
            let flags = window_maxima_reference(&x, c, h, w);
            assert_eq!(window_maxima(&x, c, h, w), flags, "{c}x{h}x{w}");
            let got = switches_from_maxima(&flags, c, h, w);
            assert_eq!(got, pool_switches(&x, c, h, w), "{c}x{h}x{w}");
        }
    }

    #[test]
    fn from_f32_matches_the_plain_reference() {
        let mut state = 99u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 7) as f32 - 3.0
        };
        for (c, h, w) in [(2, 6, 130), (3, 5, 7), (1, 9, 67)] {
            let prev: Vec<f32> = (0..c * h * w).map(|_| next()).collect();
            let mut act: Vec<f32> = (0..c * (h / 2) * (w / 2)).map(|_| next() * 0.37).collect();
            act[0] = f32::NAN;
            act[1] = -0.0;
            act[2] = 1e-30;
            let input = PoolInput {
                values: &prev,
                channels: c,
                height: h,
                width: w,
                pool: PoolShape::HALVING,
            };
            let got =
                LayerRecording::from_f32((c, h / 2, w / 2), Activation::Relu, &act, Some(input));
            let want = layer_recording(c, h / 2, w / 2, &act, Some((&prev, h, w)));
            assert_eq!(got.mask, want.mask, "{c}x{h}x{w}");
            assert_eq!(got.switches, want.switches, "{c}x{h}x{w}");
            let bits = |v: &[f16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.activations), bits(&want.activations));
        }
    }

    #[test]
    fn switches_pick_the_first_maximum() {
        // One channel, 2x4: windows [1,1;0,1] (tie -> first) and [0,0;0,0].
        let x = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let s = pool_switches(&x, 1, 2, 4);
        let set: Vec<usize> = (0..8).filter(|&i| s.get(i)).collect();
        assert_eq!(set, vec![0, 2]);
        // Strict maximum in the last position.
        let s = pool_switches(&[0.0, 1.0, 2.0, 3.0], 1, 2, 2);
        assert!(s.get(3) && s.count_ones() == 1);
    }

    #[test]
    fn overlapping_and_padded_windows_keep_each_output_s_first_maximum() {
        // One channel, 4x4, 3x3/2 windows padded by 1: outputs 2x2 read
        // rows/cols [-1, 2) and [1, 4) (the padding is never picked).
        #[rustfmt::skip]
        let x = [
            0.0, 5.0, 5.0, 1.0,
            0.0, 0.0, 2.0, 7.0,
            3.0, 3.0, 0.0, 0.0,
            0.0, 9.0, 9.0, 0.0,
        ];
        let pool = PoolShape {
            kernel: 3,
            stride: 2,
            pads: [1; 4],
            ceil: false,
            average: false,
        };
        assert_eq!((pool.output_len(4, 0), pool.output_len(4, 1)), (2, 2));
        // (0,0): rows 0..2, cols 0..2 -> 5 at (0,1); (0,1): cols 1..4 ->
        // 7 at (1,3); (1,0): rows 1..4, cols 0..2 -> 9 at (3,1); (1,1):
        // rows 1..4, cols 1..4 -> first 9 at (3,1), shared with (1,0).
        assert_eq!(pool_cells(&x, 1, 4, 4, pool), vec![1, 7, 13, 13]);
        // A window of zeros picks its first cell inside the image.
        assert_eq!(pool_cells(&[0.0; 16], 1, 4, 4, pool), vec![0, 1, 4, 5]);
        // Ceil mode adds a last, partial window...
        let ceil = PoolShape { ceil: true, ..pool };
        assert_eq!(ceil.output_len(4, 0), 3);
        assert_eq!(ceil.output_len(3, 0), 2);
        // ...unless it would start in the bottom padding.
        let halving = PoolShape {
            pads: [0, 0, 1, 1],
            ceil: true,
            ..PoolShape::HALVING
        };
        assert_eq!(halving.output_len(4, 0), 2);
        assert_eq!(halving.output_len(5, 0), 3);
    }

    #[test]
    fn stats_count_active_features_per_location() {
        // Two features on a 1x2 grid: location 0 has both active, location 1 none.
        let l = layer_recording(2, 1, 2, &[1.0, 0.0, 2.0, -1.0], None);
        let s = layer_stats(1, &l);
        assert_eq!(s.histogram, vec![1, 0, 1]);
        assert!((s.fraction_active - 0.5).abs() < 1e-6);
        assert_eq!(s.feature_fraction_active, vec![0.5, 0.5]);
    }

    #[test]
    fn top_k_is_sorted_and_deterministic() {
        let l = layer_recording(2, 1, 3, &[1.0, 5.0, 3.0, 5.0, 0.0, 2.0], None);
        let t = top_activations(&l, 3, None, false);
        let got: Vec<(usize, usize, f32)> = t.iter().map(|h| (h.feature, h.x, h.value)).collect();
        assert_eq!(got, vec![(0, 1, 5.0), (1, 0, 5.0), (0, 2, 3.0)]);
        let d = top_activations(&l, 5, None, true);
        assert_eq!(d.len(), 2);
    }
}
