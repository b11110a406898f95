//! `fovea compare A B`: how alike two images' activation patterns are, per
//! layer (ReLU states, Jaccard of the active sets, pool switches), over
//! whole layers or one neuron's FOV tree; `fovea compare --many DIR --layer
//! L`: the matrix of pairwise ReLU-state agreement of a set of images.

use super::{Context, record_image, save};
use crate::plots::{self, Figure, LineFigure, MatrixFigure, PALETTE, Panel, Series};
use anyhow::{anyhow, bail};
use fovea_client::v1 as pb;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Most images `--many` compares (the matrix has n^2 cells).
const MAX_MANY: usize = 32;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Two images to compare.
    #[arg(num_args = 0..=2, required_unless_present = "many")]
    images: Vec<PathBuf>,
    /// Compare only the FOV tree of this conv neuron: LAYER,FEATURE,Y,X.
    #[arg(long, conflicts_with = "many", value_parser = parse_neuron)]
    neuron: Option<pb::Neuron>,
    /// A folder of images: the matrix of pairwise agreement at `--layer`.
    #[arg(long, requires = "layer")]
    many: Option<PathBuf>,
    /// The layer of the `--many` matrix.
    #[arg(long)]
    layer: Option<String>,
    /// The figure (PNG, or SVG by the extension).
    #[arg(short, long, default_value = "compare.png")]
    out: PathBuf,
}

/// `LAYER,FEATURE,Y,X` as a neuron (the layer by number or name).
pub(crate) fn parse_neuron(s: &str) -> Result<pb::Neuron, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [layer, feature, y, x] = parts[..] else {
        return Err("expected LAYER,FEATURE,Y,X (for example 13,42,7,7)".into());
    };
    let number = |what: &str, v: &str| {
        v.parse::<i32>()
            .map_err(|_| format!("{what} {v:?} is not a whole number"))
    };
    Ok(pb::Neuron {
        layer: layer.to_string(),
        feature: number("FEATURE", feature)?,
        y: number("Y", y)?,
        x: number("X", x)?,
    })
}

#[derive(Serialize)]
struct Layer {
    layer: u32,
    units: u64,
    mask_agreement: f64,
    jaccard: f64,
    active_a: u64,
    active_b: u64,
    windows: u64,
    switch_agreement: f64,
}

#[derive(Serialize)]
struct NeuronView {
    active_a: bool,
    active_b: bool,
    same_linear_filter: bool,
    first_difference: Option<u32>,
}

#[derive(Serialize)]
struct PairView<'a> {
    a: &'a Path,
    b: &'a Path,
    out: &'a Path,
    layers: Vec<Layer>,
    neuron: Option<NeuronView>,
}

#[derive(Serialize)]
struct ManyView<'a> {
    layer: &'a str,
    images: Vec<String>,
    mask_agreement: &'a [Vec<f64>],
    out: &'a Path,
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    match (&args.many, &args.images[..]) {
        (Some(dir), _) => many(args, dir, ctx).await,
        (None, [a, b]) => pair(args, a, b, ctx).await,
        _ => bail!("compare takes two images (or --many DIR --layer L)"),
    }
}

async fn pair(args: &Args, a: &Path, b: &Path, ctx: &Context) -> anyhow::Result<()> {
    let ra = record_image(&ctx.client, a).await?;
    let rb = record_image(&ctx.client, b).await?;
    let answer = ctx
        .client
        .compare_patterns(pb::ComparePatternsRequest {
            recording_a: ra.recording_id,
            recording_b: rb.recording_id,
            neuron: args.neuron.clone(),
        })
        .await?;
    let name = |p: &Path| {
        p.file_name()
            .map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into())
    };
    let scope = match &args.neuron {
        Some(n) => format!(
            "inside the FOV tree of layer {} feature {} at ({}, {})",
            n.layer, n.feature, n.y, n.x
        ),
        None => "whole layers".into(),
    };
    let points = |f: &dyn Fn(&pb::PatternAgreement) -> Option<f64>| {
        answer
            .layers
            .iter()
            .filter_map(|l| f(l).map(|v| (l.layer as f64, v)))
            .collect::<Vec<_>>()
    };
    let mut notes = vec![
        "ReLU states: fraction of units active in both or inactive in both. Jaccard: units active in both / units active in either. Switches: fraction of 2x2 max-pool windows feeding the layer whose maximum is at the same place.".to_string(),
    ];
    if let Some(n) = &answer.neuron {
        notes.push(neuron_sentence(n));
    }
    let figure = Figure::Lines(LineFigure {
        title: format!(
            "Activation patterns of {} and {}, {scope}",
            name(a),
            name(b)
        ),
        x_label: "layer".into(),
        x_range: Some((0.5, answer.layers.len() as f64 + 0.5)),
        panels: vec![Panel {
            y_label: "agreement".into(),
            series: vec![
                Series {
                    name: "ReLU states".into(),
                    colour: PALETTE[0],
                    points: points(&|l| Some(l.mask_agreement)),
                    markers: true,
                },
                Series {
                    name: "Jaccard of active units".into(),
                    colour: PALETTE[1],
                    points: points(&|l| Some(l.jaccard)),
                    markers: true,
                },
                Series {
                    name: "pool switches".into(),
                    colour: PALETTE[2],
                    points: points(&|l| (l.windows > 0).then_some(l.switch_agreement)),
                    markers: true,
                },
            ],
            y_range: Some((0.0, 1.02)),
        }],
        marks: vec![],
        notes,
    });
    let img = write_figure(&figure, &args.out)?;
    let view = PairView {
        a,
        b,
        out: &args.out,
        layers: answer
            .layers
            .iter()
            .map(|l| Layer {
                layer: l.layer,
                units: l.units,
                mask_agreement: l.mask_agreement,
                jaccard: l.jaccard,
                active_a: l.active_a,
                active_b: l.active_b,
                windows: l.windows,
                switch_agreement: l.switch_agreement,
            })
            .collect(),
        neuron: answer.neuron.as_ref().map(|n| NeuronView {
            active_a: n.active_a,
            active_b: n.active_b,
            same_linear_filter: n.same_linear_filter,
            first_difference: (n.first_difference > 0).then_some(n.first_difference),
        }),
    };
    ctx.print(&view, || {
        println!("{} vs {}, {scope}", a.display(), b.display());
        println!(
            "{:>5} {:>10} {:>11} {:>8} {:>9} {:>9} {:>8} {:>9}",
            "layer",
            "units",
            "ReLU agree",
            "Jaccard",
            "active A",
            "active B",
            "windows",
            "switches"
        );
        for l in &answer.layers {
            let switches = if l.windows > 0 {
                format!("{:.4}", l.switch_agreement)
            } else {
                "-".into()
            };
            println!(
                "{:>5} {:>10} {:>11.4} {:>8.4} {:>9} {:>9} {:>8} {:>9}",
                l.layer,
                l.units,
                l.mask_agreement,
                l.jaccard,
                l.active_a,
                l.active_b,
                l.windows,
                switches
            );
        }
        if let Some(n) = &answer.neuron {
            println!("{}", neuron_sentence(n));
        }
        println!("wrote {}", args.out.display());
    });
    ctx.show(&img);
    Ok(())
}

fn neuron_sentence(n: &pb::NeuronPatterns) -> String {
    let state = |on: bool| if on { "active" } else { "inactive" };
    let filter = if n.same_linear_filter {
        "the same linear filter (identical configuration in its FOV tree)".to_string()
    } else {
        format!(
            "different linear filters (configurations first differ at layer {})",
            n.first_difference
        )
    };
    format!(
        "The neuron is {} in A and {} in B; the images see {filter}.",
        state(n.active_a),
        state(n.active_b)
    )
}

async fn many(args: &Args, dir: &Path, ctx: &Context) -> anyhow::Result<()> {
    let layer = args
        .layer
        .as_deref()
        .ok_or_else(|| anyhow!("--many needs --layer"))?;
    let model = ctx.client.model().await?;
    let info = super::layer_of(&model, layer)?;
    if info.kind != pb::LayerKind::Conv as i32 {
        bail!("--layer {layer}: compare needs a conv layer");
    }
    let paths = fovea_engine::probe::scan::list_images(dir)?;
    if paths.len() < 2 || paths.len() > MAX_MANY {
        bail!(
            "--many {}: {} images found; compare takes 2..={MAX_MANY}",
            dir.display(),
            paths.len()
        );
    }
    let mut ids = Vec::with_capacity(paths.len());
    for p in &paths {
        ids.push(record_image(&ctx.client, p).await?.recording_id);
    }
    let n = ids.len();
    let mut matrix = vec![vec![1.0; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let answer = ctx
                .client
                .compare_patterns(pb::ComparePatternsRequest {
                    recording_a: ids[i].clone(),
                    recording_b: ids[j].clone(),
                    neuron: None,
                })
                .await?;
            let l = answer
                .layers
                .iter()
                .find(|l| l.layer == info.number)
                .ok_or_else(|| anyhow!("the daemon left out layer {}", info.number))?;
            matrix[i][j] = l.mask_agreement;
            matrix[j][i] = l.mask_agreement;
        }
    }
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into())
        })
        .collect();
    let labels = names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{} {}", i + 1, shorten(name, 18)))
        .collect();
    let figure = Figure::Matrix(MatrixFigure {
        title: format!(
            "ReLU-state agreement at layer {} ({}) between {n} images",
            info.number, info.name
        ),
        labels,
        values: matrix.clone(),
        bar_label: "fraction same".into(),
        notes: vec![format!(
            "Cell (i, j): fraction of layer {}'s {} units whose ReLU is active in both images or inactive in both. Columns are numbered as the rows.",
            info.number,
            info.channels as u64 * info.height as u64 * info.width as u64
        )],
    });
    let img = write_figure(&figure, &args.out)?;
    let view = ManyView {
        layer: &info.name,
        images: names.clone(),
        mask_agreement: &matrix,
        out: &args.out,
    };
    ctx.print(&view, || {
        println!(
            "ReLU-state agreement at layer {} ({}):",
            info.number, info.name
        );
        for (i, row) in matrix.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:.3}")).collect();
            println!(
                "{:>3} {:<24} {}",
                i + 1,
                shorten(&names[i], 24),
                cells.join(" ")
            );
        }
        println!("wrote {}", args.out.display());
    });
    ctx.show(&img);
    Ok(())
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let head: String = s.chars().take(n - 1).collect();
        format!("{head}…")
    }
}

/// Writes a figure as PNG, or SVG by the file's extension; returns the
/// picture.
pub(crate) fn write_figure(figure: &Figure, out: &Path) -> anyhow::Result<image::RgbImage> {
    let svg = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let img = plots::render(figure)?;
    if svg {
        plots::write_svg(figure, out)?;
    } else {
        save(&img, out)?;
    }
    Ok(img)
}
