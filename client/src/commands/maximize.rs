//! `fovea maximize`: best-input maximization of one neuron from several
//! random starts, with a progress bar; Ctrl-C stops it.

use super::figures::maximize_with_progress;
use super::{Context, NeuronPicture, decode_png, layer_of, parse_at, save};
use fovea_client::v1 as pb;
use fovea_client::{maximize_defaults as d, neuron, picture};
use image::RgbImage;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    target: super::FeatureArgs,
    /// Location `Y,X`; default the centre of the layer's grid.
    #[arg(long)]
    at: Option<String>,
    #[arg(long, default_value_t = d::STARTS)]
    starts: u32,
    #[arg(long, default_value_t = d::STEPS)]
    steps: u32,
    #[arg(long, default_value_t = d::LEARNING_RATE)]
    learning_rate: f32,
    #[arg(long, default_value_t = d::L2_DECAY)]
    l2_decay: f32,
    #[arg(long, default_value_t = d::BLUR_SIGMA)]
    blur_sigma: f32,
    #[arg(long, default_value_t = d::BLUR_EVERY)]
    blur_every: u32,
    #[arg(long, default_value_t = d::JITTER)]
    jitter: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(short, long, default_value = "maximized.png")]
    out: PathBuf,
}

#[derive(Serialize)]
struct View<'a> {
    #[serde(flatten)]
    neuron: NeuronPicture<'a>,
    objective: &'a [f32],
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let model = ctx.client.model().await?;
    let (layer, feature) = (&args.target.layer, args.target.feature);
    let l = layer_of(&model, layer)?;
    let (y, x) = match &args.at {
        Some(a) => parse_at(a)?,
        None => ((l.height / 2) as i32, (l.width / 2) as i32),
    };
    let req = pb::MaximizeRequest {
        neuron: Some(neuron(layer, feature as i32, y, x)),
        starts: args.starts,
        steps: args.steps,
        learning_rate: args.learning_rate,
        l2_decay: args.l2_decay,
        blur_sigma: args.blur_sigma,
        blur_every: args.blur_every,
        jitter: args.jitter,
        seed: args.seed,
        clip: Some(true),
        ..Default::default()
    };
    let result = maximize_with_progress(&ctx.client, req, !ctx.json).await?;
    let tiles: Vec<RgbImage> = result
        .pngs
        .iter()
        .zip(&result.objective)
        .enumerate()
        .map(|(i, (png, obj))| {
            let img = decode_png(png)?;
            let w = img.width().max(160);
            let caption = format!("start {} ({obj:.1})", i + 1);
            Ok(picture::captioned(&img, &caption, w))
        })
        .collect::<anyhow::Result<_>>()?;
    let title = if l.kind == pb::LayerKind::Dense as i32 {
        format!("layer {layer} unit {feature}: maximized")
    } else {
        format!("layer {layer} feature {feature} at ({y},{x}): maximized")
    };
    let img = picture::grid(&tiles, tiles.len(), Some(&title));
    save(&img, &args.out)?;
    let view = View {
        neuron: NeuronPicture {
            layer,
            feature,
            y,
            x,
            out: &args.out,
        },
        objective: &result.objective,
    };
    ctx.print(&view, || {
        println!("pre-activation per start: {:?}", result.objective);
        println!("wrote {}", args.out.display());
    });
    ctx.show(&img);
    Ok(())
}
