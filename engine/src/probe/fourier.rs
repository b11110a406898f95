//! The 2-D discrete Fourier transform of row-major planes (rustfft along
//! the rows, then the columns) and the frequency of a bin.

use rustfft::num_complex::Complex;
use rustfft::{FftNum, FftPlanner};

/// Transforms each `h` x `w` plane of `data` in place (unnormalised; the
/// inverse when `inverse`).
pub fn fft2<T: FftNum>(data: &mut [Complex<T>], h: usize, w: usize, inverse: bool) {
    if h == 0 || w == 0 {
        return;
    }
    let mut planner = FftPlanner::new();
    let plan = |planner: &mut FftPlanner<T>, n| {
        if inverse {
            planner.plan_fft_inverse(n)
        } else {
            planner.plan_fft_forward(n)
        }
    };
    let (rows, cols) = (plan(&mut planner, w), plan(&mut planner, h));
    let mut column = vec![Complex::new(T::zero(), T::zero()); h];
    for plane in data.chunks_exact_mut(h * w) {
        for row in plane.chunks_exact_mut(w) {
            rows.process(row);
        }
        for x in 0..w {
            for y in 0..h {
                column[y] = plane[y * w + x];
            }
            cols.process(&mut column);
            for y in 0..h {
                plane[y * w + x] = column[y];
            }
        }
    }
}

/// Frequency of DFT bin `k` of `n`, in cycles per pixel (bins past the
/// middle are the negative ones).
pub fn freq(k: usize, n: usize) -> f64 {
    let k = if k > n / 2 {
        k as f64 - n as f64
    } else {
        k as f64
    };
    k / n as f64
}
