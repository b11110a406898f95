//! Publication figures drawn with plotters, each written as PNG and SVG from
//! one drawing: grids of pictures with captions and colour bars that state
//! their scale, and histograms with labelled axes and ticks.

use anyhow::{Context, anyhow};
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const FONT: &str = "sans-serif";

/// DejaVu Sans for the bitmap backend (compiled in, so no system fonts are
/// needed); SVG text names the family and the viewer draws it.
fn fonts() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if *ok {
        Ok(())
    } else {
        Err(anyhow!("the built-in font could not be loaded"))
    }
}

/// How a colour bar maps values to colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Viridis from `0` to `max`.
    Viridis { max: f64 },
    /// Grey for 0, white at `+max`, black at `-max` (the per-channel RGB
    /// rendering of reconstructions, shown for one channel).
    Diverging { max: f64 },
}

impl Scale {
    fn range(self) -> (f64, f64) {
        match self {
            Scale::Viridis { max } => (0.0, max.max(f64::MIN_POSITIVE)),
            Scale::Diverging { max } => {
                let m = max.max(f64::MIN_POSITIVE);
                (-m, m)
            }
        }
    }

    pub(crate) fn colour(self, v: f64) -> RGBColor {
        match self {
            Scale::Viridis { max } => {
                let c =
                    fovea_engine::probe::render::viridis((v / max.max(f64::MIN_POSITIVE)) as f32);
                RGBColor(c[0], c[1], c[2])
            }
            Scale::Diverging { max } => {
                let g = (128.0 + 127.5 * v / max.max(f64::MIN_POSITIVE)).clamp(0.0, 255.0) as u8;
                RGBColor(g, g, g)
            }
        }
    }
}

/// One picture with its caption.
pub struct Tile {
    pub image: RgbImage,
    pub caption: String,
}

/// A row of pictures, with a label on its left and, when its pictures share
/// a scale, a colour bar on its right.
pub struct Row {
    pub label: String,
    pub tiles: Vec<Tile>,
    pub bar: Option<(Scale, String)>,
}

/// A titled grid of rows, with notes under it.
pub struct GridFigure {
    pub title: String,
    pub rows: Vec<Row>,
    /// Side of each picture, pixels.
    pub tile: u32,
    pub notes: Vec<String>,
}

const MARGIN: u32 = 16;
const TITLE_H: u32 = 40;
const LABEL_W: u32 = 150;
const CAPTION_H: u32 = 38;
const GAP: u32 = 10;
const BAR_W: u32 = 110;
const NOTE_H: u32 = 20;

impl GridFigure {
    fn size(&self) -> (u32, u32) {
        let cols = self.rows.iter().map(|r| r.tiles.len()).max().unwrap_or(0) as u32;
        let bars = self.rows.iter().any(|r| r.bar.is_some());
        let w = MARGIN * 2 + LABEL_W + cols * (self.tile + GAP) + if bars { BAR_W } else { 0 };
        let w = w.max(640);
        let h = MARGIN
            + TITLE_H
            + self.rows.len() as u32 * (self.tile + CAPTION_H + GAP)
            + self.note_lines(w).len() as u32 * NOTE_H
            + MARGIN;
        (w, h)
    }

    /// The notes, wrapped to the figure's width.
    fn note_lines(&self, width: u32) -> Vec<String> {
        wrap(&self.notes, note_chars(width))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {x:?}");
        page(root, &self.title, 22)?;
        let label_font = (FONT, 15).into_font().color(&BLACK);
        let caption_font = (FONT, 13).into_font().color(&BLACK);
        let mut y = (MARGIN + TITLE_H) as i32;
        for row in &self.rows {
            // The row's label, centred on its pictures.
            for (i, line) in row.label.lines().enumerate() {
                root.draw(&Text::new(
                    line.to_string(),
                    (MARGIN as i32, y + self.tile as i32 / 2 - 10 + 18 * i as i32),
                    label_font.clone(),
                ))
                .map_err(e)?;
            }
            let mut x = (MARGIN + LABEL_W) as i32;
            for t in &row.tiles {
                let img = fit(&t.image, self.tile);
                let ox = x + (self.tile - img.width()) as i32 / 2;
                let oy = y + (self.tile - img.height()) as i32 / 2;
                let element =
                    BitMapElement::<_>::with_ref((ox, oy), img.dimensions(), img.as_raw())
                        .ok_or_else(|| anyhow!("picture buffer size"))?;
                root.draw(&element).map_err(e)?;
                root.draw(&Rectangle::new(
                    [
                        (ox - 1, oy - 1),
                        (ox + img.width() as i32, oy + img.height() as i32),
                    ],
                    BLACK.mix(0.4).stroke_width(1),
                ))
                .map_err(e)?;
                for (i, line) in t.caption.lines().enumerate() {
                    root.draw(&Text::new(
                        line.to_string(),
                        (x, y + self.tile as i32 + 4 + 16 * i as i32),
                        caption_font.clone(),
                    ))
                    .map_err(e)?;
                }
                x += (self.tile + GAP) as i32;
            }
            if let Some((scale, label)) = &row.bar {
                let area = root.clone().shrink(
                    (x as u32 + 4, y as u32),
                    (BAR_W - 8, self.tile + CAPTION_H - 4),
                );
                colour_bar(&area, *scale, label)?;
            }
            y += (self.tile + CAPTION_H + GAP) as i32;
        }
        draw_notes(root, &self.notes, y)
    }
}

/// A white page with `title` in bold, `size` points, at its top left.
fn page<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    size: u32,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {x:?}");
    root.fill(&WHITE).map_err(e)?;
    let font = (FONT, size)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK);
    root.draw(&Text::new(title, (MARGIN as i32, MARGIN as i32), font))
        .map_err(e)
}

/// A vertical colour bar with its value axis and a label.
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    scale: Scale,
    label: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {x:?}");
    let (lo, hi) = scale.range();
    let mut chart = ChartBuilder::on(area)
        .margin_top(12)
        .margin_bottom(8)
        .y_label_area_size(0)
        .right_y_label_area_size(62)
        .caption(label, (FONT, 12))
        .build_cartesian_2d(0.0..1.0, lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| tick_label(*v, hi - lo))
        .label_style((FONT, 11))
        .draw()
        .map_err(e)?;
    let steps = 96;
    chart
        .draw_series((0..steps).map(|i| {
            let a = lo + (hi - lo) * i as f64 / steps as f64;
            let b = lo + (hi - lo) * (i + 1) as f64 / steps as f64;
            Rectangle::new([(0.0, a), (1.0, b)], scale.colour((a + b) / 2.0).filled())
        }))
        .map_err(e)?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, lo), (1.0, hi)],
            BLACK.stroke_width(1),
        )))
        .map_err(e)?;
    Ok(())
}

/// A tick value with as many decimals as a fifth of `span` needs (every
/// tick of an axis alike): 0, 250, 0.50, 1.2e-3.
fn tick_label(v: f64, span: f64) -> String {
    let step = (span / 5.0).abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&step) {
        format!("{v:.1e}")
    } else {
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// One histogram per panel: `counts[n]` at n = 0..counts.len().
pub struct Histogram {
    pub title: String,
    pub counts: Vec<u32>,
}

/// Histograms in a grid, sharing axis labels.
pub struct HistogramFigure {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub panels: Vec<Histogram>,
    pub cols: usize,
}

impl HistogramFigure {
    fn size(&self) -> (u32, u32) {
        let rows = self.panels.len().div_ceil(self.cols.max(1)) as u32;
        (
            self.cols as u32 * 340 + 2 * MARGIN,
            TITLE_H + MARGIN * 2 + rows * 230,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {x:?}");
        root.fill(&WHITE).map_err(e)?;
        let body = root
            .titled(&self.title, (FONT, 22).into_font().style(FontStyle::Bold))
            .map_err(e)?;
        let rows = self.panels.len().div_ceil(self.cols.max(1));
        let cells = body
            .margin(4, MARGIN as i32, MARGIN as i32, MARGIN as i32)
            .split_evenly((rows, self.cols.max(1)));
        for (h, cell) in self.panels.iter().zip(cells.iter()) {
            let n = h.counts.len().max(1) as u32;
            let top = h.counts.iter().copied().max().unwrap_or(0).max(1);
            let mut chart = ChartBuilder::on(cell)
                .caption(&h.title, (FONT, 14))
                .margin(6)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d((0u32..n).into_segmented(), 0u32..top + top / 10 + 1)
                .map_err(e)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .bold_line_style(BLACK.mix(0.15))
                .light_line_style(WHITE.mix(0.0))
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_labels(6)
                .y_labels(5)
                .label_style((FONT, 11))
                .axis_desc_style((FONT, 12))
                .x_label_formatter(&|v| match v {
                    SegmentValue::Exact(x) | SegmentValue::CenterOf(x) => x.to_string(),
                    SegmentValue::Last => String::new(),
                })
                .draw()
                .map_err(e)?;
            chart
                .draw_series(
                    plotters::series::Histogram::vertical(&chart)
                        .style(RGBColor(31, 119, 180).filled())
                        .margin(0)
                        .data(h.counts.iter().enumerate().map(|(i, &c)| (i as u32, c))),
                )
                .map_err(e)?;
        }
        Ok(())
    }
}

/// One line of a [`LineFigure`]: its points in order, and whether each
/// point gets a marker.
pub struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
    pub markers: bool,
}

/// Panels of lines stacked over one x axis, each with its own y axis and
/// legend, and notes under them.
pub struct LineFigure {
    pub title: String,
    pub x_label: String,
    pub panels: Vec<Panel>,
    /// Fixed x range; None fits the data.
    pub x_range: Option<(f64, f64)>,
    /// Vertical marks on every panel: (x, label).
    pub marks: Vec<(f64, String)>,
    pub notes: Vec<String>,
}

/// One panel of a [`LineFigure`].
pub struct Panel {
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range; None fits the data.
    pub y_range: Option<(f64, f64)>,
}

/// Groups of values as dots side by side, each group's mean a bar.
pub struct StripPanel {
    pub title: String,
    pub y_label: String,
    pub groups: Vec<Group>,
    pub y_range: (f64, f64),
}

/// One group of a [`StripPanel`].
pub struct Group {
    pub name: String,
    pub colour: RGBColor,
    pub values: Vec<f64>,
}

/// Strip panels in a grid.
pub struct StripFigure {
    pub title: String,
    pub panels: Vec<StripPanel>,
    pub cols: usize,
    pub notes: Vec<String>,
}

const STRIP_W: u32 = 520;
const STRIP_H: u32 = 360;

impl StripFigure {
    fn size(&self) -> (u32, u32) {
        let cols = self.cols.max(1) as u32;
        let rows = self.panels.len().div_ceil(self.cols.max(1)) as u32;
        let w = cols * STRIP_W + 2 * MARGIN;
        let notes = wrap(&self.notes, note_chars(w)).len() as u32;
        (
            w,
            TITLE_ROW_H + rows * STRIP_H + notes * NOTE_H + 2 * MARGIN,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {x:?}");
        page(root, &self.title, 20)?;
        let rows = self.panels.len().div_ceil(self.cols.max(1)) as u32;
        let (_, body) = root.split_vertically(TITLE_ROW_H);
        let (grid, rest) = body.split_vertically(rows * STRIP_H);
        let cells = grid
            .margin(0, 0, MARGIN as i32, MARGIN as i32)
            .split_evenly((rows as usize, self.cols.max(1)));
        for (panel, cell) in self.panels.iter().zip(cells.iter()) {
            let k = panel.groups.len().max(1);
            let (y0, y1) = panel.y_range;
            let names: Vec<&str> = panel.groups.iter().map(|g| g.name.as_str()).collect();
            let name_of = |v: &f64| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    names
                        .get(i as usize)
                        .map_or(String::new(), |n| n.to_string())
                } else {
                    String::new()
                }
            };
            let y_ticks = |v: &f64| tick_label(*v, y1 - y0);
            let mut chart = ChartBuilder::on(cell)
                .caption(&panel.title, (FONT, 14))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5..(k as f64 - 0.5), y0..y1)
                .map_err(e)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .bold_line_style(BLACK.mix(0.12))
                .light_line_style(WHITE.mix(0.0))
                .x_labels(k + 1)
                .x_label_formatter(&name_of)
                .y_label_formatter(&y_ticks)
                .y_desc(&panel.y_label)
                .label_style((FONT, 11))
                .axis_desc_style((FONT, 12))
                .draw()
                .map_err(e)?;
            for (i, group) in panel.groups.iter().enumerate() {
                let (colour, values) = (group.colour, &group.values);
                // Deterministic spread (golden-ratio steps) so the dots of
                // equal values stay apart.
                let dots = values.iter().enumerate().map(|(j, &v)| {
                    let dx = ((j as f64 * 0.618_034).fract() - 0.5) * 0.5;
                    Circle::new((i as f64 + dx, v), 3, colour.mix(0.7).filled())
                });
                chart.draw_series(dots).map_err(e)?;
                if !values.is_empty() {
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    chart
                        .draw_series(LineSeries::new(
                            [(i as f64 - 0.32, mean), (i as f64 + 0.32, mean)],
                            BLACK.stroke_width(3),
                        ))
                        .map_err(e)?;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("mean {}", tick_label(mean, (y1 - y0) / 10.0)),
                            (i as f64 - 0.32, mean + (y1 - y0) * 0.06),
                            (FONT, 11).into_font().color(&BLACK),
                        )))
                        .map_err(e)?;
                }
            }
        }
        draw_notes(&rest, &self.notes, 6)
    }
}

/// Distinct colours for series and groups (the tableau palette).
pub const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// A square matrix of values in [0, 1] with labelled rows and columns and
/// a colour bar.
pub struct MatrixFigure {
    pub title: String,
    pub labels: Vec<String>,
    pub values: Vec<Vec<f64>>,
    pub bar_label: String,
    pub notes: Vec<String>,
}

/// Wraps notes to lines of at most `chars` characters.
fn wrap(notes: &[String], chars: usize) -> Vec<String> {
    let mut out = Vec::new();
    for note in notes {
        let mut line = String::new();
        for word in note.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > chars {
                out.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push(line);
    }
    out
}

const PLOT_W: u32 = 900;
const PANEL_H: u32 = 440;
const LOWER_PANEL_H: u32 = 280;
const TITLE_ROW_H: u32 = 44;

/// The range of values `v` spans, padded by 8% (a flat one by 1).
fn fitted(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if lo > hi {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 * hi.abs().max(1.0) {
        (lo - 1.0, hi + 1.0)
    } else {
        let pad = (hi - lo) * 0.08;
        (lo - pad, hi + pad)
    }
}

fn draw_notes<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    notes: &[String],
    y: i32,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let font = (FONT, 13).into_font().color(&BLACK.mix(0.8));
    let width = root.dim_in_pixel().0;
    for (i, note) in wrap(notes, note_chars(width)).into_iter().enumerate() {
        root.draw(&Text::new(
            note,
            (MARGIN as i32, y + i as i32 * NOTE_H as i32),
            font.clone(),
        ))
        .map_err(|x| anyhow!("drawing: {x:?}"))?;
    }
    Ok(())
}

fn note_chars(width: u32) -> usize {
    ((width - 2 * MARGIN) / 7).max(40) as usize
}

impl LineFigure {
    fn panels_h(&self) -> u32 {
        PANEL_H + LOWER_PANEL_H * self.panels.len().saturating_sub(1) as u32
    }

    fn size(&self) -> (u32, u32) {
        let notes = wrap(&self.notes, note_chars(PLOT_W)).len() as u32;
        (
            PLOT_W,
            TITLE_ROW_H + self.panels_h() + notes * NOTE_H + MARGIN,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {x:?}");
        page(root, &self.title, 20)?;
        let (_, body) = root.split_vertically(TITLE_ROW_H);
        let (mut plots, rest) = body.split_vertically(self.panels_h());
        let xs = self.panels.iter().flat_map(|p| &p.series);
        let (x0, x1) = self
            .x_range
            .unwrap_or_else(|| fitted(xs.flat_map(|s| s.points.iter().map(|p| p.0))));
        for (i, panel) in self.panels.iter().enumerate() {
            let last = i + 1 == self.panels.len();
            let h = if i == 0 { PANEL_H } else { LOWER_PANEL_H };
            let (area, below) =
                plots.split_vertically(if last { plots.dim_in_pixel().1 } else { h });
            plots = below;
            let (y0, y1) = panel.y_range.unwrap_or_else(|| {
                fitted(
                    panel
                        .series
                        .iter()
                        .flat_map(|s| s.points.iter().map(|p| p.1)),
                )
            });
            let mut chart = ChartBuilder::on(&area)
                .margin(MARGIN)
                .x_label_area_size(if last { 44 } else { 8 })
                .y_label_area_size(80)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(e)?;
            let y_ticks = |v: &f64| tick_label(*v, y1 - y0);
            let x_ticks = |v: &f64| tick_label(*v, x1 - x0);
            let mut mesh = chart.configure_mesh();
            mesh.bold_line_style(BLACK.mix(0.12))
                .light_line_style(WHITE.mix(0.0))
                .y_desc(&panel.y_label)
                .y_label_formatter(&y_ticks)
                .x_label_formatter(&x_ticks)
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 14));
            if last {
                mesh.x_desc(&self.x_label);
            } else {
                mesh.x_labels(0);
            }
            mesh.draw().map_err(e)?;
            for (x, label) in &self.marks {
                chart
                    .draw_series(LineSeries::new(
                        [(*x, y0), (*x, y1)],
                        BLACK.mix(0.5).stroke_width(1),
                    ))
                    .map_err(e)?;
                if i == 0 {
                    // Labels in the right half end at their mark, so none
                    // runs off the plot.
                    let right = *x > (x0 + x1) / 2.0;
                    let h = if right { HPos::Right } else { HPos::Left };
                    let style = (FONT, 12)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(h, VPos::Top));
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!(" {label} "),
                            (*x, y1),
                            style,
                        )))
                        .map_err(e)?;
                }
            }
            for s in &panel.series {
                let colour = s.colour;
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        colour.stroke_width(2),
                    ))
                    .map_err(e)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                if s.markers {
                    chart
                        .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                        .map_err(e)?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 12))
                .draw()
                .map_err(e)?;
        }
        draw_notes(&rest, &self.notes, 4)
    }
}

impl MatrixFigure {
    const CELL_AREA: u32 = 620;

    fn size(&self) -> (u32, u32) {
        let w = LABEL_W + Self::CELL_AREA + BAR_W + 2 * MARGIN + 40;
        let notes = wrap(&self.notes, note_chars(w)).len() as u32;
        (
            w,
            TITLE_H + Self::CELL_AREA + 60 + notes * NOTE_H + 2 * MARGIN,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {x:?}");
        page(root, &self.title, 20)?;
        let n = self.labels.len().max(1);
        let cell = (Self::CELL_AREA / n as u32).max(1) as i32;
        let (ox, oy) = ((MARGIN + LABEL_W) as i32, (MARGIN + TITLE_H) as i32);
        let font = (FONT, 12).into_font().color(&BLACK);
        let scale = Scale::Viridis { max: 1.0 };
        for (i, row) in self.values.iter().enumerate() {
            let y = oy + i as i32 * cell;
            root.draw(&Text::new(
                self.labels.get(i).cloned().unwrap_or_default(),
                (MARGIN as i32, y + cell / 2 - 6),
                font.clone(),
            ))
            .map_err(e)?;
            for (j, &v) in row.iter().enumerate() {
                let x = ox + j as i32 * cell;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    scale.colour(v).filled(),
                ))
                .map_err(e)?;
                if cell >= 34 {
                    let ink = if v > 0.6 { BLACK } else { WHITE };
                    root.draw(&Text::new(
                        format!("{v:.2}"),
                        (x + cell / 2 - 12, y + cell / 2 - 6),
                        (FONT, 11).into_font().color(&ink),
                    ))
                    .map_err(e)?;
                }
            }
        }
        let bottom = oy + n as i32 * cell;
        for j in 0..n {
            root.draw(&Text::new(
                (j + 1).to_string(),
                (ox + j as i32 * cell + cell / 2 - 4, bottom + 4),
                font.clone(),
            ))
            .map_err(e)?;
        }
        let bar = root.clone().shrink(
            ((ox + n as i32 * cell) as u32 + 16, oy as u32),
            (BAR_W, (n as i32 * cell) as u32),
        );
        colour_bar(&bar, scale, &self.bar_label)?;
        draw_notes(root, &self.notes, bottom + 30)
    }
}

/// The figure as a picture (what the PNG holds).
pub fn render(figure: &Figure) -> anyhow::Result<RgbImage> {
    fonts()?;
    let (w, h) = figure.size();
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let root = Typeset(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
        figure.draw(&root)?;
        root.present().map_err(|x| anyhow!("drawing: {x:?}"))?;
    }
    RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("figure buffer size"))
}

/// Writes the figure as SVG (text as text, pictures embedded as PNG).
pub fn write_svg(figure: &Figure, path: &Path) -> anyhow::Result<()> {
    fonts()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let (w, h) = figure.size();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
        figure.draw(&root)?;
        root.present()
            .map_err(|x| anyhow!("{}: {x:?}", path.display()))?;
    }
    // plotters-svg labels embedded pictures `data:png`, which is no media
    // type: viewers need `data:image/png`.
    let text = text.replace("href=\"data:png;base64,", "href=\"data:image/png;base64,");
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `<stem>.png` and `<stem>.svg`; returns the picture.
pub fn write_both(figure: &Figure, stem: &Path) -> anyhow::Result<RgbImage> {
    let img = render(figure)?;
    let png = stem.with_extension("png");
    img.save(&png)
        .with_context(|| format!("cannot write {}", png.display()))?;
    write_svg(figure, &stem.with_extension("svg"))?;
    Ok(img)
}

/// The figures this module draws.
pub enum Figure {
    Grid(GridFigure),
    Histograms(HistogramFigure),
    Lines(LineFigure),
    Matrix(MatrixFigure),
    Strips(StripFigure),
}

impl Figure {
    fn size(&self) -> (u32, u32) {
        match self {
            Figure::Grid(g) => g.size(),
            Figure::Histograms(h) => h.size(),
            Figure::Lines(l) => l.size(),
            Figure::Matrix(m) => m.size(),
            Figure::Strips(f) => f.size(),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        match self {
            Figure::Grid(g) => g.draw(root),
            Figure::Histograms(h) => h.draw(root),
            Figure::Lines(l) => l.draw(root),
            Figure::Matrix(m) => m.draw(root),
            Figure::Strips(f) => f.draw(root),
        }
    }
}

/// `img` scaled to fit a `side` x `side` square, keeping its aspect
/// (nearest neighbour when enlarging, so feature-map cells stay sharp).
fn fit(img: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = side as f64 / w.max(h).max(1) as f64;
    let (nw, nh) = (
        ((w as f64 * s).round() as u32).max(1),
        ((h as f64 * s).round() as u32).max(1),
    );
    let filter = if s >= 1.0 {
        image::imageops::FilterType::Nearest
    } else {
        image::imageops::FilterType::Triangle
    };
    image::imageops::resize(img, nw, nh, filter)
}

use typeset::Typeset;

mod typeset {
    use anyhow::anyhow;
    use plotters_backend::text_anchor::{HPos, VPos};
    use plotters_backend::{
        BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend,
        DrawingErrorKind, FontStyle,
    };

    /// A bitmap backend whose text is laid out on the font's baseline with its
    /// side bearings and kerning (plotters' own rasteriser drops the bearings
    /// and places small glyphs such as '.' by their top), so labels read as
    /// type does. Everything else goes to the inner backend.
    pub struct Typeset<B>(pub B);

    pub(super) struct Layout {
        pub(super) glyphs: Vec<ab_glyph::Glyph>,
        pub(super) width: i32,
        pub(super) height: i32,
    }

    pub(super) fn layout(
        text: &str,
        size: f64,
        bold: bool,
    ) -> anyhow::Result<(ab_glyph::FontRef<'static>, Layout)> {
        use ab_glyph::{Font, FontRef, ScaleFont};
        let bytes = if bold {
            dejavu::sans::bold()
        } else {
            dejavu::sans::regular()
        };
        let font = FontRef::try_from_slice(bytes).map_err(|e| anyhow!("font: {e}"))?;
        let scale = ab_glyph::PxScale::from(size as f32);
        let scaled = font.as_scaled(scale);
        let mut caret = 0.0f32;
        let mut prev = None;
        let mut glyphs = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            glyphs.push(id.with_scale_and_position(scale, ab_glyph::point(caret, scaled.ascent())));
            caret += scaled.h_advance(id);
            prev = Some(id);
        }
        let height = (scaled.ascent() - scaled.descent()).ceil() as i32;
        Ok((
            font,
            Layout {
                glyphs,
                width: caret.ceil() as i32,
                height,
            },
        ))
    }

    fn font_error<E: std::error::Error + Send + Sync>(e: anyhow::Error) -> DrawingErrorKind<E> {
        DrawingErrorKind::FontError(e.into())
    }

    impl<B: DrawingBackend> DrawingBackend for Typeset<B> {
        type ErrorType = B::ErrorType;

        fn get_size(&self) -> (u32, u32) {
            self.0.get_size()
        }

        fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            self.0.ensure_prepared()
        }

        fn present(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            self.0.present()
        }

        fn draw_pixel(
            &mut self,
            point: BackendCoord,
            color: BackendColor,
        ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            self.0.draw_pixel(point, color)
        }

        fn draw_line<S: BackendStyle>(
            &mut self,
            from: BackendCoord,
            to: BackendCoord,
            style: &S,
        ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            self.0.draw_line(from, to, style)
        }

        fn draw_rect<S: BackendStyle>(
            &mut self,
            upper_left: BackendCoord,
            bottom_right: BackendCoord,
            style: &S,
            fill: bool,
        ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            self.0.draw_rect(upper_left, bottom_right, style, fill)
        }

        fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            path: I,
            style: &S,
        ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            self.0.draw_path(path, style)
        }

        fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            vert: I,
            style: &S,
        ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            self.0.fill_polygon(vert, style)
        }

        fn blit_bitmap(
            &mut self,
            pos: BackendCoord,
            size: (u32, u32),
            src: &[u8],
        ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            self.0.blit_bitmap(pos, size, src)
        }

        fn estimate_text_size<S: BackendTextStyle>(
            &self,
            text: &str,
            style: &S,
        ) -> Result<(u32, u32), DrawingErrorKind<B::ErrorType>> {
            let bold = matches!(style.style(), FontStyle::Bold);
            let (_, l) = layout(text, style.size(), bold).map_err(font_error)?;
            Ok((l.width.max(0) as u32, l.height.max(0) as u32))
        }

        fn draw_text<S: BackendTextStyle>(
            &mut self,
            text: &str,
            style: &S,
            pos: BackendCoord,
        ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
            use ab_glyph::Font;
            let color = style.color();
            if color.alpha == 0.0 {
                return Ok(());
            }
            let bold = matches!(style.style(), FontStyle::Bold);
            let (font, l) = layout(text, style.size(), bold).map_err(font_error)?;
            let dx = match style.anchor().h_pos {
                HPos::Left => 0,
                HPos::Right => -l.width,
                HPos::Center => -l.width / 2,
            };
            let dy = match style.anchor().v_pos {
                VPos::Top => 0,
                VPos::Center => -l.height / 2,
                VPos::Bottom => -l.height,
            };
            let transform = style.transform();
            let (w, h) = self.0.get_size();
            let mut pixels = Vec::new();
            for g in l.glyphs {
                if let Some(outline) = font.outline_glyph(g) {
                    let b = outline.px_bounds();
                    outline.draw(|x, y, coverage| {
                        pixels.push((
                            b.min.x as i32 + x as i32,
                            b.min.y as i32 + y as i32,
                            coverage,
                        ));
                    });
                }
            }
            for (x, y, coverage) in pixels {
                let (x, y) = transform.transform(x + dx, y + dy);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if coverage > 0.0 && x >= 0 && y >= 0 && x < w as i32 && y < h as i32 {
                    self.0.draw_pixel(
                        (x, y),
                        BackendColor {
                            alpha: color.alpha * f64::from(coverage.min(1.0)),
                            rgb: color.rgb,
                        },
                    )?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_of_one_axis_share_their_decimals() {
        assert_eq!(tick_label(1.0, 2.0), "1.0");
        assert_eq!(tick_label(0.5, 2.0), "0.5");
        assert_eq!(tick_label(-0.5, 2.0), "-0.5");
        assert_eq!(tick_label(250.0, 300.0), "250");
        assert_eq!(tick_label(0.0, 300.0), "0");
        assert_eq!(tick_label(1.5e-4, 3e-4), "1.5e-4");
    }

    #[test]
    fn notes_wrap_to_the_figure() {
        let f = GridFigure {
            title: String::new(),
            rows: vec![],
            tile: 100,
            notes: vec!["word ".repeat(200)],
        };
        let lines = f.note_lines(640);
        assert!(lines.len() > 5, "{lines:?}");
        assert!(
            lines
                .iter()
                .all(|l| l.len() <= (640 - 2 * MARGIN as usize) / 7)
        );
        assert_eq!(lines.join(" ").split_whitespace().count(), 200);
    }

    #[test]
    fn text_is_laid_out_on_one_baseline_with_its_bearings() {
        // A period sits on the baseline, like the digits beside it.
        let (font, l) = typeset::layout("1.5", 20.0, false).unwrap();
        use ab_glyph::Font;
        let bottoms: Vec<f32> = l
            .glyphs
            .iter()
            .filter_map(|g| font.outline_glyph(g.clone()))
            .map(|o| o.px_bounds().max.y)
            .collect();
        assert_eq!(bottoms.len(), 3);
        assert!((bottoms[0] - bottoms[1]).abs() <= 1.0, "{bottoms:?}");
        assert!(l.width > 20 && l.height >= 20);
    }
}
