//! `fovea maps IMAGE`: a grid of a layer's feature maps.

use super::{Context, record_image, save};
use anyhow::anyhow;
use fovea_client::picture;
use fovea_client::v1 as pb;
use image::RgbImage;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    image: PathBuf,
    #[arg(long, default_value = "1")]
    layer: String,
    /// Features as `A..B` (end exclusive) or `A,B,C`; default all (at most 256).
    #[arg(long)]
    features: Option<String>,
    #[arg(short, long, default_value = "maps.png")]
    out: PathBuf,
}

/// How every map is coloured.
const NORMALIZATION: &str = "viridis, each map over [0, its max]";

#[derive(Serialize)]
struct View<'a> {
    layer: u32,
    height: u32,
    width: u32,
    out: &'a Path,
    features: Vec<Feature>,
    normalization: &'static str,
}

#[derive(Serialize)]
struct Feature {
    feature: u32,
    max: f32,
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let r = record_image(&ctx.client, &args.image).await?;
    let mut req = match &args.features {
        Some(f) => parse_features(f)?,
        None => pb::GetFeatureMapsRequest::default(),
    };
    req.recording_id = r.recording_id.clone();
    req.layer = args.layer.clone();
    let maps = ctx.client.feature_maps(req).await?;
    let shown: Vec<&pb::FeatureMap> = maps.maps.iter().take(256).collect();
    let tile = (96 / maps.width.max(1)).max(1) * maps.width;
    let tiles: Vec<RgbImage> = shown
        .iter()
        .map(|m| {
            let (img, _) = fovea_engine::probe::render::render_map(
                &m.values,
                maps.height as usize,
                maps.width as usize,
                m.max,
            );
            picture::captioned(
                &picture::scale_to(&img, tile, tile * maps.height / maps.width.max(1)),
                &format!("f{}", m.feature),
                tile.max(32),
            )
        })
        .collect();
    let cols = (tiles.len() as f64).sqrt().ceil() as usize;
    let title = format!("layer {} feature maps ({NORMALIZATION})", maps.layer);
    let img = picture::grid(&tiles, cols, Some(&title));
    save(&img, &args.out)?;
    let view = View {
        layer: maps.layer,
        height: maps.height,
        width: maps.width,
        out: &args.out,
        features: shown
            .iter()
            .map(|m| Feature {
                feature: m.feature,
                max: m.max,
            })
            .collect(),
        normalization: NORMALIZATION,
    };
    ctx.print(&view, || {
        println!(
            "wrote {} ({} maps of {}x{}, {NORMALIZATION})",
            args.out.display(),
            shown.len(),
            maps.height,
            maps.width
        );
    });
    ctx.show(&img);
    Ok(())
}

fn parse_features(s: &str) -> anyhow::Result<pb::GetFeatureMapsRequest> {
    let mut req = pb::GetFeatureMapsRequest::default();
    if let Some((a, b)) = s.split_once("..") {
        req.feature_start = Some(
            a.trim()
                .parse()
                .map_err(|_| anyhow!("--features {s:?}: expected A..B"))?,
        );
        req.feature_end = Some(
            b.trim()
                .parse()
                .map_err(|_| anyhow!("--features {s:?}: expected A..B"))?,
        );
    } else {
        req.features = s
            .split(',')
            .map(|f| f.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow!("--features {s:?}: expected A..B or A,B,C"))?;
    }
    Ok(req)
}
