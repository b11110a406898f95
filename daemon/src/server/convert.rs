//! Between the API and the engine, in one place: every request is checked
//! against the loaded network before any work and becomes an engine request
//! (a refusal names the field and its allowed range); every answer becomes
//! its proto message; every error becomes a gRPC status, engine errors
//! through [`status`]. No other module builds a status.

use fovea_engine::engine::Engine;
use fovea_engine::error::Error;
use fovea_engine::model::network::Activation;
use fovea_engine::model::profile::ImageLimits;
use fovea_engine::probe::attribute::{AttributeRequest, Attribution, Baseline, MAX_STEPS, Method};
use fovea_engine::probe::maximize::MaximizeOptions;
use fovea_engine::probe::maximize::{Maximized, Progress};
use fovea_engine::probe::patterns::PatternComparison;
use fovea_engine::probe::reconstruct::{
    Mode, NeuronAt, PixelBox, ReconstructRequest, Reconstruction, Start, fov_box,
};
use fovea_engine::probe::regions::{Boundary, Flip, FlipKind, Profile, Region, Segment};
use fovea_engine::probe::render;
use fovea_engine::probe::scan::{Hit, ScanResults};
use fovea_engine::probe::study::{Condition, StudyRow, StudySettings};
use fovea_engine::probe::visualize::{Param, VisualizeOptions};
use fovea_engine::record::Recording;
use fovea_engine::record::{self, LayerStats};
use fovea_proto::v1 as pb;
use tonic::Status;

/// Most reconstructions (neurons x modes) one call may ask for.
pub const MAX_RECONSTRUCTIONS: usize = 64;

/// Largest answer the server encodes, bytes; requests whose answer would
/// be larger are refused before any work.
pub const MAX_ENCODED_MESSAGE: usize = 256 << 20;

/// A checked Reconstruct request.
#[derive(Debug, Clone)]
pub struct ReconstructJob {
    pub recording_id: String,
    pub request: ReconstructRequest,
    pub crop_to_fov: bool,
    pub png_only: bool,
}

fn mode_from(v: i32, index: usize) -> Result<Mode, Status> {
    match pb::ReconstructionMode::try_from(v) {
        Ok(pb::ReconstructionMode::Deconvnet) => Ok(Mode::Deconvnet),
        Ok(pb::ReconstructionMode::DeconvnetMasked) => Ok(Mode::Masked),
        Ok(pb::ReconstructionMode::RandomWeights) => Ok(Mode::RandomWeights),
        Ok(pb::ReconstructionMode::LinearFilter) => Ok(Mode::LinearFilter),
        _ => Err(Status::invalid_argument(format!(
            "modes[{index}]: {v} is not a mode; allowed DECONVNET (1), DECONVNET_MASKED (2), RANDOM_WEIGHTS (3), LINEAR_FILTER (4)"
        ))),
    }
}

pub fn mode_to(m: Mode) -> pb::ReconstructionMode {
    match m {
        Mode::Deconvnet => pb::ReconstructionMode::Deconvnet,
        Mode::Masked => pb::ReconstructionMode::DeconvnetMasked,
        Mode::RandomWeights => pb::ReconstructionMode::RandomWeights,
        Mode::LinearFilter => pb::ReconstructionMode::LinearFilter,
    }
}

impl TryFrom<(&Engine, pb::ReconstructRequest)> for ReconstructJob {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::ReconstructRequest)) -> Result<Self, Status> {
        if req.neurons.is_empty() || req.neurons.len() > MAX_RECONSTRUCTIONS {
            return Err(Status::invalid_argument(format!(
                "neurons: {} given; allowed 1..={MAX_RECONSTRUCTIONS}",
                req.neurons.len()
            )));
        }
        let neurons = req
            .neurons
            .iter()
            .enumerate()
            .map(|(i, n)| {
                engine.ascent_neuron(
                    &format!("neurons[{i}]"),
                    &n.layer,
                    n.feature as i64,
                    n.y as i64,
                    n.x as i64,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(status)?;
        let mut modes: Vec<Mode> = Vec::new();
        for (i, &m) in req.modes.iter().enumerate() {
            let mode = mode_from(m, i)?;
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
        if modes.is_empty() {
            modes = Mode::ALL.to_vec();
        }
        if neurons.len() * modes.len() > MAX_RECONSTRUCTIONS {
            return Err(Status::invalid_argument(format!(
                "neurons x modes: {} reconstructions requested; allowed at most {MAX_RECONSTRUCTIONS} per call",
                neurons.len() * modes.len()
            )));
        }
        let start = match pb::StartValue::try_from(req.start) {
            Ok(pb::StartValue::RecordedActivation) => Start::RecordedActivation,
            Ok(_) => Start::OneHot,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "start: {} is not ONE_HOT (1) or RECORDED_ACTIVATION (2)",
                    req.start
                )));
            }
        };
        Ok(ReconstructJob {
            recording_id: req.recording_id,
            request: ReconstructRequest {
                neurons,
                modes,
                start,
                seed: req.seed,
                effective_bias: req.effective_bias,
                through_relu: req.through_neuron_relu,
            },
            crop_to_fov: req.crop_to_fov,
            png_only: req.png_only,
        })
    }
}

/// A checked Maximize request: a neuron, or an objective.
#[derive(Debug, Clone)]
pub struct MaximizeJob {
    pub target: MaximizeTarget,
    pub preview_every: usize,
}

#[derive(Debug, Clone)]
pub enum MaximizeTarget {
    Neuron(NeuronAt, MaximizeOptions),
    Objective(VisualizeOptions),
}

impl MaximizeJob {
    pub fn steps(&self) -> usize {
        match &self.target {
            MaximizeTarget::Neuron(_, o) => o.steps,
            MaximizeTarget::Objective(o) => o.steps,
        }
    }
}

/// The objective side of a Maximize request.
fn visualize_options(
    engine: &Engine,
    req: &pb::MaximizeRequest,
) -> Result<VisualizeOptions, Status> {
    if req.neuron.is_some() {
        return Err(Status::invalid_argument(
            "objective: give a neuron or an objective, not both",
        ));
    }
    if req.direction.len() > 1 << 16 {
        return Err(Status::invalid_argument(format!(
            "direction: {} values; at most 65536",
            req.direction.len()
        )));
    }
    let objective = engine
        .parse_objective(&req.objective, &req.direction)
        .map_err(status)?;
    let mut o = VisualizeOptions::new(objective);
    let or = |v: u32, default: usize| if v == 0 { default } else { v as usize };
    o.starts = or(req.starts, o.starts);
    o.steps = or(req.steps, o.steps);
    if req.learning_rate != 0.0 {
        o.learning_rate = req.learning_rate;
    }
    o.param = match pb::Parameterization::try_from(req.param) {
        Ok(pb::Parameterization::ParamPixels) => Param::Pixels,
        Ok(_) => Param::Fourier,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "param: {} is not PARAM_PIXELS (1) or PARAM_FOURIER (2)",
                req.param
            )));
        }
    };
    if req.jitter != 0 {
        o.jitter = req.jitter as usize;
    }
    o.scale = req.scale.unwrap_or(o.scale);
    o.rotate = req.rotate.unwrap_or(o.rotate);
    o.diversity = req.diversity;
    if !req.diversity_layer.is_empty() {
        o.diversity_layer = Some(
            engine
                .network
                .resolve_conv("diversity_layer", &req.diversity_layer)
                .map_err(status)?,
        );
    }
    o.seed = req.seed;
    o.validate().map_err(status)?;
    Ok(o)
}

impl TryFrom<(&Engine, pb::MaximizeRequest)> for MaximizeJob {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::MaximizeRequest)) -> Result<Self, Status> {
        if req.preview_every > 10_000 {
            return Err(Status::invalid_argument(format!(
                "preview_every: {} is outside 0..=10000",
                req.preview_every
            )));
        }
        if !req.objective.is_empty() {
            return Ok(MaximizeJob {
                target: MaximizeTarget::Objective(visualize_options(engine, &req)?),
                preview_every: req.preview_every as usize,
            });
        }
        let n = req
            .neuron
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("neuron: required (or an objective)"))?;
        let neuron = engine
            .ascent_neuron("neuron", &n.layer, n.feature as i64, n.y as i64, n.x as i64)
            .map_err(status)?;
        // Zero means "the default" for the counts and the step.
        let d = MaximizeOptions::default();
        let or = |v: u32, default: usize| if v == 0 { default } else { v as usize };
        let options = MaximizeOptions {
            starts: or(req.starts, d.starts),
            steps: or(req.steps, d.steps),
            learning_rate: if req.learning_rate == 0.0 {
                d.learning_rate
            } else {
                req.learning_rate
            },
            l2_decay: req.l2_decay,
            blur_sigma: req.blur_sigma,
            blur_every: req.blur_every as usize,
            jitter: req.jitter as usize,
            clip: req.clip.unwrap_or(true),
            seed: req.seed,
        };
        options.validate().map_err(status)?;
        if req.fov_only == Some(false) {
            return Err(Status::invalid_argument(
                "fov_only: false is not supported; only the field of view influences the neuron",
            ));
        }
        Ok(MaximizeJob {
            target: MaximizeTarget::Neuron(neuron, options),
            preview_every: req.preview_every as usize,
        })
    }
}

/// A checked GetFeatureMaps request.
#[derive(Debug, Clone)]
pub struct MapsQuery {
    pub recording_id: String,
    pub layer: usize,
    pub features: Vec<u32>,
    pub quantize: bool,
}

impl TryFrom<(&Engine, pb::GetFeatureMapsRequest)> for MapsQuery {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::GetFeatureMapsRequest)) -> Result<Self, Status> {
        let layer = engine
            .network
            .resolve_conv("layer", &req.layer)
            .map_err(status)?;
        let depth = engine.geometry[layer].channels as u32;
        let listed = !req.features.is_empty();
        let features: Vec<u32> = if listed {
            if req.feature_start.is_some() || req.feature_end.is_some() {
                return Err(Status::invalid_argument(
                    "features: give a list or a range, not both",
                ));
            }
            if req.features.len() > depth as usize {
                return Err(Status::invalid_argument(format!(
                    "features: {} given; allowed at most {depth} (the depth of layer {layer})",
                    req.features.len()
                )));
            }
            if let Some(bad) = req.features.iter().find(|&&f| f >= depth) {
                return Err(Status::invalid_argument(format!(
                    "features: {bad} is outside 0..={} for layer {layer}",
                    depth - 1
                )));
            }
            req.features
        } else {
            let start = req.feature_start.unwrap_or(0);
            let end = req.feature_end.unwrap_or(depth);
            if start >= end || end > depth {
                return Err(Status::invalid_argument(format!(
                    "feature_start..feature_end: {start}..{end} is not a non-empty range within 0..{depth}"
                )));
            }
            (start..end).collect()
        };
        let quantize = match pb::ValueEncoding::try_from(req.encoding) {
            Ok(pb::ValueEncoding::Uint8) => true,
            Ok(_) => false,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "encoding: {} is not FLOAT32 (1) or UINT8 (2)",
                    req.encoding
                )));
            }
        };
        // The answer's size is known now: refuse what could not be sent.
        let g = &engine.geometry[layer];
        let per_map = g.height * g.width * if quantize { 1 } else { 4 } + 32;
        let most = (MAX_ENCODED_MESSAGE / per_map).max(1);
        if features.len() > most {
            let field = if listed {
                "features"
            } else {
                "feature_start..feature_end"
            };
            return Err(Status::invalid_argument(format!(
                "{field}: {} maps of {}x{} would exceed the {} MiB answer limit; ask for at most {most} per call (or UINT8 encoding)",
                features.len(),
                g.height,
                g.width,
                MAX_ENCODED_MESSAGE >> 20
            )));
        }
        Ok(MapsQuery {
            recording_id: req.recording_id,
            layer,
            features,
            quantize,
        })
    }
}

/// A call without the daemon's bearer token.
pub fn unauthenticated(why: &str) -> Status {
    Status::unauthenticated(format!("authorization: {why}"))
}

/// The work queue is full.
pub fn busy(queue: usize) -> Status {
    Status::resource_exhausted(format!(
        "the daemon is busy ({queue} requests queued); retry later"
    ))
}

/// A blocking engine task ended without an answer (it panicked).
pub fn task_failed(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("engine task failed: {e}"))
}

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

/// A recording id as Record returns it: 64 hexadecimal characters.
pub fn check_recording_id(id: &str) -> Result<(), Status> {
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

/// PNG of a `[3, h, w]` input-space crop.
pub fn crop_png(engine: &Engine, crop: &[f32], h: usize, w: usize) -> Vec<u8> {
    render::png(&render::render_input_region(crop, h, w, &engine.profile))
}

pub fn normalization(n: &render::Normalization) -> pb::Normalization {
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
pub fn to_hwc_rgb(engine: &Engine, v: &[f32]) -> Vec<f32> {
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
        folded_batch_norm: String::new(),
        conv: None,
        pool: None,
        activation: None,
        residual: None,
        norm_only: false,
        sources: Vec::new(),
    }];
    for (c, g) in net.convs.iter().zip(&engine.geometry[1..]) {
        layers.push(pb::Layer {
            number: c.number as u32,
            name: c.name.clone(),
            kind: pb::LayerKind::Conv as i32,
            channels: g.channels as u32,
            height: g.height as u32,
            width: g.width as u32,
            pooled: c.pool.is_some(),
            fov: g.fov as u32,
            stride: g.stride as u32,
            source_node: c.conv_node.clone(),
            folded_batch_norm: c.batch_norm.clone().unwrap_or_default(),
            conv: Some(conv_geometry(&c.shape)),
            pool: c.pool.map(|p| pb::PoolGeometry {
                kernel: p.kernel as u32,
                stride: p.stride as u32,
                pads: p.pads.iter().map(|&v| v as u32).collect(),
                ceil_mode: p.ceil,
                average: p.average,
            }),
            activation: Some(activation_function(c.activation)),
            residual: c.residual.as_ref().map(|r| pb::Residual {
                from_layer: r.from as u32,
                projection: r.projection.as_ref().map(|p| conv_geometry(&p.shape)),
                add_node: r.add_node.clone(),
                projection_node: r
                    .projection
                    .as_ref()
                    .map(|p| p.conv_node.clone())
                    .unwrap_or_default(),
            }),
            norm_only: c.norm_only,
            sources: c.sources.iter().map(|&s| s as u32).collect(),
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
            folded_batch_norm: String::new(),
            conv: None,
            pool: None,
            activation: None,
            residual: None,
            norm_only: false,
            sources: Vec::new(),
        });
    }
    let p = &engine.profile;
    let prov = &engine.provenance;
    pb::ModelInfo {
        name: fovea_engine::supply::model_name(prov),
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
            net.classes.unwrap_or(0) as u32
        } else {
            0
        },
        probe_stop: net.probe_stop.clone().unwrap_or_default(),
        class_labels: net.labels.clone(),
        producer: net.producer.clone(),
        onnxruntime_version: engine.runtime_version().into(),
        runtime: Some(runtime_info(engine.runtime().info())),
    }
}

pub fn record_response(
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
            .activity(&engine.network.convs)
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
pub fn feature_maps(rec: &Recording, q: MapsQuery) -> pb::FeatureMaps {
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

pub fn runtime_info(i: &fovea_engine::runtime::RuntimeInfo) -> pb::RuntimeInfo {
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

/// A checked Record request.
#[derive(Debug, Clone)]
pub struct RecordJob {
    pub image: Vec<u8>,
    pub label: String,
}

impl TryFrom<pb::RecordRequest> for RecordJob {
    type Error = Status;

    fn try_from(req: pb::RecordRequest) -> Result<Self, Status> {
        let chars = req.label.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(Status::invalid_argument(format!(
                "label: {chars} characters; allowed at most {MAX_LABEL_CHARS}"
            )));
        }
        Ok(RecordJob {
            image: req.image,
            label: req.label,
        })
    }
}

/// A checked TopActivations request.
#[derive(Debug, Clone)]
pub struct TopQuery {
    pub recording_id: String,
    pub layer: usize,
    pub k: usize,
    pub feature: Option<usize>,
    pub distinct_features: bool,
}

impl TryFrom<(&Engine, pb::TopActivationsRequest)> for TopQuery {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::TopActivationsRequest)) -> Result<Self, Status> {
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
        let channels = engine.geometry[layer].channels;
        if let Some(f) = req.feature.filter(|&f| f as usize >= channels) {
            return Err(Status::invalid_argument(format!(
                "feature: {f} is outside 0..={} for layer {layer}",
                channels - 1
            )));
        }
        Ok(TopQuery {
            recording_id: req.recording_id,
            layer,
            k: req.k as usize,
            feature: req.feature.map(|f| f as usize),
            distinct_features: req.distinct_features,
        })
    }
}

pub fn top_activations(layer: usize, hits: Vec<record::Hit>) -> pb::TopActivationsResponse {
    pb::TopActivationsResponse {
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
    }
}

/// A checked ActivationStats request.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub recording_id: String,
    pub layers: Vec<usize>,
}

impl TryFrom<(&Engine, pb::ActivationStatsRequest)> for StatsQuery {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::ActivationStatsRequest)) -> Result<Self, Status> {
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
        Ok(StatsQuery {
            recording_id: req.recording_id,
            layers,
        })
    }
}

pub fn layer_stats(engine: &Engine, layer: usize, s: LayerStats) -> pb::LayerStats {
    pb::LayerStats {
        layer: layer as u32,
        name: engine.network.convs[layer - 1].name.clone(),
        features: s.features as u32,
        locations: s.locations as u32,
        histogram: s.histogram,
        fraction_active: s.fraction_active,
        feature_fraction_active: s.feature_fraction_active,
    }
}

fn pixel_box(b: PixelBox) -> pb::Box {
    pb::Box {
        x0: b.x0 as i32,
        y0: b.y0 as i32,
        x1: b.x1 as i32,
        y1: b.y1 as i32,
    }
}

/// A reconstruction as the API sends it: a PNG (cropped to the field of
/// view when asked) and, unless `png_only`, the values.
pub fn reconstruction(
    engine: &Engine,
    r: Reconstruction,
    crop_to_fov: bool,
    png_only: bool,
) -> pb::Reconstruction {
    let size = engine.profile.input_size;
    let region = crop_to_fov.then_some(r.fov);
    let (img, norm) = render::render_signed(&r.values, size, &engine.profile, region);
    pb::Reconstruction {
        neuron_index: r.neuron_index as u32,
        mode: mode_to(r.mode) as i32,
        height: size as u32,
        width: size as u32,
        values: if png_only {
            vec![]
        } else {
            to_hwc_rgb(engine, &r.values)
        },
        png: render::png(&img),
        normalization: Some(normalization(&norm)),
        fov: Some(pixel_box(r.fov)),
        effective_bias: r.effective_bias.unwrap_or(0.0),
        activation: r.activation,
        inactive: r.inactive,
    }
}

/// One step of a maximization; with the start's FOV crops as PNGs when
/// `previews` (each `h` x `w`).
pub fn maximize_progress(
    engine: &Engine,
    p: &Progress,
    previews: bool,
    (h, w): (usize, usize),
) -> pb::MaximizeEvent {
    let previews = if previews {
        p.crops.iter().map(|c| crop_png(engine, c, h, w)).collect()
    } else {
        Vec::new()
    };
    pb::MaximizeEvent {
        event: Some(pb::maximize_event::Event::Progress(pb::MaximizeProgress {
            step: p.step as u32,
            total_steps: p.total as u32,
            objective: p.objective.to_vec(),
            previews,
        })),
    }
}

/// The images a maximization found, as PNGs of the field of view and as
/// input-space values.
pub fn maximize_result(engine: &Engine, m: &Maximized) -> pb::MaximizeEvent {
    let size = engine.profile.input_size;
    let pngs = m
        .images
        .iter()
        .map(|img| {
            render::png(&render::render_input_crop(
                img,
                size,
                &engine.profile,
                m.fov,
            ))
        })
        .collect();
    let images = m
        .images
        .iter()
        .map(|img| pb::FloatImage {
            height: size as u32,
            width: size as u32,
            values: to_hwc_rgb(engine, img),
        })
        .collect();
    pb::MaximizeEvent {
        event: Some(pb::maximize_event::Event::Result(pb::MaximizeResult {
            pngs,
            objective: m.objective.clone(),
            images,
            fov: Some(pixel_box(m.fov)),
            normalization: Some(pb::Normalization {
                kind: "input".into(),
                colormap: "rgb".into(),
                description:
                    "input-space values mapped back to 0..255 pixels through the preprocessing"
                        .into(),
                ..Default::default()
            }),
        })),
    }
}

/// Why a maximization's stream ends after its (early) result.
pub fn stopped_by_shutdown(steps: usize, of: usize) -> Status {
    Status::unavailable(format!(
        "server shutting down: stopped after {steps} of {of} steps; the result holds the images so far"
    ))
}

/// A checked ScanTop request against the loaded scan results.
#[derive(Debug, Clone)]
pub struct ScanQuery {
    pub layer: usize,
    pub feature: u32,
    pub hits: Vec<Hit>,
    pub patches: bool,
    /// Images the scan read and skipped.
    pub scanned: u64,
    pub skipped: u64,
}

impl TryFrom<(&Engine, Option<&ScanResults>, pb::ScanTopRequest)> for ScanQuery {
    type Error = Status;

    fn try_from(
        (engine, scan, req): (&Engine, Option<&ScanResults>, pb::ScanTopRequest),
    ) -> Result<Self, Status> {
        let scan = scan.ok_or_else(|| {
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
        Ok(ScanQuery {
            layer,
            feature: req.feature,
            hits: hits.iter().take(k).cloned().collect(),
            patches: req.patches.unwrap_or(true),
            scanned: scan.scanned as u64,
            skipped: scan.skipped.len() as u64,
        })
    }
}

/// A scan hit with its neuron's field of view and, when asked, the patch
/// of the image it sees.
pub fn scan_hit(engine: &Engine, q: &ScanQuery, h: Hit, limits: ImageLimits) -> pb::ScanHit {
    let n = NeuronAt {
        layer: q.layer,
        feature: q.feature as usize,
        y: h.y as usize,
        x: h.x as usize,
    };
    let fov = fov_box(&engine.network.convs, n, engine.profile.input_size);
    let patch_png = if q.patches {
        fovea_engine::probe::scan::fov_patch(engine, std::path::Path::new(&h.image), fov, limits)
            .map(|p| render::png(&p))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    pb::ScanHit {
        image: h.image,
        value: h.value,
        y: h.y,
        x: h.x,
        fov: Some(pixel_box(fov)),
        patch_png,
    }
}

pub fn scan_top(q: ScanQuery, hits: Vec<pb::ScanHit>) -> pb::ScanTopResponse {
    pb::ScanTopResponse {
        layer: q.layer as u32,
        feature: q.feature,
        hits,
        scanned: q.scanned,
        skipped: q.skipped,
    }
}

/// The model is not loaded yet.
pub fn loading() -> Status {
    Status::unavailable("the model is still loading; retry shortly")
}

/// A checked ComparePatterns request.
#[derive(Debug, Clone)]
pub struct CompareQuery {
    pub recording_a: String,
    pub recording_b: String,
    pub neuron: Option<NeuronAt>,
}

impl TryFrom<(&Engine, pb::ComparePatternsRequest)> for CompareQuery {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::ComparePatternsRequest)) -> Result<Self, Status> {
        check_recording_id(&req.recording_a)?;
        check_recording_id(&req.recording_b)?;
        let neuron = req
            .neuron
            .map(|n| conv_neuron(engine, "neuron", &n))
            .transpose()?;
        Ok(CompareQuery {
            recording_a: req.recording_a,
            recording_b: req.recording_b,
            neuron,
        })
    }
}

fn conv_neuron(engine: &Engine, field: &str, n: &pb::Neuron) -> Result<NeuronAt, Status> {
    engine
        .neuron(field, &n.layer, n.feature as i64, n.y as i64, n.x as i64)
        .map_err(status)
}

pub fn compare_patterns(c: PatternComparison) -> pb::ComparePatternsResponse {
    let layers = c.layers.iter().map(|l| pb::PatternAgreement {
        layer: l.layer as u32,
        units: l.units as u64,
        same_state: l.same_state as u64,
        mask_agreement: l.mask_agreement(),
        active_a: l.active_a as u64,
        active_b: l.active_b as u64,
        active_both: l.active_both as u64,
        jaccard: l.jaccard(),
        windows: l.windows as u64,
        same_switch: l.same_switch as u64,
        switch_agreement: l.switch_agreement(),
    });
    pb::ComparePatternsResponse {
        layers: layers.collect(),
        neuron: c.neuron.map(|n| pb::NeuronPatterns {
            active_a: n.active_a,
            active_b: n.active_b,
            same_linear_filter: n.same_linear_filter,
            first_difference: n.first_difference.unwrap_or(0) as u32,
        }),
    }
}

/// Most regions one LinearRegion walk may cross.
pub const MAX_REGIONS: u32 = 10_000;

/// Where a LinearRegion line goes, before the other recording is looked up.
#[derive(Debug, Clone, PartialEq)]
pub enum LineDirection {
    Gradient,
    Random(u64),
    Toward(String),
}

/// A checked LinearRegion request.
#[derive(Debug, Clone)]
pub struct RegionJob {
    pub recording_id: String,
    pub neuron: NeuronAt,
    pub direction: LineDirection,
    pub max_regions: usize,
    /// The line walked, when `max_regions` > 0.
    pub extent: (f64, f64),
}

impl TryFrom<(&Engine, pb::LinearRegionRequest)> for RegionJob {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::LinearRegionRequest)) -> Result<Self, Status> {
        check_recording_id(&req.recording_id)?;
        let n = req
            .neuron
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("neuron: required"))?;
        let neuron = conv_neuron(engine, "neuron", n)?;
        let direction = match pb::DirectionKind::try_from(req.direction) {
            Ok(pb::DirectionKind::Gradient) => LineDirection::Gradient,
            Ok(pb::DirectionKind::Random) => LineDirection::Random(req.seed),
            Ok(pb::DirectionKind::Toward) => {
                check_recording_id(&req.toward_recording).map_err(|s| {
                    Status::invalid_argument(format!("toward_recording: {}", s.message()))
                })?;
                LineDirection::Toward(req.toward_recording)
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "direction: {} is not a direction; allowed GRADIENT (1), RANDOM (2), TOWARD (3)",
                    req.direction
                )));
            }
        };
        if req.max_regions > MAX_REGIONS {
            return Err(Status::invalid_argument(format!(
                "max_regions: {} is outside 0..={MAX_REGIONS}",
                req.max_regions
            )));
        }
        let walk = req.max_regions > 0;
        let toward = matches!(direction, LineDirection::Toward(_));
        let extent = if toward || !walk {
            if req.extent != 0.0 {
                return Err(Status::invalid_argument(
                    "extent: must be 0 for a TOWARD line (it runs from t = 0 to 1) and without a walk (max_regions 0)",
                ));
            }
            (0.0, 1.0)
        } else {
            if !(req.extent > 0.0 && req.extent <= 1e6) {
                return Err(Status::invalid_argument(format!(
                    "extent: {} is outside (0, 1e6]; a GRADIENT or RANDOM walk runs over [-extent, extent]",
                    req.extent
                )));
            }
            (-req.extent, req.extent)
        };
        Ok(RegionJob {
            recording_id: req.recording_id,
            neuron,
            direction,
            max_regions: req.max_regions as usize,
            extent,
        })
    }
}

fn conv_geometry(s: &fovea_engine::model::network::ConvShape) -> pb::ConvGeometry {
    pb::ConvGeometry {
        kernel: s.kernel as u32,
        stride: s.stride as u32,
        dilation: s.dilation as u32,
        groups: s.groups as u32,
        pads: s.pads.iter().map(|&p| p as u32).collect(),
    }
}

fn activation_function(a: Activation) -> pb::ActivationFunction {
    use pb::activation_function::Kind;
    let (kind, slope, ceiling) = match a {
        Activation::Relu => (Kind::Relu, 0.0, 0.0),
        Activation::Leaky(slope) => (Kind::LeakyRelu, slope, 0.0),
        Activation::Clip(ceiling) => (Kind::ClippedRelu, 0.0, ceiling),
        Activation::Linear => (Kind::Linear, 0.0, 0.0),
    };
    pb::ActivationFunction {
        kind: kind as i32,
        slope,
        ceiling,
    }
}

fn unit_change(f: Flip) -> pb::UnitChange {
    let kind = match f.kind {
        FlipKind::Relu => pb::unit_change::Kind::Relu,
        FlipKind::Switch => pb::unit_change::Kind::Switch,
        FlipKind::Ceiling => pb::unit_change::Kind::Ceiling,
    };
    pb::UnitChange {
        kind: kind as i32,
        layer: f.layer as u32,
        feature: f.feature as u32,
        y: f.y as u32,
        x: f.x as u32,
    }
}

pub fn region_progress(regions: usize, t: f64) -> pb::LinearRegionEvent {
    pb::LinearRegionEvent {
        event: Some(pb::linear_region_event::Event::Progress(
            pb::LinearRegionProgress {
                regions: regions as u32,
                t,
            },
        )),
    }
}

pub fn region_result(r: &Region, norm: f64, walk: Option<&Profile>) -> pb::LinearRegionEvent {
    let end = |b: &Boundary| pb::RegionEnd {
        t: b.t,
        unit: Some(unit_change(b.flip)),
        value: b.value,
    };
    let segments = walk.map_or(Vec::new(), |p| {
        let segment = |s: &Segment| pb::ProfileSegment {
            t0: s.t0,
            t1: s.t1,
            v0: s.v0,
            v1: s.v1,
            end: s.end.map(unit_change),
            slope: s.slope,
        };
        p.segments.iter().map(segment).collect()
    });
    pb::LinearRegionEvent {
        event: Some(pb::linear_region_event::Event::Result(
            pb::LinearRegionResult {
                value: r.value,
                slope: r.slope,
                forward: r.forward.as_ref().map(end),
                backward: r.backward.as_ref().map(end),
                direction_norm: norm,
                from: walk.map_or(0.0, |p| p.from),
                to: walk.map_or(0.0, |p| p.to),
                segments,
                complete: walk.is_some_and(|p| p.complete),
                units_on_boundary: r.on_boundary as u32,
            },
        )),
    }
}

/// Most recordings one study compares, and most neurons per image.
pub const MAX_STUDY_RECORDINGS: usize = 16;
pub const MAX_STUDY_NEURONS: u32 = 64;

/// A checked Study request.
#[derive(Debug, Clone)]
pub struct StudyJob {
    pub recording_ids: Vec<String>,
    pub settings: StudySettings,
}

impl TryFrom<(&Engine, pb::StudyRequest)> for StudyJob {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::StudyRequest)) -> Result<Self, Status> {
        let n = req.recording_ids.len();
        if !(2..=MAX_STUDY_RECORDINGS).contains(&n) {
            return Err(Status::invalid_argument(format!(
                "recording_ids: {n} given; allowed 2..={MAX_STUDY_RECORDINGS}"
            )));
        }
        for id in &req.recording_ids {
            check_recording_id(id)?;
        }
        let layer = engine
            .network
            .resolve_conv("layer", &req.layer)
            .map_err(status)?;
        if req.neurons_per_image > MAX_STUDY_NEURONS {
            return Err(Status::invalid_argument(format!(
                "neurons_per_image: {} is outside 1..={MAX_STUDY_NEURONS} (0 for 8)",
                req.neurons_per_image
            )));
        }
        let neurons = if req.neurons_per_image == 0 {
            8
        } else {
            req.neurons_per_image as usize
        };
        Ok(StudyJob {
            recording_ids: req.recording_ids,
            settings: StudySettings {
                layer,
                neurons_per_image: neurons,
                seed: req.seed,
            },
        })
    }
}

pub fn study_progress(done: usize, total: usize) -> pb::StudyEvent {
    pb::StudyEvent {
        event: Some(pb::study_event::Event::Progress(pb::StudyProgress {
            images_done: done as u32,
            images: total as u32,
        })),
    }
}

pub fn study_result(layer: usize, rows: &[StudyRow]) -> pb::StudyEvent {
    let row = |r: &StudyRow| pb::StudyRow {
        recording_index: r.image as u32,
        other_index: r.other as u32,
        feature: r.neuron.feature as u32,
        y: r.neuron.y as u32,
        x: r.neuron.x as u32,
        activation: r.activation,
        fov: Some(pixel_box(r.fov)),
        conditions: Condition::ALL
            .iter()
            .enumerate()
            .map(|(k, c)| pb::ConditionSimilarity {
                condition: c.key().into(),
                pearson_to_trained: r.to_trained[k].pearson,
                ssim_to_trained: r.to_trained[k].ssim,
                pearson_to_image: r.to_image[k].pearson,
                ssim_to_image: r.to_image[k].ssim,
            })
            .collect(),
        filter_high_frequency: r.filter_high_frequency,
        patch_high_frequency: r.patch_high_frequency,
    };
    pb::StudyEvent {
        event: Some(pb::study_event::Event::Result(pb::StudyResult {
            layer: layer as u32,
            rows: rows.iter().map(row).collect(),
        })),
    }
}

/// A checked Attribute request; the unit is settled once the recording is
/// at hand (the top class by default).
#[derive(Debug, Clone)]
pub struct AttributeJob {
    pub recording_id: String,
    /// The dense layer's paper number.
    pub layer: usize,
    pub unit: Option<usize>,
    pub method: Method,
    pub cam_layer: Option<usize>,
    pub steps: usize,
    pub baseline: Baseline,
    pub png_only: bool,
}

/// Integrated gradients' points on the path when the request leaves it 0.
pub const DEFAULT_IG_STEPS: usize = 32;

impl TryFrom<(&Engine, pb::AttributeRequest)> for AttributeJob {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::AttributeRequest)) -> Result<Self, Status> {
        let net = &engine.network;
        check_recording_id(&req.recording_id)?;
        if net.dense.is_empty() {
            return Err(Status::invalid_argument(
                "layer: this model has no dense head to attribute",
            ));
        }
        let last = net.convs.len() + net.dense.len();
        let spec = if req.layer.is_empty() {
            last.to_string()
        } else {
            req.layer.clone()
        };
        let method = match pb::AttributionMethod::try_from(req.method) {
            Ok(pb::AttributionMethod::Saliency) => Method::Saliency,
            Ok(pb::AttributionMethod::GuidedBackprop) => Method::Guided,
            Ok(pb::AttributionMethod::GradCam) => Method::GradCam,
            Ok(pb::AttributionMethod::GuidedGradCam) => Method::GuidedGradCam,
            Ok(pb::AttributionMethod::IntegratedGradients) => Method::IntegratedGradients,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "method: {} is not a method; allowed SALIENCY (1), GUIDED_BACKPROP (2), GRAD_CAM (3), GUIDED_GRAD_CAM (4), INTEGRATED_GRADIENTS (5)",
                    req.method
                )));
            }
        };
        if req.unit.is_some() && !req.class_label.is_empty() {
            return Err(Status::invalid_argument(
                "class_label: give a unit or a class label, not both",
            ));
        }
        let unit = if req.class_label.is_empty() {
            req.unit
        } else {
            let found = net.labels.iter().position(|l| *l == req.class_label);
            match found {
                Some(i) => Some(i as i32),
                None => {
                    return Err(Status::invalid_argument(format!(
                        "class_label: no class is labelled {} ({} labels; GetModel lists them)",
                        fovea_engine::error::quote(&req.class_label),
                        net.labels.len()
                    )));
                }
            }
        };
        // Validates the layer (and the unit when given) against the head.
        let neuron = engine
            .dense_neuron(&spec, unit.map_or(0, i64::from))
            .map_err(status)?;
        if unit.is_none() && neuron.layer != last {
            return Err(Status::invalid_argument(format!(
                "unit: required for the hidden dense layer {}; the top class is the default only for the last layer ({last})",
                neuron.layer
            )));
        }
        let cam_layer = if req.cam_layer.is_empty() {
            None
        } else {
            Some(
                net.resolve_conv("cam_layer", &req.cam_layer)
                    .map_err(status)?,
            )
        };
        let steps = match req.steps as usize {
            0 => DEFAULT_IG_STEPS,
            n if n <= MAX_STEPS => n,
            n => {
                return Err(Status::invalid_argument(format!(
                    "steps: {n} is outside 1..={MAX_STEPS}"
                )));
            }
        };
        let size = engine.profile.input_size as f32;
        let baseline = match pb::AttributionBaseline::try_from(req.baseline) {
            Ok(pb::AttributionBaseline::BaselineBlurred) => {
                let sigma = if req.blur_sigma == 0.0 {
                    0.1 * size
                } else {
                    req.blur_sigma
                };
                if !(sigma > 0.0 && sigma <= 100.0) {
                    return Err(Status::invalid_argument(format!(
                        "blur_sigma: {sigma} is outside (0, 100]"
                    )));
                }
                Baseline::Blurred(sigma)
            }
            Ok(pb::AttributionBaseline::BaselineNoise) => Baseline::Noise(req.seed),
            Ok(_) => Baseline::Black,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "baseline: {} is not a baseline; allowed BASELINE_BLACK (1), BASELINE_BLURRED (2), BASELINE_NOISE (3)",
                    req.baseline
                )));
            }
        };
        Ok(AttributeJob {
            recording_id: req.recording_id,
            layer: neuron.layer,
            unit: unit.map(|u| u as usize),
            method,
            cam_layer,
            steps,
            baseline,
            png_only: req.png_only,
        })
    }
}

impl AttributeJob {
    /// The engine's request for `rec`: the unit asked for, or the
    /// recording's top class.
    pub fn request(&self, engine: &Engine, rec: &Recording) -> Result<AttributeRequest, Error> {
        let unit = match self.unit {
            Some(u) => u,
            None => rec
                .scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    Error::invalid("unit", "the recording has no class scores; give a unit")
                })?,
        };
        let target = engine.dense_neuron(&self.layer.to_string(), unit as i64)?;
        Ok(AttributeRequest {
            target,
            method: self.method,
            cam_layer: self.cam_layer,
            steps: self.steps,
            baseline: self.baseline,
        })
    }
}

pub fn attribute_progress(done: usize, total: usize) -> pb::AttributeEvent {
    pb::AttributeEvent {
        event: Some(pb::attribute_event::Event::Progress(
            pb::AttributeProgress {
                done: done as u32,
                total: total as u32,
            },
        )),
    }
}

fn method_to(m: Method) -> pb::AttributionMethod {
    match m {
        Method::Saliency => pb::AttributionMethod::Saliency,
        Method::Guided => pb::AttributionMethod::GuidedBackprop,
        Method::GradCam => pb::AttributionMethod::GradCam,
        Method::GuidedGradCam => pb::AttributionMethod::GuidedGradCam,
        Method::IntegratedGradients => pb::AttributionMethod::IntegratedGradients,
    }
}

pub fn attribute_result(
    engine: &Engine,
    rec: &Recording,
    req: &AttributeRequest,
    a: Attribution,
    png_only: bool,
) -> pb::AttributeEvent {
    let size = engine.profile.input_size;
    let net = &engine.network;
    let is_map = req.method == Method::GradCam;
    let (img, norm) = if is_map {
        render::render_overlay(&a.values, size, &rec.image)
    } else {
        render::render_signed(&a.values, size, &engine.profile, None)
    };
    let last = net.convs.len() + net.dense.len();
    let label = if req.target.layer == last {
        net.labels
            .get(req.target.feature)
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    };
    let values = match (png_only, is_map) {
        (true, _) => Vec::new(),
        (false, true) => a.values,
        (false, false) => to_hwc_rgb(engine, &a.values),
    };
    pb::AttributeEvent {
        event: Some(pb::attribute_event::Event::Result(pb::AttributeResult {
            layer: req.target.layer as u32,
            unit: req.target.feature as u32,
            label,
            method: method_to(req.method) as i32,
            objective: a.objective,
            height: size as u32,
            width: size as u32,
            channels: if is_map { 1 } else { 3 },
            values,
            png: render::png(&img),
            normalization: Some(normalization(&norm)),
            cam: a.cam.map(|c| pb::CamMap {
                layer: c.layer as u32,
                height: c.height as u32,
                width: c.width as u32,
                grid: c.grid,
                weights: c.weights,
            }),
            completeness: a.completeness.map(|c| pb::Completeness {
                attribution_sum: c.attribution_sum,
                objective_difference: c.objective_difference,
                baseline_objective: c.baseline_objective,
            }),
        })),
    }
}
