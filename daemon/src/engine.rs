//! The probe engine: ONNX Runtime sessions, recording forward passes, and the
//! queries answered from a recording. Backward passes live in `backward`.

use crate::backward::BackwardCache;
use crate::error::{Error, Result};
use crate::network::{LayerGeom, Layout, Network};
use crate::onnx::{self, decode_model};
use crate::profile::{ImageLimits, Profile, ProfileName, decode_image};
use crate::recording::{LayerRecording, Recording};
use crate::supply::{ExecutionProvider, Provenance, hex};
use fovea_proto::onnx::{ModelProto, tensor_proto::DataType};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

impl From<ort::Error<ort::session::builder::SessionBuilder>> for Error {
    fn from(e: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        Error::Runtime(e.to_string())
    }
}

/// A loaded ONNX Runtime and the execution provider chosen for it.
pub struct Runtime {
    env: ort::environment::Environment,
    cuda: bool,
    threads: usize,
    version: String,
    info: RuntimeInfo,
}

/// Where the network runs, and why there: GetModel's `runtime`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// "cuda" or "cpu".
    pub provider: String,
    /// The GPU's name on CUDA.
    pub device: String,
    pub driver_version: String,
    /// Why the daemon runs on the CPU although CUDA was wanted (empty on
    /// CUDA, or when the CPU was asked for).
    pub cpu_reason: String,
    /// The ONNX Runtime library file.
    pub library: PathBuf,
    /// "system", the folder of the fetched CUDA set, or empty on CPU.
    pub cuda_libraries: String,
    pub cudnn_version: String,
}

impl Runtime {
    /// [`Runtime::start`] without the facts of a CUDA preparation: CUDA is
    /// tried for `Auto` and `Cuda` with whatever libraries the system has.
    pub fn new(lib: &Path, ep: ExecutionProvider, threads: usize) -> Result<Arc<Runtime>> {
        Runtime::start(
            lib,
            ep != ExecutionProvider::Cpu,
            threads,
            RuntimeInfo::default(),
        )
    }

    /// Loads the shared library and, if `try_cuda`, starts the CUDA
    /// provider; when it cannot start, the runtime is on the CPU and
    /// `info().cpu_reason` says why (`facts` may carry an earlier reason).
    /// ONNX Runtime allows one environment per process, so later calls
    /// return the first runtime.
    pub fn start(
        lib: &Path,
        try_cuda: bool,
        threads: usize,
        facts: RuntimeInfo,
    ) -> Result<Arc<Runtime>> {
        static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);
        let mut slot = RUNTIME
            .lock()
            .map_err(|_| Error::Runtime("runtime lock poisoned".into()))?;
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        // The pool's threads inherit the calling thread's CPU priority: a
        // daemon loads on a lowered thread (see `priority`).
        let rt = Arc::new(Runtime::create(lib, try_cuda, threads, facts)?);
        *slot = Some(rt.clone());
        Ok(rt)
    }

    fn create(
        lib: &Path,
        try_cuda: bool,
        threads: usize,
        mut info: RuntimeInfo,
    ) -> Result<Runtime> {
        let env = ort::init_from(lib)
            .map_err(|e| {
                Error::Supply(format!(
                    "cannot load ONNX Runtime from {}: {e}",
                    lib.display()
                ))
            })?
            .with_name("fovea")
            .with_global_thread_pool(
                thread_pool(threads).map_err(|e| Error::Runtime(e.to_string()))?,
            )
            .build()
            .map_err(|e| Error::Runtime(e.to_string()))?;
        // The versioned file name is the most reliable source of the version.
        let version = lib
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .and_then(|f| f.split_once(".so.").map(|(_, v)| v.to_string()))
            .unwrap_or_else(|| "unknown".into());
        let cuda = try_cuda
            && match cuda_usable(&env) {
                Ok(()) => true,
                Err(why) => {
                    info.cpu_reason = why;
                    false
                }
            };
        info.provider = if cuda { "cuda" } else { "cpu" }.into();
        info.library = lib.to_path_buf();
        if !cuda {
            info.device.clear();
            info.cuda_libraries.clear();
        }
        tracing::info!(
            provider = %info.provider,
            onnxruntime = %version,
            library = %lib.display(),
            "ONNX Runtime loaded"
        );
        Ok(Runtime {
            env,
            cuda,
            threads,
            version,
            info,
        })
    }

    pub fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    pub fn provider(&self) -> &'static str {
        if self.cuda { "cuda" } else { "cpu" }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// A session on the chosen provider for an encoded model; it runs on the
    /// runtime's shared thread pool.
    pub fn session(&self, model: &[u8]) -> Result<Session> {
        let mut b =
            Session::builder(&self.env)?.with_optimization_level(GraphOptimizationLevel::All)?;
        if self.cuda {
            b = b.with_execution_providers([ort::ep::CUDA::default().build()])?;
        }
        Ok(b.commit_from_memory(model)?)
    }
}

/// One pool for every session: with a pool per session, the threads of the
/// session that ran last keep spinning and take the cores from the next one
/// (alternating two sessions ran at 60% speed on two cores).
fn thread_pool(threads: usize) -> ort::Result<ort::environment::GlobalThreadPoolOptions> {
    ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(threads)?
        .with_inter_threads(1)
}

fn cuda_usable(env: &ort::environment::Environment) -> std::result::Result<(), String> {
    use ort::ep::ExecutionProvider as _;
    match ort::ep::CUDA::is_available() {
        Ok(true) => {}
        Ok(false) => return Err("this ONNX Runtime library has no CUDA execution provider".into()),
        Err(e) => return Err(e.to_string()),
    }
    let builder = Session::builder(env).map_err(|e| e.to_string())?;
    builder
        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map(|_| ())
        .map_err(|e| format!("the CUDA provider failed to start: {e}"))
}

/// Settings of an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Side of the square input (pixels).
    pub input_size: usize,
    /// Preprocessing; the model's default when `None`.
    pub profile: Option<ProfileName>,
    /// Write every generated graph here (for inspection).
    pub dump_graphs: Option<PathBuf>,
    /// Let ONNX Runtime make the float16 values and the flags of a
    /// recording rather than pack them from f32 activations; by default on a
    /// GPU only, where it sends back less.
    pub compact_recording: Option<bool>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            input_size: 224,
            profile: None,
            dump_graphs: None,
            compact_recording: None,
        }
    }
}

/// A feature's strongest activation in one image: (value, y, x).
pub type FeatureMax = (f32, u32, u32);

/// The f32 result of one forward pass.
pub struct ForwardPass {
    /// Per conv layer, `[C, H, W]` activations after the ReLU.
    pub activations: Vec<Vec<f32>>,
    pub scores: Vec<f32>,
}

/// One network loaded on one runtime.
pub struct Engine {
    pub(crate) runtime: Arc<Runtime>,
    pub network: Network,
    pub profile: Profile,
    pub provenance: Provenance,
    pub geometry: Vec<LayerGeom>,
    /// The head runs at the working size and reports class scores.
    pub head_enabled: bool,
    /// The recording graph, of the kind `recording`.
    record: Mutex<Session>,
    recording: RecordingGraph,
    /// Full-precision graph for `forward` when the recording graph is
    /// compact, built on first use.
    exact: std::sync::OnceLock<Mutex<Session>>,
    /// Dataset-scan graph reducing the activations itself (for a GPU),
    /// built on first use; on the CPU [`first_max`] reduces the recording
    /// graph's activations.
    scan: std::sync::OnceLock<Mutex<Session>>,
    pub(crate) backward: BackwardCache,
    pub(crate) dump_graphs: Option<PathBuf>,
}

impl Engine {
    /// Loads a model file: parses the chain, builds the recording graph and
    /// warms it up.
    pub fn load(
        runtime: Arc<Runtime>,
        path: &Path,
        provenance: Provenance,
        options: &EngineOptions,
    ) -> Result<Engine> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let model = decode_model(&bytes)?;
        drop(bytes);
        let network = Network::from_model(&model)?;
        let pools = network.convs.iter().filter(|c| c.pooled).count()
            + usize::from(network.pool_after_last);
        let min = 1usize << pools;
        if options.input_size < min || options.input_size > 2048 {
            return Err(Error::invalid(
                "input size",
                format!(
                    "{} is outside {min}..=2048 for a network with {pools} pools",
                    options.input_size
                ),
            ));
        }
        let profile = match options.profile {
            Some(name) => Profile::named(name, options.input_size, network.layout),
            None => Profile::default_for(&network, options.input_size),
        };
        let geometry = network.geometry(options.input_size);
        // The head only runs where the flattened size matches the file's;
        // try it, and record without it where it does not.
        let mut head_enabled = network.head_output.is_some();
        let zeros = vec![0.0; 3 * options.input_size * options.input_size];
        let recording = if options.compact_recording.unwrap_or(runtime.cuda) {
            RecordingGraph::Compact
        } else {
            RecordingGraph::Exact
        };
        let record = loop {
            let graph = match recording {
                RecordingGraph::Compact => record_graph(&model, &network, head_enabled, &geometry),
                RecordingGraph::Exact => exact_graph(&model, &network, head_enabled),
            };
            let attempt = runtime.session(&onnx::encode(&graph)).and_then(|session| {
                let session = Mutex::new(session);
                run_recording(
                    &session,
                    recording,
                    &network,
                    &geometry,
                    head_enabled,
                    &profile,
                    &zeros,
                )?;
                Ok((session, graph))
            });
            match attempt {
                Ok((session, graph)) => {
                    if let Some(dir) = &options.dump_graphs {
                        dump_to(dir, "record", &graph);
                    }
                    break session;
                }
                Err(e) if head_enabled => {
                    tracing::warn!(
                        "the model's head does not run at {0}x{0} ({e}); class predictions are off",
                        options.input_size
                    );
                    head_enabled = false;
                }
                Err(e) => return Err(e),
            }
        };
        let engine = Engine {
            record,
            recording,
            exact: std::sync::OnceLock::new(),
            scan: std::sync::OnceLock::new(),
            runtime,
            head_enabled,
            network,
            profile,
            provenance,
            geometry,
            backward: BackwardCache::default(),
            dump_graphs: options.dump_graphs.clone(),
        };
        tracing::info!(
            layers = engine.network.convs.len(),
            dense = engine.network.dense.len(),
            input = options.input_size,
            profile = %engine.profile.name,
            head = engine.head_enabled,
            "model loaded"
        );
        Ok(engine)
    }

    pub fn provider(&self) -> &'static str {
        self.runtime.provider()
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn runtime_version(&self) -> &str {
        self.runtime.version()
    }

    pub fn threads(&self) -> usize {
        self.runtime.threads()
    }

    pub(crate) fn dump(&self, name: &str, model: &ModelProto) {
        if let Some(dir) = &self.dump_graphs {
            dump_to(dir, name, model);
        }
    }

    pub(crate) fn session(&self, model: &ModelProto) -> Result<Session> {
        self.runtime.session(&onnx::encode(model))
    }

    fn check_input(&self, input: &[f32]) -> Result<()> {
        let s = self.profile.input_size;
        if input.len() != 3 * s * s {
            return Err(Error::invalid(
                "input",
                format!("expected 3x{s}x{s} values, got {}", input.len()),
            ));
        }
        Ok(())
    }

    /// The model file, read again: graphs built after loading copy parts of
    /// it (the engine keeps only what it extracted).
    pub(crate) fn model_file(&self) -> Result<ModelProto> {
        let bytes = std::fs::read(&self.provenance.path)
            .map_err(|e| Error::io(&self.provenance.path, e))?;
        decode_model(&bytes)
    }

    /// The graph handing out every conv layer's f32 activations (and the
    /// scores): the recording graph itself on the CPU; with a compact
    /// recording graph, a second graph built on first use.
    fn exact_session(&self) -> Result<&Mutex<Session>> {
        Ok(match (self.recording, self.exact.get()) {
            (RecordingGraph::Exact, _) => &self.record,
            (RecordingGraph::Compact, Some(s)) => s,
            (RecordingGraph::Compact, None) => {
                let graph = exact_graph(&self.model_file()?, &self.network, self.head_enabled);
                let session = Mutex::new(self.runtime.session(&onnx::encode(&graph))?);
                self.exact.get_or_init(|| session)
            }
        })
    }

    /// Full-precision activations of every conv layer (and the scores).
    pub fn forward(&self, input: &[f32]) -> Result<ForwardPass> {
        self.check_input(input)?;
        let session = self.exact_session()?;
        let (shape, fed) = self.model_layout(input);
        let tensor = TensorRef::from_array_view((shape, fed.as_ref()))?;
        let mut session = session
            .lock()
            .map_err(|_| Error::Runtime("recording session poisoned".into()))?;
        let outputs = session.run(ort::inputs![self.network.input_name.as_str() => tensor])?;
        let activations = relu_outputs(&outputs, &self.network, &self.geometry)?
            .into_iter()
            .map(<[f32]>::to_vec)
            .collect();
        let scores = match (&self.network.head_output, self.head_enabled) {
            (Some(name), true) => outputs[name.as_str()]
                .try_extract_tensor::<f32>()?
                .1
                .to_vec(),
            _ => Vec::new(),
        };
        Ok(ForwardPass {
            activations,
            scores,
        })
    }

    /// For a batch of `[3, H, W]` inputs: per conv layer, each feature's
    /// strongest activation and its location (first maximum in row-major
    /// order). `out[layer - 1][image][feature] = (value, y, x)`.
    pub fn feature_maxima(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<Vec<FeatureMax>>>> {
        let mut batch = Vec::with_capacity(inputs.len() * inputs.first().map_or(0, Vec::len));
        for i in inputs {
            self.check_input(i)?;
            batch.extend_from_slice(&self.model_layout(i).1);
        }
        self.feature_maxima_laid_out(&batch, inputs.len())
    }

    /// [`Self::feature_maxima`] of `n` inputs already in the model file's
    /// layout ([`Self::model_layout`]) and concatenated.
    pub fn feature_maxima_laid_out(
        &self,
        batch: &[f32],
        n: usize,
    ) -> Result<Vec<Vec<Vec<FeatureMax>>>> {
        // On a GPU the reduction stays there (the activations would cross
        // the bus); on the CPU, ONNX Runtime's TopK is a scalar loop, while
        // [`first_max`] reads each activation once with vector instructions.
        self.feature_maxima_by(batch, n, self.runtime.cuda)
    }

    /// [`Self::feature_maxima_laid_out`] with the reduction inside the graph
    /// (TopK) or on the CPU over the activations ([`first_max`]); both give
    /// the same values and first positions.
    pub fn feature_maxima_by(
        &self,
        batch: &[f32],
        n: usize,
        in_graph: bool,
    ) -> Result<Vec<Vec<Vec<FeatureMax>>>> {
        if n == 0 {
            return Ok(vec![Vec::new(); self.network.convs.len()]);
        }
        let s = self.profile.input_size;
        let per = 3 * s * s;
        if batch.len() != n * per {
            return Err(Error::invalid(
                "batch",
                format!("expected {n} x 3 x {s} x {s} values"),
            ));
        }
        let session = match (in_graph, self.scan.get()) {
            (false, _) => self.exact_session()?,
            (true, Some(s)) => s,
            (true, None) => {
                let graph = scan_graph(&self.model_file()?, &self.network);
                self.dump("scan", &graph);
                let session = Mutex::new(self.runtime.session(&onnx::encode(&graph))?);
                self.scan.get_or_init(|| session)
            }
        };
        let shape = |n: usize| match self.network.layout {
            Layout::Nchw => [n, 3, s, s],
            Layout::Nhwc => [n, s, s, 3],
        };
        let mut session = session
            .lock()
            .map_err(|_| Error::Runtime("scan session poisoned".into()))?;
        let mut out: Vec<Vec<Vec<FeatureMax>>> =
            vec![Vec::with_capacity(n); self.network.convs.len()];
        if in_graph {
            let tensor = TensorRef::from_array_view((shape(n), batch))?;
            let outputs = session.run(ort::inputs![self.network.input_name.as_str() => tensor])?;
            for (c, layer) in self.network.convs.iter().zip(&mut out) {
                let g = &self.geometry[c.number];
                let (_, values) = outputs[format!("fovea_max{}", c.number).as_str()]
                    .try_extract_tensor::<f32>()?;
                let (_, args) = outputs[format!("fovea_arg{}", c.number).as_str()]
                    .try_extract_tensor::<i64>()?;
                if values.len() != n * g.channels || args.len() != n * g.channels {
                    return Err(wrong_size(c.number, "maxima", values.len(), n * g.channels));
                }
                for b in 0..n {
                    layer.push(
                        (0..g.channels)
                            .map(|f| {
                                let k = b * g.channels + f;
                                let at = args[k].max(0) as usize;
                                (values[k], (at / g.width) as u32, (at % g.width) as u32)
                            })
                            .collect(),
                    );
                }
            }
            return Ok(out);
        }
        // One image a run: its activations (54 MB at 224 for VGG-16) stay
        // small, and batching gains nothing per image on the CPU.
        for image in batch.chunks_exact(per) {
            let tensor = TensorRef::from_array_view((shape(1), image))?;
            let outputs = session.run(ort::inputs![self.network.input_name.as_str() => tensor])?;
            let maps = relu_outputs(&outputs, &self.network, &self.geometry)?;
            // On this thread alone: the other core is the decoders' (and
            // ONNX Runtime's spinning worker's) meanwhile.
            for (layer, (values, g)) in out
                .iter_mut()
                .zip(maps.into_iter().zip(&self.geometry[1..]))
            {
                layer.push(
                    values
                        .chunks_exact(g.height * g.width)
                        .map(|plane| {
                            let (v, at) = first_max(plane);
                            (v, (at / g.width) as u32, (at % g.width) as u32)
                        })
                        .collect(),
                );
            }
        }
        Ok(out)
    }

    /// Records a preprocessed `[3, H, W]` tensor (id and image left empty).
    pub fn record_tensor(&self, input: Vec<f32>) -> Result<Recording> {
        self.check_input(&input)?;
        let (layers, scores) = run_recording(
            &self.record,
            self.recording,
            &self.network,
            &self.geometry,
            self.head_enabled,
            &self.profile,
            &input,
        )?;
        let s = self.profile.input_size as u32;
        Ok(Recording {
            id: String::new(),
            label: String::new(),
            original_width: s,
            original_height: s,
            image: image::RgbImage::new(s, s),
            input,
            layers,
            scores,
        })
    }

    /// A `[3, H, W]` tensor as the model file's input wants it (shape, data).
    pub fn model_layout<'a>(&self, input: &'a [f32]) -> ([usize; 4], std::borrow::Cow<'a, [f32]>) {
        let s = self.profile.input_size;
        match self.network.layout {
            Layout::Nchw => ([1, 3, s, s], std::borrow::Cow::Borrowed(input)),
            Layout::Nhwc => (
                [1, s, s, 3],
                std::borrow::Cow::Owned(nchw_to_nhwc(input, s, s)),
            ),
        }
    }

    /// The content key of an image under this model and preprocessing.
    pub fn recording_id(&self, image: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(self.provenance.sha256.as_bytes());
        h.update(b"\0");
        h.update(self.profile.fingerprint().as_bytes());
        // How the bytes become pixels (EXIF orientation, alpha): recordings
        // made before it was applied are not served for it.
        h.update(b"\0decode-2\0");
        h.update(image);
        hex(&h.finalize())
    }

    /// Decodes, preprocesses and records an image.
    pub fn record(&self, image: &[u8], label: &str, limits: ImageLimits) -> Result<Recording> {
        let decoded = decode_image(image, limits)?;
        let (resized, input) = self.profile.preprocess(&decoded);
        let mut rec = self.record_tensor(input)?;
        rec.id = self.recording_id(image);
        rec.label = label.to_string();
        rec.original_width = decoded.width();
        rec.original_height = decoded.height();
        rec.image = resized;
        Ok(rec)
    }
}

fn nchw_to_nhwc(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0f32; x.len()];
    for i in 0..plane {
        for c in 0..3 {
            out[i * 3 + c] = x[c * plane + i];
        }
    }
    out
}

/// Declares the input's batch and spatial dimensions free, so the graph runs
/// at the working size; nothing else changes.
fn free_input_size(g: &mut fovea_proto::onnx::GraphProto, net: &Network) {
    for i in &mut g.input {
        if i.name != net.input_name {
            continue;
        }
        if let Some(fovea_proto::onnx::type_proto::Value::TensorType(t)) =
            i.r#type.as_mut().and_then(|t| t.value.as_mut())
            && let Some(shape) = t.shape.as_mut()
        {
            let (h, w) = match net.layout {
                Layout::Nchw => (2, 3),
                Layout::Nhwc => (1, 2),
            };
            for (k, name) in [(0usize, "batch"), (h, "height"), (w, "width")] {
                if let Some(d) = shape.dim.get_mut(k) {
                    d.value = Some(
                        fovea_proto::onnx::tensor_shape_proto::dimension::Value::DimParam(
                            name.into(),
                        ),
                    );
                }
            }
        }
    }
}

/// The unmodified model with only its input size freed: the baseline the
/// benchmark compares against.
pub fn plain_model(model: &ModelProto, net: &Network) -> ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        free_input_size(g, net);
        g.value_info.clear();
    }
    m
}

fn dump_to(dir: &Path, name: &str, model: &ModelProto) {
    let path = dir.join(format!("{name}.onnx"));
    if let Err(e) =
        std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, onnx::encode(model)))
    {
        tracing::warn!("cannot dump graph {}: {e}", path.display());
    }
}

/// How a recording graph hands out each conv layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordingGraph {
    /// Float16 values, active flags and, before each pool, flags at the
    /// window maxima, made by ONNX Runtime (a GPU sends back less this way).
    Compact,
    /// The f32 activations, packed here with vector code (on the CPU, ONNX
    /// Runtime's casts and compares cost more than the packing).
    Exact,
}

/// Runs a recording graph on one `[3, H, W]` input: every conv layer's
/// recording (layers packed in parallel) and the head's scores.
fn run_recording(
    session: &Mutex<Session>,
    kind: RecordingGraph,
    net: &Network,
    geometry: &[LayerGeom],
    head: bool,
    profile: &Profile,
    input: &[f32],
) -> Result<(Vec<LayerRecording>, Vec<f32>)> {
    let s = profile.input_size;
    let fed: std::borrow::Cow<[f32]> = match net.layout {
        Layout::Nchw => std::borrow::Cow::Borrowed(input),
        Layout::Nhwc => std::borrow::Cow::Owned(nchw_to_nhwc(input, s, s)),
    };
    let shape = match net.layout {
        Layout::Nchw => [1, 3, s, s],
        Layout::Nhwc => [1, s, s, 3],
    };
    let tensor = TensorRef::from_array_view((shape, fed.as_ref()))?;
    let mut session = session
        .lock()
        .map_err(|_| Error::Runtime("recording session poisoned".into()))?;
    let outputs = session.run(ort::inputs![net.input_name.as_str() => tensor])?;
    let layers = match kind {
        RecordingGraph::Compact => {
            let mut parts = Vec::with_capacity(net.convs.len());
            for (i, c) in net.convs.iter().enumerate() {
                let g = &geometry[i + 1];
                let n = g.channels * g.height * g.width;
                let (_, values) = outputs[format!("fovea_act{}", c.number).as_str()]
                    .try_extract_tensor::<half::f16>()?;
                let (_, mask) = outputs[format!("fovea_mask{}", c.number).as_str()]
                    .try_extract_tensor::<bool>()?;
                if values.len() != n || mask.len() != n {
                    return Err(wrong_size(c.number, "values", values.len(), n));
                }
                let switch = if c.pooled {
                    let (_, sw) = outputs[format!("fovea_switch{}", c.number).as_str()]
                        .try_extract_tensor::<bool>()?;
                    let prev = &geometry[i];
                    let want = prev.channels * (prev.height / 2 * 2) * (prev.width / 2 * 2);
                    if sw.len() != want {
                        return Err(wrong_size(c.number, "window flags", sw.len(), want));
                    }
                    Some(sw)
                } else {
                    None
                };
                parts.push((values, mask, switch));
            }
            crate::parallel::map_by_cost(
                parts.len(),
                |i| parts[i].0.len(),
                |i| {
                    let (g, prev) = (&geometry[i + 1], &geometry[i]);
                    let (values, mask, switch) = parts[i];
                    LayerRecording {
                        channels: g.channels,
                        height: g.height,
                        width: g.width,
                        activations: values.to_vec(),
                        mask: crate::recording::Bits::from_bools(mask),
                        switches: switch.map(|s| {
                            crate::recording::switches_from_maxima(
                                s,
                                prev.channels,
                                prev.height,
                                prev.width,
                            )
                        }),
                    }
                },
            )
        }
        RecordingGraph::Exact => {
            let values = relu_outputs(&outputs, net, geometry)?;
            crate::parallel::map_by_cost(
                values.len(),
                |i| values[i].len(),
                |i| {
                    let (g, prev) = (&geometry[i + 1], &geometry[i]);
                    let pooled_from = (i > 0 && net.convs[i].pooled)
                        .then(|| (values[i - 1], prev.channels, prev.height, prev.width));
                    LayerRecording::from_f32(g.channels, g.height, g.width, values[i], pooled_from)
                },
            )
        }
    }
    .ok_or_else(|| Error::Runtime("a layer was not recorded".into()))?;
    let scores = match (&net.head_output, head) {
        (Some(name), true) => outputs[name.as_str()]
            .try_extract_tensor::<f32>()?
            .1
            .to_vec(),
        _ => Vec::new(),
    };
    Ok((layers, scores))
}

/// The original graph made to record: per conv layer its activations as
/// float16, its active flags, and (before each pooled layer) flags at each
/// 2x2 window's maxima; the spatial input size left free.
/// With `head` false the head is pruned away.
fn record_graph(
    model: &ModelProto,
    net: &Network,
    head: bool,
    geometry: &[LayerGeom],
) -> ModelProto {
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let mut outputs = head_output(g, net, head);
    let mut b = onnx::GraphBuilder::new("record_extras").prefixed("fovea_");
    let zero = b.initializer(onnx::f32_tensor("fovea_zero", &[], &[0.0]));
    for c in &net.convs {
        let i = c.number;
        let act = format!("fovea_act{i}");
        b.node_named(
            "Cast",
            &[&c.relu_output],
            &act,
            vec![("to", onnx::Attr::Int(DataType::Float16 as i64))],
        );
        outputs.push(onnx::value_info(&act, DataType::Float16, &[]));
        let mask = format!("fovea_mask{i}");
        b.node_named("Greater", &[&c.relu_output, &zero], &mask, vec![]);
        outputs.push(onnx::value_info(&mask, DataType::Bool, &[]));
        if c.pooled {
            // Every position equal to its 2x2 window's maximum (exact f32
            // comparisons); the first of them per window is resolved when
            // packing, which is cheaper than an ArgMax over window blocks.
            let prev = &geometry[i - 1];
            let (h2, w2) = (prev.height / 2, prev.width / 2);
            let mut x = net.convs[i - 2].relu_output.clone();
            if prev.height % 2 == 1 || prev.width % 2 == 1 {
                let starts = b.initializer(onnx::i64_tensor(&format!("fovea_s{i}"), &[2], &[0, 0]));
                let ends = b.initializer(onnx::i64_tensor(
                    &format!("fovea_e{i}"),
                    &[2],
                    &[2 * h2 as i64, 2 * w2 as i64],
                ));
                let axes = b.initializer(onnx::i64_tensor(&format!("fovea_a{i}"), &[2], &[2, 3]));
                x = b.node("Slice", &[&x, &starts, &ends, &axes], vec![]);
            }
            let pooled = b.node(
                "MaxPool",
                &[&x],
                vec![
                    ("kernel_shape", onnx::Attr::Ints(vec![2, 2])),
                    ("strides", onnx::Attr::Ints(vec![2, 2])),
                ],
            );
            let spread = b.upsample2(&pooled);
            let switch = format!("fovea_switch{i}");
            b.node_named("Equal", &[&x, &spread], &switch, vec![]);
            outputs.push(onnx::value_info(&switch, DataType::Bool, &[]));
        }
    }
    append(g, b);
    finish_record_graph(g, net, outputs);
    m
}

/// The original graph reduced to, per conv layer, each feature's maximum over
/// the locations and its first position (`fovea_max{i}`, `fovea_arg{i}`),
/// for any batch size. Ops chosen to exist in every opset from 11 on.
fn scan_graph(model: &ModelProto, net: &Network) -> ModelProto {
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let mut b = onnx::GraphBuilder::new("scan_extras").prefixed("fovea_");
    let one = b.initializer(onnx::i64_tensor("fovea_k", &[1], &[1]));
    let mut outputs = Vec::new();
    for c in &net.convs {
        let i = c.number;
        let shape = b.initializer(onnx::i64_tensor(
            &format!("fovea_flat{i}"),
            &[3],
            &[0, c.out_channels as i64, -1],
        ));
        let flat = b.node("Reshape", &[&c.relu_output, &shape], vec![]);
        // TopK with k = 1 returns the first maximum (lower index first on
        // ties) and is cheaper than ArgMax plus a gather.
        let (max, arg) = (format!("fovea_max{i}"), format!("fovea_arg{i}"));
        b.node_outputs(
            "TopK",
            &[&flat, &one],
            &[&max, &arg],
            vec![("axis", onnx::Attr::Int(2))],
        );
        outputs.push(onnx::value_info(&max, DataType::Float, &[]));
        outputs.push(onnx::value_info(&arg, DataType::Int64, &[]));
    }
    append(g, b);
    finish_record_graph(g, net, outputs);
    m
}

fn wrong_size(layer: usize, what: &str, got: usize, want: usize) -> Error {
    Error::Runtime(format!(
        "layer {layer} produced {got} {what}, expected {want}"
    ))
}

/// Every conv layer's f32 activations `[C, H, W]` among a one-image run's
/// outputs, each checked for its size.
fn relu_outputs<'a>(
    outputs: &'a ort::session::SessionOutputs<'_>,
    net: &Network,
    geometry: &[LayerGeom],
) -> Result<Vec<&'a [f32]>> {
    net.convs
        .iter()
        .zip(&geometry[1..])
        .map(|(c, g)| {
            let (_, v) = outputs[c.relu_output.as_str()].try_extract_tensor::<f32>()?;
            let want = g.channels * g.height * g.width;
            if v.len() != want {
                return Err(wrong_size(c.number, "values", v.len(), want));
            }
            Ok(v)
        })
        .collect()
}

/// The largest value of `values` and the index of its first occurrence
/// (NaN never wins; `(-inf, 0)` when there is no number), with the widest
/// vector instructions the CPU has: AVX-512 reads twice as fast as AVX2,
/// and AVX2 twice as fast as the SSE2 every x86_64 has.
pub fn first_max(values: &[f32]) -> (f32, usize) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has just been found to support AVX-512F.
            return unsafe { first_max_avx512(values) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has just been found to support AVX2.
            return unsafe { first_max_avx2(values) };
        }
    }
    first_max_lanes(values)
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f")]
fn first_max_avx512(values: &[f32]) -> (f32, usize) {
    first_max_lanes(values)
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx2")]
fn first_max_avx2(values: &[f32]) -> (f32, usize) {
    first_max_lanes(values)
}

/// Sixteen lanes keep their own first maximum, so the loop compiles to
/// vector compares and blends; the lanes are merged at the end.
#[inline(always)]
fn first_max_lanes(values: &[f32]) -> (f32, usize) {
    const LANES: usize = 16;
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut at = [usize::MAX; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (k, chunk) in chunks.enumerate() {
        let base = k * LANES;
        for j in 0..LANES {
            let better = chunk[j] > best[j];
            best[j] = if better { chunk[j] } else { best[j] };
            at[j] = if better { base + j } else { at[j] };
        }
    }
    let start = values.len() - tail.len();
    let lanes = best.into_iter().zip(at);
    let rest = tail.iter().enumerate().map(|(j, &v)| (v, start + j));
    let mut top = (f32::NEG_INFINITY, usize::MAX);
    for (v, i) in lanes.chain(rest) {
        if v > top.0 || (v == top.0 && i < top.1) {
            top = (v, i);
        }
    }
    if top.1 == usize::MAX {
        top.1 = 0;
    }
    top
}

/// The original graph with every conv layer's ReLU output exposed in full
/// precision (see [`Engine::forward`]).
fn exact_graph(model: &ModelProto, net: &Network, head: bool) -> ModelProto {
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let mut outputs = head_output(g, net, head);
    for c in &net.convs {
        outputs.push(onnx::value_info(&c.relu_output, DataType::Float, &[]));
    }
    finish_record_graph(g, net, outputs);
    m
}

/// The head's output, kept when `head` is on (shape cleared).
fn head_output(
    g: &fovea_proto::onnx::GraphProto,
    net: &Network,
    head: bool,
) -> Vec<fovea_proto::onnx::ValueInfoProto> {
    let found = g
        .output
        .iter()
        .find(|o| Some(&o.name) == net.head_output.as_ref());
    match found {
        Some(o) if head => {
            let mut o = o.clone();
            clear_shape(&mut o);
            vec![o]
        }
        _ => Vec::new(),
    }
}

/// Adds generated nodes and initializers to a model's graph.
fn append(g: &mut fovea_proto::onnx::GraphProto, extras: onnx::GraphBuilder) {
    let extras = extras.finish().graph.unwrap_or_default();
    g.node.extend(extras.node);
    g.initializer.extend(extras.initializer);
}

/// Shapes recorded in the file hold for its native size only.
fn clear_shape(o: &mut fovea_proto::onnx::ValueInfoProto) {
    if let Some(fovea_proto::onnx::type_proto::Value::TensorType(t)) =
        o.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape = None;
    }
}

/// Sets the outputs, frees the input size and prunes what they do not need.
fn finish_record_graph(
    g: &mut fovea_proto::onnx::GraphProto,
    net: &Network,
    outputs: Vec<fovea_proto::onnx::ValueInfoProto>,
) {
    g.output = outputs;
    g.value_info.clear();
    free_input_size(g, net);
    // Keep only the nodes the outputs need.
    let mut needed: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; g.node.len()];
    for (i, n) in g.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(n.input.iter().cloned());
        }
    }
    let mut idx = 0;
    g.node.retain(|_| {
        idx += 1;
        keep[idx - 1]
    });
    g.initializer.retain(|t| needed.contains(&t.name));
}

#[cfg(test)]
mod tests {
    use super::{first_max, first_max_lanes};

    /// The first maximum by a plain scan.
    fn reference(values: &[f32]) -> (f32, usize) {
        let mut top = (f32::NEG_INFINITY, 0);
        for (i, &v) in values.iter().enumerate() {
            if v > top.0 {
                top = (v, i);
            }
        }
        top
    }

    #[test]
    fn first_max_matches_a_plain_scan_with_ties_tails_and_nan() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 1, 5, 15, 16, 17, 31, 48, 100, 1000] {
            for levels in [1u64, 3, 1000] {
                let values: Vec<f32> = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (rng % levels) as f32
                    })
                    .collect();
                assert_eq!(first_max(&values), reference(&values), "{values:?}");
                assert_eq!(first_max_lanes(&values), reference(&values));
                let mut with_nan = values.clone();
                if let Some(v) = with_nan.get_mut(len / 2) {
                    *v = f32::NAN;
                }
                assert_eq!(first_max(&with_nan), reference(&with_nan));
            }
        }
        // A later lane holds the maximum first; an earlier lane holds it later.
        let mut v = vec![0.0; 40];
        v[3] = 2.0;
        v[18] = 2.0;
        v[2 + 32] = 2.0;
        assert_eq!(first_max(&v), (2.0, 3));
        assert_eq!(first_max(&[f32::NAN, f32::NAN]), (f32::NEG_INFINITY, 0));
    }
}
