//! `fovead`: the Fovea daemon. Resolves ONNX Runtime and the model, then
//! serves the probe API with health and reflection.

use anyhow::{Context, bail};
use clap::Parser;
use fovea_daemon::launch::LoadOptions;
use fovea_daemon::profile::ImageLimits;
use fovea_daemon::server::{Listener, ServiceOptions, State, serve};
use std::net::SocketAddr;

#[derive(Parser, Debug)]
#[command(
    name = "fovead",
    version,
    about = "Fovea daemon: probes a VGG-style network over gRPC"
)]
struct Args {
    /// Address to listen on (host:port), or unix:/path/to/socket.
    #[arg(long, default_value = "127.0.0.1:50051", env = "FOVEA_LISTEN")]
    listen: String,
    #[command(flatten)]
    load: LoadOptions,
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
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
        let loading = tokio::task::spawn_blocking(move || {
            fovea_daemon::launch::load(&args.load).map_err(anyhow::Error::from)
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

async fn bind(args: &Args) -> anyhow::Result<Listener> {
    if let Some(path) = args.listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("--listen {}", args.listen))?;
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
