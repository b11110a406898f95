//! Every vector kernel of the engine, each behind a runtime check of the
//! CPU with a portable fallback. The `portable` feature turns every dispatch
//! off, so the code non-x86 targets build is compiled and tested here too.

use half::f16;

/// The largest value of `values` and the index of its first occurrence
/// (NaN never wins; `(-inf, 0)` when there is no number), with the widest
/// vector instructions the CPU has: AVX-512 reads twice as fast as AVX2,
/// and AVX2 twice as fast as the SSE2 every x86_64 has.
pub fn first_max(values: &[f32]) -> (f32, usize) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has just been found to support AVX-512F.
            return unsafe { first_max_avx512(values) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has just been found to support AVX2.
            return unsafe { first_max_avx2(values) };
        }
    }
    first_max_lanes(values)
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f")]
fn first_max_avx512(values: &[f32]) -> (f32, usize) {
    first_max_lanes(values)
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx2")]
fn first_max_avx2(values: &[f32]) -> (f32, usize) {
    first_max_lanes(values)
}

/// Sixteen lanes keep their own first maximum, so the loop compiles to
/// vector compares and blends; the lanes are merged at the end.
#[inline(always)]
fn first_max_lanes(values: &[f32]) -> (f32, usize) {
    const LANES: usize = 16;
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut at = [usize::MAX; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (k, chunk) in chunks.enumerate() {
        let base = k * LANES;
        for j in 0..LANES {
            let better = chunk[j] > best[j];
            best[j] = if better { chunk[j] } else { best[j] };
            at[j] = if better { base + j } else { at[j] };
        }
    }
    let start = values.len() - tail.len();
    let lanes = best.into_iter().zip(at);
    let rest = tail.iter().enumerate().map(|(j, &v)| (v, start + j));
    let mut top = (f32::NEG_INFINITY, usize::MAX);
    for (v, i) in lanes.chain(rest) {
        if v > top.0 || (v == top.0 && i < top.1) {
            top = (v, i);
        }
    }
    if top.1 == usize::MAX {
        top.1 = 0;
    }
    top
}

/// 64 flags as one word (flag k to bit k). Recordings pack tens of millions
/// of flags, so this uses SSE2 (part of every x86_64) where it can: shifting
/// each byte's 0/1 into its top bit, then gathering 16 top bits at once.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
pub(crate) fn pack64(chunk: &[bool]) -> u64 {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_slli_epi16};
    let mut w = 0u64;
    for (k, sixteen) in chunk.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is always available on x86_64, and the unaligned load
        // reads exactly the 16 one-byte bools of `sixteen`.
        let m = unsafe {
            let v = _mm_loadu_si128(sixteen.as_ptr().cast::<__m128i>());
            _mm_movemask_epi8(_mm_slli_epi16(v, 7))
        };
        w |= u64::from(m as u32 & 0xffff) << (16 * k);
    }
    w
}

/// The float16 values (rounded to nearest even) and the `> 0` flags (64 a
/// word) of `values` in one pass, with the widest vector instructions the
/// CPU has: a recording converts and flags 14 million activations.
pub(crate) fn halves_and_flags(values: &[f32]) -> (Vec<f16>, Vec<u64>) {
    let mut halves = vec![f16::ZERO; values.len()];
    let mut words = vec![0u64; values.len().div_ceil(64)];
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has just been found to support AVX-512F.
            unsafe { halves_and_flags_avx512(values, &mut halves, &mut words) };
            return (halves, words);
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the CPU has just been found to support AVX2 and F16C.
            unsafe { halves_and_flags_avx2(values, &mut halves, &mut words) };
            return (halves, words);
        }
    }
    halves_and_flags_from(values, &mut halves, &mut words, 0);
    (halves, words)
}

/// The portable conversion of `values[start..]` (`start` a multiple of 64).
fn halves_and_flags_from(values: &[f32], halves: &mut [f16], words: &mut [u64], start: usize) {
    use half::slice::HalfFloatSliceExt;
    let chunks = values[start..]
        .chunks(64)
        .zip(halves[start..].chunks_mut(64));
    for ((src, dst), word) in chunks.zip(&mut words[start / 64..]) {
        dst.convert_from_f32_slice(src);
        *word = positive64(src);
    }
}

/// Fills every whole word of 64 with `block` (which converts `W` values
/// and returns their flags), then the rest the portable way.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[inline(always)]
fn halves_and_flags_by<const W: usize>(
    values: &[f32],
    halves: &mut [f16],
    words: &mut [u64],
    block: impl Fn(&[f32], &mut [f16]) -> u64,
) {
    let whole = values.chunks_exact(64).zip(halves.chunks_exact_mut(64));
    for ((vs, hs), word) in whole.zip(words.iter_mut()) {
        let mut w = 0u64;
        for (q, (v, h)) in vs.chunks_exact(W).zip(hs.chunks_exact_mut(W)).enumerate() {
            w |= block(v, h) << (W * q);
        }
        *word = w;
    }
    halves_and_flags_from(values, halves, words, values.len() / 64 * 64);
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f")]
fn halves_and_flags_avx512(values: &[f32], halves: &mut [f16], words: &mut [u64]) {
    use std::arch::x86_64::{
        _CMP_GT_OQ, _MM_FROUND_TO_NEAREST_INT, _mm256_storeu_si256, _mm512_cmp_ps_mask,
        _mm512_cvtps_ph, _mm512_loadu_ps, _mm512_setzero_ps,
    };
    halves_and_flags_by::<16>(values, halves, words, |v, h| {
        // SAFETY: `v` and `h` are chunks of exactly 16; the load and the
        // store are unaligned.
        unsafe {
            let x = _mm512_loadu_ps(v.as_ptr());
            _mm256_storeu_si256(
                h.as_mut_ptr().cast(),
                _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x),
            );
            u64::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_setzero_ps()))
        }
    });
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx2,f16c")]
fn halves_and_flags_avx2(values: &[f32], halves: &mut [f16], words: &mut [u64]) {
    use std::arch::x86_64::{
        _CMP_GT_OQ, _MM_FROUND_TO_NEAREST_INT, _mm_storeu_si128, _mm256_cmp_ps, _mm256_cvtps_ph,
        _mm256_loadu_ps, _mm256_movemask_ps, _mm256_setzero_ps,
    };
    halves_and_flags_by::<8>(values, halves, words, |v, h| {
        // SAFETY: `v` and `h` are chunks of exactly 8; the load and the
        // store are unaligned.
        unsafe {
            let x = _mm256_loadu_ps(v.as_ptr());
            _mm_storeu_si128(
                h.as_mut_ptr().cast(),
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x),
            );
            u64::from(
                _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_setzero_ps())) as u32,
            )
        }
    });
}

/// Up to 64 `> 0` flags as one word, four compares at a time with SSE.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
fn positive64(chunk: &[f32]) -> u64 {
    use std::arch::x86_64::{_mm_cmpgt_ps, _mm_loadu_ps, _mm_movemask_ps, _mm_setzero_ps};
    let mut w = 0u64;
    let mut quads = chunk.chunks_exact(4);
    for (k, four) in (&mut quads).enumerate() {
        // SAFETY: SSE is part of every x86_64, and the unaligned load reads
        // exactly the four floats of `four`.
        let m =
            unsafe { _mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(four.as_ptr()), _mm_setzero_ps())) };
        w |= u64::from(m as u32) << (4 * k);
    }
    let done = chunk.len() - quads.remainder().len();
    for (k, &v) in quads.remainder().iter().enumerate() {
        w |= u64::from(v > 0.0) << (done + k);
    }
    w
}

#[cfg(any(not(target_arch = "x86_64"), feature = "portable"))]
fn positive64(chunk: &[f32]) -> u64 {
    chunk
        .iter()
        .enumerate()
        .fold(0u64, |w, (k, &v)| w | u64::from(v > 0.0) << k)
}

#[cfg(any(not(target_arch = "x86_64"), feature = "portable"))]
pub(crate) fn pack64(chunk: &[bool]) -> u64 {
    chunk
        .iter()
        .enumerate()
        .fold(0u64, |w, (k, &f)| w | (f as u64) << k)
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

/// `dst[k] = 1` where flag k is set, else 0; `flags(k)` gives the 64 flags
/// from k on. Sixty-four bytes a store with AVX-512BW, else eight at a time
/// from a table: a layer-13 backward pass spreads 8.6 million flags.
pub(crate) fn spread_flags(dst: &mut [u8], flags: impl Fn(usize) -> u64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The first maximum by a plain scan.
    fn reference(values: &[f32]) -> (f32, usize) {
        let mut top = (f32::NEG_INFINITY, 0);
        for (i, &v) in values.iter().enumerate() {
            if v > top.0 {
                top = (v, i);
            }
        }
        top
    }

    #[test]
    fn first_max_matches_a_plain_scan_with_ties_tails_and_nan() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 1, 5, 15, 16, 17, 31, 48, 100, 1000] {
            for levels in [1u64, 3, 1000] {
                let values: Vec<f32> = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (rng % levels) as f32
                    })
                    .collect();
                assert_eq!(first_max(&values), reference(&values), "{values:?}");
                assert_eq!(first_max_lanes(&values), reference(&values));
                let mut with_nan = values.clone();
                if let Some(v) = with_nan.get_mut(len / 2) {
                    *v = f32::NAN;
                }
                assert_eq!(first_max(&with_nan), reference(&with_nan));
            }
        }
        // A later lane holds the maximum first; an earlier lane holds it later.
        let mut v = vec![0.0; 40];
        v[3] = 2.0;
        v[18] = 2.0;
        v[2 + 32] = 2.0;
        assert_eq!(first_max(&v), (2.0, 3));
        assert_eq!(first_max(&[f32::NAN, f32::NAN]), (f32::NEG_INFINITY, 0));
    }

    /// Every conversion path gives the bits of the plain scalar one.
    #[test]
    fn halves_and_flags_agree_on_every_path() {
        let mut state = 7u64;
        for len in [0usize, 1, 63, 64, 65, 1000, 4099] {
            let values: Vec<f32> = (0..len)
                .map(|i| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let v = ((state >> 20) as u32 as f32 / u32::MAX as f32 - 0.5) * 1e5;
                    match i % 97 {
                        3 => f32::NAN,
                        5 => -0.0,
                        7 => 1e-8,
                        11 => 7e4,
                        _ => v,
                    }
                })
                .collect();
            let want_h: Vec<u16> = values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
            let want_w: Vec<u64> = values
                .chunks(64)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0, |w, (k, &v)| w | u64::from(v > 0.0) << k)
                })
                .collect();
            let check = |h: &[f16], w: &[u64]| {
                assert_eq!(h.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want_h);
                assert_eq!(w, want_w);
            };
            let (h, w) = halves_and_flags(&values);
            check(&h, &w);
            let mut h = vec![f16::ZERO; len];
            let mut w = vec![0; len.div_ceil(64)];
            halves_and_flags_from(&values, &mut h, &mut w, 0);
            check(&h, &w);
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                let mut h = vec![f16::ZERO; len];
                let mut w = vec![0; len.div_ceil(64)];
                // SAFETY: the CPU supports AVX2 and F16C, checked above.
                unsafe { halves_and_flags_avx2(&values, &mut h, &mut w) };
                check(&h, &w);
            }
        }
    }

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
}
