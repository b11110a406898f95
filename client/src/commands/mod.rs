//! The commands of `fovea`, one file each: its arguments, what it asks the
//! daemon, what it prints (text, or `--json` from the serde view of its
//! answer) and the pictures it writes. Helpers several commands share live
//! here.

pub mod attribute;
pub mod compare;
pub mod figures;
pub mod health;
pub mod maps;
pub mod maximize;
pub mod model;
pub mod reconstruct;
pub mod record;
pub mod regions;
pub mod scan;
pub mod scan_top;
pub mod stats;
pub mod study;
pub mod top;

use crate::show::Shower;
use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use fovea_client::{Client, v1 as pb};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The layer table, execution provider and where the weights came from.
    Model,
    /// Record an image: its id, top predictions and active fraction per layer.
    Record(record::Args),
    /// The strongest neurons of a layer.
    Top(top::Args),
    /// A grid of a layer's feature maps.
    Maps(maps::Args),
    /// Backward reconstructions of one neuron.
    Reconstruct(reconstruct::Args),
    /// Best-input maximization of one neuron from several random starts.
    Maximize(maximize::Args),
    /// Activation statistics per layer (paper fig. 6): a table and a plot.
    Stats(stats::Args),
    /// Reproduce the paper's figures 2, 4, 5 and 6 for an image.
    Figures(figures::Args),
    /// Scan a dataset: for every conv feature, the k images where it fires
    /// hardest. Runs in this process; resumable; `--shard i/n` takes a slice.
    #[command(args_conflicts_with_subcommands = true)]
    Scan(scan::Args),
    /// The images where a feature fires hardest, from scan results loaded by
    /// the daemon (`--scan`), as a grid of field-of-view patches.
    ScanTop(scan_top::Args),
    /// How alike two images' activation patterns are per layer (ReLU
    /// states, pool switches), or a neuron's FOV tree; `--many DIR` gives
    /// the pairwise matrix of a set.
    Compare(compare::Args),
    /// The linear region of a neuron around an image along a direction,
    /// and its piecewise-linear profile along the line.
    Regions(regions::Args),
    /// The random-weights claim measured on your images: masked
    /// reconstructions with random weights against trained ones and two
    /// controls, and the linear filters' high frequencies (CSV, JSON, figure).
    Study(study::Args),
    /// Which pixels a class (or any dense unit) owes its value to:
    /// saliency, guided backprop, Grad-CAM, Guided Grad-CAM, integrated
    /// gradients.
    Attribute(attribute::Args),
    /// Check a daemon's health (exit 0 when it is serving).
    Health(health::Args),
}

/// A feature of a layer, as the commands that name both take them.
#[derive(clap::Args, Debug)]
pub struct FeatureArgs {
    #[arg(long, default_value = "13")]
    pub layer: String,
    #[arg(long)]
    pub feature: u32,
}

/// The neuron a command worked on and the picture it wrote, as `--json`
/// shows them.
#[derive(Serialize)]
pub struct NeuronPicture<'a> {
    pub layer: &'a str,
    pub feature: u32,
    pub y: i32,
    pub x: i32,
    pub out: &'a Path,
}

/// What a command that talks to a daemon works with.
pub struct Context {
    pub client: Client,
    /// Print JSON instead of text.
    pub json: bool,
    pub shower: Shower,
}

impl Context {
    /// Prints the command's answer: its view as JSON with `--json`, else
    /// the text `text` prints.
    pub fn print<T: Serialize>(&self, view: &T, text: impl FnOnce()) {
        if self.json {
            print_json(view);
        } else {
            text();
        }
    }

    pub fn show(&self, img: &RgbImage) {
        self.shower.show(img);
    }
}

pub fn print_json<T: Serialize>(view: &T) {
    match serde_json::to_string_pretty(view) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("fovea: cannot write the answer as JSON: {e}"),
    }
}

impl Command {
    /// Runs a command that talks to a daemon.
    pub async fn run(&self, ctx: &Context) -> anyhow::Result<()> {
        match self {
            Command::Model => model::run(ctx).await,
            Command::Record(a) => record::run(a, ctx).await,
            Command::Top(a) => top::run(a, ctx).await,
            Command::Maps(a) => maps::run(a, ctx).await,
            Command::Reconstruct(a) => reconstruct::run(a, ctx).await,
            Command::Maximize(a) => maximize::run(a, ctx).await,
            Command::Stats(a) => stats::run(a, ctx).await,
            Command::Figures(a) => figures::run(a, ctx).await,
            Command::ScanTop(a) => scan_top::run(a, ctx).await,
            Command::Compare(a) => compare::run(a, ctx).await,
            Command::Regions(a) => regions::run(a, ctx).await,
            Command::Study(a) => study::run(a, ctx).await,
            Command::Attribute(a) => attribute::run(a, ctx).await,
            // These need no daemon; `main` runs them before connecting.
            Command::Scan(_) | Command::Health(_) => Ok(()),
        }
    }
}

/// A progress bar (a spinner without `len`), hidden when `shown` is false.
pub(crate) fn progress_bar(shown: bool, len: Option<u64>, template: &str) -> ProgressBar {
    let bar = match (shown, len) {
        (false, _) => ProgressBar::hidden(),
        (true, Some(n)) => ProgressBar::new(n),
        (true, None) => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| match len {
            Some(_) => ProgressStyle::default_bar(),
            None => ProgressStyle::default_spinner(),
        }),
    );
    bar
}

/// Follows a streamed answer until `on` finds its result in an event
/// (`on` shows the progress ones on `bar`); Ctrl-C cancels the call on the
/// daemon.
pub(crate) async fn follow<E, R>(
    mut stream: tonic::Streaming<E>,
    bar: &ProgressBar,
    what: &str,
    mut on: impl FnMut(E) -> Option<R>,
) -> anyhow::Result<R> {
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                bar.abandon_with_message("cancelled");
                drop(stream);
                let cancelled = tonic::Status::cancelled(format!("{what} cancelled (Ctrl-C)"));
                return Err(fovea_client::ClientError::Status(cancelled).into());
            }
            event = stream.message() => match event? {
                None => break,
                Some(e) => {
                    if let Some(r) = on(e) {
                        bar.finish_and_clear();
                        return Ok(r);
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    Err(anyhow!("the daemon ended the {what} without a result"))
}

fn read_image(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}

pub async fn record_image(client: &Client, path: &Path) -> anyhow::Result<pb::RecordResponse> {
    let bytes = read_image(path)?;
    let label = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(client.record(bytes, &label).await?)
}

pub(crate) fn decode_png(bytes: &[u8]) -> anyhow::Result<RgbImage> {
    Ok(image::load_from_memory(bytes)
        .context("the daemon sent an unreadable picture")?
        .to_rgb8())
}

pub(crate) fn save(img: &RgbImage, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub(crate) fn parse_at(s: &str) -> anyhow::Result<(i32, i32)> {
    let (y, x) = s
        .split_once(',')
        .ok_or_else(|| anyhow!("--at {s:?}: expected Y,X (row, column in the layer's grid)"))?;
    let y: i32 = y
        .trim()
        .parse()
        .map_err(|_| anyhow!("--at {s:?}: Y is not a whole number"))?;
    let x: i32 = x
        .trim()
        .parse()
        .map_err(|_| anyhow!("--at {s:?}: X is not a whole number"))?;
    Ok((y, x))
}

pub(crate) fn mode_label(m: i32) -> &'static str {
    match pb::ReconstructionMode::try_from(m) {
        Ok(pb::ReconstructionMode::Deconvnet) => "deconvnet",
        Ok(pb::ReconstructionMode::DeconvnetMasked) => "deconvnet + masks",
        Ok(pb::ReconstructionMode::RandomWeights) => "masks + random weights",
        Ok(pb::ReconstructionMode::LinearFilter) => "linear filter",
        _ => "?",
    }
}

/// Finds a layer's description by number or name.
pub(crate) fn layer_of<'a>(model: &'a pb::ModelInfo, spec: &str) -> anyhow::Result<&'a pb::Layer> {
    model
        .layers
        .iter()
        .find(|l| l.name == spec || spec.parse::<u32>().ok() == Some(l.number))
        .ok_or_else(|| {
            let example = model
                .layers
                .iter()
                .rev()
                .find(|l| l.kind == pb::LayerKind::Conv as i32)
                .map_or_else(String::new, |l| format!(" or a name such as {}", l.name));
            anyhow!(
                "layer {spec:?} does not exist; allowed 0..={}{example}",
                model.layers.len().saturating_sub(1)
            )
        })
}

/// Resolves an unspecified feature and location to the strongest neuron.
pub(crate) async fn choose_neuron(
    client: &Client,
    id: &str,
    layer: &str,
    feature: Option<u32>,
    at: Option<(i32, i32)>,
) -> anyhow::Result<(u32, i32, i32)> {
    match (feature, at) {
        (Some(f), Some((y, x))) => Ok((f, y, x)),
        (f, None) => {
            let top = client
                .top(pb::TopActivationsRequest {
                    recording_id: id.into(),
                    layer: layer.into(),
                    k: 1,
                    feature: f,
                    ..Default::default()
                })
                .await?;
            let a = top
                .activations
                .first()
                .ok_or_else(|| anyhow!("layer {layer} has no neurons"))?;
            Ok((a.feature, a.y as i32, a.x as i32))
        }
        (None, Some((y, x))) => {
            // The strongest feature at that location: its maps' values there.
            let maps = client
                .feature_maps(pb::GetFeatureMapsRequest {
                    recording_id: id.into(),
                    layer: layer.into(),
                    ..Default::default()
                })
                .await?;
            let w = maps.width as i32;
            if y < 0 || x < 0 || y >= maps.height as i32 || x >= w {
                bail!(
                    "--at {y},{x} is outside the {}x{} grid of layer {layer}",
                    maps.height,
                    maps.width
                );
            }
            let best = maps
                .maps
                .iter()
                .max_by(|a, b| {
                    a.values[(y * w + x) as usize].total_cmp(&b.values[(y * w + x) as usize])
                })
                .ok_or_else(|| anyhow!("layer {layer} has no features"))?;
            Ok((best.feature, y, x))
        }
    }
}
