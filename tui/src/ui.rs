//! Drawing: one layout function shared by drawing and mouse hit-testing.

use crate::app::{App, Focus, LayerRow};
use crate::pictures::{PAGE, Panel, Pictures, Shown};
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Borders, Clear, Gauge, List, ListItem, ListState, Paragraph,
    Sparkline, Wrap,
};

/// Where each panel is on a screen of a given size. A hidden panel has an
/// empty rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Areas {
    pub input: Rect,
    pub layers: Rect,
    pub map: Rect,
    pub grid: Rect,
    pub reconstructions: Rect,
    pub histogram: Rect,
    pub maximize: Rect,
    pub status: Rect,
    /// Set when the screen is too small for anything useful.
    pub too_small: bool,
}

/// The smallest screen the TUI draws on.
pub const MIN_SIZE: (u16, u16) = (60, 16);

/// Below this, one picture panel at a time (the focused one; Tab moves).
pub const COMPACT_BELOW: (u16, u16) = (110, 32);

/// Which panels show, given the screen, the focus and the zoom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub focus: Focus,
    pub zoom: bool,
}

impl View {
    pub fn of(app: &App) -> View {
        View {
            focus: app.focus,
            zoom: app.zoom,
        }
    }
}

fn split(area: Rect, direction: Direction, constraints: &[Constraint]) -> Vec<Rect> {
    Layout::default()
        .direction(direction)
        .constraints(constraints.to_vec())
        .split(area)
        .to_vec()
}

pub fn layout(area: Rect, view: View) -> Areas {
    let mut a = Areas::default();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        a.too_small = true;
        return a;
    }
    let rows = split(
        area,
        Direction::Vertical,
        &[Constraint::Min(1), Constraint::Length(2)],
    );
    a.status = rows[1];
    let body = rows[0];
    if view.zoom {
        match view.focus {
            Focus::Layers => a.layers = body,
            Focus::Maps => a.grid = body,
            Focus::Activation => a.map = body,
            Focus::Reconstructions => a.reconstructions = body,
            Focus::Maximize => a.maximize = body,
        }
        return a;
    }
    if area.width < COMPACT_BELOW.0 || area.height < COMPACT_BELOW.1 {
        // The input and the layer list, then the focused picture panel
        // (the reconstructions while the list has focus).
        let parts = split(
            body,
            Direction::Vertical,
            &[Constraint::Percentage(45), Constraint::Percentage(55)],
        );
        let top = split(
            parts[0],
            Direction::Horizontal,
            &[Constraint::Percentage(40), Constraint::Percentage(60)],
        );
        a.input = top[0];
        a.layers = top[1];
        match view.focus {
            Focus::Maps => a.grid = parts[1],
            Focus::Activation => a.map = parts[1],
            Focus::Layers | Focus::Reconstructions => a.reconstructions = parts[1],
            Focus::Maximize => a.maximize = parts[1],
        }
        return a;
    }
    let rows = split(
        body,
        Direction::Vertical,
        &[
            Constraint::Percentage(39),
            Constraint::Percentage(38),
            Constraint::Min(6),
        ],
    );
    let top = split(
        rows[0],
        Direction::Horizontal,
        &[
            Constraint::Percentage(30),
            Constraint::Percentage(34),
            Constraint::Percentage(36),
        ],
    );
    let middle = split(
        rows[1],
        Direction::Horizontal,
        &[Constraint::Percentage(55), Constraint::Percentage(45)],
    );
    let bottom = split(
        rows[2],
        Direction::Horizontal,
        &[Constraint::Percentage(45), Constraint::Percentage(55)],
    );
    a.input = top[0];
    a.layers = top[1];
    a.map = top[2];
    a.grid = middle[0];
    a.reconstructions = middle[1];
    a.histogram = bottom[0];
    a.maximize = bottom[1];
    a
}

/// Panel frames in the terminal's own foreground, so they read on light
/// and dark themes alike: the focused one bold, the others plain with dim
/// borders.
fn block(title: String, focused: bool) -> Block<'static> {
    let (border, text) = if focused {
        (
            Style::default().add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    } else {
        (
            Style::default().add_modifier(Modifier::DIM),
            Style::default(),
        )
    };
    Block::default()
        .borders(Borders::ALL)
        .border_style(border)
        .title(Span::styled(title, text))
}

const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

/// What is where on screen, for the mouse: the panels and the pictures of
/// the activation map and the feature grid as drawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hits {
    pub areas: Areas,
    pub map: Option<Rect>,
    pub grid: Option<Rect>,
}

fn inside(r: Rect, col: u16, row: u16) -> bool {
    col >= r.x && row >= r.y && col < r.x + r.width && row < r.y + r.height
}

/// The grid cell of the activation map at terminal position (col, row), if
/// the position is on the map as drawn (`map`: the picture's cells).
pub fn map_hit(app: &App, map: Option<Rect>, col: u16, row: u16) -> Option<(u32, u32)> {
    let layer = app.current_layer()?;
    let r = map.filter(|r| inside(*r, col, row))?;
    let x = u32::from(col - r.x) * layer.width / u32::from(r.width.max(1));
    let y = u32::from(row - r.y) * layer.height / u32::from(r.height.max(1));
    Some((
        y.min(layer.height.saturating_sub(1)),
        x.min(layer.width.saturating_sub(1)),
    ))
}

/// The feature whose tile of the thumbnail grid is at (col, row).
pub fn grid_hit(app: &App, grid: Option<Rect>, col: u16, row: u16) -> Option<u32> {
    let depth = app.current_layer()?.channels;
    let r = grid.filter(|r| inside(*r, col, row))?;
    let page = app.feature / PAGE;
    let n = depth.saturating_sub(page * PAGE).clamp(1, PAGE);
    let cols = f64::from(n).sqrt().ceil().max(1.0) as u32;
    let rows = n.div_ceil(cols);
    let c = u32::from(col - r.x) * cols / u32::from(r.width.max(1));
    let k = u32::from(row - r.y) * rows / u32::from(r.height.max(1));
    let feature = page * PAGE + k * cols + c;
    (k * cols + c < n && feature < depth).then_some(feature)
}

/// The conv layer (index) on the layer list's row at `row`.
pub fn layer_hit(app: &App, list: Rect, col: u16, row: u16) -> Option<usize> {
    let inner = block(String::new(), false).inner(list);
    if !inside(inner, col, row) {
        return None;
    }
    let rows = app.layer_rows();
    let offset = list_offset(selected_row(app, &rows), usize::from(inner.height));
    match rows.get(offset + usize::from(row - inner.y)) {
        Some(LayerRow::Layer(i)) => Some(*i),
        _ => None,
    }
}

/// The row of the selected layer (the first row when it is filtered out).
fn selected_row(app: &App, rows: &[LayerRow]) -> usize {
    rows.iter()
        .position(|r| *r == LayerRow::Layer(app.layer))
        .unwrap_or(0)
}

pub fn draw(f: &mut Frame, app: &App, pictures: &mut Pictures, tick: usize) {
    let areas = layout(f.area(), View::of(app));
    if areas.too_small {
        let (w, h) = (f.area().width, f.area().height);
        f.render_widget(
            Paragraph::new(format!(
                "fovea-tui needs at least {}x{} cells; this terminal is {w}x{h}. Enlarge it or press q.",
                MIN_SIZE.0, MIN_SIZE.1
            ))
            .wrap(Wrap { trim: true }),
            f.area(),
        );
        return;
    }
    let overlay = app.help || app.prompt.is_some();
    let visible = |r: Rect| r.width >= 3 && r.height >= 3;
    if visible(areas.input) {
        input_panel(f, app, pictures, areas.input, overlay);
    }
    if visible(areas.layers) {
        layers_panel(f, app, areas.layers);
    }
    if visible(areas.map) {
        map_panel(f, app, pictures, areas.map, overlay);
    }
    if visible(areas.grid) {
        grid_panel(f, app, pictures, areas.grid, overlay);
    }
    if visible(areas.reconstructions) {
        reconstructions_panel(f, app, pictures, areas.reconstructions, overlay);
    }
    if visible(areas.histogram) {
        histogram_panel(f, app, areas.histogram);
    }
    if visible(areas.maximize) {
        maximize_panel(f, app, pictures, areas.maximize, overlay);
    }
    status_bar(f, app, areas.status, tick);
    if app.help {
        help(f);
    }
    if let Some(p) = &app.prompt {
        let area = centered(f.area(), 70, 5);
        f.render_widget(Clear, area);
        let text = vec![
            Line::from(format!("> {}_", p.text)),
            Line::from(Span::styled(
                p.hint.clone(),
                Style::default().add_modifier(Modifier::DIM),
            )),
        ];
        f.render_widget(
            Paragraph::new(text).block(block(" open image ".into(), true)),
            area,
        );
    }
}

/// A framed panel holding `panel`'s picture (or `empty`, dimmed, when it
/// has none); the title says when the picture is being updated.
#[allow(clippy::too_many_arguments)]
fn picture_panel(
    f: &mut Frame,
    pictures: &mut Pictures,
    panel: Panel,
    area: Rect,
    title: String,
    focused: bool,
    overlay: bool,
    empty: &str,
) {
    let inner = block(String::new(), focused).inner(area);
    let shown = if overlay {
        Shown::Nothing
    } else {
        pictures.draw(panel, inner, f.buffer_mut())
    };
    let title = match shown {
        Shown::Updating => format!("{title}· updating "),
        _ => title,
    };
    f.render_widget(block(title, focused), area);
    if shown == Shown::Nothing && !overlay {
        f.render_widget(
            Paragraph::new(empty.to_string())
                .style(Style::default().add_modifier(Modifier::DIM))
                .wrap(Wrap { trim: true }),
            inner,
        );
    }
}

fn input_panel(f: &mut Frame, app: &App, pictures: &mut Pictures, area: Rect, overlay: bool) {
    let name = app
        .image
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|f| f.to_string_lossy().into_owned());
    let title = match (name, app.fov) {
        (Some(n), Some(b)) => format!(" {n} · FOV x {}..{} y {}..{} ", b.x0, b.x1, b.y0, b.y1),
        (Some(n), None) => format!(" {n} "),
        _ => " input ".into(),
    };
    let empty = if app.recording.is_none() {
        "no image yet: o opens one"
    } else {
        "…"
    };
    picture_panel(
        f,
        pictures,
        Panel::Input,
        area,
        title,
        false,
        overlay,
        empty,
    );
}

/// The first row of the layer list shown in `rows` rows with `selected`
/// selected (the selection stays in view at the bottom edge).
pub fn list_offset(selected: usize, rows: usize) -> usize {
    selected.saturating_sub(rows.saturating_sub(1))
}

fn layers_panel(f: &mut Frame, app: &App, area: Rect) {
    // Number, name, shape, FOV, fraction active.
    let fractions: Vec<f32> = app
        .recording
        .as_ref()
        .map(|r| r.activity.iter().map(|a| a.fraction_active).collect())
        .unwrap_or_default();
    let convs = app.convs();
    // With B pinned: the fraction of ReLUs in the same state in the open
    // image and B, inside the selected neuron's FOV tree.
    let agreement = |number: u32| {
        let p = app.patterns.as_ref()?;
        p.layers
            .iter()
            .find(|l| l.layer == number)
            .map(|l| format!(" {:.2}", l.mask_agreement))
    };
    let rows = app.layer_rows();
    // Under its group's heading a module path shows the rest of the path
    // (`conv.0.2` under `features.2`); block names show whole.
    let grouped = rows.iter().any(|r| matches!(r, LayerRow::Group(_)));
    let short_name = |name: &str| -> String {
        let group = crate::app::layer_group(name);
        match name.strip_prefix(group).and_then(|r| r.strip_prefix('.')) {
            Some(rest) if grouped && !group.is_empty() => rest.to_string(),
            _ => name.to_string(),
        }
    };
    let name_width = rows
        .iter()
        .filter_map(|r| match r {
            LayerRow::Layer(i) => convs.get(*i).map(|l| short_name(&l.name).chars().count()),
            LayerRow::Group(_) => None,
        })
        .max()
        .unwrap_or(0)
        .clamp(7, 24);
    let items: Vec<ListItem> = rows
        .iter()
        .map(|row| {
            let i = match row {
                LayerRow::Group(name) => {
                    return ListItem::new(Line::styled(
                        format!("── {name}"),
                        Style::default().add_modifier(Modifier::DIM),
                    ));
                }
                LayerRow::Layer(i) => *i,
            };
            let l = convs[i];
            let frac = fractions
                .get(i)
                .map(|f| format!("{f:.2}"))
                .unwrap_or_else(|| "-".into());
            let same = if app.pinned.is_some() {
                agreement(l.number).unwrap_or_else(|| "    ".into())
            } else {
                String::new()
            };
            ListItem::new(format!(
                "{:>2} {:<name_width$} {:>11} {:>3} {frac}{same}",
                l.number,
                short_name(&l.name),
                format!("{}x{}x{}", l.channels, l.height, l.width),
                l.fov
            ))
        })
        .collect();
    let title = match (&app.pinned, &app.patterns) {
        (None, _) if app.filtering || !app.layer_filter.is_empty() => format!(
            " layers /{}{} ({} of {}) ",
            app.layer_filter,
            if app.filtering { "_" } else { "" },
            app.visible_layers().len(),
            convs.len()
        ),
        (None, _) => " layers (j/k, / filters): shape, FOV, active ".to_string(),
        (Some(_), Some(p)) => {
            let same = p.neuron.as_ref().is_some_and(|n| n.same_linear_filter);
            format!(
                " layers: shape, FOV, active, =B in FOV tree{} ",
                if same { " (same filter)" } else { "" }
            )
        }
        (Some(pin), None) => format!(
            " layers: shape, FOV, active · B = {} ",
            pin.path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into())
        ),
    };
    let mut b = block(title, app.focus == Focus::Layers);
    let shown = usize::from(b.inner(area).height);
    let selected = selected_row(app, &rows);
    let offset = list_offset(selected, shown);
    // Where rows are out of view, say how many and where.
    if rows.len() > shown {
        let above = offset;
        let below = rows.len().saturating_sub(offset + shown);
        b = b.title_bottom(Line::from(format!(
            " {}{}{} of {} ",
            if above > 0 {
                format!("↑{above} ")
            } else {
                String::new()
            },
            if below > 0 {
                format!("↓{below} ")
            } else {
                String::new()
            },
            app.layer + 1,
            convs.len()
        )));
    } else if let Some(stop) = app
        .model
        .as_ref()
        .map(|m| m.probe_stop.as_str())
        .filter(|s| !s.is_empty())
    {
        // Where the probe-able layers end (the whole line: fovea model).
        let room = usize::from(area.width.saturating_sub(6));
        let text: String = if stop.chars().count() > room {
            let cut: String = stop.chars().take(room.saturating_sub(1)).collect();
            format!("{cut}…")
        } else {
            stop.to_string()
        };
        b = b.title_bottom(Line::from(Span::styled(
            format!(" {text} "),
            Style::default().add_modifier(Modifier::DIM),
        )));
    }
    let mut state = ListState::default()
        .with_selected(rows.get(selected).map(|_| selected))
        .with_offset(offset);
    let list = List::new(items)
        .block(b)
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD))
        .highlight_symbol("> ");
    f.render_stateful_widget(list, area, &mut state);
}

fn map_panel(f: &mut Frame, app: &App, pictures: &mut Pictures, area: Rect, overlay: bool) {
    let lname = app
        .current_layer()
        .map(|l| format!("{} {}", l.number, l.name))
        .unwrap_or_default();
    let act = app
        .reconstructions
        .first()
        .map(|r| format!(" = {:.3}", r.activation))
        .unwrap_or_default();
    // How far the input can move before the neuron's configuration
    // changes, along its gradient and a random direction.
    let radius = app
        .radius
        .map(|r| {
            let side = |(back, fwd): (Option<f64>, Option<f64>)| {
                let t = |v: Option<f64>| match v {
                    None => "∞".to_string(),
                    Some(0.0) => "0".into(),
                    Some(v) => format!("{:.0e}", v.abs()),
                };
                format!("-{}+{}", t(back), t(fwd))
            };
            let ties = if r.on_boundary > 0 {
                format!(" {} ties", r.on_boundary)
            } else {
                String::new()
            };
            format!(
                "· region ∇{} rnd{}{ties} ",
                side(r.gradient),
                side(r.random)
            )
        })
        .unwrap_or_default();
    let title = format!(
        " {lname} f{} @ ({},{}){act} {radius}",
        app.feature, app.cursor.0, app.cursor.1
    );
    picture_panel(
        f,
        pictures,
        Panel::Map,
        area,
        title,
        app.focus == Focus::Activation,
        overlay,
        "…",
    );
}

fn grid_panel(f: &mut Frame, app: &App, pictures: &mut Pictures, area: Rect, overlay: bool) {
    let depth = app.current_layer().map_or(0, |l| l.channels);
    let page = app.feature / PAGE;
    // The layer's pool, convolution and activation, when the model says.
    let geometry = app
        .current_layer()
        .map(fovea_client::layers::layer_text)
        .filter(|t| !t.is_empty())
        .map(|t| format!("· {t} "))
        .unwrap_or_default();
    let title = format!(
        " feature maps {}..{} of {depth} (h/l) {geometry}",
        page * PAGE,
        ((page + 1) * PAGE).min(depth)
    );
    picture_panel(
        f,
        pictures,
        Panel::Grid,
        area,
        title,
        app.focus == Focus::Maps,
        overlay,
        "…",
    );
}

fn reconstructions_panel(
    f: &mut Frame,
    app: &App,
    pictures: &mut Pictures,
    area: Rect,
    overlay: bool,
) {
    let inactive = app.reconstructions.first().is_some_and(|r| r.inactive);
    let title = if app.show_patches {
        format!(
            " strongest images in the scan for f{} (1-9 open one, p back) ",
            app.feature
        )
    } else if inactive {
        " reconstructions of an inactive neuron (its ReLU is off here; they start at its pre-activation); t jumps to the strongest ".to_string()
    } else {
        format!(" reconstructions · seed {} (r; p: scan) ", app.seed)
    };
    let empty = if app.show_patches && app.patches.is_empty() {
        "no scan results for this feature: scan a folder with `fovea scan DIR --out scan.json`, then start fovea-tui (or fovead) with --scan scan.json"
    } else {
        "…"
    };
    picture_panel(
        f,
        pictures,
        Panel::Reconstructions,
        area,
        title,
        app.focus == Focus::Reconstructions,
        overlay,
        empty,
    );
}

/// Histogram of active features per location (fig. 6) for the layer.
fn histogram_panel(f: &mut Frame, app: &App, area: Rect) {
    let hb = block(" active features per location ".into(), false);
    let hinner = hb.inner(area);
    f.render_widget(hb, area);
    let Some(s) = app.stats.as_ref().and_then(|s| s.layers.get(app.layer)) else {
        return;
    };
    let bars = (hinner.width as usize / 2).clamp(1, 64);
    let per = s.histogram.len().div_ceil(bars).max(1);
    let grouped: Vec<Bar> = s
        .histogram
        .chunks(per)
        .map(|c| {
            Bar::default()
                .value(c.iter().map(|&v| v as u64).sum())
                .text_value(String::new())
        })
        .collect();
    let chart = BarChart::default()
        .data(BarGroup::default().bars(&grouped))
        .bar_width(1)
        .bar_gap(1)
        .bar_style(Style::default().fg(Color::Cyan));
    let parts = split(
        hinner,
        Direction::Vertical,
        &[
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1),
        ],
    );
    f.render_widget(
        Paragraph::new(format!(
            "0 {:>w$}",
            format!("{} active features", s.features),
            w = (grouped.len() * 2).saturating_sub(2).max(1)
        )),
        parts[2],
    );
    f.render_widget(
        Paragraph::new(format!(
            "layer {}: {} locations, {:.0}% of units active; bars: locations by active features",
            s.layer,
            s.locations,
            100.0 * s.fraction_active
        )),
        parts[0],
    );
    f.render_widget(chart, parts[1]);
}

/// Maximization: gauge with the time left, objective per start, previews.
fn maximize_panel(f: &mut Frame, app: &App, pictures: &mut Pictures, area: Rect, overlay: bool) {
    let mb = block(
        " maximize (m, x cancels) ".into(),
        app.focus == Focus::Maximize,
    );
    let minner = mb.inner(area);
    f.render_widget(mb, area);
    let starts = app.max.history.len().max(1) as u16;
    let parts = split(
        minner,
        Direction::Vertical,
        &[
            Constraint::Length(1),
            Constraint::Length(starts.min(4)),
            Constraint::Min(1),
        ],
    );
    let ratio = if app.max.total > 0 {
        app.max.step as f64 / app.max.total as f64
    } else {
        0.0
    };
    let eta = app
        .max
        .eta(std::time::Instant::now())
        .map(|d| format!(", about {}s left", d.as_secs().max(1)))
        .unwrap_or_default();
    let label = match (app.max.running, app.max.neuron) {
        (true, Some((l, f_, y, x))) if app.max.subject.is_none() => format!(
            "layer {l} f{f_} ({y},{x}): step {}/{}{eta}",
            app.max.step, app.max.total
        ),
        (true, Some(_)) => format!(
            "{}: step {}/{}{eta}",
            app.max.subject.as_deref().unwrap_or("class"),
            app.max.step,
            app.max.total
        ),
        (false, Some(_)) if app.max.result.is_some() => "done".to_string(),
        (false, Some(_)) => "stopped".to_string(),
        _ => "m maximizes the selected neuron (on the maps: its channel), c the image's top class"
            .to_string(),
    };
    f.render_widget(
        Gauge::default()
            .ratio(ratio.clamp(0.0, 1.0))
            .label(label)
            .gauge_style(Style::default().fg(Color::Green)),
        parts[0],
    );
    let lines = split(
        parts[1],
        Direction::Vertical,
        &vec![Constraint::Length(1); starts.min(4) as usize],
    );
    for (i, h) in app.max.history.iter().take(4).enumerate() {
        let row = split(
            lines[i],
            Direction::Horizontal,
            &[Constraint::Length(20), Constraint::Min(1)],
        );
        f.render_widget(
            Paragraph::new(format!(
                "start {} {:>9.1}",
                i + 1,
                h.last().copied().unwrap_or(0.0)
            )),
            row[0],
        );
        let min = h.iter().copied().fold(f32::INFINITY, f32::min);
        let data: Vec<u64> = h.iter().map(|v| ((v - min) * 100.0) as u64).collect();
        let tail = data.len().saturating_sub(row[1].width as usize);
        f.render_widget(
            Sparkline::default()
                .data(&data[tail..])
                .style(Style::default().fg(Color::Green)),
            row[1],
        );
    }
    if !overlay && parts[2].height > 0 && parts[2].width > 0 {
        pictures.draw(Panel::Maximize, parts[2], f.buffer_mut());
    }
}

fn status_bar(f: &mut Frame, app: &App, area: Rect, tick: usize) {
    let spin = if app.busy > 0 { SPINNER[tick % 4] } else { ' ' };
    let provider = app
        .model
        .as_ref()
        .map(fovea_client::runtime_summary)
        .unwrap_or_default();
    // A fallback from CUDA reads as a warning; a chosen provider does not.
    let fell_back = app
        .model
        .as_ref()
        .and_then(|m| m.runtime.as_ref())
        .is_some_and(|r| {
            r.provider == "cpu" && !r.cpu_reason.is_empty() && r.cpu_reason != "--ep cpu"
        });
    let line1 = Line::from(vec![
        Span::styled(
            format!(" {spin} "),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("{provider} "),
            Style::default()
                .fg(if fell_back {
                    Color::Yellow
                } else {
                    Color::Green
                })
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("{} · graphics: {} · ", app.address, app.graphics)),
        match &app.error {
            Some(e) => Span::styled(e.clone(), Style::default().fg(Color::Red)),
            None => Span::raw(app.status.clone()),
        },
    ]);
    let line2 = Line::from(Span::styled(
        key_bar(area.width),
        Style::default().add_modifier(Modifier::DIM),
    ));
    f.render_widget(Paragraph::new(vec![line1, line2]), area);
}

fn help(f: &mut Frame) {
    let area = centered(f.area(), 76, 29);
    f.render_widget(Clear, area);
    let text = vec![
        Line::from("Keys").style(Style::default().add_modifier(Modifier::BOLD)),
        Line::from(""),
        Line::from("  j / k        next / previous layer"),
        Line::from("  /            filter the layers by name (Enter keeps it, Esc shows all)"),
        Line::from("  h / l        previous / next feature"),
        Line::from("  arrows       move the location (the feature, in the maps)"),
        Line::from("  mouse        click a layer, a feature tile or a location; wheel scrolls"),
        Line::from("  t            jump to the strongest neuron of the layer"),
        Line::from("  Tab          move focus between panels (on small screens: which shows)"),
        Line::from("  z            zoom the focused panel to the whole screen, or back"),
        Line::from(
            "  m            maximize the selected neuron (3 starts); on the maps, its channel",
        ),
        Line::from("  c            maximize the top class of the image (whole image)"),
        Line::from("  a            the top class attributed to the pixels (Guided Grad-CAM)"),
        Line::from("  A            attribute the image's next class by score instead"),
        Line::from("  x            cancel the maximization"),
        Line::from("  o            open another image (Tab completes)"),
        Line::from("  r            reseed the random weights"),
        Line::from("  s            save every picture on screen, with its settings"),
        Line::from("  g            next picture protocol that works in this terminal"),
        Line::from("  p            the dataset scan's strongest images for the feature"),
        Line::from("  b            pin the image as B: layers list pattern agreement with it"),
        Line::from("  1-9          (with p) open that image at its neuron"),
        Line::from("  ?            this help (any key closes it)"),
        Line::from("  q            quit"),
        Line::from(""),
        Line::from("Inside tmux, real pictures need `set -g allow-passthrough on`."),
    ];
    f.render_widget(
        Paragraph::new(text)
            .block(block(" help ".into(), true))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The key bar for a screen `width` columns wide: as many keys as fit, in
/// order of use, and always the way to the help and out.
pub fn key_bar(width: u16) -> String {
    const KEYS: [&str; 17] = [
        "j/k layer",
        "h/l feature",
        "arrows location",
        "Tab focus",
        "z zoom",
        "t strongest",
        "m maximize",
        "o open",
        "x cancel",
        "c class",
        "a attribute",
        "p scan",
        "b pin B",
        "s save",
        "r reseed",
        "g graphics",
        "q quit",
    ];
    const HELP: &str = "? help";
    let mut room = usize::from(width).saturating_sub(HELP.len() + 1);
    let mut bar = String::from(" ");
    for k in KEYS {
        if k.len() + 2 > room {
            break;
        }
        bar.push_str(k);
        bar.push_str("  ");
        room -= k.len() + 2;
    }
    bar.push_str(HELP);
    bar
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
