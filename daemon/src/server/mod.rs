//! The gRPC probe service in front of the engine:
//! - [`service`]: the shared state and the handlers (convert the request,
//!   call the engine, convert the answer);
//! - [`convert`]: every request into an engine call and every answer and
//!   error back into the API, the one place that builds gRPC statuses;
//! - [`cache`]: recordings kept in memory, bounded by bytes;
//! - [`admission`]: the bounded queue of engine work, deadlines and
//!   cancellation;
//! - [`auth`]: the bearer token;
//! - [`logging`]: one log line per RPC.

pub mod admission;
pub mod auth;
pub mod cache;
pub mod convert;
pub mod logging;
pub mod service;

pub use cache::RecordingCache;
pub use service::{ProbeService, State};

use crate::server::auth::TokenCheck;
use crate::server::logging::rpc_log_layer;
use fovea_engine::engine::Engine;
use fovea_engine::model::profile::ImageLimits;
use fovea_proto::v1::probe_server::ProbeServer;
use std::sync::Arc;

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub cache_bytes: usize,
    /// Spill recordings to this folder (survives restarts).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Bound of the folder, bytes.
    pub cache_dir_bytes: u64,
    /// Dataset scan results served by ScanTop.
    pub scan: Option<Arc<fovea_engine::probe::scan::ScanResults>>,
    pub image_limits: ImageLimits,
    /// Requests running on the engine at once.
    pub concurrency: usize,
    /// Requests waiting for the engine before RESOURCE_EXHAUSTED.
    pub queue: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            cache_bytes: 2 << 30,
            cache_dir: None,
            cache_dir_bytes: 20 << 30,
            scan: None,
            image_limits: ImageLimits::default(),
            concurrency: 2,
            queue: 32,
        }
    }
}

/// Where the server listens.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// The socket file of a unix listener (removed when the daemon stops).
    pub fn socket_path(&self) -> Option<std::path::PathBuf> {
        match self {
            Listener::Unix(l) => l
                .local_addr()
                .ok()?
                .as_pathname()
                .map(std::path::Path::to_path_buf),
            Listener::Tcp(_) => None,
        }
    }
}

/// Who may call the probe service.
#[derive(Clone, Default)]
pub struct Security {
    /// Required `authorization: Bearer <token>` on every probe call (health
    /// and reflection stay open, for orchestrators' probes).
    pub token: Option<Arc<str>>,
    /// PEM certificate chain and private key for TLS.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// Serves the probe API, health and reflection on an already-bound listener
/// until `shutdown` completes, then waits for disk writes. Health says
/// NOT_SERVING until `ready` resolves with an engine.
pub async fn serve(
    listener: Listener,
    state: Arc<State>,
    security: Security,
    ready: impl std::future::Future<Output = Option<Arc<Engine>>> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_not_serving::<ProbeServer<ProbeService>>()
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fovea_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let service = tonic::service::interceptor::InterceptedService::new(
        ProbeService::new(state.clone()).into_server(),
        TokenCheck(security.token.clone()),
    );
    let loader_state = state.clone();
    tokio::spawn(async move {
        if let Some(engine) = ready.await {
            loader_state.set_engine(engine);
            reporter.set_serving::<ProbeServer<ProbeService>>().await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
            tracing::info!("serving");
        }
    });
    let flag_state = state.clone();
    let shutdown = async move {
        shutdown.await;
        flag_state.begin_shutdown();
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = &security.tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let router = builder
        .layer(rpc_log_layer())
        .add_service(health)
        .add_service(reflection)
        .add_service(service);
    match listener {
        Listener::Tcp(l) => {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(l),
                    shutdown,
                )
                .await?
        }
        Listener::Unix(l) => {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(l),
                    shutdown,
                )
                .await?
        }
    }
    state.flush(std::time::Duration::from_secs(30)).await;
    Ok(())
}
