//! The paper's figures for the user's image (fig. 2, 4, 5, 6) and the pieces
//! the single commands share with them.

use super::reconstruct::{ModeArg, modes_of};
use super::{Context, decode_png, mode_label, record_image as record};
use crate::plots::{Figure, GridFigure, Histogram, HistogramFigure, Row, Scale, Tile};
use anyhow::{Context as _, anyhow};
use fovea_client::picture;
use fovea_client::{Client, neuron, v1 as pb};
use image::RgbImage;
use serde::Serialize;
use std::path::Path;
use std::path::PathBuf;

/// Runs a maximization with a progress bar (when `bar`); Ctrl-C cancels it
/// (the daemon stops within a step).
pub async fn maximize_with_progress(
    client: &Client,
    req: pb::MaximizeRequest,
    bar: bool,
) -> anyhow::Result<pb::MaximizeResult> {
    let steps = req.steps.max(1) as u64;
    let pb_ = if bar {
        indicatif::ProgressBar::new(steps)
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb_.set_style(
        indicatif::ProgressStyle::with_template(
            "maximize {bar:30} {pos}/{len} steps {msg} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut stream = client.maximize(req).await?;
    let mut result = None;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                pb_.abandon_with_message("cancelled");
                drop(stream);
                return Err(fovea_client::ClientError::Status(tonic::Status::cancelled("maximization cancelled (Ctrl-C)")).into());
            }
            ev = stream.message() => {
                match ev? {
                    None => break,
                    Some(pb::MaximizeEvent { event: Some(pb::maximize_event::Event::Progress(p)) }) => {
                        pb_.set_position(p.step as u64);
                        let objs: Vec<String> = p.objective.iter().map(|o| format!("{o:.1}")).collect();
                        pb_.set_message(format!("objective {}", objs.join(" ")));
                    }
                    Some(pb::MaximizeEvent { event: Some(pb::maximize_event::Event::Result(r)) }) => result = Some(r),
                    Some(_) => {}
                }
            }
        }
    }
    pb_.finish_and_clear();
    result.ok_or_else(|| anyhow!("the daemon ended the maximization without a result"))
}

/// Figure 6: one histogram per layer of how many features are active at a
/// location.
pub fn stats_figure(stats: &pb::ActivationStatsResponse) -> Figure {
    Figure::Histograms(HistogramFigure {
        title: "Active features per location, per layer".into(),
        x_label: "active features at a location".into(),
        y_label: "locations".into(),
        panels: stats
            .layers
            .iter()
            .map(|l| Histogram {
                title: format!(
                    "layer {} {}: {:.0}% of units active",
                    l.layer,
                    l.name,
                    100.0 * l.fraction_active
                ),
                counts: l.histogram.clone(),
            })
            .collect(),
        cols: 4,
    })
}

/// Overlays the FOV box on the input picture.
fn with_box(input: &RgbImage, fov: &pb::Box) -> RgbImage {
    let mut img = input.clone();
    picture::outline(
        &mut img,
        fov.x0 as i64,
        fov.y0 as i64,
        fov.x1 as i64,
        fov.y1 as i64,
        picture::ACCENT,
        2,
    );
    img
}

#[derive(clap::Args, Debug)]
pub struct Args {
    image: PathBuf,
    #[arg(long, default_value = "figs")]
    out: PathBuf,
    /// Maximization steps for figure 5.
    #[arg(long, default_value_t = 120)]
    steps: u32,
    /// Seed of the random weights (fig. 4) and the random starts (fig. 5).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Serialize)]
struct View<'a> {
    out: &'a Path,
    files: &'a [String],
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let show = |img: &RgbImage| ctx.show(img);
    let written = all(
        &ctx.client,
        &args.image,
        &args.out,
        args.steps,
        args.seed,
        !ctx.json,
        &show,
    )
    .await?;
    let view = View {
        out: &args.out,
        files: &written,
    };
    ctx.print(&view, || {
        for w in &written {
            println!("wrote {}", args.out.join(w).display());
        }
    });
    Ok(())
}

/// Writes fig2, fig4, fig5 and fig6 (each as PNG and SVG) and index.html
/// into `out`;
/// returns the file names.
async fn all(
    client: &Client,
    image: &Path,
    out: &Path,
    steps: u32,
    seed: u64,
    progress: bool,
    show: &dyn Fn(&RgbImage),
) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let model = client.model().await?;
    let convs: Vec<&pb::Layer> = model
        .layers
        .iter()
        .filter(|l| l.kind == pb::LayerKind::Conv as i32)
        .collect();
    let last = convs
        .last()
        .ok_or_else(|| anyhow!("the model has no conv layers"))?;
    let r = record(client, image).await?;
    let id = r.recording_id.clone();
    let input = decode_png(&r.input_png)?;
    let say = |s: &str| {
        if progress {
            eprintln!("{s}");
        }
    };
    let mut notes: Vec<(String, String)> = Vec::new();
    let tile = 140u32;

    // Figure 2: the image and feature-map slices at layers 1, 4, 7, 9, 13
    // of a 13-layer VGG-16 (otherwise spread over the network's depth), the
    // four strongest features each.
    say("figure 2: feature maps");
    let picks: Vec<u32> = if convs.len() == 13 {
        vec![1, 4, 7, 9, 13]
    } else {
        let n = convs.len();
        // The first layer with an activation: a batch norm of the input
        // (ResNet v2) is only the image rescaled.
        let first = convs
            .iter()
            .position(|l| {
                l.activation
                    .as_ref()
                    .is_some_and(|a| a.kind != pb::activation_function::Kind::Linear as i32)
            })
            .unwrap_or(0);
        let mut v: Vec<u32> = [first, n / 4, n / 2, 3 * n / 4, n - 1]
            .iter()
            .map(|&i| convs[i].number)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut rows = vec![Row {
        label: "input".into(),
        tiles: vec![Tile {
            caption: format!("{}x{}", input.width(), input.height()),
            image: input.clone(),
        }],
        bar: None,
    }];
    for &layer in &picks {
        let top = client
            .top(pb::TopActivationsRequest {
                recording_id: id.clone(),
                layer: layer.to_string(),
                k: 4,
                distinct_features: true,
                ..Default::default()
            })
            .await?;
        let features: Vec<u32> = top.activations.iter().map(|a| a.feature).collect();
        let maps = client
            .feature_maps(pb::GetFeatureMapsRequest {
                recording_id: id.clone(),
                layer: layer.to_string(),
                features: features.clone(),
                ..Default::default()
            })
            .await?;
        let name = &model.layers[layer as usize].name;
        // One scale per layer, so the maps of a layer compare; signed
        // (grey around zero) where units pass negative values (linear or
        // leaky layers).
        let row_max = maps.maps.iter().map(|m| m.max).fold(0.0f32, f32::max);
        let row_min = maps
            .maps
            .iter()
            .flat_map(|m| m.values.iter().copied())
            .fold(0.0f32, f32::min);
        let scale = if row_min < 0.0 {
            Scale::Diverging {
                max: row_max.max(-row_min) as f64,
            }
        } else {
            Scale::Viridis {
                max: row_max as f64,
            }
        };
        let (h, w) = (maps.height as usize, maps.width as usize);
        let tiles: Vec<Tile> = maps
            .maps
            .iter()
            .filter(|m| m.values.len() == h * w)
            .map(|m| Tile {
                image: image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                    let c = scale.colour(m.values[y as usize * w + x as usize] as f64);
                    image::Rgb([c.0, c.1, c.2])
                }),
                caption: format!("feature {}\nmax {:.1}", m.feature, m.max),
            })
            .collect();
        rows.push(Row {
            label: format!("layer {layer}\n{name}\n{}x{}", maps.height, maps.width),
            tiles,
            bar: Some((scale, "activation".into())),
        });
    }
    let fig2 = Figure::Grid(GridFigure {
        title: "Fig. 2: activations at several depths (the 4 strongest features of each layer)".into(),
        rows,
        tile,
        notes: vec![
            "Each map: viridis from 0 to the largest activation among its layer's four maps (the colour bar on the right); where a layer's units pass negative values (linear or leaky layers), grey from -m (black) through 0 (mid-grey) to +m (white), m the largest magnitude shown.".into(),
        ],
    });
    let img = crate::plots::write_both(&fig2, &out.join("fig2"))?;
    show(&img);
    notes.push((
        "fig2".into(),
        format!("Feature maps at layers {picks:?}; the 4 features with the strongest activation per layer, each layer in viridis over [0, the layer's largest value shown] (grey over [-m, m] where it has negative values), with its colour bar."),
    ));

    // Figure 4: the strongest location of the last conv layer, its two
    // strongest features, four backward modes each, cropped to the FOV.
    // Clipped activations (ReLU6) tie at their ceiling; of the tied
    // neurons the one nearest the grid's centre shows its whole field of
    // view.
    say("figure 4: reconstructions");
    let top = client
        .top(pb::TopActivationsRequest {
            recording_id: id.clone(),
            layer: last.number.to_string(),
            k: 256,
            ..Default::default()
        })
        .await?;
    let strongest = top
        .activations
        .first()
        .ok_or_else(|| anyhow!("no activations at the last layer"))?
        .value;
    let off_centre = |a: &&pb::Activation| {
        let d = |v: u32, len: u32| (2 * i64::from(v) + 1 - i64::from(len)).abs();
        d(a.y, last.height) + d(a.x, last.width)
    };
    let best = *top
        .activations
        .iter()
        .take_while(|a| a.value == strongest)
        .min_by_key(off_centre)
        .ok_or_else(|| anyhow!("no activations at the last layer"))?;
    let maps = client
        .feature_maps(pb::GetFeatureMapsRequest {
            recording_id: id.clone(),
            layer: last.number.to_string(),
            ..Default::default()
        })
        .await?;
    let at = (best.y * maps.width + best.x) as usize;
    let mut ranked: Vec<(u32, f32)> = maps
        .maps
        .iter()
        .map(|m| (m.feature, m.values[at]))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let features: Vec<u32> = ranked.iter().take(2).map(|r| r.0).collect();
    let rr = client
        .reconstruct(pb::ReconstructRequest {
            recording_id: id.clone(),
            neurons: features
                .iter()
                .map(|&f| {
                    neuron(
                        &last.number.to_string(),
                        f as i32,
                        best.y as i32,
                        best.x as i32,
                    )
                })
                .collect(),
            modes: modes_of(ModeArg::All)
                .into_iter()
                .map(|m| m as i32)
                .collect(),
            seed,
            crop_to_fov: true,
            png_only: true,
            ..Default::default()
        })
        .await?;
    let fov = rr
        .reconstructions
        .first()
        .and_then(|r| r.fov)
        .unwrap_or_default();
    let size = 196u32;
    let mut rows = Vec::new();
    for (i, &f) in features.iter().enumerate() {
        let mut tiles = vec![Tile {
            image: with_box(&input, &fov),
            caption: "input, field of view".into(),
        }];
        for rec in rr
            .reconstructions
            .iter()
            .filter(|r| r.neuron_index as usize == i)
        {
            let s = rec.normalization.as_ref().map_or(0.0, |n| n.max);
            tiles.push(Tile {
                image: decode_png(&rec.png)?,
                caption: format!("{}\ns = {:.2e}", mode_label(rec.mode), s),
            });
        }
        rows.push(Row {
            label: format!("feature {f}\nat ({}, {})", best.y, best.x),
            tiles,
            bar: Some((Scale::Diverging { max: 1.0 }, "v / s".into())),
        });
    }
    let fig4 = Figure::Grid(GridFigure {
        title: format!(
            "Fig. 4: layer {} ({}) at ({}, {}), four backward modes",
            last.number, last.name, best.y, best.x
        ),
        rows,
        tile: size,
        notes: vec![
            format!(
                "Cropped to the field of view x {}..{}, y {}..{} (red box). One-hot start; random weights seeded with {seed}.",
                fov.x0, fov.x1, fov.y0, fov.y1
            ),
            "Normalisation: each colour channel 128 + 127.5 v / s, clamped (grey is 0); s, under each picture, is the 99.5th percentile of |v| over its nonzero values.".into(),
        ],
    });
    let img = crate::plots::write_both(&fig4, &out.join("fig4"))?;
    show(&img);
    let norms: Vec<String> = rr
        .reconstructions
        .iter()
        .filter(|r| r.neuron_index == 0)
        .map(|r| {
            format!(
                "{}: {}",
                mode_label(r.mode),
                r.normalization.clone().unwrap_or_default().description
            )
        })
        .collect();
    notes.push((
        "fig4".into(),
        format!(
            "Layer {} ({}) location (y {}, x {}), features {:?} (strongest there); field of view x {}..{}, y {}..{} (red box). Columns: deconvnet, deconvnet + masks, masks + random weights (seed {seed}), linear filter. One-hot start. Normalization: {}.",
            last.number, last.name, best.y, best.x, features, fov.x0, fov.x1, fov.y0, fov.y1, norms.join("; ")
        ),
    ));

    // Figure 5: three maximizations of the same neuron.
    say("figure 5: maximizations");
    let req = fovea_client::recommended_maximize(
        neuron(
            &last.number.to_string(),
            features[0] as i32,
            best.y as i32,
            best.x as i32,
        ),
        steps,
        seed,
    );
    let result = maximize_with_progress(client, req.clone(), progress).await?;
    let tiles: Vec<Tile> = result
        .pngs
        .iter()
        .zip(&result.objective)
        .enumerate()
        .map(|(i, (png, o))| {
            Ok(Tile {
                image: decode_png(png)?,
                caption: format!("start {}\npre-activation {o:.1}", i + 1),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let fig5 = Figure::Grid(GridFigure {
        title: format!(
            "Fig. 5: layer {} feature {} at ({}, {}) maximized from {} random starts",
            last.number,
            features[0],
            best.y,
            best.x,
            tiles.len()
        ),
        rows: vec![Row {
            label: format!("layer {}\nfeature {}", last.number, features[0]),
            tiles,
            bar: None,
        }],
        tile: size,
        notes: vec![
            format!(
                "{steps} steps of gradient ascent on the field of view, step {} on the RMS-normalised gradient, L2 decay {}, blur sigma {} every {} steps, jitter {} px; seed {seed}.",
                req.learning_rate, req.l2_decay, req.blur_sigma, req.blur_every, req.jitter
            ),
            "Pixels as the network sees them, mapped back through the preprocessing and clipped to 0..255.".into(),
        ],
    });
    let img = crate::plots::write_both(&fig5, &out.join("fig5"))?;
    show(&img);
    notes.push((
        "fig5".into(),
        format!(
            "Gradient ascent on the field of view of layer {} feature {} at (y {}, x {}): {steps} steps, seed {seed}, step {} pixel units on the RMS-normalised gradient, L2 decay {}, blur sigma {} every {} steps, jitter {}, clipped to 0..255. Final pre-activations {:?}. Pictures: the input-space image mapped back to pixels.",
            last.number,
            features[0],
            best.y,
            best.x,
            req.learning_rate,
            req.l2_decay,
            req.blur_sigma,
            req.blur_every,
            req.jitter,
            result.objective
        ),
    ));

    // Figure 6: activation statistics.
    say("figure 6: activation statistics");
    let stats = client
        .stats(pb::ActivationStatsRequest {
            recording_id: id.clone(),
            layers: vec![],
        })
        .await?;
    let img = crate::plots::write_both(&stats_figure(&stats), &out.join("fig6"))?;
    show(&img);
    let fractions: Vec<String> = stats
        .layers
        .iter()
        .map(|l| format!("{}: {:.2}", l.layer, l.fraction_active))
        .collect();
    notes.push((
        "fig6".into(),
        format!("Per layer, the histogram over locations of the number of active features. Fraction active per layer: {}.", fractions.join(", ")),
    ));

    // The random-weights study for this image; its control takes the
    // masks of a shipped sample photo.
    say("study: masks with random weights");
    let mut control = None;
    for sample in fovea_samples::SAMPLES {
        let other = client.record(sample.bytes.to_vec(), sample.name).await?;
        if other.recording_id != id {
            control = Some((sample, other.recording_id));
            break;
        }
    }
    let (control, control_id) =
        control.ok_or_else(|| anyhow!("no sample photo differs from the image"))?;
    let names = [image.to_path_buf(), PathBuf::from(control.name)];
    let settings = super::study::Settings {
        layer: &last.number.to_string(),
        neurons: 8,
        seed,
    };
    let mut measured = super::study::measure(
        client,
        &names,
        vec![id.clone(), control_id],
        &settings,
        progress,
    )
    .await?;
    measured.rows.retain(|r| r.image == names[0].as_path());
    let measured = super::study::summarised(measured);
    let img = crate::plots::write_both(&super::study::figure(&measured), &out.join("study"))?;
    show(&img);
    notes.push((
        "study".into(),
        format!(
            "{} Control masks from the sample photo {}.",
            super::study::summary_sentence(&measured),
            control.name
        ),
    ));

    let prov = model.provenance.clone().unwrap_or_default();
    let pre = model.preprocessing.clone().unwrap_or_default();
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Fovea figures</title>\n<style>body{font-family:sans-serif;max-width:70em;margin:auto} td{padding:0 1em 0 0;vertical-align:top} img{max-width:100%}</style></head><body>\n",
    );
    html.push_str(&format!(
        "<h1>Fovea figures for {}</h1>\n<table>\n",
        escape(&image.display().to_string())
    ));
    for (k, v) in [
        (
            "model",
            format!("{} ({} layers)", model.name, model.layers.len()),
        ),
        (
            "weights",
            format!("{} via {} — {}", prov.origin, prov.source, prov.path),
        ),
        ("sha256", prov.sha256.clone()),
        (
            "execution provider",
            format!(
                "{} (ONNX Runtime {})",
                model.execution_provider, model.onnxruntime_version
            ),
        ),
        (
            "preprocessing",
            format!(
                "{} profile: resize to {}x{} (bilinear), {} order, value = (pixel * {} - mean {:?}) / std {:?}",
                pre.profile,
                pre.input_size,
                pre.input_size,
                pre.channel_order,
                pre.scale,
                pre.mean,
                pre.std
            ),
        ),
        ("recording", id.clone()),
        ("seed", seed.to_string()),
    ] {
        html.push_str(&format!(
            "<tr><td><b>{k}</b></td><td>{}</td></tr>\n",
            escape(&v)
        ));
    }
    html.push_str("</table>\n");
    for (stem, note) in &notes {
        html.push_str(&format!(
            "<h2>{stem}</h2>\n<p>{} (<a href=\"{stem}.svg\">SVG</a>)</p>\n<img src=\"{stem}.png\">\n",
            escape(note)
        ));
    }
    html.push_str("</body></html>\n");
    std::fs::write(out.join("index.html"), html)
        .with_context(|| format!("{}", out.join("index.html").display()))?;
    let mut files: Vec<String> = notes
        .into_iter()
        .flat_map(|(stem, _)| [format!("{stem}.png"), format!("{stem}.svg")])
        .collect();
    files.push("index.html".into());
    Ok(files)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
