//! Pictures in the panels: [`fovea_term`]'s encoders placed in ratatui's
//! cells. Kitty's Unicode placeholders, which are cells themselves, come
//! from ratatui-image.

pub use fovea_term::{EncodeError, Fit, Protocol, Target, detect, fit, kitty_delete};

use fovea_term::{blocks, cell_for, iterm2, kitty_direct, on_cells, sixel, wrap};
use image::{DynamicImage, RgbImage};
use ratatui::buffer::{Buffer, CellDiffOption};
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;
use std::num::NonZeroU16;

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

/// Encodes `img` to fill an area of `cols` x `rows` cells. `id` names the
/// picture to kitty (one per panel, so a new picture replaces the old).
///
/// `at` is the area's first cell: inside tmux a picture is placed there
/// by its own sequence.
pub fn encode(
    img: &RgbImage,
    area: Rect,
    target: &Target,
    id: u32,
) -> Result<Encoded, EncodeError> {
    let (cols, rows) = (area.width, area.height);
    let cell = cell_for(target);
    let f =
        fit(img.width(), img.height(), cols, rows, cell).ok_or(EncodeError::NoRoom(cols, rows))?;
    let at = Some((area.x + f.dx, area.y + f.dy));
    let body = match target.protocol {
        Protocol::Blocks => Body::Cells(
            blocks(img, &f)
                .into_iter()
                .map(|(t, b)| (Color::Rgb(t[0], t[1], t[2]), Color::Rgb(b[0], b[1], b[2])))
                .collect(),
        ),
        Protocol::Sixel => Body::Escape(wrap(sixel(img, &f)?, target, at)),
        Protocol::KittyDirect => Body::Escape(wrap(
            kitty_direct(&on_cells(img, &f, cell), id, &f)?,
            target,
            at,
        )),
        Protocol::Iterm2 => Body::Escape(wrap(iterm2(&on_cells(img, &f, cell), &f)?, target, at)),
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
    fn blocks_follow_the_picture() {
        let t = Target::plain(Protocol::Blocks, (9, 18));
        let img = RgbImage::from_fn(40, 40, |_, y| {
            if y < 20 {
                image::Rgb([250, 0, 0])
            } else {
                image::Rgb([0, 0, 250])
            }
        });
        let e = encode(&img, Rect::new(0, 0, 10, 10), &t, 1).unwrap_or_else(|e| panic!("{e}"));
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
        let t = Target::plain(Protocol::Sixel, (9, 18));
        let e = encode(
            &RgbImage::from_pixel(64, 48, image::Rgb([10, 200, 30])),
            Rect::new(2, 3, 12, 6),
            &t,
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
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
