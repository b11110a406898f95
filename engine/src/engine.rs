//! A network loaded on a runtime: forward passes and recordings. What is
//! asked of a recording lives in `probe`.

use crate::error::{Error, Result};
use crate::graphs::GraphKind;
use crate::graphs::record::{exact_graph, record_graph, scan_graph};
use crate::model::network::{LayerGeom, Layout, Network};
use crate::model::profile::{ImageLimits, Profile, ProfileName, decode_image};
use crate::record::{LayerRecording, PoolInput, Recording, Switches, switches_from_maxima};
use crate::runtime::Runtime;
use crate::runtime::sessions::{SessionCache, SharedSession};
use crate::simd::first_max;
use crate::supply::{Provenance, hex};
use fovea_onnx::proto::ModelProto;
use fovea_onnx::{self as onnx, decode_model};
use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    pub(crate) sessions: SessionCache,
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
        // The smallest input every layer (and the pool after the last) still
        // has a row and a column of.
        let fits = |size: usize| {
            let g = network.geometry(size);
            let last = g[g.len() - 1];
            let (h, w) = match network.pool_after_last {
                Some(p) => (p.output_len(last.height, 0), p.output_len(last.width, 1)),
                None => (last.height, last.width),
            };
            g.iter().all(|l| l.height > 0 && l.width > 0) && h > 0 && w > 0
        };
        let min = (1..=2048).find(|&s| fits(s)).unwrap_or(usize::MAX);
        if options.input_size < min || options.input_size > 2048 {
            let allowed = if min > 2048 {
                "not available: the layers shrink to nothing below 2048 pixels".to_string()
            } else {
                format!("{min}..=2048 for this network")
            };
            return Err(Error::invalid(
                "input size",
                format!("{} is outside {allowed}", options.input_size),
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
            sessions: SessionCache::default(),
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
        if let Some(why) = &engine.network.probe_stop {
            tracing::warn!(
                "layers after {} are not probed: {why}",
                engine.network.convs.len()
            );
        }
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

    /// The session of a generated graph, from the cache or built now by
    /// `build` (and dumped with `--dump-graphs`).
    pub(crate) fn cached_graph(
        &self,
        layer: usize,
        kind: GraphKind,
        build: impl FnOnce() -> Result<ModelProto>,
    ) -> Result<SharedSession> {
        self.sessions.get_or_make(layer, kind, || {
            let model = build()?;
            self.dump(&kind.file_name(layer), &model);
            self.session(&model)
        })
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
        Ok(decode_model(&bytes)?)
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
                let switch = match c.max_pool() {
                    Some(pool) => {
                        let name = format!("fovea_switch{}", c.number);
                        let prev = &c.input_geom(geometry);
                        Some(if pool.halves() {
                            let (_, sw) = outputs[name.as_str()].try_extract_tensor::<bool>()?;
                            let want = prev.channels * (prev.height / 2 * 2) * (prev.width / 2 * 2);
                            if sw.len() != want {
                                return Err(wrong_size(c.number, "window flags", sw.len(), want));
                            }
                            RecordedSwitches::Flags(sw)
                        } else {
                            let (_, idx) = outputs[name.as_str()].try_extract_tensor::<i64>()?;
                            let want = prev.channels
                                * pool.output_len(prev.height, 0)
                                * pool.output_len(prev.width, 1);
                            if idx.len() != want {
                                return Err(wrong_size(c.number, "pool indices", idx.len(), want));
                            }
                            RecordedSwitches::Indices(idx)
                        })
                    }
                    None => None,
                };
                parts.push((values, mask, switch));
            }
            crate::parallel::map_by_cost(
                parts.len(),
                |i| parts[i].0.len(),
                |i| {
                    let (g, prev) = (&geometry[i + 1], net.convs[i].input_geom(geometry));
                    let (values, mask, switch) = parts[i];
                    LayerRecording {
                        channels: g.channels,
                        height: g.height,
                        width: g.width,
                        activations: values.to_vec(),
                        mask: crate::record::Bits::from_bools(mask),
                        switches: switch.map(|s| s.switches(&prev)),
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
                    let c = &net.convs[i];
                    let (g, prev) = (&geometry[i + 1], c.input_geom(geometry));
                    // The pool's input: the one source's values, or the
                    // concatenation of its sources'.
                    let below = c.max_pool().filter(|_| i > 0).map(|pool| {
                        let values: std::borrow::Cow<[f32]> = match c.sources.as_slice() {
                            [s] => values[s.saturating_sub(1)].into(),
                            sources => sources
                                .iter()
                                .flat_map(|&s| values[s.saturating_sub(1)].iter().copied())
                                .collect::<Vec<f32>>()
                                .into(),
                        };
                        (values, pool)
                    });
                    let pooled_from = below.as_ref().map(|(values, pool)| PoolInput {
                        values,
                        channels: prev.channels,
                        height: prev.height,
                        width: prev.width,
                        pool: *pool,
                    });
                    LayerRecording::from_f32(
                        (g.channels, g.height, g.width),
                        net.convs[i].activation,
                        values[i],
                        pooled_from,
                    )
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

/// A pool's switches as the compact recording graph returns them.
#[derive(Clone, Copy)]
enum RecordedSwitches<'a> {
    /// Flags at each 2x2 window's maxima.
    Flags(&'a [bool]),
    /// ONNX Runtime's flat index of each output's maximum (batch of one).
    Indices(&'a [i64]),
}

impl RecordedSwitches<'_> {
    fn switches(&self, below: &LayerGeom) -> Switches {
        let (c, h, w) = (below.channels, below.height, below.width);
        match self {
            RecordedSwitches::Flags(f) => Switches::Bits(switches_from_maxima(f, c, h, w)),
            RecordedSwitches::Indices(idx) => {
                let plane = (h * w).max(1) as i64;
                Switches::Cells(idx.iter().map(|&i| i.rem_euclid(plane) as u32).collect())
            }
        }
    }
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
