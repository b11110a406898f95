//! The gRPC probe service: proto requests are validated into engine calls in
//! one place, engine errors become status codes in one place, and heavy work
//! runs on blocking threads behind a bounded queue.

use crate::server::ServiceOptions;
use crate::server::admission::{Queue, deadline};
use crate::server::cache::RecordingCache;
use crate::server::convert::{
    self, MAX_ENCODED_MESSAGE, MAX_LABEL_CHARS, MapsQuery, MaximizeJob, ReconstructJob,
    check_recording_id, crop_png, feature_maps, mode_to, model_info, normalization,
    record_response, status, to_hwc_rgb,
};
use fovea_engine::engine::Engine;
use fovea_engine::error::Error;
use fovea_engine::probe::maximize::Flow;
use fovea_engine::probe::reconstruct::Mode;
use fovea_engine::probe::render;
use fovea_engine::record::{Recording, layer_stats, top_activations};
use fovea_engine::stop::Stop;
use fovea_proto::v1 as pb;
use fovea_proto::v1::probe_server::{Probe, ProbeServer};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use tonic::{Request, Response, Status};

/// What the service shares between requests. The engine is absent while the
/// model loads.
pub struct State {
    engine: RwLock<Option<Arc<Engine>>>,
    pub cache: RecordingCache,
    disk: Option<Arc<fovea_engine::store::DiskStore>>,
    /// Disk writes under way (waited for at shutdown).
    pending_writes: Arc<std::sync::atomic::AtomicUsize>,
    options: ServiceOptions,
    queue: Queue,
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
            queue: Queue::new(options.concurrency, options.queue),
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
        let admission = within(deadline, self.queue.admit()).await??;
        let task = tokio::task::spawn_blocking(move || {
            let _admission = admission;
            fovea_engine::priority::lower_this_thread();
            stop.check()?;
            work(engine, &stop)
        });
        let out = within(deadline, task)
            .await?
            .map_err(convert::task_failed)?
            .map_err(status);
        guard.disarm();
        out
    }

    async fn recording(&self, id: &str) -> Result<Arc<Recording>, Status> {
        check_recording_id(id)?;
        self.lookup(id)
            .await
            .ok_or_else(|| status(Error::RecordingNotFound(id.to_string())))
    }
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
        let admission = self.state.queue.admit().await?;
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
