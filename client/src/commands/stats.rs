//! `fovea stats IMAGE`: activation statistics per layer (paper fig. 6), a
//! table and a plot (PNG, or SVG by the file's extension).

use super::compare::write_figure;
use super::figures::stats_figure;
use super::{Context, record_image};
use fovea_client::v1 as pb;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    image: PathBuf,
    #[arg(short, long, default_value = "stats.png")]
    out: PathBuf,
}

#[derive(Serialize)]
struct View<'a> {
    out: &'a Path,
    layers: Vec<Layer<'a>>,
}

#[derive(Serialize)]
struct Layer<'a> {
    layer: u32,
    name: &'a str,
    features: u32,
    locations: u32,
    fraction_active: f32,
    histogram: &'a [u32],
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let r = record_image(&ctx.client, &args.image).await?;
    let stats = ctx
        .client
        .stats(pb::ActivationStatsRequest {
            recording_id: r.recording_id.clone(),
            layers: vec![],
        })
        .await?;
    let figure = stats_figure(&stats);
    let out = &args.out;
    let img = write_figure(&figure, out)?;
    let view = View {
        out,
        layers: stats
            .layers
            .iter()
            .map(|l| Layer {
                layer: l.layer,
                name: &l.name,
                features: l.features,
                locations: l.locations,
                fraction_active: l.fraction_active,
                histogram: &l.histogram,
            })
            .collect(),
    };
    ctx.print(&view, || {
        println!(
            "{:>3} {:<8} {:>8} {:>9} {:>9} {:>9}",
            "#", "name", "features", "locations", "active", "mean act."
        );
        for l in &stats.layers {
            let mean: f64 = l
                .histogram
                .iter()
                .enumerate()
                .map(|(n, &c)| n as f64 * c as f64)
                .sum::<f64>()
                / l.locations.max(1) as f64;
            println!(
                "{:>3} {:<8} {:>8} {:>9} {:>9.3} {:>9.1}",
                l.layer, l.name, l.features, l.locations, l.fraction_active, mean
            );
        }
        println!("wrote {}", out.display());
    });
    ctx.show(&img);
    Ok(())
}
