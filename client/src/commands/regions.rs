//! `fovea regions IMAGE --neuron L,F,Y,X`: the linear region of a neuron
//! around an image along a direction (where the first ReLU or pool switch
//! of its FOV tree changes, on both sides), and the neuron's
//! piecewise-linear profile along the line, plotted with its breakpoints.

use super::compare::{parse_neuron, write_figure};
use super::{Context, record_image};
use crate::plots::{Figure, LineFigure, Panel, Series};
use fovea_client::{Client, v1 as pb};
use plotters::style::RGBColor;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    image: PathBuf,
    /// The conv neuron: LAYER,FEATURE,Y,X.
    #[arg(long, value_parser = parse_neuron)]
    neuron: pb::Neuron,
    /// gradient (the neuron's linear filter), random[:SEED], or
    /// to:OTHER.png (the line from IMAGE to OTHER).
    #[arg(long, default_value = "gradient", value_parser = parse_direction)]
    direction: DirectionArg,
    /// Walk t over [-EXTENT, EXTENT] in input units along the unit
    /// direction (gradient and random; a to: line runs from 0 to 1).
    /// Default: 20 times the distance from the image to its region's
    /// nearest end.
    #[arg(long)]
    extent: Option<f64>,
    /// Most regions the walk crosses; 0 reports only the region around the
    /// image.
    #[arg(long, default_value_t = 500)]
    max_regions: u32,
    /// The profile figure (PNG, or SVG by the extension).
    #[arg(short, long, default_value = "regions.png")]
    out: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DirectionArg {
    Gradient,
    Random(u64),
    Toward(PathBuf),
}

fn parse_direction(s: &str) -> Result<DirectionArg, String> {
    match s.split_once(':') {
        None if s == "gradient" => Ok(DirectionArg::Gradient),
        None if s == "random" => Ok(DirectionArg::Random(0)),
        Some(("random", seed)) => seed
            .parse()
            .map(DirectionArg::Random)
            .map_err(|_| format!("random:{seed}: the seed is not a whole number")),
        Some(("to", path)) if !path.is_empty() => Ok(DirectionArg::Toward(path.into())),
        _ => Err("expected gradient, random[:SEED] or to:OTHER.png".into()),
    }
}

impl DirectionArg {
    fn label(&self) -> String {
        match self {
            DirectionArg::Gradient => "its linear filter".into(),
            DirectionArg::Random(seed) => format!("a random direction (seed {seed})"),
            DirectionArg::Toward(p) => format!("the line to {}", p.display()),
        }
    }
}

#[derive(Serialize)]
struct End {
    t: f64,
    kind: &'static str,
    layer: u32,
    feature: u32,
    y: u32,
    x: u32,
    value: f64,
}

#[derive(Serialize)]
struct View<'a> {
    image: &'a Path,
    direction: String,
    direction_norm: f64,
    value: f64,
    slope: f64,
    forward: Option<End>,
    backward: Option<End>,
    regions: usize,
    complete: bool,
    units_on_boundary: u32,
    from: f64,
    to: f64,
    /// (t, pre-activation) at every breakpoint, ends included.
    profile: Vec<(f64, f64)>,
    out: &'a Path,
}

fn end(e: &pb::RegionEnd) -> Option<End> {
    let u = e.unit.as_ref()?;
    let kind = match pb::unit_change::Kind::try_from(u.kind) {
        Ok(pb::unit_change::Kind::Switch) => "switch",
        Ok(pb::unit_change::Kind::Ceiling) => "ceiling",
        _ => "relu",
    };
    Some(End {
        t: e.t,
        kind,
        layer: u.layer,
        feature: u.feature,
        y: u.y,
        x: u.x,
        value: e.value,
    })
}

fn describe(e: &End) -> String {
    let what = if e.kind == "switch" {
        format!(
            "the max of the pool window over layer {} feature {} moves to ({}, {})",
            e.layer, e.feature, e.y, e.x
        )
    } else if e.kind == "ceiling" {
        format!(
            "the clipped ReLU of layer {} feature {} at ({}, {}) reaches or leaves its ceiling",
            e.layer, e.feature, e.y, e.x
        )
    } else {
        format!(
            "the ReLU of layer {} feature {} at ({}, {}) changes state",
            e.layer, e.feature, e.y, e.x
        )
    };
    format!(
        "t = {:+.3e}: {what}; pre-activation there {:.4}",
        e.t, e.value
    )
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let rec = record_image(&ctx.client, &args.image).await?;
    let (direction, seed, toward) = match &args.direction {
        DirectionArg::Gradient => (pb::DirectionKind::Gradient, 0, String::new()),
        DirectionArg::Random(seed) => (pb::DirectionKind::Random, *seed, String::new()),
        DirectionArg::Toward(p) => (
            pb::DirectionKind::Toward,
            0,
            record_image(&ctx.client, p).await?.recording_id,
        ),
    };
    let toward_line = direction == pb::DirectionKind::Toward;
    let walk = args.max_regions > 0;
    let mut req = pb::LinearRegionRequest {
        recording_id: rec.recording_id,
        neuron: Some(args.neuron.clone()),
        direction: direction as i32,
        seed,
        toward_recording: toward,
        max_regions: 0,
        extent: 0.0,
    };
    let bar = !ctx.json;
    let mut r = region_with_progress(&ctx.client, req.clone(), bar).await?;
    if walk {
        req.max_regions = args.max_regions;
        if !toward_line {
            req.extent = match args.extent {
                Some(e) => e,
                None => default_extent(&r),
            };
        }
        r = region_with_progress(&ctx.client, req, bar).await?;
    }
    let mut profile: Vec<(f64, f64)> = Vec::new();
    // Consecutive pieces meet at a breakpoint (their values there agree to
    // float precision): one point each.
    for s in &r.segments {
        if profile.last().map(|p| p.0) != Some(s.t0) {
            profile.push((s.t0, s.v0));
        }
        profile.push((s.t1, s.v1));
    }
    let n = &args.neuron;
    let who = format!(
        "layer {} feature {} at ({}, {})",
        n.layer, n.feature, n.y, n.x
    );
    let view = View {
        image: &args.image,
        direction: args.direction.label(),
        direction_norm: r.direction_norm,
        value: r.value,
        slope: r.slope,
        forward: r.forward.as_ref().and_then(end),
        backward: r.backward.as_ref().and_then(end),
        regions: r.segments.len(),
        complete: r.complete,
        units_on_boundary: r.units_on_boundary,
        from: r.from,
        to: r.to,
        profile,
        out: &args.out,
    };
    let mut notes = vec![format!(
        "The pre-activation at the image is {:.4}; along the direction it changes by {:.4} per unit of t inside the image's region.",
        r.value, r.slope
    )];
    let radius = |e: &Option<End>| e.as_ref().map_or(f64::INFINITY, |e| e.t.abs());
    notes.push(format!(
        "The image's region spans t in [{}, {}]: the distance to the nearest change of the neuron's configuration is {:.3e} along this line.",
        view.backward.as_ref().map_or("-inf".into(), |e| format!("{:.3e}", e.t)),
        view.forward.as_ref().map_or("+inf".into(), |e| format!("{:.3e}", e.t)),
        radius(&view.backward).min(radius(&view.forward))
    ));
    if r.units_on_boundary > 0 {
        notes.push(format!(
            "The image sits on {} boundaries: units of the FOV tree exactly at their threshold (ties in pool windows, as flat image areas give, or pre-activations at 0), which the line leaves at once on one side.",
            r.units_on_boundary
        ));
    }
    if walk {
        notes.push(format!(
            "{} linear regions crossed on t in [{:.3e}, {:.3e}]{}; each breakpoint is where one ReLU or pool switch in the neuron's FOV tree changes.",
            view.regions,
            r.from,
            r.to,
            if r.complete {
                String::new()
            } else {
                format!(" (stopped at --max-regions {} before the end)", args.max_regions)
            }
        ));
    }
    // An unfinished walk is drawn over the part it walked.
    let reached = r.segments.last().map_or(r.to, |s| s.t1);
    let x_range = (r.from, if r.complete { r.to } else { reached });
    let mut marks = vec![(0.0, "image".to_string())];
    if toward_line && x_range.1 >= 1.0 {
        marks.push((1.0, "other image".to_string()));
    }
    let mut panels = vec![Panel {
        y_label: "pre-activation".into(),
        series: vec![Series {
            name: "pre-activation (piecewise linear)".into(),
            colour: RGBColor(31, 119, 180),
            markers: view.profile.len() <= 200,
            points: if walk {
                view.profile.clone()
            } else {
                local_segment(&r)
            },
        }],
        y_range: None,
    }];
    if walk {
        panels.push(Panel {
            y_label: "slope along d".into(),
            series: vec![Series {
                name: "derivative per region".into(),
                colour: RGBColor(214, 39, 40),
                markers: false,
                points: r
                    .segments
                    .iter()
                    .flat_map(|s| [(s.t0, s.slope), (s.t1, s.slope)])
                    .collect(),
            }],
            y_range: None,
        });
    }
    let figure = Figure::Lines(LineFigure {
        title: format!("{who}: pre-activation along {}", args.direction.label()),
        x_label: if toward_line {
            "t (0: image, 1: other image)".into()
        } else {
            "t (input units along the unit direction)".into()
        },
        x_range: walk.then_some(x_range),
        panels,
        marks,
        notes,
    });
    let img = write_figure(&figure, &args.out)?;
    ctx.print(&view, || {
        println!(
            "{who}, along {} (|d| = {:.4})",
            view.direction, r.direction_norm
        );
        println!(
            "pre-activation at the image {:.4}, slope along d {:.4}",
            r.value, r.slope
        );
        for e in [&view.backward, &view.forward].into_iter().flatten() {
            println!("  region ends at {}", describe(e));
        }
        if r.units_on_boundary > 0 {
            println!(
                "  the image sits on {} boundaries (ties in pool windows or pre-activations at 0, as flat image areas give): the region has zero width on those sides",
                r.units_on_boundary
            );
        }
        if view.forward.is_none() {
            println!("  the region is unbounded for t > 0");
        }
        if view.backward.is_none() {
            println!("  the region is unbounded for t < 0");
        }
        if walk {
            println!(
                "walk over t in [{:.4e}, {:.4e}]: {} regions{}",
                r.from,
                r.to,
                view.regions,
                if r.complete {
                    ""
                } else {
                    " (stopped at --max-regions)"
                }
            );
        }
        println!("wrote {}", args.out.display());
    });
    ctx.show(&img);
    Ok(())
}

/// 20 times the distance from the image to its region's nearest end (1
/// when the region is unbounded both ways).
fn default_extent(r: &pb::LinearRegionResult) -> f64 {
    let nearest = [&r.backward, &r.forward]
        .into_iter()
        .flatten()
        .map(|e| e.t.abs())
        .fold(f64::INFINITY, f64::min);
    if nearest.is_finite() && nearest > 0.0 {
        (20.0 * nearest).min(1e6)
    } else {
        1.0
    }
}

/// Without a walk: the image's own region as one segment (clipped to a
/// finite span when it is unbounded).
fn local_segment(r: &pb::LinearRegionResult) -> Vec<(f64, f64)> {
    let span = [&r.backward, &r.forward]
        .into_iter()
        .flatten()
        .map(|e| e.t.abs())
        .fold(0.0, f64::max)
        .max(1e-6);
    let a = r.backward.as_ref().map_or(-span, |e| e.t);
    let b = r.forward.as_ref().map_or(span, |e| e.t);
    vec![(a, r.value + r.slope * a), (b, r.value + r.slope * b)]
}

/// Runs the query, showing the walk's progress; Ctrl-C cancels it.
async fn region_with_progress(
    client: &Client,
    req: pb::LinearRegionRequest,
    bar: bool,
) -> anyhow::Result<pb::LinearRegionResult> {
    let progress = super::progress_bar(bar, None, "regions {spinner} {msg} {elapsed}");
    let stream = client.linear_region(req).await?;
    super::follow(stream, &progress, "region walk", |event| {
        match event.event {
            Some(pb::linear_region_event::Event::Progress(p)) => {
                progress.set_message(format!("{} crossed, t = {:.4e}", p.regions, p.t));
                progress.tick();
                None
            }
            Some(pb::linear_region_event::Event::Result(r)) => Some(r),
            None => None,
        }
    })
    .await
}
