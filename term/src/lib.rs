//! Pictures in terminals. What a terminal can draw is asked of it (through
//! tmux's passthrough where it allows) and looked up in a small table
//! ([`detect`]); pictures are fitted to an area of cells and encoded for
//! sixel, kitty (placed directly), iTerm2 or half blocks. Written here
//! rather than taken from a crate because the crates at hand wrap sixel for
//! tmux with an undoubled inner terminator (tmux then ends the passthrough
//! early), lack direct placement for kitty before 0.28, and fit pictures
//! without filling or centring them.

pub mod detect;

use image::{DynamicImage, RgbImage, RgbaImage, imageops::FilterType};
use std::fmt::Write as _;

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
    /// Inside tmux: where the pane's first cell is on the terminal outside
    /// (tmux does not move that terminal's cursor before a passthrough, so
    /// a picture carries its own position).
    pub pane: Option<(u16, u16)>,
}

impl Target {
    /// A terminal reached directly (not through tmux).
    pub fn plain(protocol: Protocol, cell: (u16, u16)) -> Target {
        Target {
            protocol,
            cell,
            wrap: false,
            pane: None,
        }
    }
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
    #[error("cannot write the picture: {0}")]
    Io(#[from] std::io::Error),
}

pub fn scaled(img: &RgbImage, f: &Fit) -> RgbImage {
    image::imageops::resize(img, f.width, f.height, FilterType::Triangle)
}

pub fn png(img: &RgbaImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// The scaled picture on a transparent canvas of exactly the cells it
/// covers, so a protocol that stretches to whole cells keeps the aspect.
pub fn on_cells(img: &RgbImage, f: &Fit, cell: (u16, u16)) -> RgbaImage {
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

/// The sequence as the terminal must receive it: inside tmux wrapped for
/// passthrough and, given the picture's cell `at` in the pane, placed there
/// with the outer terminal's cursor saved and restored around it.
pub fn wrap(seq: String, target: &Target, at: Option<(u16, u16)>) -> String {
    if !target.wrap {
        return seq;
    }
    match (target.pane, at) {
        (Some((px, py)), Some((x, y))) => detect::tmux_wrap(&format!(
            "\x1b7\x1b[{};{}H{seq}\x1b8",
            u32::from(py) + u32::from(y) + 1,
            u32::from(px) + u32::from(x) + 1
        )),
        _ => detect::tmux_wrap(&seq),
    }
}

/// Kitty's graphics, transmitted as PNG in chunks and placed at the
/// cursor over `cols` x `rows` cells without moving it; the previous
/// picture with the same id goes first.
pub fn kitty_direct(img: &RgbaImage, id: u32, f: &Fit) -> Result<String, EncodeError> {
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
    wrap(format!("\x1b_Ga=d,d=I,i={id},q=2\x1b\\"), target, None)
}

pub fn sixel(img: &RgbImage, f: &Fit) -> Result<String, EncodeError> {
    let rgba = DynamicImage::ImageRgb8(scaled(img, f)).to_rgba8();
    icy_sixel::sixel_encode(
        rgba.as_raw(),
        rgba.width() as usize,
        rgba.height() as usize,
        &icy_sixel::EncodeOptions::default(),
    )
    .map_err(|e| EncodeError::Sixel(e.to_string()))
}

pub fn iterm2(img: &RgbaImage, f: &Fit) -> Result<String, EncodeError> {
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

/// Half blocks: the (top, bottom) colour of each cell, row-major.
pub fn blocks(img: &RgbImage, f: &Fit) -> Vec<([u8; 3], [u8; 3])> {
    let small = image::imageops::resize(
        img,
        u32::from(f.cols),
        u32::from(f.rows) * 2,
        FilterType::Triangle,
    );
    let mut cells = Vec::with_capacity(usize::from(f.cols) * usize::from(f.rows));
    for y in 0..u32::from(f.rows) {
        for x in 0..u32::from(f.cols) {
            cells.push((small.get_pixel(x, 2 * y).0, small.get_pixel(x, 2 * y + 1).0));
        }
    }
    cells
}

/// The cell size a protocol fits pictures with: half blocks have
/// square-ish "pixels" of half a cell.
pub fn cell_for(target: &Target) -> (u16, u16) {
    match target.protocol {
        Protocol::Blocks => (1, 2),
        _ => target.cell,
    }
}

/// `img` as text to print at the cursor, at most `max_cols` wide and, for
/// pictures, no larger than its own pixels (so labels keep their size);
/// the cursor ends on the line below. Kitty's placeholders need a cell
/// grid, so [`Protocol::Kitty`] prints as a direct placement.
pub fn inline(img: &RgbImage, max_cols: u16, target: &Target) -> Result<String, EncodeError> {
    let cell = cell_for(target);
    let native_cols = img.width().div_ceil(u32::from(cell.0.max(1)));
    let cols = (native_cols.min(u32::from(max_cols.max(1)))) as u16;
    let rows = (img.height().div_ceil(u32::from(cell.1.max(1))) * u32::from(cols))
        .div_ceil(native_cols.max(1))
        .max(1);
    let rows = u16::try_from(rows).unwrap_or(u16::MAX);
    let f =
        fit(img.width(), img.height(), cols, rows, cell).ok_or(EncodeError::NoRoom(cols, rows))?;
    let mut out = String::new();
    match target.protocol {
        Protocol::Blocks => {
            let cells = blocks(img, &f);
            for row in cells.chunks(usize::from(f.cols.max(1))) {
                for (t, b) in row {
                    let _ = write!(
                        out,
                        "\x1b[38;2;{};{};{}m\x1b[48;2;{};{};{}m\u{2580}",
                        t[0], t[1], t[2], b[0], b[1], b[2]
                    );
                }
                out.push_str("\x1b[0m\n");
            }
            return Ok(out);
        }
        Protocol::Sixel => out.push_str(&wrap(sixel(img, &f)?, target, None)),
        Protocol::Kitty | Protocol::KittyDirect => {
            // Placed at the cursor, which then moves below it.
            let seq = kitty_direct(&on_cells(img, &f, cell), 1, &f)?.replace(",C=1,", ",");
            out.push_str(&wrap(seq, target, None));
        }
        Protocol::Iterm2 => {
            out.push_str(&wrap(iterm2(&on_cells(img, &f, cell), &f)?, target, None))
        }
    }
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
        })
    }

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

    #[test]
    fn sixel_inside_tmux_is_one_passthrough() {
        let t = Target {
            protocol: Protocol::Sixel,
            cell: (9, 18),
            wrap: true,
            pane: None,
        };
        let img = gradient();
        let f = fit(img.width(), img.height(), 20, 10, t.cell).unwrap_or_else(|| unreachable!());
        let s = &wrap(sixel(&img, &f).unwrap_or_else(|e| panic!("{e}")), &t, None);
        assert!(s.starts_with("\x1bPtmux;\x1b\x1bP"));
        assert!(s.ends_with("\x1b\x1b\\\x1b\\"));
        let inner = &s["\x1bPtmux;".len()..s.len() - 2];
        assert!(!inner.replace("\x1b\x1b", "").contains('\x1b'));
    }

    #[test]
    fn inside_tmux_a_picture_carries_its_position() {
        let t = Target {
            protocol: Protocol::Sixel,
            cell: (9, 18),
            wrap: true,
            pane: Some((81, 0)),
        };
        let s = wrap("\x1bPq#0~\x1b\\".into(), &t, Some((4, 2)));
        assert_eq!(
            s,
            "\x1bPtmux;\x1b\x1b7\x1b\x1b[3;86H\x1b\x1bPq#0~\x1b\x1b\\\x1b\x1b8\x1b\\"
        );
    }

    #[test]
    fn kitty_direct_places_without_moving_the_cursor() {
        let t = Target::plain(Protocol::KittyDirect, (9, 20));
        let img = gradient();
        let f = fit(img.width(), img.height(), 30, 8, t.cell).unwrap_or_else(|| unreachable!());
        let s =
            &kitty_direct(&on_cells(&img, &f, t.cell), 77, &f).unwrap_or_else(|e| panic!("{e}"));
        struct E {
            fit: Fit,
        }
        let e = E { fit: f };
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
    fn inline_pictures_keep_their_size_and_end_below() {
        let img = RgbImage::from_fn(90, 36, |x, _| image::Rgb([(x * 2) as u8, 10, 200]));
        let t = Target::plain(Protocol::Blocks, (9, 18));
        // Half blocks: one column per pixel at most, two pixels per row.
        let s = inline(&img, 40, &t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.lines().count(), 8);
        assert!(s.lines().all(|l| l.matches('\u{2580}').count() == 40));
        let t = Target::plain(Protocol::Sixel, (9, 18));
        let s = inline(&img, 200, &t).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.starts_with("\x1bP") && s.ends_with("\x1b\\\n"));
        // 90 pixels wide is 10 columns: not scaled up to the terminal.
        assert!(s.contains("\"1;1;90;36"));
    }
}
