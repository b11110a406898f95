//! `fovead`: the Fovea daemon. Resolves ONNX Runtime and the model, then
//! serves the probe API with health and reflection.

use anyhow::{Context, bail};
use clap::Parser;
use fovea_daemon::credentials::TlsFile;
use fovea_daemon::flags::LoadFlags;
use fovea_daemon::server::{Listener, Security, ServiceOptions, State, serve};
use fovea_engine::model::profile::ImageLimits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "fovead",
    version,
    about = "Fovea daemon: probes a VGG-style network over gRPC",
    after_help = "Every flag can also be set through the environment variable named in its help (FOVEA_*), for example from a systemd EnvironmentFile.",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on (host:port), or unix:/path/to/socket.
    #[arg(long, default_value = "127.0.0.1:50051", env = "FOVEA_LISTEN")]
    listen: String,
    #[command(flatten)]
    load: LoadFlags,
    /// Bytes of recordings kept in memory.
    #[arg(long, default_value_t = 2 << 30, env = "FOVEA_CACHE_BYTES")]
    cache_bytes: usize,
    /// Also keep recordings in this folder, across restarts. (The model and
    /// ONNX Runtime cache is another folder: --cache-dir, FOVEA_CACHE_DIR.)
    #[arg(long, env = "FOVEA_RECORDINGS_DIR")]
    recordings_dir: Option<PathBuf>,
    /// Bytes the recordings folder may take.
    #[arg(long, default_value_t = 20 << 30, env = "FOVEA_RECORDINGS_DIR_BYTES")]
    recordings_dir_bytes: u64,
    /// Seconds in-flight work may take to finish after SIGTERM or SIGINT
    /// (maximizations stop within a step); a second signal exits at once.
    #[arg(long, default_value_t = 10, env = "FOVEA_SHUTDOWN_GRACE")]
    shutdown_grace: u64,
    /// Serve these dataset scan results (from `fovea scan`) through ScanTop.
    #[arg(long, env = "FOVEA_SCAN")]
    scan: Option<PathBuf>,
    /// Requests computing at once.
    #[arg(long, default_value_t = 2, env = "FOVEA_CONCURRENCY")]
    concurrency: usize,
    /// Requests waiting beyond those before the daemon answers RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 32, env = "FOVEA_QUEUE")]
    queue: usize,
    /// Largest encoded image accepted, bytes.
    #[arg(long, default_value_t = 32 << 20, env = "FOVEA_MAX_IMAGE_BYTES")]
    max_image_bytes: usize,
    /// Largest decoded image accepted, pixels.
    #[arg(long, default_value_t = 50_000_000, env = "FOVEA_MAX_IMAGE_PIXELS")]
    max_image_pixels: u64,
    /// Require this bearer token (first line of the file) on every probe call.
    #[arg(long, env = "FOVEA_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key.
    #[arg(long, env = "FOVEA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); with --tls-cert.
    #[arg(long, env = "FOVEA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow a non-loopback address without TLS or a token.
    #[arg(long, env = "FOVEA_INSECURE")]
    insecure: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "FOVEA_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Says, line by line, what running on the chosen provider needs (GPU,
    /// driver, ONNX Runtime, each CUDA library, cuDNN), where each was found,
    /// and the fix for each piece missing. Exits 1 when the daemon would not
    /// run on the provider asked for.
    Doctor(DoctorArgs),
    /// Fetches into the cache what the daemon would load (the model, ONNX
    /// Runtime, and with --ep cuda the CUDA libraries, driver or not), then
    /// exits: for a box that will be offline, or an image built ahead.
    Fetch(FetchArgs),
}

#[derive(clap::Args, Debug)]
struct FetchArgs {
    #[command(flatten)]
    load: LoadFlags,
    /// The model only.
    #[arg(long)]
    model_only: bool,
}

#[derive(clap::Args, Debug)]
struct DoctorArgs {
    #[command(flatten)]
    load: LoadFlags,
    /// Only look: fetch neither ONNX Runtime nor the CUDA libraries.
    #[arg(long)]
    no_fetch: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let args = Args::parse();
    fovea_daemon::progress::install_bars();
    init_logging(args.log_format);
    if let Some(Command::Doctor(d)) = &args.command {
        let cache = d
            .load
            .cache_dir
            .clone()
            .unwrap_or_else(fovea_engine::paths::cache_dir);
        let report = fovea_engine::launch::doctor::examine(&d.load.options(), &cache, !d.no_fetch);
        print!("{report}");
        std::process::exit(if report.satisfied() { 0 } else { 1 });
    }
    if let Some(Command::Fetch(f)) = &args.command {
        if let Err(e) = fetch(f) {
            eprintln!("fovead fetch: {}", format!("{e:#}").replace('\n', " "));
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run(args) {
        eprintln!("fovead: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn fetch(f: &FetchArgs) -> anyhow::Result<()> {
    use fovea_engine::supply::{ExecutionProvider, resolve_model, resolve_ort_library};
    let cache = f
        .load
        .cache_dir
        .clone()
        .unwrap_or_else(fovea_engine::paths::cache_dir);
    let (path, provenance) = resolve_model(&f.load.model, f.load.model_source, &cache)?;
    println!(
        "model         {} ({}, sha256 {})",
        path.display(),
        provenance.origin,
        provenance.sha256
    );
    if f.model_only {
        return Ok(());
    }
    let lib = resolve_ort_library(f.load.ort_lib.as_deref(), f.load.ep, &cache)?;
    println!("onnxruntime   {}", lib.display());
    if f.load.ep == ExecutionProvider::Cuda {
        let set = fovea_engine::supply::cuda::CudaSet::fetch(&cache)?;
        println!("cuda          {}", set.dir.display());
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn security(args: &Args) -> anyhow::Result<Security> {
    let token = match &args.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("--token-file {}", p.display()))?;
            let t = t.lines().next().unwrap_or("").trim().to_string();
            if let Err(why) = fovea_daemon::credentials::check_token(&t) {
                bail!("--token-file {}: {why}", p.display());
            }
            Some(Arc::from(t.as_str()))
        }
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            let cert = std::fs::read(c).with_context(|| format!("--tls-cert {}", c.display()))?;
            let key = std::fs::read(k).with_context(|| format!("--tls-key {}", k.display()))?;
            if let Err((file, why)) = fovea_daemon::credentials::check_tls(&cert, &key) {
                match file {
                    TlsFile::Cert => bail!("--tls-cert {}: {why}", c.display()),
                    TlsFile::Key => bail!("--tls-key {}: {why}", k.display()),
                }
            }
            Some((cert, key))
        }
        _ => None,
    };
    Ok(Security { token, tls })
}

fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let security = security(&args)?;
        let protected = security.token.is_some() || security.tls.is_some();
        let listener = bind(&args.listen, protected || args.insecure).await?;
        let state = State::new(ServiceOptions {
            cache_bytes: args.cache_bytes,
            cache_dir: args.recordings_dir.clone(),
            cache_dir_bytes: args.recordings_dir_bytes,
            scan: match &args.scan {
                Some(p) => Some(Arc::new(fovea_engine::probe::scan::ScanResults::load(p)?)),
                None => None,
            },
            image_limits: ImageLimits {
                max_bytes: args.max_image_bytes,
                max_pixels: args.max_image_pixels,
            },
            concurrency: args.concurrency,
            queue: args.queue,
        })?;
        // Load while already answering health (NOT_SERVING); a model that
        // cannot load ends the process with its one-line reason.
        let (fail_tx, mut fail_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
        let load = args.load.options();
        let loading = tokio::task::spawn_blocking(move || {
            fovea_engine::launch::load_for_serving(&load).map_err(anyhow::Error::from)
        });
        let ready = async move {
            match loading.await {
                Ok(Ok(engine)) => Some(engine),
                Ok(Err(e)) => {
                    let _ = fail_tx.send(e);
                    None
                }
                Err(e) => {
                    let _ = fail_tx.send(anyhow::anyhow!("loading failed: {e}"));
                    None
                }
            }
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let grace = std::time::Duration::from_secs(args.shutdown_grace);
        let socket = listener.socket_path();
        let shutdown = async move {
            tokio::select! {
                _ = shutdown_signal() => {
                    tracing::info!(
                        "shutting down: finishing in-flight work (at most {}s; a second signal exits now)",
                        grace.as_secs()
                    );
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = shutdown_signal() => tracing::warn!("second signal: exiting now"),
                            _ = tokio::time::sleep(grace) => tracing::warn!(
                                "in-flight work did not end within --shutdown-grace {}s: exiting",
                                grace.as_secs()
                            ),
                        }
                        if let Some(path) = socket {
                            let _ = std::fs::remove_file(path);
                        }
                        std::process::exit(1);
                    });
                }
                _ = stop_rx => {}
            }
        };
        let socket = listener.socket_path();
        let server = tokio::spawn(serve(listener, state, security, ready, shutdown));
        let outcome = tokio::select! {
            result = server => {
                result
                    .context("server task")
                    .and_then(|r| r.map_err(|e| anyhow::anyhow!("{e}")))
                    .map(|()| tracing::info!("stopped"))
            }
            Ok(e) = &mut fail_rx => {
                let _ = stop_tx.send(());
                Err(e)
            }
        };
        if let Some(path) = socket {
            let _ = std::fs::remove_file(path);
        }
        outcome
    })
}

async fn bind(listen: &str, exposed_ok: bool) -> anyhow::Result<Listener> {
    if let Some(path) = listen.strip_prefix("unix:") {
        // Replace only a stale socket from an earlier run: never a regular
        // file, nor the socket of a daemon still serving.
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                bail!(
                    "--listen {listen}: {path} exists and is not a socket; refusing to replace it"
                );
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!("--listen {listen}: another process is serving on {path}");
            }
            std::fs::remove_file(path)
                .with_context(|| format!("--listen {listen}: removing the stale socket"))?;
        }
        let l =
            tokio::net::UnixListener::bind(path).with_context(|| format!("--listen {listen}"))?;
        tracing::info!("listening on unix:{path}");
        return Ok(Listener::Unix(l));
    }
    let addr: SocketAddr = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("--listen {listen}: not a host:port address"))?
        .next()
        .with_context(|| format!("--listen {listen}: resolves to no address"))?;
    if !addr.ip().is_loopback() && !exposed_ok {
        bail!(
            "--listen {listen}: a non-loopback address needs --tls-cert/--tls-key or --token-file (or an explicit --insecure); or tunnel over SSH to 127.0.0.1"
        );
    }
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {listen}"))?;
    tracing::info!("listening on {}", l.local_addr()?);
    Ok(Listener::Tcp(l))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
