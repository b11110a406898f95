//! `s`: every picture on screen written as PNG, named by what it shows
//! (`L13_f286_y11x5_deconvnet.png`), each with a JSON sidecar of the
//! settings and the normalisation that made it.

use crate::app::App;
use crate::pictures::{PAGE, Panel, Pictures};
use fovea_client::picture;
use fovea_client::v1 as pb;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn mode_slug(m: i32) -> &'static str {
    crate::pictures::mode_names(m).1
}

fn fov_json(b: Option<&pb::Box>) -> Value {
    b.map_or(
        Value::Null,
        |b| json!({"x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1}),
    )
}

/// One file to write: its name, the picture (PNG bytes), the sidecar.
struct Shot {
    name: String,
    png: Vec<u8>,
    settings: Value,
}

fn encode(img: &image::RgbImage) -> Option<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).ok()?;
    Some(out.into_inner())
}

/// What `panel` shows, as files.
fn shots(app: &App, pictures: &Pictures, panel: Panel) -> Vec<Shot> {
    let layer = app.layer_number();
    let (f, (y, x)) = (app.feature, app.cursor);
    let neuron = format!("L{layer}_f{f}_y{y}x{x}");
    let common = json!({
        "image": app.image.as_ref().map(|p| p.display().to_string()),
        "recording_id": app.recording.as_ref().map(|r| r.recording_id.clone()),
        "model": app.model.as_ref().map(|m| m.name.clone()),
        "layer": layer,
    });
    let with = |extra: Value| {
        let mut v = common.clone();
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    };
    let composed = |name: String, settings: Value| -> Vec<Shot> {
        pictures
            .image(panel)
            .and_then(encode)
            .map(|png| Shot {
                name,
                png,
                settings,
            })
            .into_iter()
            .collect()
    };
    match panel {
        Panel::Input => {
            let stem = app
                .image
                .as_ref()
                .and_then(|p| p.file_stem())
                .map_or("input".into(), |s| s.to_string_lossy().into_owned());
            composed(
                format!("{stem}_input_{neuron}-fov"),
                with(
                    json!({"shows": "the network's input with the selected neuron's field of view",
                    "feature": f, "y": y, "x": x, "fov": fov_json(app.fov.as_ref())}),
                ),
            )
        }
        Panel::Map => composed(
            format!("L{layer}_f{f}_map_y{y}x{x}"),
            with(
                json!({"shows": "the feature's activation map, the selected location outlined",
                "feature": f, "y": y, "x": x,
                "normalisation": "viridis from 0 to the map's maximum",
                "max": app.maps.as_ref().and_then(|m| m.maps.iter().find(|m| m.feature == f)).map(|m| m.max)}),
            ),
        ),
        Panel::Grid => {
            let page = f / PAGE;
            composed(
                format!("L{layer}_features{}-{}", page * PAGE, (page + 1) * PAGE - 1),
                with(
                    json!({"shows": "a page of the layer's feature maps, the selected outlined",
                    "selected": f, "normalisation": "viridis from 0 to each map's own maximum"}),
                ),
            )
        }
        Panel::Reconstructions if app.show_patches => composed(
            format!("L{layer}_f{f}_scan-top"),
            with(
                json!({"shows": "the scan's strongest images for the feature",
                "feature": f,
                "hits": app.patches.iter().map(|h| json!({"image": h.image, "value": h.value, "y": h.y, "x": h.x})).collect::<Vec<_>>()}),
            ),
        ),
        Panel::Reconstructions => app
            .reconstructions
            .iter()
            .map(|r| Shot {
                name: format!("{neuron}_{}", mode_slug(r.mode)),
                png: r.png.clone(),
                settings: with(json!({
                    "shows": "a backward reconstruction of the neuron onto the input",
                    "feature": f, "y": y, "x": x,
                    "mode": mode_slug(r.mode),
                    "seed": app.seed,
                    "activation": r.activation,
                    "fov": fov_json(r.fov.as_ref()),
                    "normalisation": r.normalization.as_ref().map(|n| json!({
                        "kind": n.kind, "max_abs": n.max_abs, "min": n.min, "max": n.max,
                        "colormap": n.colormap, "description": n.description,
                    })),
                })),
            })
            .collect(),
        Panel::Maximize => {
            let (ml, mf, my, mx) = app.max.neuron.unwrap_or((layer, f, y, x));
            app.max
                .previews
                .iter()
                .enumerate()
                .map(|(i, png)| Shot {
                    name: format!("L{ml}_f{mf}_y{my}x{mx}_maximized_start{}", i + 1),
                    png: png.clone(),
                    settings: with(json!({
                        "shows": "an input maximizing the neuron, from one random start",
                        "layer": ml, "feature": mf, "y": my, "x": mx,
                        "optimised_for": app.max.subject,
                        "start": i + 1,
                        "finished": app.max.result.is_some(),
                        "step": app.max.step, "steps": app.max.total,
                        "objective": app.max.history.get(i).and_then(|h| h.last()),
                        "seed": app.seed,
                    })),
                })
                .collect()
        }
    }
}

/// The histogram of active features per location (fig. 6) as a plot.
fn histogram_shot(app: &App) -> Option<Shot> {
    let s = app.stats.as_ref()?.layers.get(app.layer)?;
    let img = picture::histogram_plot(
        &format!("layer {}: locations by active features", s.layer),
        &s.histogram,
        "active features",
        "locations",
        480,
        300,
    );
    Some(Shot {
        name: format!("L{}_active-features-histogram", s.layer),
        png: encode(&img)?,
        settings: json!({
            "image": app.image.as_ref().map(|p| p.display().to_string()),
            "layer": s.layer, "features": s.features, "locations": s.locations,
            "fraction_active": s.fraction_active, "counts": s.histogram,
        }),
    })
}

/// Writes the pictures of `panels` (and the histogram when it is on
/// screen) into `dir`; returns the pictures written.
pub fn save(
    app: &App,
    pictures: &Pictures,
    panels: &[Panel],
    histogram: bool,
    dir: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut all: Vec<Shot> = panels
        .iter()
        .flat_map(|p| shots(app, pictures, *p))
        .collect();
    if histogram {
        all.extend(histogram_shot(app));
    }
    let mut written = Vec::new();
    for s in all {
        let png = dir.join(format!("{}.png", s.name));
        std::fs::write(&png, &s.png)?;
        let text = serde_json::to_string_pretty(&s.settings).map_err(std::io::Error::other)?;
        std::fs::write(png.with_extension("json"), text)?;
        written.push(png);
    }
    Ok(written)
}
