//! Turning tensors into pictures with a stated normalization.

use crate::model::profile::Profile;
use crate::probe::reconstruct::PixelBox;
use image::{ImageEncoder, RgbImage, codecs::png::PngEncoder};

/// How values were mapped to colours.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// "diverging" (signed, zero at the centre) or "sequential".
    pub kind: &'static str,
    pub max_abs: f32,
    pub min: f32,
    pub max: f32,
    pub colormap: &'static str,
    pub description: String,
}

pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding an in-memory RGB8 buffer of matching size cannot fail.
    let _ = PngEncoder::new(&mut out).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    );
    out
}

/// Renders a signed `[3, H, W]` input-space image (model channel order):
/// each channel maps to its RGB colour with zero at mid-grey and the 99.5th
/// percentile of the magnitudes inside `region` at the ends, the usual
/// picture of a reconstruction.
pub fn render_signed(
    values: &[f32],
    size: usize,
    profile: &Profile,
    region: Option<PixelBox>,
) -> (RgbImage, Normalization) {
    let r = region.unwrap_or(PixelBox {
        x0: 0,
        y0: 0,
        x1: size,
        y1: size,
    });
    let plane = size * size;
    // The 99.5th percentile of the nonzero magnitudes sets the ends: a few
    // extreme pixels would otherwise leave the picture flat grey.
    let mut mags: Vec<f32> = Vec::new();
    for c in 0..3 {
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                let v = values[c * plane + y * size + x];
                if v.is_finite() && v != 0.0 {
                    mags.push(v.abs());
                }
            }
        }
    }
    let max_abs = if mags.is_empty() {
        0.0
    } else {
        let k = ((mags.len() as f64 * 0.995) as usize).min(mags.len() - 1);
        *mags.select_nth_unstable_by(k, f32::total_cmp).1
    };
    let scale = if max_abs > 0.0 { 127.5 / max_abs } else { 0.0 };
    let (w, h) = ((r.x1 - r.x0) as u32, (r.y1 - r.y0) as u32);
    let mut img = RgbImage::new(w.max(1), h.max(1));
    for y in 0..h as usize {
        for x in 0..w as usize {
            let mut px = [0u8; 3];
            for c in 0..3 {
                let v = values[c * plane + (r.y0 + y) * size + r.x0 + x];
                px[profile.rgb_of(c)] = (127.5 + v * scale).round().clamp(0.0, 255.0) as u8;
            }
            img.put_pixel(x as u32, y as u32, image::Rgb(px));
        }
    }
    (
        img,
        Normalization {
            kind: "diverging",
            max_abs,
            min: -max_abs,
            max: max_abs,
            colormap: "per-channel-rgb",
            description: format!(
                "each channel: 128 + 127.5 * v / {max_abs:.6e}, clamped (zero is mid-grey; the scale is the 99.5th percentile of |v| over the nonzero values of the {} shown)",
                if region.is_some() {
                    "field of view"
                } else {
                    "frame"
                }
            ),
        },
    )
}

/// Renders a `[3, h, w]` input-space crop back to pixels.
pub fn render_input_region(values: &[f32], h: usize, w: usize, profile: &Profile) -> RgbImage {
    let plane = h * w;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let mut px = [0u8; 3];
        for c in 0..3 {
            // A crop shorter than h x w shows black where it ends.
            let v = values
                .get(c * plane + y as usize * w + x as usize)
                .map_or(0.0, |&v| profile.to_pixel(c, v));
            px[profile.rgb_of(c)] = v.round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(px)
    })
}

/// Renders the `region` of a full `[3, size, size]` input-space frame.
pub fn render_input_crop(
    values: &[f32],
    size: usize,
    profile: &Profile,
    region: PixelBox,
) -> RgbImage {
    let plane = size * size;
    let (w, h) = (region.x1 - region.x0, region.y1 - region.y0);
    RgbImage::from_fn(w.max(1) as u32, h.max(1) as u32, |x, y| {
        let mut px = [0u8; 3];
        for c in 0..3 {
            let i = (region.y0 + y as usize) * size + region.x0 + x as usize;
            let v = values.get(c * plane + i).copied().unwrap_or(0.0);
            px[profile.rgb_of(c)] = profile.to_pixel(c, v).round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(px)
    })
}

/// Viridis colour of t in [0, 1] (not finite: the colour of 0).
pub fn viridis(t: f32) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let c = colorous::VIRIDIS.eval_continuous(f64::from(t));
    [c.r, c.g, c.b]
}

/// Renders a non-negative map (`h x w`, row-major) with viridis over
/// `[0, max]`.
pub fn render_map(values: &[f32], h: usize, w: usize, max: f32) -> (RgbImage, Normalization) {
    let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb(viridis(values[y as usize * w + x as usize] * scale))
    });
    (
        img,
        Normalization {
            kind: "sequential",
            max_abs: max,
            min: 0.0,
            max,
            colormap: "viridis",
            description: format!("viridis over [0, {max:.6e}]"),
        },
    )
}

/// A non-negative `size` x `size` map over a picture of the same size:
/// viridis over `[0, max]` at 60% opacity on the picture in grey, so the
/// map's places read against the image.
pub fn render_overlay(map: &[f32], size: usize, picture: &RgbImage) -> (RgbImage, Normalization) {
    let max = map
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0f32, f32::max);
    let (heat, mut norm) = render_map(map, size, size, max);
    let img = RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let grey = picture.get_pixel_checked(x, y).map_or(0.0, |p| {
            0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
        });
        let h = heat.get_pixel(x, y);
        image::Rgb([0, 1, 2].map(|c| (0.6 * h[c] as f32 + 0.4 * grey).round() as u8))
    });
    norm.description = format!("viridis over [0, {max:.6e}] at 60% over the image in grey (40%)");
    (img, norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::network::Layout;
    use crate::model::profile::ProfileName;

    #[test]
    fn zero_is_grey_and_extremes_saturate() {
        let p = Profile::named(ProfileName::Torchvision, 2, Layout::Nchw);
        let mut v = vec![0f32; 12];
        v[0] = 2.0;
        v[1] = -2.0;
        let (img, n) = render_signed(&v, 2, &p, None);
        assert_eq!(n.max_abs, 2.0);
        assert_eq!(img.get_pixel(0, 0)[0], 255);
        assert_eq!(img.get_pixel(1, 0)[0], 0);
        assert_eq!(img.get_pixel(0, 1)[1], 128);
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
    }
}
