//! Pictures in the terminal. Detection and the encoders live here rather
//! than in ratatui-image because the crate wraps sixel for tmux with an
//! undoubled inner terminator (tmux then ends the passthrough early), has
//! no direct placement for kitty before 0.28, and fits pictures without
//! filling or centring them. Kitty's Unicode placeholders, which the crate
//! does right, still come from it.

pub mod detect;

use image::{DynamicImage, RgbImage, RgbaImage, imageops::FilterType};
use ratatui::buffer::{Buffer, CellDiffOption};
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;
use std::fmt::Write as _;
use std::num::NonZeroU16;

/// How pictures reach the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Kitty's graphics with Unicode placeholders (kitty 0.28+, ghostty;
    /// works through tmux).
    Kitty,
    /// Kitty's graphics placed at the cursor (any kitty; not through tmux).
    KittyDirect,
    Sixel,
    Iterm2,
    /// Coloured half-block characters: works everywhere, coarse.
    Blocks,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Kitty => "kitty",
            Protocol::KittyDirect => "kitty (direct)",
            Protocol::Sixel => "sixel",
            Protocol::Iterm2 => "iTerm2",
            Protocol::Blocks => "half blocks",
        }
    }
}

/// Where a picture of `(w, h)` pixels sits in an area of `(cols, rows)`
/// cells: as large as fits keeping its aspect, centred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fit {
    /// Offset of the picture's first cell inside the area.
    pub dx: u16,
    pub dy: u16,
    /// Cells the picture covers.
    pub cols: u16,
    pub rows: u16,
    /// The picture's size in pixels once scaled.
    pub width: u32,
    pub height: u32,
}

pub fn fit(w: u32, h: u32, cols: u16, rows: u16, cell: (u16, u16)) -> Option<Fit> {
    if w == 0 || h == 0 || cols == 0 || rows == 0 {
        return None;
    }
    let (cw, ch) = (f64::from(cell.0.max(1)), f64::from(cell.1.max(1)));
    let scale = (f64::from(cols) * cw / f64::from(w)).min(f64::from(rows) * ch / f64::from(h));
    let width = ((f64::from(w) * scale).floor() as u32).max(1);
    let height = ((f64::from(h) * scale).floor() as u32).max(1);
    let used_cols = ((f64::from(width) / cw).ceil() as u16).clamp(1, cols);
    let used_rows = ((f64::from(height) / ch).ceil() as u16).clamp(1, rows);
    Some(Fit {
        dx: (cols - used_cols) / 2,
        dy: (rows - used_rows) / 2,
        cols: used_cols,
        rows: used_rows,
        width,
        height,
    })
}

/// What the terminal needs to know to draw pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub protocol: Protocol,
    pub cell: (u16, u16),
    /// Inside tmux: wrap every sequence for passthrough.
    pub wrap: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the picture does not fit in {0}x{1} cells")]
    NoRoom(u16, u16),
    #[error("sixel encoding failed: {0}")]
    Sixel(String),
    #[error("picture encoding failed: {0}")]
    Image(#[from] image::ImageError),
    #[error("kitty encoding failed: {0}")]
    Kitty(String),
}

/// A picture encoded for one area size and protocol.
pub struct Encoded {
    pub fit: Fit,
    body: Body,
}

enum Body {
    /// One escape sequence written at the picture's first cell.
    Escape(String),
    /// Half blocks: (top, bottom) colour per cell, row-major.
    Cells(Vec<(Color, Color)>),
    Placeholder(ratatui_image::protocol::Protocol),
}

fn scaled(img: &RgbImage, f: &Fit) -> RgbImage {
    image::imageops::resize(img, f.width, f.height, FilterType::Triangle)
}

fn png(img: &RgbaImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// The scaled picture on a transparent canvas of exactly the cells it
/// covers, so a protocol that stretches to whole cells keeps the aspect.
fn on_cells(img: &RgbImage, f: &Fit, cell: (u16, u16)) -> RgbaImage {
    let (w, h) = (
        u32::from(f.cols) * u32::from(cell.0),
        u32::from(f.rows) * u32::from(cell.1),
    );
    let mut canvas = RgbaImage::new(w.max(f.width), h.max(f.height));
    let rgba = DynamicImage::ImageRgb8(scaled(img, f)).to_rgba8();
    image::imageops::overlay(
        &mut canvas,
        &rgba,
        i64::from((w.saturating_sub(f.width)) / 2),
        i64::from((h.saturating_sub(f.height)) / 2),
    );
    canvas
}

fn wrap(seq: String, target: &Target) -> String {
    if target.wrap {
        detect::tmux_wrap(&seq)
    } else {
        seq
    }
}

/// Kitty's graphics, transmitted as PNG in chunks and placed at the
/// cursor over `cols` x `rows` cells without moving it; the previous
/// picture with the same id goes first.
fn kitty_direct(img: &RgbaImage, id: u32, f: &Fit) -> Result<String, EncodeError> {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(png(img)?);
    let mut s = String::with_capacity(data.len() + data.len() / 4096 * 24 + 96);
    let _ = write!(s, "\x1b_Ga=d,d=I,i={id},q=2\x1b\\");
    let chunks: Vec<&[u8]> = data.as_bytes().chunks(4096).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let more = u8::from(i + 1 < chunks.len());
        if i == 0 {
            let _ = write!(
                s,
                "\x1b_Ga=T,f=100,i={id},c={},r={},C=1,q=2,m={more};",
                f.cols, f.rows
            );
        } else {
            let _ = write!(s, "\x1b_Gm={more};");
        }
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push_str("\x1b\\");
    }
    Ok(s)
}

/// Deletes a kitty picture placed directly (it is not a cell, so the
/// screen's text does not cover it).
pub fn kitty_delete(id: u32, target: &Target) -> String {
    wrap(format!("\x1b_Ga=d,d=I,i={id},q=2\x1b\\"), target)
}

fn sixel(img: &RgbImage, f: &Fit) -> Result<String, EncodeError> {
    let rgba = DynamicImage::ImageRgb8(scaled(img, f)).to_rgba8();
    icy_sixel::sixel_encode(
        rgba.as_raw(),
        rgba.width() as usize,
        rgba.height() as usize,
        &icy_sixel::EncodeOptions::default(),
    )
    .map_err(|e| EncodeError::Sixel(e.to_string()))
}

fn iterm2(img: &RgbaImage, f: &Fit) -> Result<String, EncodeError> {
    use base64::Engine;
    let data = png(img)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    Ok(format!(
        "\x1b]1337;File=inline=1;size={};width={};height={};preserveAspectRatio=0;doNotMoveCursor=1:{b64}\x07",
        data.len(),
        f.cols,
        f.rows
    ))
}

fn blocks(img: &RgbImage, f: &Fit) -> Vec<(Color, Color)> {
    let small = image::imageops::resize(
        img,
        u32::from(f.cols),
        u32::from(f.rows) * 2,
        FilterType::Triangle,
    );
    let mut cells = Vec::with_capacity(usize::from(f.cols) * usize::from(f.rows));
    for y in 0..u32::from(f.rows) {
        for x in 0..u32::from(f.cols) {
            let c = |p: &image::Rgb<u8>| Color::Rgb(p[0], p[1], p[2]);
            cells.push((
                c(small.get_pixel(x, 2 * y)),
                c(small.get_pixel(x, 2 * y + 1)),
            ));
        }
    }
    cells
}

/// Encodes `img` to fill an area of `cols` x `rows` cells. `id` names the
/// picture to kitty (one per panel, so a new picture replaces the old).
pub fn encode(
    img: &RgbImage,
    cols: u16,
    rows: u16,
    target: &Target,
    id: u32,
) -> Result<Encoded, EncodeError> {
    // Half blocks have square-ish "pixels" of half a cell.
    let cell = match target.protocol {
        Protocol::Blocks => (1, 2),
        _ => target.cell,
    };
    let f =
        fit(img.width(), img.height(), cols, rows, cell).ok_or(EncodeError::NoRoom(cols, rows))?;
    let body = match target.protocol {
        Protocol::Blocks => Body::Cells(blocks(img, &f)),
        Protocol::Sixel => Body::Escape(wrap(sixel(img, &f)?, target)),
        Protocol::KittyDirect => Body::Escape(wrap(
            kitty_direct(&on_cells(img, &f, cell), id, &f)?,
            target,
        )),
        Protocol::Iterm2 => Body::Escape(wrap(iterm2(&on_cells(img, &f, cell), &f)?, target)),
        Protocol::Kitty => {
            let k = ratatui_image::protocol::kitty::Kitty::new(
                DynamicImage::ImageRgba8(on_cells(img, &f, cell)),
                ratatui::layout::Size::new(f.cols, f.rows),
                id,
                target.wrap,
                false,
            )
            .map_err(|e| EncodeError::Kitty(e.to_string()))?;
            Body::Placeholder(ratatui_image::protocol::Protocol::Kitty(k))
        }
    };
    Ok(Encoded { fit: f, body })
}

/// The cell diff option that tells ratatui an escape sequence in a cell
/// occupies one column.
const ONE_COLUMN: CellDiffOption = CellDiffOption::ForcedWidth(match NonZeroU16::new(1) {
    Some(n) => n,
    None => unreachable!(),
});

impl Encoded {
    /// The rectangle the picture covers when drawn in `area`, if it fits.
    pub fn rect(&self, area: Rect) -> Option<Rect> {
        let f = &self.fit;
        (f.dx + f.cols <= area.width && f.dy + f.rows <= area.height)
            .then(|| Rect::new(area.x + f.dx, area.y + f.dy, f.cols, f.rows))
    }

    /// Draws into `area` (the area it was encoded for, or a larger one).
    pub fn render(&self, area: Rect, buf: &mut Buffer) -> bool {
        let Some(r) = self.rect(area) else {
            return false;
        };
        match &self.body {
            Body::Escape(seq) => {
                for y in r.top()..r.bottom() {
                    for x in r.left()..r.right() {
                        if let Some(cell) = buf.cell_mut((x, y)) {
                            if (x, y) == (r.x, r.y) {
                                cell.set_symbol(seq).set_diff_option(ONE_COLUMN);
                            } else {
                                cell.set_diff_option(CellDiffOption::Skip);
                            }
                        }
                    }
                }
            }
            Body::Cells(cells) => {
                for (i, (top, bottom)) in cells.iter().enumerate() {
                    let (x, y) = (i as u16 % r.width, i as u16 / r.width);
                    if let Some(cell) = buf.cell_mut((r.x + x, r.y + y)) {
                        cell.set_symbol("▀").set_fg(*top).set_bg(*bottom);
                    }
                }
            }
            Body::Placeholder(p) => ratatui_image::Image::new(p).render(r, buf),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_fills_and_centres() {
        // A square picture in a wide area with 9x18 cells: full height,
        // centred across.
        let f = fit(224, 224, 80, 20, (9, 18)).unwrap_or_else(|| unreachable!());
        assert_eq!((f.height, f.rows), (360, 20));
        assert_eq!(f.width, 360);
        assert_eq!(f.cols, 40);
        assert_eq!(f.dx, 20);
        assert_eq!(f.dy, 0);
        // Upscales small pictures too.
        let f = fit(14, 14, 10, 10, (9, 18)).unwrap_or_else(|| unreachable!());
        assert_eq!((f.width, f.height, f.cols, f.rows), (90, 90, 10, 5));
        assert_eq!((f.dx, f.dy), (0, 2));
        assert_eq!(fit(0, 5, 10, 10, (9, 18)), None);
        assert_eq!(fit(5, 5, 0, 10, (9, 18)), None);
    }

    fn gradient() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
        })
    }

    #[test]
    fn sixel_inside_tmux_is_one_passthrough() {
        let t = Target {
            protocol: Protocol::Sixel,
            cell: (9, 18),
            wrap: true,
        };
        let e = encode(&gradient(), 20, 10, &t, 1).unwrap_or_else(|e| panic!("{e}"));
        let Body::Escape(s) = &e.body else {
            panic!("sixel is an escape sequence")
        };
        assert!(s.starts_with("\x1bPtmux;\x1b\x1bP"));
        assert!(s.ends_with("\x1b\x1b\\\x1b\\"));
        let inner = &s["\x1bPtmux;".len()..s.len() - 2];
        assert!(!inner.replace("\x1b\x1b", "").contains('\x1b'));
    }

    #[test]
    fn kitty_direct_places_without_moving_the_cursor() {
        let t = Target {
            protocol: Protocol::KittyDirect,
            cell: (9, 20),
            wrap: false,
        };
        let e = encode(&gradient(), 30, 8, &t, 77).unwrap_or_else(|e| panic!("{e}"));
        let Body::Escape(s) = &e.body else {
            panic!("kitty is an escape sequence")
        };
        assert!(s.starts_with("\x1b_Ga=d,d=I,i=77,q=2\x1b\\\x1b_Ga=T,f=100,i=77,"));
        assert!(s.contains(&format!("c={},r={},C=1", e.fit.cols, e.fit.rows)));
        // Chunks of at most 4096 base64 characters, the last says m=0.
        let chunks: Vec<&str> = s.split("\x1b_G").skip(2).collect();
        assert!(chunks.iter().all(|c| c.len() <= 4096 + 40));
        assert!(chunks.last().is_some_and(|c| c.contains("m=0;")));
        // The PNG inside decodes to the cells' pixels.
        use base64::Engine;
        let payload: String = chunks
            .iter()
            .map(|c| {
                let body = c.split_once(';').map_or("", |(_, b)| b);
                body.trim_end_matches("\x1b\\").to_string()
            })
            .collect();
        let png = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap_or_else(|e| panic!("{e}"));
        let img = image::load_from_memory(&png).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (img.width(), img.height()),
            (u32::from(e.fit.cols) * 9, u32::from(e.fit.rows) * 20)
        );
    }

    #[test]
    fn blocks_follow_the_picture() {
        let t = Target {
            protocol: Protocol::Blocks,
            cell: (9, 18),
            wrap: false,
        };
        let img = RgbImage::from_fn(40, 40, |_, y| {
            if y < 20 {
                image::Rgb([250, 0, 0])
            } else {
                image::Rgb([0, 0, 250])
            }
        });
        let e = encode(&img, 10, 10, &t, 1).unwrap_or_else(|e| panic!("{e}"));
        let area = Rect::new(0, 0, 10, 10);
        let mut buf = Buffer::empty(area);
        assert!(e.render(area, &mut buf));
        assert_eq!((e.fit.cols, e.fit.rows), (10, 5));
        let top = &buf[(5, e.fit.dy)];
        assert_eq!(top.symbol(), "▀");
        assert!(matches!(top.fg, Color::Rgb(r, _, b) if r > 200 && b < 50));
        let bottom = &buf[(5, e.fit.dy + e.fit.rows - 1)];
        assert!(matches!(bottom.bg, Color::Rgb(r, _, b) if r < 50 && b > 200));
    }

    #[test]
    fn escape_pictures_own_their_cells() {
        let t = Target {
            protocol: Protocol::Sixel,
            cell: (9, 18),
            wrap: false,
        };
        let e = encode(&gradient(), 12, 6, &t, 1).unwrap_or_else(|e| panic!("{e}"));
        let area = Rect::new(2, 3, 12, 6);
        let mut buf = Buffer::empty(Rect::new(0, 0, 20, 12));
        assert!(e.render(area, &mut buf));
        let r = e.rect(area).unwrap_or_else(|| unreachable!());
        assert!(buf[(r.x, r.y)].symbol().starts_with("\x1bP"));
        assert_eq!(buf[(r.x + 1, r.y)].diff_option, CellDiffOption::Skip);
        // Too small an area: nothing drawn rather than a picture overflowing.
        let mut small = Buffer::empty(Rect::new(0, 0, 20, 12));
        assert!(!e.render(Rect::new(0, 0, 3, 2), &mut small));
    }
}
