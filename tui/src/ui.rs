//! Drawing: one layout function shared by drawing and mouse hit-testing.

use crate::app::{App, Focus};
use crate::pictures::{PAGE, Panel, Pictures, Shown};
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Borders, Clear, Gauge, List, ListItem, ListState, Paragraph,
    Sparkline, Wrap,
};

/// Where each panel is on a screen of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub input: Rect,
    pub layers: Rect,
    pub map: Rect,
    pub grid: Rect,
    pub reconstructions: Rect,
    pub histogram: Rect,
    pub maximize: Rect,
    pub status: Rect,
}

pub fn layout(area: Rect) -> Areas {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Percentage(38),
            Constraint::Percentage(37),
            Constraint::Min(6),
            Constraint::Length(2),
        ])
        .split(area);
    let top = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([
            Constraint::Percentage(30),
            Constraint::Percentage(34),
            Constraint::Percentage(36),
        ])
        .split(rows[0]);
    let middle = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(55), Constraint::Percentage(45)])
        .split(rows[1]);
    let bottom = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(45), Constraint::Percentage(55)])
        .split(rows[2]);
    Areas {
        input: top[0],
        layers: top[1],
        map: top[2],
        grid: middle[0],
        reconstructions: middle[1],
        histogram: bottom[0],
        maximize: bottom[1],
        status: rows[3],
    }
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

/// The grid cell of the activation map at terminal position (col, row), if
/// the position is on the map as drawn (`map`: the picture's cells).
pub fn map_hit(app: &App, map: Option<Rect>, col: u16, row: u16) -> Option<(u32, u32)> {
    let layer = app.current_layer()?;
    let r = map?;
    if col < r.x || row < r.y || col >= r.x + r.width || row >= r.y + r.height {
        return None;
    }
    let x = u32::from(col - r.x) * layer.width / u32::from(r.width.max(1));
    let y = u32::from(row - r.y) * layer.height / u32::from(r.height.max(1));
    Some((
        y.min(layer.height.saturating_sub(1)),
        x.min(layer.width.saturating_sub(1)),
    ))
}

pub fn draw(f: &mut Frame, app: &App, pictures: &mut Pictures, tick: usize) {
    let areas = layout(f.area());
    let overlay = app.help || app.prompt.is_some();
    let picture = |f: &mut Frame,
                   pictures: &mut Pictures,
                   panel: Panel,
                   area: Rect,
                   title: String,
                   focused: bool| {
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
                Paragraph::new("…").style(Style::default().add_modifier(Modifier::DIM)),
                inner,
            );
        }
    };

    let layer = app.current_layer().cloned();
    let lname = layer
        .as_ref()
        .map(|l| format!("{} {}", l.number, l.name))
        .unwrap_or_default();
    let input_title = match (&app.image, app.fov) {
        (Some(p), Some(b)) => format!(
            " {} · FOV x {}..{} y {}..{} ",
            p.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            b.x0,
            b.x1,
            b.y0,
            b.y1
        ),
        (Some(p), None) => format!(" {} ", p.display()),
        _ => " input ".into(),
    };
    picture(f, pictures, Panel::Input, areas.input, input_title, false);

    // Layer list: number, name, shape, fraction active.
    let fractions: Vec<f32> = app
        .recording
        .as_ref()
        .map(|r| r.activity.iter().map(|a| a.fraction_active).collect())
        .unwrap_or_default();
    let items: Vec<ListItem> = app
        .convs()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let frac = fractions
                .get(i)
                .map(|f| format!("{f:.2}"))
                .unwrap_or_else(|| "-".into());
            ListItem::new(format!(
                "{:>2} {:<7} {:>11} {:>3} {frac}",
                l.number,
                l.name,
                format!("{}x{}x{}", l.channels, l.height, l.width),
                l.fov
            ))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(app.layer));
    let list = List::new(items)
        .block(block(
            " layers (j/k): shape, FOV, active ".into(),
            app.focus == Focus::Layers,
        ))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD))
        .highlight_symbol("> ");
    f.render_stateful_widget(list, areas.layers, &mut state);

    let act = app
        .reconstructions
        .first()
        .map(|r| format!(" = {:.3}", r.activation))
        .unwrap_or_default();
    picture(
        f,
        pictures,
        Panel::Map,
        areas.map,
        format!(
            " {lname} f{} @ ({},{}){act} ",
            app.feature, app.cursor.0, app.cursor.1
        ),
        app.focus == Focus::Activation,
    );
    let depth = layer.as_ref().map_or(0, |l| l.channels);
    let page = app.feature / PAGE;
    picture(
        f,
        pictures,
        Panel::Grid,
        areas.grid,
        format!(
            " feature maps {}..{} of {depth} (h/l) ",
            page * PAGE,
            ((page + 1) * PAGE).min(depth)
        ),
        app.focus == Focus::Maps,
    );
    picture(
        f,
        pictures,
        Panel::Reconstructions,
        areas.reconstructions,
        if app.show_patches {
            format!(
                " strongest images in the scan for f{} (1-9 open one, p back) ",
                app.feature
            )
        } else {
            format!(" reconstructions · seed {} (r; p: scan) ", app.seed)
        },
        app.focus == Focus::Reconstructions,
    );

    // Histogram of active features per location (fig. 6) for the layer.
    let hb = block(" active features per location ".into(), false);
    let hinner = hb.inner(areas.histogram);
    f.render_widget(hb, areas.histogram);
    if let Some(s) = app.stats.as_ref().and_then(|s| s.layers.get(app.layer)) {
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
            .bar_style(Style::default().fg(Color::Cyan))
            .value_style(Style::default().fg(Color::Black).bg(Color::Cyan));
        let parts = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Length(1),
                Constraint::Min(1),
                Constraint::Length(1),
            ])
            .split(hinner);
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

    // Maximization: gauge, objective per start, previews.
    let mb = block(
        " maximize (m, x cancels) ".into(),
        app.focus == Focus::Maximize,
    );
    let minner = mb.inner(areas.maximize);
    f.render_widget(mb, areas.maximize);
    let starts = app.max.history.len().max(1) as u16;
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(starts.min(4)),
            Constraint::Min(1),
        ])
        .split(minner);
    let ratio = if app.max.total > 0 {
        app.max.step as f64 / app.max.total as f64
    } else {
        0.0
    };
    let label = match (app.max.running, app.max.neuron) {
        (true, Some((l, f_, y, x))) if (l as usize) <= app.convs().len() => format!(
            "layer {l} f{f_} ({y},{x}): step {}/{}",
            app.max.step, app.max.total
        ),
        (true, Some((l, f_, _, _))) => format!(
            "layer {l} unit {f_}: step {}/{}",
            app.max.step, app.max.total
        ),
        (false, Some(_)) if app.max.result.is_some() => "done".to_string(),
        (false, Some(_)) => "stopped".to_string(),
        _ => "m maximizes the selected neuron".to_string(),
    };
    f.render_widget(
        Gauge::default()
            .ratio(ratio.clamp(0.0, 1.0))
            .label(label)
            .gauge_style(Style::default().fg(Color::Green)),
        parts[0],
    );
    let lines = Layout::default()
        .direction(Direction::Vertical)
        .constraints(vec![Constraint::Length(1); starts.min(4) as usize])
        .split(parts[1]);
    for (i, h) in app.max.history.iter().take(4).enumerate() {
        let row = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Length(20), Constraint::Min(1)])
            .split(lines[i]);
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
    if !overlay {
        pictures.draw(Panel::Maximize, parts[2], f.buffer_mut());
    }

    // Status bar.
    let spin = if app.busy > 0 { SPINNER[tick % 4] } else { ' ' };
    let provider = app
        .model
        .as_ref()
        .map(|m| m.execution_provider.to_uppercase())
        .unwrap_or_default();
    let line1 = Line::from(vec![
        Span::styled(
            format!(" {spin} "),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("{provider} "),
            Style::default()
                .fg(Color::Green)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("{} · graphics: {} · ", app.address, app.graphics)),
        match &app.error {
            Some(e) => Span::styled(e.clone(), Style::default().fg(Color::Red)),
            None => Span::raw(app.status.clone()),
        },
    ]);
    let line2 = Line::from(Span::styled(
        key_bar(areas.status.width),
        Style::default().add_modifier(Modifier::DIM),
    ));
    f.render_widget(Paragraph::new(vec![line1, line2]), areas.status);

    if app.help {
        let area = centered(f.area(), 72, 24);
        f.render_widget(Clear, area);
        let text = vec![
            Line::from("Keys").style(Style::default().add_modifier(Modifier::BOLD)),
            Line::from(""),
            Line::from("  j / k        next / previous layer"),
            Line::from("  h / l        previous / next feature"),
            Line::from("  arrows       move the location (the feature, in the maps)"),
            Line::from("  mouse click  select a location on the activation map"),
            Line::from("  t            jump to the strongest neuron of the layer"),
            Line::from("  Tab          move focus between panels"),
            Line::from("  m            maximize the selected neuron (3 starts)"),
            Line::from("  c            maximize the top class of the image (whole image)"),
            Line::from("  x            cancel the maximization"),
            Line::from("  o            open another image (Tab completes)"),
            Line::from("  r            reseed the random weights"),
            Line::from("  s            save what is on screen as PNG files"),
            Line::from("  g            next picture protocol that works in this terminal"),
            Line::from("  p            the dataset scan's strongest images for the feature"),
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

/// The key bar for a screen `width` columns wide: as many keys as fit, in
/// order of use, and always the way to the help and out.
pub fn key_bar(width: u16) -> String {
    const KEYS: [&str; 14] = [
        "j/k layer",
        "h/l feature",
        "arrows location",
        "Tab focus",
        "t strongest",
        "m maximize",
        "o open",
        "x cancel",
        "c class",
        "p scan",
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
