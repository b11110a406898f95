//! `fovead`: the Fovea daemon. Resolves ONNX Runtime and the model, then
//! serves the probe API with health and reflection.

use anyhow::{Context, bail};
use clap::Parser;
use fovea_daemon::engine::{Engine, EngineOptions, Runtime};
use fovea_daemon::paths::cache_dir;
use fovea_daemon::profile::{ImageLimits, ProfileName};
use fovea_daemon::server::{Listener, ServiceOptions, State, serve};
use fovea_daemon::supply::{ExecutionProvider, ModelSource, resolve_model, resolve_ort_library};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "fovead", version, about = "Fovea daemon: probes a VGG-style network over gRPC")]
struct Args {
    /// Address to listen on (host:port), or unix:/path/to/socket.
    #[arg(long, default_value = "127.0.0.1:50051", env = "FOVEA_LISTEN")]
    listen: String,
    /// The model: `vgg16` for the default VGG-16, or a path to an ONNX file.
    #[arg(long, default_value = "vgg16", env = "FOVEA_MODEL")]
    model: String,
    /// Where the default model may come from.
    #[arg(long, value_enum, default_value = "auto", env = "FOVEA_MODEL_SOURCE")]
    model_source: ModelSource,
    /// The ONNX Runtime shared library (else ORT_DYLIB_PATH, the cache, an
    /// installed Python onnxruntime, or a pip fetch).
    #[arg(long, env = "FOVEA_ORT_LIB")]
    ort_lib: Option<PathBuf>,
    /// Execution provider.
    #[arg(long, value_enum, default_value = "auto", env = "FOVEA_EP")]
    ep: ExecutionProvider,
    /// ONNX Runtime intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0, env = "FOVEA_THREADS")]
    threads: usize,
    /// Side of the square network input, pixels.
    #[arg(long, default_value_t = 224, env = "FOVEA_INPUT_SIZE")]
    input_size: usize,
    /// Preprocessing profile (default: chosen from the model file).
    #[arg(long, value_enum, env = "FOVEA_PROFILE")]
    profile: Option<ProfileName>,
    /// Bytes of recordings kept in memory.
    #[arg(long, default_value_t = 2 << 30, env = "FOVEA_CACHE_BYTES")]
    cache_bytes: usize,
    /// Requests computing at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Requests waiting beyond those before the daemon answers RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// Largest encoded image accepted, bytes.
    #[arg(long, default_value_t = 32 << 20)]
    max_image_bytes: usize,
    /// Largest decoded image accepted, pixels.
    #[arg(long, default_value_t = 50_000_000)]
    max_image_pixels: u64,
    /// Write every generated ONNX graph to this folder.
    #[arg(long)]
    dump_graphs: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "FOVEA_LOG_FORMAT")]
    log_format: LogFormat,
    /// Allow listening on a non-loopback address without TLS or a token.
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let args = Args::parse();
    init_logging(args.log_format);
    if let Err(e) = run(args) {
        eprintln!("fovead: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = bind(&args).await?;
        let state = State::new(ServiceOptions {
            cache_bytes: args.cache_bytes,
            image_limits: ImageLimits {
                max_bytes: args.max_image_bytes,
                max_pixels: args.max_image_pixels,
            },
            concurrency: args.concurrency,
            queue: args.queue,
        });
        // Load while already answering health (NOT_SERVING); a model that
        // cannot load ends the process with its one-line reason.
        let (fail_tx, mut fail_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
        let loading = tokio::task::spawn_blocking(move || load(&args));
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
        let shutdown = async move {
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("shutting down"),
                _ = stop_rx => {}
            }
        };
        let server = tokio::spawn(serve(listener, state, ready, shutdown));
        tokio::select! {
            result = server => {
                result.context("server task")?.map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(())
            }
            Ok(e) = &mut fail_rx => {
                let _ = stop_tx.send(());
                Err(e)
            }
        }
    })
}

fn load(args: &Args) -> anyhow::Result<Arc<Engine>> {
    let cache = cache_dir();
    let lib = resolve_ort_library(args.ort_lib.as_deref(), args.ep, &cache)?;
    let runtime = Runtime::new(&lib, args.ep, args.threads)?;
    let (path, provenance) = resolve_model(&args.model, args.model_source, &cache)?;
    tracing::info!(
        source = %provenance.source,
        origin = %provenance.origin,
        path = %path.display(),
        sha256 = %provenance.sha256,
        "model"
    );
    let options = EngineOptions {
        input_size: args.input_size,
        profile: args.profile,
        dump_graphs: args.dump_graphs.clone(),
    };
    let engine = Engine::load(runtime, &path, provenance, &options)?;
    Ok(Arc::new(engine))
}

async fn bind(args: &Args) -> anyhow::Result<Listener> {
    if let Some(path) = args.listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path).with_context(|| format!("--listen {}", args.listen))?;
        tracing::info!("listening on unix:{path}");
        return Ok(Listener::Unix(l));
    }
    let addr: SocketAddr = tokio::net::lookup_host(&args.listen)
        .await
        .with_context(|| format!("--listen {}: not a host:port address", args.listen))?
        .next()
        .with_context(|| format!("--listen {}: resolves to no address", args.listen))?;
    if !addr.ip().is_loopback() && !args.insecure {
        bail!(
            "--listen {}: a non-loopback address exposes the daemon; tunnel over SSH to 127.0.0.1, or pass --insecure",
            args.listen
        );
    }
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    tracing::info!("listening on {}", l.local_addr()?);
    Ok(Listener::Tcp(l))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
