//! The gRPC probe service: proto requests are validated into engine calls in
//! one place, engine errors become status codes in one place, and heavy work
//! runs on blocking threads behind a bounded queue.

use crate::server::ServiceOptions;
use crate::server::admission::{Queue, deadline};
use crate::server::cache::RecordingCache;
use crate::server::convert::{
    self, AttributeJob, CompareQuery, LineDirection, MapsQuery, MaximizeJob, MaximizeTarget,
    ReconstructJob, RecordJob, RegionJob, ScanQuery, StatsQuery, StudyJob, TopQuery,
    check_recording_id, status,
};
use fovea_engine::engine::Engine;
use fovea_engine::error::Error;
use fovea_engine::probe::maximize::Flow;
use fovea_engine::probe::regions::Direction;
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
        let rec =
            tokio::task::spawn_blocking(move || disk.load(&key, |r| engine.fits_recording(r)))
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
            .ok_or_else(convert::loading)
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

    /// The recording of `job`'s image: the cached one (and `true`), else
    /// made now and kept.
    async fn record(
        self: &Arc<Self>,
        stop: Stop,
        job: RecordJob,
    ) -> Result<(Arc<Recording>, bool), Status> {
        let id = self.engine()?.recording_id(&job.image);
        if let Some(rec) = self.lookup(&id).await {
            return Ok((rec, true));
        }
        let limits = self.options.image_limits;
        let work =
            move |engine: Arc<Engine>, _: &Stop| engine.record(&job.image, &job.label, limits);
        let rec = Arc::new(self.run(stop, work).await?);
        self.keep(rec.clone());
        Ok((rec, false))
    }

    /// Runs streamed work on a blocking thread under the concurrency bound:
    /// `work` sends its events and returns how many units it did; its error
    /// ends the stream with a status (a client that left gets nothing).
    async fn stream<E: Send + 'static>(
        &self,
        name: &'static str,
        stop: Stop,
        work: impl FnOnce(&Sender<E>, &Stop) -> Result<usize, Error> + Send + 'static,
    ) -> Result<Response<EventsOf<E>>, Status> {
        let admission = self.queue.admit().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            let _admission = admission;
            fovea_engine::priority::lower_this_thread();
            let started = std::time::Instant::now();
            let answer = stop.check().and_then(|()| work(&tx, &stop));
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match answer {
                Ok(units) => tracing::info!(units, elapsed_ms, "{name} finished"),
                Err(Error::Cancelled) => {
                    tracing::info!(elapsed_ms, "{name} cancelled: the client went away")
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(status(e)));
                }
            }
        });
        let events = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(events)))
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
            .max_encoding_message_size(convert::MAX_ENCODED_MESSAGE)
    }
}

type EventsOf<E> = Pin<Box<dyn tokio_stream::Stream<Item = Result<E, Status>> + Send>>;
type RegionStream = EventsOf<pb::LinearRegionEvent>;
type StudyEvents = EventsOf<pb::StudyEvent>;

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::MaximizeEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Probe for ProbeService {
    async fn get_model(
        &self,
        _: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let engine = self.state.engine()?;
        Ok(Response::new(convert::model_info(&engine)))
    }

    async fn record(
        &self,
        request: Request<pb::RecordRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let job = RecordJob::try_from(request.into_inner())?;
        let notes = fovea_engine::model::profile::decode_notes(&job.image);
        let (rec, cached) = self.state.record(stop, job).await?;
        let answer = convert::record_response(&engine, &rec, cached, notes);
        Ok(Response::new(answer))
    }

    async fn get_feature_maps(
        &self,
        request: Request<pb::GetFeatureMapsRequest>,
    ) -> Result<Response<pb::FeatureMaps>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let q = MapsQuery::try_from((&*engine, request.into_inner()))?;
        let rec = self.state.recording(&q.recording_id).await?;
        let work = move |_: Arc<Engine>, _: &Stop| Ok(convert::feature_maps(&rec, q));
        Ok(Response::new(self.state.run(stop, work).await?))
    }

    async fn top_activations(
        &self,
        request: Request<pb::TopActivationsRequest>,
    ) -> Result<Response<pb::TopActivationsResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let q = TopQuery::try_from((&*engine, request.into_inner()))?;
        let rec = self.state.recording(&q.recording_id).await?;
        let work = move |_: Arc<Engine>, _: &Stop| {
            let hits = top_activations(rec.layer(q.layer), q.k, q.feature, q.distinct_features);
            Ok(convert::top_activations(q.layer, hits))
        };
        Ok(Response::new(self.state.run(stop, work).await?))
    }

    async fn reconstruct(
        &self,
        request: Request<pb::ReconstructRequest>,
    ) -> Result<Response<pb::ReconstructResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let job = ReconstructJob::try_from((&*engine, request.into_inner()))?;
        let rec = self.state.recording(&job.recording_id).await?;
        let work = move |engine: Arc<Engine>, stop: &Stop| {
            let results = engine.reconstruct_request(&rec, &job.request, stop)?;
            let (crop, png_only) = (job.crop_to_fov, job.png_only);
            let answer = results.into_iter();
            Ok(answer
                .map(|r| convert::reconstruction(&engine, r, crop, png_only))
                .collect())
        };
        let reconstructions = self.state.run(stop, work).await?;
        Ok(Response::new(pb::ReconstructResponse { reconstructions }))
    }

    type MaximizeStream = EventStream;

    async fn maximize(
        &self,
        request: Request<pb::MaximizeRequest>,
    ) -> Result<Response<Self::MaximizeStream>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let job = MaximizeJob::try_from((&*engine, request.into_inner()))?;
        let admission = self.state.queue.admit().await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::MaximizeEvent, Status>>(8);
        tokio::task::spawn_blocking(move || {
            let _admission = admission;
            stream_maximization(&engine, job, &stop, &tx);
        });
        let events = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(events)))
    }

    async fn activation_stats(
        &self,
        request: Request<pb::ActivationStatsRequest>,
    ) -> Result<Response<pb::ActivationStatsResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let q = StatsQuery::try_from((&*engine, request.into_inner()))?;
        let rec = self.state.recording(&q.recording_id).await?;
        let work = move |engine: Arc<Engine>, _: &Stop| {
            let stats = q
                .layers
                .into_iter()
                .map(|n| (n, layer_stats(n, rec.layer(n))));
            Ok(stats
                .map(|(n, s)| convert::layer_stats(&engine, n, s))
                .collect())
        };
        let layers = self.state.run(stop, work).await?;
        Ok(Response::new(pb::ActivationStatsResponse { layers }))
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
        let engine = self.state.engine()?;
        let scan = self.state.options.scan.as_deref();
        let q = ScanQuery::try_from((&*engine, scan, request.into_inner()))?;
        let limits = self.state.options.image_limits;
        let work = move |engine: Arc<Engine>, _: &Stop| {
            let hits = q.hits.iter().cloned();
            let hits = hits
                .map(|h| convert::scan_hit(&engine, &q, h, limits))
                .collect();
            Ok((q, hits))
        };
        let (q, hits) = self.state.run(stop, work).await?;
        Ok(Response::new(convert::scan_top(q, hits)))
    }

    async fn compare_patterns(
        &self,
        request: Request<pb::ComparePatternsRequest>,
    ) -> Result<Response<pb::ComparePatternsResponse>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let q = CompareQuery::try_from((&*engine, request.into_inner()))?;
        let a = self.state.recording(&q.recording_a).await?;
        let b = self.state.recording(&q.recording_b).await?;
        let work = move |engine: Arc<Engine>, _: &Stop| engine.compare_patterns(&a, &b, q.neuron);
        let comparison = self.state.run(stop, work).await?;
        Ok(Response::new(convert::compare_patterns(comparison)))
    }

    type LinearRegionStream = RegionStream;

    async fn linear_region(
        &self,
        request: Request<pb::LinearRegionRequest>,
    ) -> Result<Response<Self::LinearRegionStream>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let job = RegionJob::try_from((&*engine, request.into_inner()))?;
        let rec = self.state.recording(&job.recording_id).await?;
        let direction = match &job.direction {
            LineDirection::Gradient => Direction::Gradient,
            LineDirection::Random(seed) => Direction::Random(*seed),
            LineDirection::Toward(id) => {
                Direction::Toward(self.state.recording(id).await?.input.clone())
            }
        };
        let work = move |tx: &Sender<pb::LinearRegionEvent>, stop: &Stop| {
            walk_region(&engine, &rec, &job, &direction, stop, tx)
        };
        self.state.stream("linear region", stop, work).await
    }

    type StudyStream = StudyEvents;

    async fn study(
        &self,
        request: Request<pb::StudyRequest>,
    ) -> Result<Response<Self::StudyStream>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let job = StudyJob::try_from((&*engine, request.into_inner()))?;
        let mut recs = Vec::with_capacity(job.recording_ids.len());
        for id in &job.recording_ids {
            recs.push(self.state.recording(id).await?);
        }
        let work = move |tx: &Sender<pb::StudyEvent>, stop: &Stop| {
            let recs: Vec<&Recording> = recs.iter().map(|r| &**r).collect();
            let rows = with_client(stop, tx, |stop, send| {
                let mut progress = |done, total| send(convert::study_progress(done, total));
                engine.study(&recs, &job.settings, stop, &mut progress)
            })?;
            let _ = tx.blocking_send(Ok(convert::study_result(job.settings.layer, &rows)));
            Ok(rows.len())
        };
        self.state.stream("study", stop, work).await
    }

    type AttributeStream = EventsOf<pb::AttributeEvent>;

    async fn attribute(
        &self,
        request: Request<pb::AttributeRequest>,
    ) -> Result<Response<Self::AttributeStream>, Status> {
        let stop = self.state.stop_for(&request);
        let engine = self.state.engine()?;
        let job = AttributeJob::try_from((&*engine, request.into_inner()))?;
        let rec = self.state.recording(&job.recording_id).await?;
        let work = move |tx: &Sender<pb::AttributeEvent>, stop: &Stop| {
            let req = job.request(&engine, &rec)?;
            let attribution = with_client(stop, tx, |stop, send| {
                let progress = |done, total| send(convert::attribute_progress(done, total));
                engine.attribute(&rec, &req, stop, progress)
            })?;
            let result = convert::attribute_result(&engine, &rec, &req, attribution, job.png_only);
            let _ = tx.blocking_send(Ok(result));
            Ok(1)
        };
        self.state.stream("attribute", stop, work).await
    }

    async fn drop_recording(
        &self,
        request: Request<pb::DropRecordingRequest>,
    ) -> Result<Response<pb::DropRecordingResponse>, Status> {
        let id = request.into_inner().recording_id;
        check_recording_id(&id)?;
        let dropped = self.state.forget(&id);
        Ok(Response::new(pb::DropRecordingResponse { dropped }))
    }
}

/// The sending side of a streamed answer.
type Sender<E> = tokio::sync::mpsc::Sender<Result<E, Status>>;

/// Runs `work` with a way to send progress on `tx`; a failed send means the
/// client left, which `stop` then reports, so the work ends at its next
/// check.
fn with_client<E, T>(
    stop: &Stop,
    tx: &Sender<E>,
    work: impl FnOnce(&Stop, &mut dyn FnMut(E)) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut client = Some(stop.guard());
    let mut send = |event: E| {
        if tx.blocking_send(Ok(event)).is_err() {
            client.take();
        }
    };
    let out = work(stop, &mut send);
    if let Some(guard) = client {
        guard.disarm();
    }
    out
}

/// Solves a linear region (and walks its line) on this (blocking) thread,
/// sending progress and the result to `tx`; the client leaving, the
/// deadline and shutdown stop the walk between regions.
fn walk_region(
    engine: &Engine,
    rec: &Recording,
    job: &RegionJob,
    direction: &Direction,
    stop: &Stop,
    tx: &Sender<pb::LinearRegionEvent>,
) -> Result<usize, Error> {
    let d = engine.direction(rec, job.neuron, direction)?;
    let norm = d.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let region = engine.linear_region(rec, job.neuron, &d)?;
    let profile = if job.max_regions > 0 {
        let (n, range, most) = (job.neuron, job.extent, job.max_regions);
        Some(with_client(stop, tx, |stop, send| {
            let mut progress = |regions, t| send(convert::region_progress(regions, t));
            engine.walk_regions(rec, n, &d, range, most, stop, &mut progress)
        })?)
    } else {
        None
    };
    let regions = profile.as_ref().map_or(1, |p| p.segments.len());
    let result = convert::region_result(&region, norm, profile.as_ref());
    let _ = tx.blocking_send(Ok(result));
    Ok(regions)
}

/// Runs a maximization on this (blocking) thread, sending its progress and
/// result to `tx`. The client leaving ends it; shutdown ends it early with
/// the images so far, then UNAVAILABLE.
fn stream_maximization(
    engine: &Engine,
    job: MaximizeJob,
    stop: &Stop,
    tx: &tokio::sync::mpsc::Sender<Result<pb::MaximizeEvent, Status>>,
) {
    fovea_engine::priority::lower_this_thread();
    let started = std::time::Instant::now();
    let size = engine.profile.input_size;
    let window = match &job.target {
        MaximizeTarget::Neuron(n, _) => engine.fov_window(*n),
        MaximizeTarget::Objective(_) => (size, size),
    };
    let every = job.preview_every;
    let mut shut_down = false;
    let mut on_step = |p: &fovea_engine::probe::maximize::Progress| {
        let due = every > 0 && (p.step.is_multiple_of(every) || p.step == p.total);
        // A failed send means the client left (or its deadline passed).
        if tx
            .blocking_send(Ok(convert::maximize_progress(engine, p, due, window)))
            .is_err()
        {
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
    };
    let result = match &job.target {
        MaximizeTarget::Neuron(n, options) => engine.maximize_with(*n, options, &mut on_step),
        MaximizeTarget::Objective(options) => engine.visualize(options, &mut on_step),
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(m) => {
            let _ = tx.blocking_send(Ok(convert::maximize_result(engine, &m)));
            if shut_down {
                let steps = job.steps();
                let _ = tx.blocking_send(Err(convert::stopped_by_shutdown(m.steps, steps)));
                tracing::info!(steps = m.steps, "maximize stopped by shutdown");
            } else {
                tracing::info!(steps = job.steps(), elapsed_ms, "maximize finished");
            }
        }
        Err(Error::Cancelled) => {
            tracing::info!(elapsed_ms, "maximize cancelled: the client went away");
        }
        Err(e) => {
            let _ = tx.blocking_send(Err(status(e)));
        }
    }
}
