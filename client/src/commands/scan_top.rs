//! `fovea scan-top`: the images where a feature fires hardest, from the
//! scan results the daemon serves, as a grid of field-of-view patches
//! (with `--reconstruct`, each with the neuron's four reconstructions).

use super::{Context, decode_png, mode_label, record_image, save};
use fovea_client::v1 as pb;
use fovea_client::{neuron, picture};
use image::RgbImage;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    target: super::FeatureArgs,
    #[arg(short, long, default_value_t = 9)]
    k: u32,
    /// Also record each image and show the neuron's four reconstructions
    /// there, one row per image.
    #[arg(long)]
    reconstruct: bool,
    #[arg(short, long, default_value = "scan-top.png")]
    out: PathBuf,
}

#[derive(Serialize)]
struct View<'a> {
    layer: u32,
    feature: u32,
    out: &'a Path,
    scanned: u64,
    skipped: u64,
    hits: Vec<Hit<'a>>,
}

#[derive(Serialize)]
struct Hit<'a> {
    image: &'a str,
    value: f32,
    y: u32,
    x: u32,
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let client = &ctx.client;
    let top = client
        .scan_top(pb::ScanTopRequest {
            layer: args.target.layer.clone(),
            feature: args.target.feature,
            k: args.k,
            patches: Some(true),
        })
        .await?;
    let mut tiles: Vec<RgbImage> = Vec::new();
    let mut rows: Vec<RgbImage> = Vec::new();
    for h in top.hits.iter().filter(|h| !h.patch_png.is_empty()) {
        let name = Path::new(&h.image)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let patch = picture::captioned(
            &decode_png(&h.patch_png)?,
            &format!("{:.1} {name}", h.value),
            160,
        );
        if !args.reconstruct {
            tiles.push(patch);
            continue;
        }
        // The neuron in this image, all four modes.
        let r = record_image(client, Path::new(&h.image)).await?;
        let rr = client
            .reconstruct(pb::ReconstructRequest {
                recording_id: r.recording_id,
                neurons: vec![neuron(
                    &top.layer.to_string(),
                    top.feature as i32,
                    h.y as i32,
                    h.x as i32,
                )],
                crop_to_fov: true,
                png_only: true,
                ..Default::default()
            })
            .await?;
        let mut row = vec![patch];
        for rec in &rr.reconstructions {
            row.push(picture::captioned(
                &decode_png(&rec.png)?,
                mode_label(rec.mode),
                160,
            ));
        }
        rows.push(picture::grid(&row, row.len(), None));
    }
    let title = format!(
        "layer {} feature {}: strongest images",
        top.layer, top.feature
    );
    let img = if args.reconstruct {
        picture::grid(&rows, 1, Some(&title))
    } else {
        let cols = (tiles.len() as f64).sqrt().ceil().max(1.0) as usize;
        picture::grid(&tiles, cols, Some(&title))
    };
    save(&img, &args.out)?;
    let view = View {
        layer: top.layer,
        feature: top.feature,
        out: &args.out,
        scanned: top.scanned,
        skipped: top.skipped,
        hits: top
            .hits
            .iter()
            .map(|h| Hit {
                image: &h.image,
                value: h.value,
                y: h.y,
                x: h.x,
            })
            .collect(),
    };
    ctx.print(&view, || {
        for h in &top.hits {
            println!("{:>10.3}  ({:>2},{:>2})  {}", h.value, h.y, h.x, h.image);
        }
        println!("wrote {}", args.out.display());
    });
    ctx.show(&img);
    Ok(())
}
