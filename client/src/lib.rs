//! Typed async client for the Fovea probe API.
//!
//! [`Client`] connects to a daemon over TCP (`host:port`, `http://host:port`)
//! or a unix socket (`unix:/path`), or starts one in-process
//! ([`Client::embedded`]). It remembers the image behind every recording it
//! made, so a request naming a recording the daemon has evicted is answered
//! by sending the image again and retrying, transparently.
//!
//! The in-process daemon (and with it the engine and ONNX Runtime) is the
//! `embedded` feature, on by default; a program that only talks to a
//! running daemon depends on this crate with default features off.

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod layers;
pub mod picture;

use fovea_proto::v1 as pb;
use fovea_proto::v1::probe_client::ProbeClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::transport::{Channel, Endpoint};

#[cfg(feature = "embedded")]
pub use fovea_engine::probe::maximize::defaults as maximize_defaults;
pub use fovea_proto::v1;

/// Where the daemon runs, in a few words: `CUDA NVIDIA H100 80GB HBM3`, or
/// `CPU (the NVIDIA driver is missing)` (the reason's first clause).
pub fn runtime_summary(model: &pb::ModelInfo) -> String {
    let Some(r) = model.runtime.as_ref().filter(|r| !r.provider.is_empty()) else {
        return model.execution_provider.to_uppercase();
    };
    match r.provider.as_str() {
        "cuda" if r.device.is_empty() => "CUDA".into(),
        "cuda" => format!("CUDA {}", r.device),
        // Asked for: nothing to explain.
        other if r.cpu_reason.is_empty() || r.cpu_reason == "--ep cpu" => other.to_uppercase(),
        other => {
            let why = r.cpu_reason.split([';', '(']).next().unwrap_or("").trim();
            format!("{} ({why})", other.to_uppercase())
        }
    }
}

#[cfg(feature = "embedded")]
/// A maximization of `neuron` with the recommended settings
/// ([`maximize_defaults`]), clipped to the valid pixel range.
pub fn recommended_maximize(neuron: pb::Neuron, steps: u32, seed: u64) -> pb::MaximizeRequest {
    use maximize_defaults as d;
    pb::MaximizeRequest {
        neuron: Some(neuron),
        starts: d::STARTS,
        steps,
        learning_rate: d::LEARNING_RATE,
        l2_decay: d::L2_DECAY,
        blur_sigma: d::BLUR_SIGMA,
        blur_every: d::BLUR_EVERY,
        jitter: d::JITTER,
        seed,
        clip: Some(true),
        ..Default::default()
    }
}

/// What can go wrong talking to a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is malformed.
    #[error("bad address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    /// No connection could be made, or it broke. The message says the
    /// cause once (the transport's own chain repeats itself).
    #[error("cannot reach the daemon at {addr}: {}", causes(source))]
    Transport {
        addr: String,
        source: tonic::transport::Error,
    },
    /// The daemon answered with an error status. Not a `source`: the
    /// status's own text would repeat the message.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
    /// The embedded daemon could not start.
    #[error("embedded daemon: {0}")]
    Embedded(String),
}

impl ClientError {
    /// The gRPC status code, when the daemon answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }

    /// True when the daemon could not be reached (worth a reconnect).
    pub fn is_unreachable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            // The channel reports a lost connection as UNAVAILABLE; a daemon
            // still loading says the same, and waiting for it is right too.
            ClientError::Status(s) => s.code() == tonic::Code::Unavailable,
            _ => false,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> ClientError {
        ClientError::Status(s)
    }
}

/// An error and its causes in one line, each said once: a cause whose text
/// the line already holds is left out.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::ResourceExhausted => "daemon busy",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::Unimplemented => "not supported by this daemon",
        tonic::Code::Cancelled => "cancelled",
        tonic::Code::DeadlineExceeded => "deadline exceeded",
        _ => "daemon error",
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An image this client recorded: (bytes, label).
type SentImage = (Vec<u8>, String);

/// A connection to a Fovea daemon.
#[derive(Clone)]
pub struct Client {
    inner: ProbeClient<Channel>,
    channel: Channel,
    addr: String,
    images: Arc<Mutex<HashMap<String, SentImage>>>,
    token: Option<Arc<str>>,
    /// The in-process daemon this client started, kept alive with it.
    _embedded: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// Turns a user address into an endpoint URI.
fn endpoint(addr: &str) -> Result<Endpoint> {
    let bad = |reason: &str| ClientError::Address {
        addr: addr.into(),
        reason: reason.into(),
    };
    if addr.starts_with("unix:") {
        // The URI is a placeholder; the connector dials the socket.
        return Ok(Endpoint::from_static("http://localhost"));
    }
    let uri = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri).map_err(|e| bad(&e.to_string()))
}

impl Client {
    /// Connects to a running daemon.
    pub async fn connect(addr: &str) -> Result<Client> {
        Client::connect_with(addr, None).await
    }

    /// Connects over TLS when `ca_pem` (the certificate authority to trust,
    /// PEM) is given; the address may then be `https://host:port`.
    pub async fn connect_with(addr: &str, ca_pem: Option<&[u8]>) -> Result<Client> {
        let mut ep = endpoint(addr)?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(ca) = ca_pem {
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca));
            ep = ep
                .tls_config(tls)
                .map_err(|source| ClientError::Transport {
                    addr: addr.into(),
                    source,
                })?;
        }
        let channel = if let Some(path) = addr.strip_prefix("unix:") {
            let path = path.to_string();
            ep.connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
        } else {
            ep.connect().await
        }
        .map_err(|source| ClientError::Transport {
            addr: addr.into(),
            source,
        })?;
        Ok(Client::from_channel(channel, addr))
    }

    fn from_channel(channel: Channel, addr: &str) -> Client {
        Client {
            inner: ProbeClient::new(channel.clone())
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(48 << 20),
            channel,
            addr: addr.into(),
            images: Default::default(),
            token: None,
            _embedded: None,
        }
    }

    /// Starts a daemon in this process on a private loopback port and
    /// connects to it.
    #[cfg(feature = "embedded")]
    pub async fn embedded(options: embedded::EmbeddedOptions) -> Result<Client> {
        let daemon = embedded::Embedded::start(options).await?;
        let mut client = Client::connect(&daemon.addr).await?;
        client._embedded = Some(Arc::new(daemon) as Arc<dyn std::any::Any + Send + Sync>);
        client
            .wait_ready(std::time::Duration::from_secs(10))
            .await?;
        Ok(client)
    }

    /// Sends `authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.into());
        self
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    /// Waits until the daemon's health check says SERVING (the model loads
    /// after the port opens).
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> Result<()> {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = health
                .check(self.req(tonic_health::pb::HealthCheckRequest {
                    service: "fovea.v1.Probe".into(),
                }))
                .await;
            if let Ok(r) = &r
                && r.get_ref().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match r {
                    Err(s) => s.into(),
                    Ok(_) => {
                        tonic::Status::unavailable("the daemon did not become ready in time").into()
                    }
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn model(&self) -> Result<pb::ModelInfo> {
        Ok(self
            .inner
            .clone()
            .get_model(self.req(pb::GetModelRequest {}))
            .await?
            .into_inner())
    }

    /// Records an image and remembers it for transparent re-recording.
    pub async fn record(&self, image: Vec<u8>, label: &str) -> Result<pb::RecordResponse> {
        let r = self
            .inner
            .clone()
            .record(self.req(pb::RecordRequest {
                image: image.clone(),
                label: label.into(),
            }))
            .await?
            .into_inner();
        if let Ok(mut m) = self.images.lock() {
            m.insert(r.recording_id.clone(), (image, label.into()));
        }
        Ok(r)
    }

    /// Runs `call`; when the daemon no longer has the recording, sends the
    /// remembered image again and retries once.
    async fn with_recording<T, F, Fut>(&self, id: &str, call: F) -> Result<T>
    where
        F: Fn(ProbeClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.with_recordings(&[id.to_string()], call).await
    }

    /// [`Self::with_recording`] for a call naming several recordings: on
    /// NOT_FOUND every remembered one is sent again (recording is
    /// idempotent), then the call is retried once.
    async fn with_recordings<T, F, Fut>(&self, ids: &[String], call: F) -> Result<T>
    where
        F: Fn(ProbeClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        match call(self.inner.clone()).await {
            Err(s) if s.code() == tonic::Code::NotFound => {
                let images: Vec<_> = ids
                    .iter()
                    .filter_map(|id| self.images.lock().ok().and_then(|m| m.get(id).cloned()))
                    .collect();
                if images.is_empty() {
                    return Err(s.into());
                }
                for (bytes, label) in images {
                    self.record(bytes, &label).await?;
                }
                Ok(call(self.inner.clone()).await?.into_inner())
            }
            r => Ok(r?.into_inner()),
        }
    }

    pub async fn feature_maps(&self, req: pb::GetFeatureMapsRequest) -> Result<pb::FeatureMaps> {
        let id = req.recording_id.clone();
        self.with_recording(&id, |mut c| {
            let r = self.req(req.clone());
            async move { c.get_feature_maps(r).await }
        })
        .await
    }

    pub async fn top(&self, req: pb::TopActivationsRequest) -> Result<pb::TopActivationsResponse> {
        let id = req.recording_id.clone();
        self.with_recording(&id, |mut c| {
            let r = self.req(req.clone());
            async move { c.top_activations(r).await }
        })
        .await
    }

    pub async fn reconstruct(
        &self,
        req: pb::ReconstructRequest,
    ) -> Result<pb::ReconstructResponse> {
        let id = req.recording_id.clone();
        self.with_recording(&id, |mut c| {
            let r = self.req(req.clone());
            async move { c.reconstruct(r).await }
        })
        .await
    }

    pub async fn stats(
        &self,
        req: pb::ActivationStatsRequest,
    ) -> Result<pb::ActivationStatsResponse> {
        let id = req.recording_id.clone();
        self.with_recording(&id, |mut c| {
            let r = self.req(req.clone());
            async move { c.activation_stats(r).await }
        })
        .await
    }

    /// Starts a maximization; progress and the result arrive on the stream.
    pub async fn maximize(
        &self,
        req: pb::MaximizeRequest,
    ) -> Result<tonic::Streaming<pb::MaximizeEvent>> {
        Ok(self
            .inner
            .clone()
            .maximize(self.req(req))
            .await?
            .into_inner())
    }

    /// Compares two recordings' activation patterns; an evicted recording
    /// this client made is sent again.
    pub async fn compare_patterns(
        &self,
        req: pb::ComparePatternsRequest,
    ) -> Result<pb::ComparePatternsResponse> {
        let ids = [req.recording_a.clone(), req.recording_b.clone()];
        self.with_recordings(&ids, |mut c| {
            let r = self.req(req.clone());
            async move { c.compare_patterns(r).await }
        })
        .await
    }

    /// Starts a linear-region query; walk progress and the result arrive on
    /// the stream.
    pub async fn linear_region(
        &self,
        req: pb::LinearRegionRequest,
    ) -> Result<tonic::Streaming<pb::LinearRegionEvent>> {
        let ids = [req.recording_id.clone(), req.toward_recording.clone()];
        self.with_recordings(&ids, |mut c| {
            let r = self.req(req.clone());
            async move { c.linear_region(r).await }
        })
        .await
    }

    /// Starts a study over recordings; progress and the result arrive on
    /// the stream.
    pub async fn study(&self, req: pb::StudyRequest) -> Result<tonic::Streaming<pb::StudyEvent>> {
        let ids = req.recording_ids.clone();
        self.with_recordings(&ids, |mut c| {
            let r = self.req(req.clone());
            async move { c.study(r).await }
        })
        .await
    }

    /// Starts an attribution of a recording; progress (integrated
    /// gradients' path) and the result arrive on the stream.
    pub async fn attribute(
        &self,
        req: pb::AttributeRequest,
    ) -> Result<tonic::Streaming<pb::AttributeEvent>> {
        let ids = [req.recording_id.clone()];
        self.with_recordings(&ids, |mut c| {
            let r = self.req(req.clone());
            async move { c.attribute(r).await }
        })
        .await
    }

    pub async fn scan_top(&self, req: pb::ScanTopRequest) -> Result<pb::ScanTopResponse> {
        Ok(self
            .inner
            .clone()
            .scan_top(self.req(req))
            .await?
            .into_inner())
    }

    pub async fn list(&self) -> Result<pb::ListRecordingsResponse> {
        Ok(self
            .inner
            .clone()
            .list_recordings(self.req(pb::ListRecordingsRequest {}))
            .await?
            .into_inner())
    }

    pub async fn drop_recording(&self, id: &str) -> Result<bool> {
        Ok(self
            .inner
            .clone()
            .drop_recording(self.req(pb::DropRecordingRequest {
                recording_id: id.into(),
            }))
            .await?
            .into_inner()
            .dropped)
    }
}

/// Reads what `--token-file` and `--tls-ca` name: the token (first line,
/// trimmed) and the certificate authority (PEM).
pub fn read_credentials(
    token_file: Option<&std::path::Path>,
    tls_ca: Option<&std::path::Path>,
) -> std::io::Result<(Option<String>, Option<Vec<u8>>)> {
    let token = match token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("--token-file {}: {e}", p.display()))
                })?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let ca = match tls_ca {
        Some(p) => Some(std::fs::read(p).map_err(|e| {
            std::io::Error::new(e.kind(), format!("--tls-ca {}: {e}", p.display()))
        })?),
        None => None,
    };
    Ok((token, ca))
}

/// A neuron by layer (number or name), feature and location.
pub fn neuron(layer: &str, feature: i32, y: i32, x: i32) -> pb::Neuron {
    pb::Neuron {
        layer: layer.into(),
        feature,
        y,
        x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_reads_as_device_or_reason() {
        let mut m = pb::ModelInfo {
            execution_provider: "cpu".into(),
            ..Default::default()
        };
        assert_eq!(runtime_summary(&m), "CPU");
        m.runtime = Some(pb::RuntimeInfo {
            provider: "cpu".into(),
            cpu_reason: "--ep cpu".into(),
            ..Default::default()
        });
        assert_eq!(runtime_summary(&m), "CPU");
        m.runtime = Some(pb::RuntimeInfo {
            provider: "cpu".into(),
            cpu_reason: "the NVIDIA driver is missing (libcuda.so.1 not found)".into(),
            ..Default::default()
        });
        assert_eq!(runtime_summary(&m), "CPU (the NVIDIA driver is missing)");
        m.runtime = Some(pb::RuntimeInfo {
            provider: "cuda".into(),
            device: "NVIDIA H100 80GB HBM3".into(),
            ..Default::default()
        });
        assert_eq!(runtime_summary(&m), "CUDA NVIDIA H100 80GB HBM3");
    }
}
