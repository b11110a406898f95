//! `fovea top IMAGE`: the strongest neurons of a layer.

use super::{Context, record_image};
use fovea_client::v1 as pb;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    image: PathBuf,
    #[arg(long, default_value = "13")]
    layer: String,
    #[arg(short, long, default_value_t = 9)]
    k: u32,
    /// Only this feature.
    #[arg(long)]
    feature: Option<u32>,
    /// Every location, so a feature can take several ranks; by default
    /// each feature appears once, at its strongest location.
    #[arg(long)]
    all_locations: bool,
}

#[derive(Serialize)]
struct View {
    layer: u32,
    activations: Vec<Activation>,
}

#[derive(Serialize)]
struct Activation {
    feature: u32,
    y: u32,
    x: u32,
    value: f32,
}

impl View {
    fn of(top: &pb::TopActivationsResponse) -> Self {
        View {
            layer: top.layer,
            activations: top
                .activations
                .iter()
                .map(|a| Activation {
                    feature: a.feature,
                    y: a.y,
                    x: a.x,
                    value: a.value,
                })
                .collect(),
        }
    }
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let r = record_image(&ctx.client, &args.image).await?;
    let distinct = args.feature.is_none() && !args.all_locations;
    let top = ctx
        .client
        .top(pb::TopActivationsRequest {
            recording_id: r.recording_id.clone(),
            layer: args.layer.clone(),
            k: args.k,
            feature: args.feature,
            distinct_features: distinct,
        })
        .await?;
    ctx.print(&View::of(&top), || {
        if distinct {
            println!(
                "layer {}: the {} strongest features, each at its strongest location",
                top.layer,
                top.activations.len()
            );
        } else {
            println!("layer {}: {} strongest", top.layer, top.activations.len());
        }
        println!(
            "{:>4} {:>8} {:>4} {:>4} {:>12}",
            "rank", "feature", "y", "x", "activation"
        );
        for (i, a) in top.activations.iter().enumerate() {
            println!(
                "{:>4} {:>8} {:>4} {:>4} {:>12.4}",
                i + 1,
                a.feature,
                a.y,
                a.x,
                a.value
            );
        }
    });
    Ok(())
}
