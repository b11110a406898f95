//! Composing figures: panels with captions, grids, boxes, and histogram plots
//! with axes, drawn on RGB images (text in the public-domain 8x8 font).

use image::{Rgb, RgbImage, imageops};

pub const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
pub const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
pub const GREY: Rgb<u8> = Rgb([160, 160, 160]);
pub const ACCENT: Rgb<u8> = Rgb([230, 40, 40]);
pub const BAR: Rgb<u8> = Rgb([49, 104, 142]);

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 8 * scale
}

/// Draws `text` with its top-left corner at (x, y).
pub fn text(img: &mut RgbImage, x: i64, y: i64, text: &str, color: Rgb<u8>, scale: u32) {
    use font8x8::UnicodeFonts;
    let s = scale.max(1) as i64;
    for (k, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'));
        let Some(glyph) = glyph else { continue };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 0 {
                    continue;
                }
                for dy in 0..s {
                    for dx in 0..s {
                        let px = x + (k as i64 * 8 + col) * s + dx;
                        let py = y + row as i64 * s + dy;
                        if px >= 0
                            && py >= 0
                            && (px as u32) < img.width()
                            && (py as u32) < img.height()
                        {
                            img.put_pixel(px as u32, py as u32, color);
                        }
                    }
                }
            }
        }
    }
}

/// Text rotated a quarter turn counter-clockwise (for a y-axis label), with
/// its bottom-left corner at (x, y).
pub fn text_vertical(img: &mut RgbImage, x: i64, y: i64, s: &str, color: Rgb<u8>) {
    let w = text_width(s, 1);
    let mut strip = RgbImage::from_pixel(w.max(1), 8, WHITE);
    text(&mut strip, 0, 0, s, color, 1);
    let rotated = imageops::rotate270(&strip);
    for (px, py, p) in rotated.enumerate_pixels() {
        if *p != WHITE {
            let (tx, ty) = (x + px as i64, y - rotated.height() as i64 + py as i64);
            if tx >= 0 && ty >= 0 && (tx as u32) < img.width() && (ty as u32) < img.height() {
                img.put_pixel(tx as u32, ty as u32, *p);
            }
        }
    }
}

pub fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    for y in y0.max(0)..y1.min(img.height() as i64) {
        for x in x0.max(0)..x1.min(img.width() as i64) {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}

/// An unfilled rectangle `[x0, x1) x [y0, y1)`.
pub fn outline(
    img: &mut RgbImage,
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
    color: Rgb<u8>,
    thickness: i64,
) {
    fill(img, x0, y0, x1, y0 + thickness, color);
    fill(img, x0, y1 - thickness, x1, y1, color);
    fill(img, x0, y0, x0 + thickness, y1, color);
    fill(img, x1 - thickness, y0, x1, y1, color);
}

/// Nearest-neighbour scaling, so feature-map cells stay crisp.
pub fn scale_to(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    imageops::resize(img, w.max(1), h.max(1), imageops::FilterType::Nearest)
}

/// A picture with a caption above it, on white.
pub fn captioned(img: &RgbImage, caption: &str, width: u32) -> RgbImage {
    let scaled = if img.width() == width {
        img.clone()
    } else {
        let h = (img.height() as f32 * width as f32 / img.width().max(1) as f32).round() as u32;
        scale_to(img, width, h)
    };
    let mut out = RgbImage::from_pixel(width, scaled.height() + 14, WHITE);
    let label: String = caption.chars().take((width / 8) as usize).collect();
    text(&mut out, 0, 2, &label, BLACK, 1);
    imageops::replace(&mut out, &scaled, 0, 14);
    out
}

/// Tiles pictures left to right, top to bottom, `cols` per row, with a
/// margin, under an optional title.
pub fn grid(tiles: &[RgbImage], cols: usize, title: Option<&str>) -> RgbImage {
    let margin = 8u32;
    let cols = cols.max(1);
    let cell_w = tiles.iter().map(|t| t.width()).max().unwrap_or(1);
    let cell_h = tiles.iter().map(|t| t.height()).max().unwrap_or(1);
    let rows = tiles.len().div_ceil(cols).max(1) as u32;
    let head = if title.is_some() { 24 } else { 0 };
    let title_w = title.map_or(0, |t| text_width(t, 2) + 2 * margin);
    let width = (margin + cols as u32 * (cell_w + margin)).max(title_w);
    let height = head + margin + rows * (cell_h + margin);
    let mut out = RgbImage::from_pixel(width, height, WHITE);
    if let Some(t) = title {
        text(&mut out, margin as i64, 6, t, BLACK, 2);
    }
    for (i, t) in tiles.iter().enumerate() {
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        let x = margin + c * (cell_w + margin);
        let y = head + margin + r * (cell_h + margin);
        imageops::replace(&mut out, t, x as i64, y as i64);
    }
    out
}

/// Stacks pictures vertically (left-aligned) on white.
pub fn stack(parts: &[RgbImage]) -> RgbImage {
    let w = parts.iter().map(|p| p.width()).max().unwrap_or(1);
    let h: u32 = parts.iter().map(|p| p.height()).sum();
    let mut out = RgbImage::from_pixel(w, h.max(1), WHITE);
    let mut y = 0;
    for p in parts {
        imageops::replace(&mut out, p, 0, y as i64);
        y += p.height();
    }
    out
}

/// "Nice" tick step for a range: 1, 2 or 5 times a power of ten.
fn tick_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-12);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// A bar chart of `counts[n]` over n = 0..counts.len(), with axes, ticks,
/// axis labels and a title.
pub fn histogram_plot(
    title: &str,
    counts: &[u32],
    x_label: &str,
    y_label: &str,
    width: u32,
    height: u32,
) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, WHITE);
    let (left, right, top, bottom) = (56i64, 12i64, 22i64, 34i64);
    let (pw, ph) = (width as i64 - left - right, height as i64 - top - bottom);
    text(&mut img, left, 6, title, BLACK, 1);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let ystep = tick_step(max, 4.0);
    let ymax = (max / ystep).ceil() * ystep;
    let n = counts.len().max(1) as f64;
    // Bars.
    for (i, &c) in counts.iter().enumerate() {
        let x0 = left + (i as f64 / n * pw as f64) as i64;
        let x1 = left + ((i + 1) as f64 / n * pw as f64) as i64;
        let h = (c as f64 / ymax * ph as f64).round() as i64;
        fill(&mut img, x0, top + ph - h, x1.max(x0 + 1), top + ph, BAR);
    }
    // Axes.
    fill(&mut img, left - 1, top, left, top + ph + 1, BLACK);
    fill(&mut img, left - 1, top + ph, left + pw, top + ph + 1, BLACK);
    // Y ticks.
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let y = top + ph - (v / ymax * ph as f64).round() as i64;
        fill(&mut img, left - 4, y, left - 1, y + 1, BLACK);
        let label = if v >= 10_000.0 {
            format!("{:.0}k", v / 1000.0)
        } else {
            format!("{v:.0}")
        };
        text(
            &mut img,
            left - 6 - text_width(&label, 1) as i64,
            y - 4,
            &label,
            BLACK,
            1,
        );
        v += ystep;
    }
    // X ticks at "nice" feature counts.
    let xstep = tick_step(n - 1.0, 6.0).max(1.0);
    let mut k = 0.0;
    while k <= n - 1.0 + 1e-9 {
        let x = left + ((k + 0.5) / n * pw as f64) as i64;
        fill(&mut img, x, top + ph + 1, x + 1, top + ph + 4, BLACK);
        let label = format!("{k:.0}");
        text(
            &mut img,
            x - text_width(&label, 1) as i64 / 2,
            top + ph + 6,
            &label,
            BLACK,
            1,
        );
        k += xstep;
    }
    text(
        &mut img,
        left + pw / 2 - text_width(x_label, 1) as i64 / 2,
        height as i64 - 11,
        x_label,
        BLACK,
        1,
    );
    text_vertical(
        &mut img,
        2,
        top + ph / 2 + text_width(y_label, 1) as i64 / 2,
        y_label,
        BLACK,
    );
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_draws_pixels_and_plots_have_axes() {
        let mut img = RgbImage::from_pixel(40, 10, WHITE);
        text(&mut img, 0, 0, "A1", BLACK, 1);
        assert!(img.pixels().any(|p| *p == BLACK));
        let plot = histogram_plot("t", &[1, 5, 3, 0], "x", "y", 200, 120);
        // The x axis is a black row across the plot area.
        let axis_row = 120 - 34;
        assert!((60..180).all(|x| *plot.get_pixel(x, axis_row) == BLACK));
        assert!(plot.pixels().any(|p| *p == BAR));
    }

    #[test]
    fn ticks_are_nice() {
        assert_eq!(tick_step(100.0, 4.0), 50.0);
        assert_eq!(tick_step(64.0, 6.0), 20.0);
        assert_eq!(tick_step(3.0, 4.0), 1.0);
    }
}
