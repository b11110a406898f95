//! `fovea study IMAGES...`: the random-weights claim measured. For the
//! strongest neurons of a layer in each image: how close the masked
//! reconstruction with random weights stays to the trained one and to the
//! image patch, against random weights under another image's masks and the
//! deconvnet; and the linear filters' share of high spatial frequencies
//! against the patches'. Writes a table (CSV and JSON) and a figure.

use super::{Context, record_image};
use crate::plots::{Figure, Group, PALETTE, StripFigure, StripPanel, write_both};
use anyhow::{Context as _, anyhow};
use fovea_client::{Client, v1 as pb};
use plotters::style::RGBColor;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Two or more images (each one's control uses the next one's masks).
    #[arg(required = true, num_args = 2..)]
    images: Vec<PathBuf>,
    #[arg(long, default_value = "13")]
    layer: String,
    /// Neurons per image: top:N, the N strongest active features.
    #[arg(long, default_value = "top:8", value_parser = parse_count)]
    neurons: u32,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output stem: writes STEM.csv, STEM.json, STEM.png and STEM.svg.
    #[arg(short, long, default_value = "study")]
    out: PathBuf,
}

/// The conditions as the table names them, in the API's order.
const CONDITIONS: [(&str, &str); 4] = [
    ("trained_masks", "trained, own masks"),
    ("random_masks", "random, own masks"),
    ("random_other_masks", "random, other's masks"),
    ("deconvnet", "deconvnet (no masks)"),
];

#[derive(Serialize)]
pub(crate) struct Row<'a> {
    pub image: &'a Path,
    control_masks_from: &'a Path,
    feature: u32,
    y: u32,
    x: u32,
    activation: f32,
    conditions: Vec<Condition<'a>>,
    filter_high_frequency: f64,
    patch_high_frequency: f64,
}

#[derive(Serialize)]
pub(crate) struct Condition<'a> {
    condition: &'a str,
    pearson_to_trained: f64,
    ssim_to_trained: f64,
    pearson_to_image: f64,
    ssim_to_image: f64,
}

#[derive(Serialize)]
pub(crate) struct Summary {
    condition: &'static str,
    pearson_to_trained: f64,
    ssim_to_trained: f64,
    pearson_to_image: f64,
    ssim_to_image: f64,
}

#[derive(Serialize)]
pub(crate) struct View<'a> {
    layer: u32,
    seed: u64,
    pub rows: Vec<Row<'a>>,
    /// Means over the rows, per condition.
    summary: Vec<Summary>,
    filter_high_frequency: f64,
    patch_high_frequency: f64,
    files: Vec<PathBuf>,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let mut ids = Vec::with_capacity(args.images.len());
    for p in &args.images {
        ids.push(record_image(&ctx.client, p).await?.recording_id);
    }
    let settings = Settings {
        layer: &args.layer,
        neurons: args.neurons,
        seed: args.seed,
    };
    let view = measure(&ctx.client, &args.images, ids, &settings, !ctx.json).await?;
    let stem = &args.out;
    let mut files = Vec::new();
    let img = write_both(&figure(&view), stem)?;
    files.extend([stem.with_extension("png"), stem.with_extension("svg")]);
    let csv = stem.with_extension("csv");
    std::fs::write(&csv, table(&view))
        .with_context(|| format!("cannot write {}", csv.display()))?;
    let json = stem.with_extension("json");
    files.extend([csv, json.clone()]);
    let view = View { files, ..view };
    let text = serde_json::to_string_pretty(&view)?;
    std::fs::write(&json, text).with_context(|| format!("cannot write {}", json.display()))?;
    ctx.print(&view, || {
        println!(
            "layer {}: {} neurons over {} images (means)",
            view.layer,
            view.rows.len(),
            args.images.len()
        );
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10}",
            "condition", "r trained", "SSIM tr.", "r image", "SSIM im."
        );
        for s in &view.summary {
            println!(
                "{:<24} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                s.condition,
                s.pearson_to_trained,
                s.ssim_to_trained,
                s.pearson_to_image,
                s.ssim_to_image
            );
        }
        println!(
            "high-frequency share: linear filters {:.3}, image patches {:.3}",
            view.filter_high_frequency, view.patch_high_frequency
        );
        for f in &view.files {
            println!("wrote {}", f.display());
        }
    });
    ctx.show(&img);
    Ok(())
}

/// What a study asks, as the commands take it.
pub(crate) struct Settings<'a> {
    pub layer: &'a str,
    pub neurons: u32,
    pub seed: u64,
}

/// Runs a study over recordings (`images[i]` names `ids[i]`) and reads its
/// answer.
pub(crate) async fn measure<'a>(
    client: &Client,
    images: &'a [PathBuf],
    ids: Vec<String>,
    settings: &Settings<'_>,
    bar: bool,
) -> anyhow::Result<View<'a>> {
    let req = pb::StudyRequest {
        recording_ids: ids,
        layer: settings.layer.to_string(),
        neurons_per_image: settings.neurons,
        seed: settings.seed,
    };
    let result = study_with_progress(client, req, bar).await?;
    view(&result, images, settings.seed)
}

/// One sentence of the means, for a figure's caption.
pub(crate) fn summary_sentence(v: &View) -> String {
    let r = |k: usize| v.summary.get(k).map_or(f64::NAN, |s| s.pearson_to_trained);
    format!(
        "Masked reconstructions of {} layer-{} neurons with random weights correlate with the trained ones at mean r = {:.2}; the controls reach {:.2} (random weights under another image's masks) and {:.2} (deconvnet, no masks). Linear filters put {:.0}% of their energy above half the Nyquist frequency, the image patches {:.0}%.",
        v.rows.len(),
        v.layer,
        r(1),
        r(2),
        r(3),
        100.0 * v.filter_high_frequency,
        100.0 * v.patch_high_frequency
    )
}

fn view<'a>(r: &pb::StudyResult, images: &'a [PathBuf], seed: u64) -> anyhow::Result<View<'a>> {
    let image = |i: u32| {
        images
            .get(i as usize)
            .map(PathBuf::as_path)
            .ok_or_else(|| anyhow!("the daemon named image {i} of {}", images.len()))
    };
    let mut rows = Vec::with_capacity(r.rows.len());
    for row in &r.rows {
        rows.push(Row {
            image: image(row.recording_index)?,
            control_masks_from: image(row.other_index)?,
            feature: row.feature,
            y: row.y,
            x: row.x,
            activation: row.activation,
            conditions: row
                .conditions
                .iter()
                .map(|c| Condition {
                    condition: CONDITIONS
                        .iter()
                        .find(|k| k.0 == c.condition)
                        .map_or("?", |k| k.0),
                    pearson_to_trained: c.pearson_to_trained,
                    ssim_to_trained: c.ssim_to_trained,
                    pearson_to_image: c.pearson_to_image,
                    ssim_to_image: c.ssim_to_image,
                })
                .collect(),
            filter_high_frequency: row.filter_high_frequency,
            patch_high_frequency: row.patch_high_frequency,
        });
    }
    Ok(summarised(View {
        layer: r.layer,
        seed,
        filter_high_frequency: f64::NAN,
        patch_high_frequency: f64::NAN,
        rows,
        summary: Vec::new(),
        files: Vec::new(),
    }))
}

/// `v` with its means computed from its rows.
pub(crate) fn summarised(v: View) -> View {
    let summary = CONDITIONS
        .iter()
        .enumerate()
        .map(|(k, (key, _))| {
            let of = |f: fn(&Condition) -> f64| {
                mean(v.rows.iter().filter_map(|r| r.conditions.get(k)).map(f))
            };
            Summary {
                condition: key,
                pearson_to_trained: of(|c| c.pearson_to_trained),
                ssim_to_trained: of(|c| c.ssim_to_trained),
                pearson_to_image: of(|c| c.pearson_to_image),
                ssim_to_image: of(|c| c.ssim_to_image),
            }
        })
        .collect();
    View {
        filter_high_frequency: mean(v.rows.iter().map(|r| r.filter_high_frequency)),
        patch_high_frequency: mean(v.rows.iter().map(|r| r.patch_high_frequency)),
        summary,
        ..v
    }
}

/// One CSV line per image, neuron and condition.
fn table(v: &View) -> String {
    let mut out = String::from(
        "image,control_masks_from,layer,feature,y,x,activation,condition,pearson_to_trained,ssim_to_trained,pearson_to_image,ssim_to_image,filter_high_frequency,patch_high_frequency\n",
    );
    let quote = |p: &Path| format!("\"{}\"", p.display().to_string().replace('"', "\"\""));
    for r in &v.rows {
        for c in &r.conditions {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                quote(r.image),
                quote(r.control_masks_from),
                v.layer,
                r.feature,
                r.y,
                r.x,
                r.activation,
                c.condition,
                c.pearson_to_trained,
                c.ssim_to_trained,
                c.pearson_to_image,
                c.ssim_to_image,
                r.filter_high_frequency,
                r.patch_high_frequency
            ));
        }
    }
    out
}

/// The distributions: each condition's similarity to the trained masked
/// reconstruction and to the image, and the high-frequency shares.
pub(crate) fn figure(v: &View) -> Figure {
    let per = |k: usize, f: fn(&Condition) -> f64| -> Vec<f64> {
        v.rows
            .iter()
            .filter_map(|r| r.conditions.get(k))
            .map(f)
            .collect()
    };
    // One colour per condition in every panel.
    let groups = |from: usize, f: fn(&Condition) -> f64| {
        CONDITIONS[from..]
            .iter()
            .enumerate()
            .map(|(k, (_, name))| Group {
                name: name.to_string(),
                colour: PALETTE[from + k],
                values: per(from + k, f),
            })
            .collect::<Vec<_>>()
    };
    let panels = vec![
        StripPanel {
            title: "Pearson r with the trained masked reconstruction".into(),
            y_label: "r (inside the FOV)".into(),
            groups: groups(1, |c| c.pearson_to_trained),
            y_range: (-1.0, 1.0),
        },
        StripPanel {
            title: "SSIM with the trained masked reconstruction".into(),
            y_label: "SSIM".into(),
            groups: groups(1, |c| c.ssim_to_trained),
            y_range: (-0.2, 1.0),
        },
        StripPanel {
            title: "Pearson r with the image patch".into(),
            y_label: "r (inside the FOV)".into(),
            groups: groups(0, |c| c.pearson_to_image),
            y_range: (-1.0, 1.0),
        },
        StripPanel {
            title: "Energy above half the Nyquist frequency".into(),
            y_label: "share of spectral energy".into(),
            groups: vec![
                Group {
                    name: "linear filters".into(),
                    colour: RGBColor(127, 127, 127),
                    values: v.rows.iter().map(|r| r.filter_high_frequency).collect(),
                },
                Group {
                    name: "image patches".into(),
                    colour: RGBColor(23, 190, 207),
                    values: v.rows.iter().map(|r| r.patch_high_frequency).collect(),
                },
            ],
            y_range: (0.0, 1.0),
        },
    ];
    Figure::Strips(StripFigure {
        title: format!(
            "Masks with random weights, layer {}: {} neurons, random-weight seed {}",
            v.layer,
            v.rows.len(),
            v.seed
        ),
        panels,
        cols: 2,
        notes: vec![
            "Each dot is one neuron of one image (the strongest active features of the layer); bars are means. Reconstructions start at the neuron with 1 and are compared inside its field of view: Pearson r over the three channels; SSIM (mean over 8x8 windows) on the grey pictures, each scaled from its own min to max.".into(),
            "Controls: random weights under the masks and switches of another image of the set (the neuron itself let through), and the deconvnet (trained weights, no masks). If masks carry the image, \"random, own masks\" stays closer to the trained reconstruction and to the image than the controls.".into(),
        ],
    })
}

/// `top:N` as a neuron count, 1..=64.
pub(crate) fn parse_count(s: &str) -> Result<u32, String> {
    let n = s
        .strip_prefix("top:")
        .ok_or_else(|| format!("{s:?}: expected top:N"))?;
    match n.parse::<u32>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("{s:?}: N must be a whole number in 1..=64")),
    }
}

/// Runs the study, showing progress over the images; Ctrl-C cancels it.
async fn study_with_progress(
    client: &Client,
    req: pb::StudyRequest,
    bar: bool,
) -> anyhow::Result<pb::StudyResult> {
    let total = req.recording_ids.len() as u64;
    let template = "study {bar:30} {pos}/{len} images {elapsed}";
    let progress = super::progress_bar(bar, Some(total), template);
    let stream = client.study(req).await?;
    super::follow(stream, &progress, "study", |event| match event.event {
        Some(pb::study_event::Event::Progress(p)) => {
            progress.set_position(p.images_done as u64);
            None
        }
        Some(pb::study_event::Event::Result(r)) => Some(r),
        None => None,
    })
    .await
}
