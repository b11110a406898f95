//! `fovea maximize`: best-input maximization of one neuron from several
//! random starts, with a progress bar; Ctrl-C stops it.

use super::figures::maximize_with_progress;
use super::{Context, decode_png, layer_of, parse_at, save};
use fovea_client::v1 as pb;
use fovea_client::{maximize_defaults as d, neuron, picture};
use image::RgbImage;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum ParamArg {
    /// The pixels (through a sigmoid to the valid range).
    Pixels,
    /// Lucid's decorrelated Fourier parameterisation.
    Fourier,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value = "13")]
    layer: String,
    /// The neuron's feature (with --at its location; default the centre).
    #[arg(long, conflicts_with_all = ["channel", "objective"])]
    feature: Option<u32>,
    /// Location `Y,X`; default the centre of the layer's grid.
    #[arg(long)]
    at: Option<String>,
    /// Visualise a whole channel of --layer (the mean of its map) over the
    /// whole image: Fourier parameterisation and random transformations by
    /// default.
    #[arg(long, conflicts_with = "objective")]
    channel: Option<u32>,
    /// Visualise an objective, such as 'channel(10,42) - 0.5*channel(10,7)';
    /// terms neuron(L,F,Y,X), channel(L,C), layer(L), direction(L),
    /// class(K), each with an optional weight W*.
    #[arg(long)]
    objective: Option<String>,
    /// direction(L)'s vector: a file of one weight per channel (separated by
    /// spaces, commas or lines).
    #[arg(long)]
    direction: Option<PathBuf>,
    /// Parameterisation: the neuron's FOV pixels (the paper's maximization,
    /// the default for --feature), or with an objective (and for a neuron,
    /// over the whole image) pixels or fourier (the default).
    #[arg(long, value_enum)]
    param: Option<ParamArg>,
    /// Random scale each step: [1 - S, 1 + S] (objectives; default 0.1).
    #[arg(long)]
    scale: Option<f32>,
    /// Random rotation each step, degrees (objectives; default 10).
    #[arg(long)]
    rotate: Option<f32>,
    /// Weight of the diversity penalty across the starts (objectives).
    #[arg(long, default_value_t = 0.0)]
    diversity: f32,
    /// Default 3 for a neuron, 1 for an objective.
    #[arg(long)]
    starts: Option<u32>,
    /// Default 200 for a neuron, 256 for an objective.
    #[arg(long)]
    steps: Option<u32>,
    /// Default 1 for a neuron (pixels per unit of RMS gradient), 0.05 for
    /// an objective (Adam).
    #[arg(long)]
    learning_rate: Option<f32>,
    #[arg(long, default_value_t = d::L2_DECAY)]
    l2_decay: f32,
    #[arg(long, default_value_t = d::BLUR_SIGMA)]
    blur_sigma: f32,
    #[arg(long, default_value_t = d::BLUR_EVERY)]
    blur_every: u32,
    /// Random shift in pixels each step; default 2 for a neuron, 8 for an
    /// objective.
    #[arg(long)]
    jitter: Option<u32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(short, long, default_value = "maximized.png")]
    out: PathBuf,
}

#[derive(Serialize)]
struct View<'a> {
    layer: &'a str,
    feature: Option<u32>,
    y: Option<i32>,
    x: Option<i32>,
    objective_expression: Option<&'a str>,
    out: &'a std::path::Path,
    objective: &'a [f32],
}

fn read_direction(path: &std::path::Path) -> anyhow::Result<Vec<f32>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f32>()
                .map_err(|_| anyhow::anyhow!("{}: {t:?} is not a number", path.display()))
        })
        .collect()
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let model = ctx.client.model().await?;
    let layer = &args.layer;
    // --layer matters to a neuron and a channel, not to an objective.
    let l = match &args.objective {
        Some(_) => pb::Layer::default(),
        None => layer_of(&model, layer)?.clone(),
    };
    let at = match &args.at {
        Some(a) => Some(parse_at(a)?),
        None => None,
    };
    let (y, x) = at.unwrap_or(((l.height / 2) as i32, (l.width / 2) as i32));
    // What is optimised: a neuron's FOV (the paper), or an objective over
    // the whole image.
    let objective = match (&args.objective, args.channel, args.feature, args.param) {
        (Some(o), _, _, _) => Some(o.clone()),
        (None, Some(c), _, _) => Some(format!("channel({layer},{c})")),
        (None, None, Some(f), Some(ParamArg::Fourier)) if l.kind != pb::LayerKind::Dense as i32 => {
            Some(format!("neuron({layer},{f},{y},{x})"))
        }
        (None, None, Some(_), _) => None,
        (None, None, None, _) => {
            anyhow::bail!("give --feature (a neuron), --channel or --objective")
        }
    };
    let req = match &objective {
        Some(expr) => pb::MaximizeRequest {
            objective: expr.clone(),
            direction: match &args.direction {
                Some(p) => read_direction(p)?,
                None => Vec::new(),
            },
            param: match args.param {
                Some(ParamArg::Pixels) => pb::Parameterization::ParamPixels,
                _ => pb::Parameterization::ParamFourier,
            } as i32,
            starts: args.starts.unwrap_or(1),
            steps: args.steps.unwrap_or(256),
            learning_rate: args.learning_rate.unwrap_or(0.05),
            jitter: args.jitter.unwrap_or(8),
            scale: args.scale,
            rotate: args.rotate,
            diversity: args.diversity,
            seed: args.seed,
            ..Default::default()
        },
        None => pb::MaximizeRequest {
            neuron: Some(neuron(layer, args.feature.unwrap_or(0) as i32, y, x)),
            starts: args.starts.unwrap_or(d::STARTS),
            steps: args.steps.unwrap_or(d::STEPS),
            learning_rate: args.learning_rate.unwrap_or(d::LEARNING_RATE),
            l2_decay: args.l2_decay,
            blur_sigma: args.blur_sigma,
            blur_every: args.blur_every,
            jitter: args.jitter.unwrap_or(d::JITTER),
            seed: args.seed,
            clip: Some(true),
            ..Default::default()
        },
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
            let caption = format!("start {} ({obj:.2})", i + 1);
            Ok(picture::captioned(&img, &caption, w))
        })
        .collect::<anyhow::Result<_>>()?;
    let feature = args.feature.unwrap_or(0);
    let title = match &objective {
        Some(expr) => format!("{expr}: visualised"),
        None if l.kind == pb::LayerKind::Dense as i32 => {
            format!("layer {layer} unit {feature}: maximized")
        }
        None => format!("layer {layer} feature {feature} at ({y},{x}): maximized"),
    };
    let img = picture::grid(&tiles, tiles.len(), Some(&title));
    save(&img, &args.out)?;
    let neuron_path = objective.is_none();
    let view = View {
        layer,
        feature: args.feature,
        y: neuron_path.then_some(y),
        x: neuron_path.then_some(x),
        objective_expression: objective.as_deref(),
        out: &args.out,
        objective: &result.objective,
    };
    ctx.print(&view, || {
        match &objective {
            Some(expr) => println!("{expr} per start: {:?}", result.objective),
            None => println!("pre-activation per start: {:?}", result.objective),
        }
        println!("wrote {}", args.out.display());
    });
    ctx.show(&img);
    Ok(())
}
