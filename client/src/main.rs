//! `fovea`: the command line of the Fovea probe API. Talks to a daemon given
//! by `--connect`, or starts one in-process.

mod figures;
mod plots;
mod scan;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use fovea_client::embedded::EmbeddedOptions;
use fovea_client::picture;
use fovea_client::{Client, ClientError, maximize_defaults, neuron, v1 as pb};
use fovea_daemon::flags::LoadFlags;
use image::RgbImage;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "fovea",
    version,
    about = "Probe a convolutional network: recordings, reconstructions, maximizations, the paper's figures",
    after_help = "Without --connect, a daemon is started in this process with the model options given before the command (for example `fovea --model my.onnx record cat.png`)."
)]
struct Cli {
    /// Address of a running fovead (host:port or unix:/path).
    #[arg(long, env = "FOVEA_CONNECT", global = true)]
    connect: Option<String>,
    /// File holding the bearer token of a daemon started with --token-file.
    #[arg(long, env = "FOVEA_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Certificate authority (PEM) to trust for a daemon serving TLS.
    #[arg(long, env = "FOVEA_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    /// Scan results for the in-process daemon to serve (ScanTop).
    #[arg(long, env = "FOVEA_SCAN", global = true)]
    scan_results: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Also print the log of the in-process daemon (-vv: more of it).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Also print pictures inline in the terminal.
    #[arg(long, global = true)]
    show: bool,
    /// Inline picture protocol for --show.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    graphics: Graphics,
    #[command(flatten)]
    load: LoadFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum ScanCommand {
    /// Merge shard results into one (exact, in any order).
    Merge {
        inputs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Graphics {
    Auto,
    Kitty,
    Iterm,
    Sixel,
    Blocks,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ModeArg {
    Deconvnet,
    Masked,
    Random,
    Linear,
    All,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The layer table, execution provider and where the weights came from.
    Model,
    /// Record an image: its id, top predictions and active fraction per layer.
    Record { image: PathBuf },
    /// The strongest neurons of a layer.
    Top {
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
    },
    /// A grid of a layer's feature maps.
    Maps {
        image: PathBuf,
        #[arg(long, default_value = "1")]
        layer: String,
        /// Features as `A..B` (end exclusive) or `A,B,C`; default all (at most 256).
        #[arg(long)]
        features: Option<String>,
        #[arg(short, long, default_value = "maps.png")]
        out: PathBuf,
    },
    /// Backward reconstructions of one neuron.
    Reconstruct {
        image: PathBuf,
        #[arg(long, default_value = "13")]
        layer: String,
        /// Feature; default the strongest at the location (or of the layer).
        #[arg(long)]
        feature: Option<u32>,
        /// Location `Y,X` in the layer's grid; default the feature's strongest.
        #[arg(long)]
        at: Option<String>,
        #[arg(long, value_enum, default_value = "all")]
        mode: ModeArg,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Start from the recorded activation instead of 1.
        #[arg(long)]
        recorded_start: bool,
        /// Render the whole frame instead of the field of view.
        #[arg(long)]
        full_frame: bool,
        #[arg(short, long, default_value = "reconstruction.png")]
        out: PathBuf,
    },
    /// Best-input maximization of one neuron from several random starts.
    Maximize {
        #[arg(long, default_value = "13")]
        layer: String,
        #[arg(long)]
        feature: u32,
        /// Location `Y,X`; default the centre of the layer's grid.
        #[arg(long)]
        at: Option<String>,
        #[arg(long, default_value_t = maximize_defaults::STARTS)]
        starts: u32,
        #[arg(long, default_value_t = maximize_defaults::STEPS)]
        steps: u32,
        #[arg(long, default_value_t = maximize_defaults::LEARNING_RATE)]
        learning_rate: f32,
        #[arg(long, default_value_t = maximize_defaults::L2_DECAY)]
        l2_decay: f32,
        #[arg(long, default_value_t = maximize_defaults::BLUR_SIGMA)]
        blur_sigma: f32,
        #[arg(long, default_value_t = maximize_defaults::BLUR_EVERY)]
        blur_every: u32,
        #[arg(long, default_value_t = maximize_defaults::JITTER)]
        jitter: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(short, long, default_value = "maximized.png")]
        out: PathBuf,
    },
    /// Activation statistics per layer (paper fig. 6): a table and a plot.
    Stats {
        image: PathBuf,
        #[arg(short, long, default_value = "stats.png")]
        out: PathBuf,
    },
    /// Reproduce the paper's figures 2, 4, 5 and 6 for an image.
    Figures {
        image: PathBuf,
        #[arg(long, default_value = "figs")]
        out: PathBuf,
        /// Maximization steps for figure 5.
        #[arg(long, default_value_t = 120)]
        steps: u32,
        /// Seed of the random weights (fig. 4) and the random starts (fig. 5).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Scan a dataset: for every conv feature, the k images where it fires
    /// hardest. Runs in this process; resumable; `--shard i/n` takes a slice.
    #[command(args_conflicts_with_subcommands = true)]
    Scan {
        #[command(subcommand)]
        merge: Option<ScanCommand>,
        /// Folder (searched recursively) or list file of images.
        input: Option<PathBuf>,
        /// Results file (also the checkpoint an interrupted scan resumes).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 9)]
        k: usize,
        /// Conv layers: `A..B` (inclusive) or `A,B,C`.
        #[arg(long, default_value = "1..13")]
        layers: String,
        /// This run's slice of the list, `i/n` (0-based).
        #[arg(long)]
        shard: Option<String>,
        /// Images per forward pass.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Save progress at least this often (seconds).
        #[arg(long, default_value_t = 5.0)]
        checkpoint_secs: f64,
    },
    /// The images where a feature fires hardest, from scan results loaded by
    /// the daemon (`--scan`), as a grid of field-of-view patches.
    ScanTop {
        #[arg(long, default_value = "13")]
        layer: String,
        #[arg(long)]
        feature: u32,
        #[arg(short, long, default_value_t = 9)]
        k: u32,
        /// Also record each image and show the neuron's four reconstructions
        /// there, one row per image.
        #[arg(long)]
        reconstruct: bool,
        #[arg(short, long, default_value = "scan-top.png")]
        out: PathBuf,
    },
    /// Check a daemon's health (exit 0 when it is serving).
    Health {
        /// Address (default: --connect, else 127.0.0.1:50051).
        addr: Option<String>,
    },
}

/// Exit codes: 1 failure, 2 bad arguments, 3 daemon unreachable, 130 interrupted.
#[derive(Debug)]
struct Exit(i32, anyhow::Error);

fn classify(e: anyhow::Error) -> Exit {
    let code = match e.downcast_ref::<ClientError>() {
        Some(ClientError::Transport { .. }) | Some(ClientError::Address { .. }) => 3,
        Some(ClientError::Status(s)) if s.code() == tonic::Code::InvalidArgument => 2,
        Some(ClientError::Status(s)) if s.code() == tonic::Code::Unavailable => 3,
        Some(ClientError::Status(s)) if s.code() == tonic::Code::Cancelled => 130,
        _ => 1,
    };
    Exit(code, e)
}

fn main() {
    let cli = Cli::parse();
    fovea_daemon::progress::install_bars();
    // The in-process daemon's log is for -v; by default only this
    // command's own messages reach the user.
    let level = match cli.verbose {
        0 => "off",
        1 => "info,ort=warn",
        _ => "debug,ort=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fovea: {e}");
            std::process::exit(1);
        }
    };
    if let Err(Exit(code, e)) = rt.block_on(run(cli)) {
        // One line: the causes joined, each said once.
        let err: &(dyn std::error::Error + 'static) = e.as_ref();
        eprintln!("fovea: {}", fovea_client::causes(err).replace('\n', " "));
        std::process::exit(code);
    }
}

/// Prints pictures inline when asked: at their own size where the
/// terminal is wide enough, so labels stay readable.
struct Shower {
    target: Option<fovea_term::Target>,
}

impl Shower {
    /// Asks the terminal what it draws (its answers are read, so none
    /// reach the screen). Off unless `--show` and stdout is a terminal.
    fn new(on: bool, graphics: Graphics) -> Shower {
        use fovea_term::{Protocol, Target, detect};
        use std::io::IsTerminal;
        if !on || !std::io::stdout().is_terminal() {
            return Shower { target: None };
        }
        let env = detect::Env::read();
        let passthrough = env.tmux.then(detect::tmux_passthrough).flatten();
        let replies = match (graphics, crossterm::terminal::enable_raw_mode()) {
            (Graphics::Blocks, _) | (_, Err(_)) => detect::Replies::default(),
            (_, Ok(())) => {
                let r = detect::query(
                    env.tmux && passthrough != Some(false),
                    std::time::Duration::from_secs(2),
                );
                let _ = crossterm::terminal::disable_raw_mode();
                r
            }
        };
        let support = detect::decide(&env, &replies, passthrough);
        // Printed pictures are placed directly: kitty's placeholders need
        // a cell grid, which a command's output is not.
        let detected = support
            .usable
            .iter()
            .copied()
            .find(|p| !(support.wrap && *p == Protocol::Kitty))
            .unwrap_or(Protocol::Blocks);
        let protocol = match graphics {
            Graphics::Auto => detected,
            Graphics::Kitty => Protocol::KittyDirect,
            Graphics::Iterm => Protocol::Iterm2,
            Graphics::Sixel => Protocol::Sixel,
            Graphics::Blocks => Protocol::Blocks,
        };
        if let Some(note) = &support.note {
            eprintln!("fovea: {note}");
        }
        Shower {
            target: Some(Target {
                protocol,
                cell: detect::cell_size(&replies),
                wrap: support.wrap,
                pane: None,
            }),
        }
    }

    fn show(&self, img: &RgbImage) {
        use std::io::Write;
        let Some(target) = &self.target else {
            return;
        };
        let cols = crossterm::terminal::size().map_or(80, |(c, _)| c);
        match fovea_term::inline(img, cols, target) {
            Ok(text) => {
                let mut out = std::io::stdout();
                let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
            }
            Err(e) => eprintln!("fovea: cannot show the picture inline: {e}"),
        }
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let (token, ca) =
        fovea_client::read_credentials(cli.token_file.as_deref(), cli.tls_ca.as_deref())?;
    let client = match &cli.connect {
        Some(addr) => {
            let mut c = Client::connect_with(addr, ca.as_deref()).await?;
            if let Some(t) = &token {
                c = c.with_token(t);
            }
            c.wait_ready(std::time::Duration::from_secs(30)).await?;
            c
        }
        None => {
            let opts = EmbeddedOptions::new(cli.load.options(), cli.scan_results.as_deref())?;
            Client::embedded(opts).await?
        }
    };
    Ok(client)
}

fn read_image(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}

pub(crate) async fn record(client: &Client, path: &Path) -> anyhow::Result<pb::RecordResponse> {
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

fn save(img: &RgbImage, path: &Path) -> anyhow::Result<()> {
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

pub(crate) fn modes_of(m: ModeArg) -> Vec<pb::ReconstructionMode> {
    match m {
        ModeArg::Deconvnet => vec![pb::ReconstructionMode::Deconvnet],
        ModeArg::Masked => vec![pb::ReconstructionMode::DeconvnetMasked],
        ModeArg::Random => vec![pb::ReconstructionMode::RandomWeights],
        ModeArg::Linear => vec![pb::ReconstructionMode::LinearFilter],
        ModeArg::All => vec![
            pb::ReconstructionMode::Deconvnet,
            pb::ReconstructionMode::DeconvnetMasked,
            pb::ReconstructionMode::RandomWeights,
            pb::ReconstructionMode::LinearFilter,
        ],
    }
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
            anyhow!(
                "layer {spec:?} does not exist; allowed 0..={} or a name such as conv5_3",
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

fn print_json(v: serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
    );
}

async fn run(cli: Cli) -> Result<(), Exit> {
    run_inner(cli).await.map_err(classify)
}

async fn run_inner(cli: Cli) -> anyhow::Result<()> {
    let shower = Shower::new(cli.show, cli.graphics);
    if let Command::Health { addr } = &cli.command {
        let addr = addr
            .clone()
            .or(cli.connect.clone())
            .unwrap_or_else(|| "127.0.0.1:50051".into());
        // Health answers without the token; TLS still needs its CA.
        let (_, ca) = fovea_client::read_credentials(None, cli.tls_ca.as_deref())?;
        let client = Client::connect_with(&addr, ca.as_deref()).await?;
        client.wait_ready(std::time::Duration::from_secs(2)).await?;
        if cli.json {
            print_json(json!({"address": addr, "status": "SERVING"}));
        } else {
            println!("{addr}: SERVING");
        }
        return Ok(());
    }
    if let Command::Scan {
        merge,
        input,
        out,
        k,
        layers,
        shard,
        batch,
        checkpoint_secs,
    } = &cli.command
    {
        return match merge {
            Some(ScanCommand::Merge { inputs, out }) => scan::merge(inputs, out, cli.json),
            None => {
                let input = input
                    .as_ref()
                    .ok_or_else(|| anyhow!("scan: give a folder or a list file of images"))?;
                let out = out
                    .as_ref()
                    .ok_or_else(|| anyhow!("scan: --out RESULTS is required"))?;
                let every = std::time::Duration::try_from_secs_f64(*checkpoint_secs)
                    .map_err(|_| anyhow!("--checkpoint-secs {checkpoint_secs}: not a duration"))?;
                let spec = scan::Spec {
                    k: *k,
                    layers,
                    shard: shard.as_deref(),
                    batch: *batch,
                    checkpoint_every: every,
                };
                scan::run(&cli.load.options(), input, out, spec, cli.json).await
            }
        };
    }
    let client = connect(&cli).await?;
    match &cli.command {
        Command::Scan { .. } => Ok(()),
        Command::ScanTop {
            layer,
            feature,
            k,
            reconstruct,
            out,
        } => {
            let top = client
                .scan_top(pb::ScanTopRequest {
                    layer: layer.clone(),
                    feature: *feature,
                    k: *k,
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
                if !reconstruct {
                    tiles.push(patch);
                    continue;
                }
                // The neuron in this image, all four modes.
                let r = record(&client, Path::new(&h.image)).await?;
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
            let img = if *reconstruct {
                picture::grid(&rows, 1, Some(&title))
            } else {
                let cols = (tiles.len() as f64).sqrt().ceil().max(1.0) as usize;
                picture::grid(&tiles, cols, Some(&title))
            };
            save(&img, out)?;
            if cli.json {
                print_json(json!({
                    "layer": top.layer, "feature": top.feature, "out": out, "scanned": top.scanned, "skipped": top.skipped,
                    "hits": top.hits.iter().map(|h| json!({"image": h.image, "value": h.value, "y": h.y, "x": h.x})).collect::<Vec<_>>(),
                }));
            } else {
                for h in &top.hits {
                    println!("{:>10.3}  ({:>2},{:>2})  {}", h.value, h.y, h.x, h.image);
                }
                println!("wrote {}", out.display());
            }
            shower.show(&img);
            Ok(())
        }
        Command::Health { .. } => Ok(()),
        Command::Model => {
            let m = client.model().await?;
            let prov = m.provenance.clone().unwrap_or_default();
            let pre = m.preprocessing.clone().unwrap_or_default();
            if cli.json {
                print_json(json!({
                    "name": m.name,
                    "execution_provider": m.execution_provider,
                    "onnxruntime_version": m.onnxruntime_version,
                    "runtime": m.runtime.as_ref().map(|r| json!({"provider": r.provider, "device": r.device, "driver_version": r.driver_version, "cpu_reason": r.cpu_reason, "onnxruntime_library": r.onnxruntime_library, "cuda_libraries": r.cuda_libraries, "cudnn_version": r.cudnn_version})),
                    "num_classes": m.num_classes,
                    "provenance": {"source": prov.source, "origin": prov.origin, "path": prov.path, "sha256": prov.sha256, "size_bytes": prov.size_bytes},
                    "preprocessing": {"profile": pre.profile, "input_size": pre.input_size, "layout": pre.layout, "channel_order": pre.channel_order, "scale": pre.scale, "mean": pre.mean, "std": pre.std},
                    "layers": m.layers.iter().map(|l| json!({
                        "number": l.number, "name": l.name, "kind": pb::LayerKind::try_from(l.kind).map(|k| k.as_str_name()).unwrap_or("?"),
                        "channels": l.channels, "height": l.height, "width": l.width, "pooled": l.pooled, "fov": l.fov, "stride": l.stride,
                    })).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "{} on {} (ONNX Runtime {})",
                    m.name,
                    fovea_client::runtime_summary(&m),
                    m.onnxruntime_version
                );
                if let Some(r) = m.runtime.as_ref().filter(|r| r.provider == "cuda") {
                    println!(
                        "cuda:    driver {}, cuDNN {}, libraries: {}",
                        r.driver_version, r.cudnn_version, r.cuda_libraries
                    );
                }
                println!("weights: {} ({}), {}", prov.origin, prov.source, prov.path);
                println!("sha256:  {}", prov.sha256);
                println!(
                    "input:   {}x{} {}, {} order, value = (pixel * {} - mean {:?}) / std {:?} [{}]",
                    pre.input_size,
                    pre.input_size,
                    pre.layout,
                    pre.channel_order,
                    pre.scale,
                    pre.mean,
                    pre.std,
                    pre.profile
                );
                println!(
                    "{:>3}  {:<8} {:>16} {:>6} {:>6}  pool",
                    "#", "name", "C x H x W", "FOV", "stride"
                );
                for l in &m.layers {
                    println!(
                        "{:>3}  {:<8} {:>16} {:>6} {:>6}  {}",
                        l.number,
                        l.name,
                        format!("{}x{}x{}", l.channels, l.height, l.width),
                        if l.fov > 0 {
                            l.fov.to_string()
                        } else {
                            "all".into()
                        },
                        if l.stride > 0 {
                            l.stride.to_string()
                        } else {
                            "-".into()
                        },
                        if l.pooled { "yes" } else { "" }
                    );
                }
            }
            Ok(())
        }
        Command::Record { image } => {
            let r = record(&client, image).await?;
            if cli.json {
                print_json(json!({
                    "recording_id": r.recording_id,
                    "original": [r.original_width, r.original_height],
                    "input": [r.input_width, r.input_height],
                    "cached": r.cached,
                    "predictions": r.predictions.iter().map(|p| json!({"class": p.class_index, "label": p.label, "score": p.score})).collect::<Vec<_>>(),
                    "fraction_active": r.activity.iter().map(|a| json!({"layer": a.layer, "fraction": a.fraction_active})).collect::<Vec<_>>(),
                }));
            } else {
                println!("recording {}", r.recording_id);
                println!(
                    "image {}x{} -> input {}x{}{}",
                    r.original_width,
                    r.original_height,
                    r.input_width,
                    r.input_height,
                    if r.cached { " (cached)" } else { "" }
                );
                for p in &r.predictions {
                    println!(
                        "  class {:>4} {:<20} {:.4}",
                        p.class_index, p.label, p.score
                    );
                }
                println!("fraction of units active:");
                for a in &r.activity {
                    let bar = "#".repeat((a.fraction_active * 40.0).round() as usize);
                    println!("  layer {:>2}  {:.3}  {bar}", a.layer, a.fraction_active);
                }
            }
            shower.show(&decode_png(&r.input_png)?);
            Ok(())
        }
        Command::Top {
            image,
            layer,
            k,
            feature,
            all_locations,
        } => {
            let r = record(&client, image).await?;
            let top = client
                .top(pb::TopActivationsRequest {
                    recording_id: r.recording_id.clone(),
                    layer: layer.clone(),
                    k: *k,
                    feature: *feature,
                    distinct_features: feature.is_none() && !all_locations,
                })
                .await?;
            if cli.json {
                print_json(json!({
                    "layer": top.layer,
                    "activations": top.activations.iter().map(|a| json!({"feature": a.feature, "y": a.y, "x": a.x, "value": a.value})).collect::<Vec<_>>(),
                }));
            } else {
                if feature.is_none() && !all_locations {
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
            }
            Ok(())
        }
        Command::Maps {
            image,
            layer,
            features,
            out,
        } => {
            let r = record(&client, image).await?;
            let mut req = match features {
                Some(f) => parse_features(f)?,
                None => pb::GetFeatureMapsRequest::default(),
            };
            req.recording_id = r.recording_id.clone();
            req.layer = layer.clone();
            let maps = client.feature_maps(req).await?;
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
            let title = format!(
                "layer {} feature maps (viridis, each over [0, its max])",
                maps.layer
            );
            let img = picture::grid(&tiles, cols, Some(&title));
            save(&img, out)?;
            if cli.json {
                print_json(json!({
                    "layer": maps.layer, "height": maps.height, "width": maps.width, "out": out,
                    "features": shown.iter().map(|m| json!({"feature": m.feature, "max": m.max})).collect::<Vec<_>>(),
                    "normalization": "viridis, each map over [0, its max]",
                }));
            } else {
                println!(
                    "wrote {} ({} maps of {}x{}, viridis, each over [0, its max])",
                    out.display(),
                    shown.len(),
                    maps.height,
                    maps.width
                );
            }
            shower.show(&img);
            Ok(())
        }
        Command::Reconstruct {
            image,
            layer,
            feature,
            at,
            mode,
            seed,
            recorded_start,
            full_frame,
            out,
        } => {
            let r = record(&client, image).await?;
            let at = at.as_deref().map(parse_at).transpose()?;
            let (f, y, x) = choose_neuron(&client, &r.recording_id, layer, *feature, at).await?;
            let rr = client
                .reconstruct(pb::ReconstructRequest {
                    recording_id: r.recording_id.clone(),
                    neurons: vec![neuron(layer, f as i32, y, x)],
                    modes: modes_of(*mode).into_iter().map(|m| m as i32).collect(),
                    start: if *recorded_start {
                        pb::StartValue::RecordedActivation as i32
                    } else {
                        pb::StartValue::OneHot as i32
                    },
                    seed: *seed,
                    crop_to_fov: !full_frame,
                    png_only: true,
                    effective_bias: true,
                })
                .await?;
            // One mode: the picture itself (FOV-sized unless --full-frame);
            // several: captioned side by side.
            let title = format!("layer {layer} feature {f} at ({y},{x})");
            let img = if let [only] = rr.reconstructions.as_slice() {
                decode_png(&only.png)?
            } else {
                let panels = rr
                    .reconstructions
                    .iter()
                    .map(|rec| {
                        let img = decode_png(&rec.png)?;
                        let w = img.width().max(160);
                        Ok(picture::captioned(&img, mode_label(rec.mode), w))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                picture::grid(&panels, panels.len(), Some(&title))
            };
            save(&img, out)?;
            let fov = rr
                .reconstructions
                .first()
                .and_then(|r| r.fov)
                .unwrap_or_default();
            if cli.json {
                print_json(json!({
                    "layer": layer, "feature": f, "y": y, "x": x, "out": out,
                    "fov": [fov.x0, fov.y0, fov.x1, fov.y1],
                    "reconstructions": rr.reconstructions.iter().map(|r| json!({
                        "mode": mode_label(r.mode),
                        "activation": r.activation,
                        "effective_bias": r.effective_bias,
                        "normalization": r.normalization.as_ref().map(|n| n.description.clone()),
                    })).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "{title}: activation {:.4}, field of view x {}..{}, y {}..{}",
                    rr.reconstructions.first().map_or(0.0, |r| r.activation),
                    fov.x0,
                    fov.x1,
                    fov.y0,
                    fov.y1
                );
                for rec in &rr.reconstructions {
                    let n = rec.normalization.clone().unwrap_or_default();
                    println!("  {:<24} {}", mode_label(rec.mode), n.description);
                }
                println!("wrote {}", out.display());
            }
            shower.show(&img);
            Ok(())
        }
        Command::Maximize {
            layer,
            feature,
            at,
            starts,
            steps,
            learning_rate,
            l2_decay,
            blur_sigma,
            blur_every,
            jitter,
            seed,
            out,
        } => {
            let model = client.model().await?;
            let l = layer_of(&model, layer)?;
            let (y, x) = match at {
                Some(a) => parse_at(a)?,
                None => ((l.height / 2) as i32, (l.width / 2) as i32),
            };
            let req = pb::MaximizeRequest {
                neuron: Some(neuron(layer, *feature as i32, y, x)),
                starts: *starts,
                steps: *steps,
                learning_rate: *learning_rate,
                l2_decay: *l2_decay,
                blur_sigma: *blur_sigma,
                blur_every: *blur_every,
                jitter: *jitter,
                seed: *seed,
                clip: Some(true),
                ..Default::default()
            };
            let result = figures::maximize_with_progress(&client, req, !cli.json).await?;
            let tiles: Vec<RgbImage> = result
                .pngs
                .iter()
                .zip(&result.objective)
                .enumerate()
                .map(|(i, (png, obj))| {
                    let img = decode_png(png)?;
                    let w = img.width().max(160);
                    Ok(picture::captioned(
                        &img,
                        &format!("start {} ({obj:.1})", i + 1),
                        w,
                    ))
                })
                .collect::<anyhow::Result<_>>()?;
            let title = if l.kind == pb::LayerKind::Dense as i32 {
                format!("layer {layer} unit {feature}: maximized")
            } else {
                format!("layer {layer} feature {feature} at ({y},{x}): maximized")
            };
            let img = picture::grid(&tiles, tiles.len(), Some(&title));
            save(&img, out)?;
            if cli.json {
                print_json(
                    json!({"layer": layer, "feature": feature, "y": y, "x": x, "out": out, "objective": result.objective}),
                );
            } else {
                println!("pre-activation per start: {:?}", result.objective);
                println!("wrote {}", out.display());
            }
            shower.show(&img);
            Ok(())
        }
        Command::Stats { image, out } => {
            let r = record(&client, image).await?;
            let stats = client
                .stats(pb::ActivationStatsRequest {
                    recording_id: r.recording_id.clone(),
                    layers: vec![],
                })
                .await?;
            let figure = figures::stats_figure(&stats);
            let img = if out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
            {
                plots::write_svg(&figure, out)?;
                plots::render(&figure)?
            } else {
                let img = plots::render(&figure)?;
                save(&img, out)?;
                img
            };
            if cli.json {
                print_json(json!({
                    "out": out,
                    "layers": stats.layers.iter().map(|l| json!({
                        "layer": l.layer, "name": l.name, "features": l.features, "locations": l.locations,
                        "fraction_active": l.fraction_active, "histogram": l.histogram,
                    })).collect::<Vec<_>>(),
                }));
            } else {
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
            }
            shower.show(&img);
            Ok(())
        }
        Command::Figures {
            image,
            out,
            steps,
            seed,
        } => {
            let written = figures::all(
                &client,
                image,
                out,
                *steps,
                *seed,
                !cli.json,
                &shower_fn(&shower),
            )
            .await?;
            if cli.json {
                print_json(json!({"out": out, "files": written}));
            } else {
                for w in &written {
                    println!("wrote {}", out.join(w).display());
                }
            }
            Ok(())
        }
    }
}

fn shower_fn(s: &Shower) -> impl Fn(&RgbImage) + '_ {
    move |img| s.show(img)
}
