//! The probe engine: ONNX Runtime sessions, recording forward passes, and the
//! queries answered from a recording. Backward passes live in `backward`.

use crate::backward::BackwardCache;
use crate::error::{Error, Result};
use crate::network::{LayerGeom, Layout, Network};
use crate::onnx::{self, decode_model};
use crate::profile::{ImageLimits, Profile, ProfileName, decode_image};
use crate::recording::{Recording, layer_recording};
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
}

impl Runtime {
    /// Loads the shared library and decides the provider. A CUDA request that
    /// cannot be met logs one warning and runs on CPU. ONNX Runtime allows one
    /// environment per process, so later calls return the first runtime.
    pub fn new(lib: &Path, ep: ExecutionProvider, threads: usize) -> Result<Arc<Runtime>> {
        static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);
        let mut slot = RUNTIME
            .lock()
            .map_err(|_| Error::Runtime("runtime lock poisoned".into()))?;
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        let rt = Arc::new(Runtime::create(lib, ep, threads)?);
        *slot = Some(rt.clone());
        Ok(rt)
    }

    fn create(lib: &Path, ep: ExecutionProvider, threads: usize) -> Result<Runtime> {
        let env = ort::init_from(lib)
            .map_err(|e| {
                Error::Supply(format!(
                    "cannot load ONNX Runtime from {}: {e}",
                    lib.display()
                ))
            })?
            .with_name("fovea")
            .build()
            .map_err(|e| Error::Runtime(e.to_string()))?;
        // The versioned file name is the most reliable source of the version.
        let version = lib
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .and_then(|f| f.split_once(".so.").map(|(_, v)| v.to_string()))
            .unwrap_or_else(|| "unknown".into());
        let cuda = match ep {
            ExecutionProvider::Cpu => false,
            ExecutionProvider::Auto | ExecutionProvider::Cuda => {
                let explicit = ep == ExecutionProvider::Cuda;
                match cuda_usable(&env) {
                    Ok(()) => true,
                    Err(why) => {
                        if explicit {
                            tracing::warn!("CUDA was requested but {why}; running on CPU");
                        } else {
                            tracing::info!("CUDA not used ({why}); running on CPU");
                        }
                        false
                    }
                }
            }
        };
        tracing::info!(
            provider = if cuda { "cuda" } else { "cpu" },
            onnxruntime = %version,
            library = %lib.display(),
            "ONNX Runtime loaded"
        );
        Ok(Runtime {
            env,
            cuda,
            threads,
            version,
        })
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

    /// A session on the chosen provider for an encoded model.
    pub fn session(&self, model: &[u8]) -> Result<Session> {
        let mut b =
            Session::builder(&self.env)?.with_optimization_level(GraphOptimizationLevel::All)?;
        if self.threads > 0 {
            b = b.with_intra_threads(self.threads)?;
        }
        if self.cuda {
            b = b.with_execution_providers([ort::ep::CUDA::default().build()])?;
        }
        Ok(b.commit_from_memory(model)?)
    }
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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            input_size: 224,
            profile: None,
            dump_graphs: None,
        }
    }
}

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
    record: Mutex<Session>,
    record_outputs: Vec<String>,
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
        let mut engine = Engine {
            record: Mutex::new(
                runtime.session(&onnx::encode(&record_graph(&model, &network, false)))?,
            ),
            runtime,
            record_outputs: Vec::new(),
            head_enabled: false,
            network,
            profile,
            provenance,
            geometry,
            backward: BackwardCache::default(),
            dump_graphs: options.dump_graphs.clone(),
        };
        engine.record_outputs = engine
            .network
            .convs
            .iter()
            .map(|c| c.relu_output.clone())
            .collect();
        if engine.network.head_output.is_some() {
            let with_head = record_graph(&model, &engine.network, true);
            let attempt = engine
                .runtime
                .session(&onnx::encode(&with_head))
                .and_then(|s| {
                    *engine
                        .record
                        .lock()
                        .map_err(|_| Error::Runtime("poisoned".into()))? = s;
                    engine.head_enabled = true;
                    engine.forward(&vec![0.0; 3 * options.input_size * options.input_size])
                });
            if let Err(e) = attempt {
                tracing::warn!(
                    "the model's head does not run at {0}x{0} ({e}); class predictions are off",
                    options.input_size
                );
                engine.head_enabled = false;
                *engine
                    .record
                    .lock()
                    .map_err(|_| Error::Runtime("poisoned".into()))? = engine
                    .runtime
                    .session(&onnx::encode(&record_graph(&model, &engine.network, false)))?;
            }
            engine.dump(
                "record",
                &record_graph(&model, &engine.network, engine.head_enabled),
            );
        } else {
            engine.dump("record", &record_graph(&model, &engine.network, false));
        }
        if !engine.head_enabled {
            engine.forward(&vec![0.0; 3 * options.input_size * options.input_size])?;
        }
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
            let path = dir.join(format!("{name}.onnx"));
            if let Err(e) = std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&path, onnx::encode(model)))
            {
                tracing::warn!("cannot dump graph {}: {e}", path.display());
            }
        }
    }

    pub(crate) fn session(&self, model: &ModelProto) -> Result<Session> {
        self.runtime.session(&onnx::encode(model))
    }

    /// Runs the recording graph on a `[3, H, W]` input tensor and hands the
    /// per-layer activations and the scores to `f` without copying them.
    fn with_outputs<T>(
        &self,
        input: &[f32],
        f: impl FnOnce(&[&[f32]], &[f32]) -> Result<T>,
    ) -> Result<T> {
        let s = self.profile.input_size;
        if input.len() != 3 * s * s {
            return Err(Error::invalid(
                "input",
                format!("expected 3x{s}x{s} values, got {}", input.len()),
            ));
        }
        let (shape, fed) = self.model_layout(input);
        let tensor = TensorRef::from_array_view((shape, fed.as_ref()))?;
        let mut session = self
            .record
            .lock()
            .map_err(|_| Error::Runtime("recording session poisoned".into()))?;
        let outputs = session.run(ort::inputs![self.network.input_name.as_str() => tensor])?;
        let mut activations = Vec::with_capacity(self.record_outputs.len());
        for (i, name) in self.record_outputs.iter().enumerate() {
            let (shape, data) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            let g = &self.geometry[i + 1];
            if shape.iter().product::<i64>() as usize != g.channels * g.height * g.width {
                return Err(Error::Runtime(format!(
                    "layer {} produced shape {shape:?}, expected [1, {}, {}, {}]",
                    i + 1,
                    g.channels,
                    g.height,
                    g.width
                )));
            }
            activations.push(data);
        }
        let scores: &[f32] = match (&self.network.head_output, self.head_enabled) {
            (Some(name), true) => outputs[name.as_str()].try_extract_tensor::<f32>()?.1,
            _ => &[],
        };
        f(&activations, scores)
    }

    /// Runs the recording graph on a `[3, H, W]` input tensor.
    pub fn forward(&self, input: &[f32]) -> Result<ForwardPass> {
        self.with_outputs(input, |acts, scores| {
            Ok(ForwardPass {
                activations: acts.iter().map(|a| a.to_vec()).collect(),
                scores: scores.to_vec(),
            })
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
        h.update(b"\0");
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

    /// Records a preprocessed `[3, H, W]` tensor (id and image left empty).
    pub fn record_tensor(&self, input: Vec<f32>) -> Result<Recording> {
        let geometry = &self.geometry;
        let (layers, scores) = self.with_outputs(&input, |acts, scores| {
            // Masks, switches and half-precision copies, layers spread over
            // the cores (largest first).
            let mut order: Vec<usize> = (0..acts.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(acts[i].len()));
            let next = std::sync::atomic::AtomicUsize::new(0);
            let slots: Vec<Mutex<Option<crate::recording::LayerRecording>>> =
                (0..acts.len()).map(|_| Mutex::new(None)).collect();
            let workers = std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(acts.len());
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(|| {
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&i) = order.get(k) else { break };
                            let g = &geometry[i + 1];
                            let prev = &geometry[i];
                            let pooled_from =
                                g.pooled.then(|| (acts[i - 1], prev.height, prev.width));
                            let l = layer_recording(
                                g.channels,
                                g.height,
                                g.width,
                                acts[i],
                                pooled_from,
                            );
                            if let Ok(mut slot) = slots[i].lock() {
                                *slot = Some(l);
                            }
                        }
                    });
                }
            });
            let layers = slots
                .into_iter()
                .map(|s| s.into_inner().ok().flatten())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::Runtime("a layer was not recorded".into()))?;
            Ok((layers, scores.to_vec()))
        })?;
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

/// The original graph with every conv layer's ReLU output exposed and the
/// spatial input size left free; with `head` false, the head is pruned away.
fn record_graph(model: &ModelProto, net: &Network, head: bool) -> ModelProto {
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let mut outputs = Vec::new();
    if head
        && let Some(o) = g
            .output
            .iter()
            .find(|o| Some(&o.name) == net.head_output.as_ref())
    {
        outputs.push(o.clone());
    }
    for c in &net.convs {
        outputs.push(onnx::value_info(&c.relu_output, DataType::Float, &[]));
    }
    for o in &mut outputs {
        // Shapes recorded in the file hold for its native size only.
        if let Some(fovea_proto::onnx::type_proto::Value::TensorType(t)) =
            o.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape = None;
        }
    }
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
    m
}
