//! A daemon started inside the client's process on a private loopback port,
//! so the CLI and the TUI use the same code path with or without `--connect`.

use crate::{ClientError, Result};
use fovea_daemon::server::{Listener, ServiceOptions, State, serve};
use fovea_engine::launch::{LoadOptions, load_for_serving};

/// Settings of an embedded daemon.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    pub load: LoadOptions,
    pub service: ServiceOptions,
}

impl EmbeddedOptions {
    /// A daemon for `load`, serving the scan results in `scan` if given.
    pub fn new(load: LoadOptions, scan: Option<&std::path::Path>) -> Result<EmbeddedOptions> {
        let mut opts = EmbeddedOptions {
            load,
            ..Default::default()
        };
        if let Some(p) = scan {
            let results = fovea_engine::probe::scan::ScanResults::load(p)
                .map_err(|e| ClientError::Embedded(e.to_string()))?;
            opts.service.scan = Some(std::sync::Arc::new(results));
        }
        Ok(opts)
    }
}

/// A running in-process daemon; stops when dropped.
pub struct Embedded {
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Embedded {
    /// Loads the model (blocking work off the async threads), then serves it
    /// on `127.0.0.1:<ephemeral>`.
    pub async fn start(options: EmbeddedOptions) -> Result<Embedded> {
        let load_opts = options.load.clone();
        let engine = tokio::task::spawn_blocking(move || load_for_serving(&load_opts))
            .await
            .map_err(|e| ClientError::Embedded(e.to_string()))?
            .map_err(|e| ClientError::Embedded(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ClientError::Embedded(format!("cannot bind a loopback port: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ClientError::Embedded(e.to_string()))?
            .to_string();
        let state =
            State::new(options.service).map_err(|e| ClientError::Embedded(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let ready = async move { Some(engine) };
            let shutdown = async move {
                let _ = stopped.await;
            };
            let security = fovea_daemon::server::Security::default();
            if let Err(e) = serve(Listener::Tcp(listener), state, security, ready, shutdown).await {
                tracing::error!("embedded daemon stopped: {e}");
            }
        });
        Ok(Embedded {
            addr,
            stop: Some(stop),
        })
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
