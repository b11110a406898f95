//! Proto requests to validated engine requests, in one place: every field is
//! checked against the loaded network before any work, and a refusal names
//! the field and its allowed range.

use crate::server::status;
use fovea_engine::engine::Engine;
use fovea_engine::probe::maximize::MaximizeOptions;
use fovea_engine::probe::reconstruct::{Mode, NeuronAt, Start};
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
    pub neurons: Vec<NeuronAt>,
    pub modes: Vec<Mode>,
    pub start: Start,
    pub seed: u64,
    pub crop_to_fov: bool,
    pub png_only: bool,
    pub effective_bias: bool,
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
                engine.neuron(
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
            neurons,
            modes,
            start,
            seed: req.seed,
            crop_to_fov: req.crop_to_fov,
            png_only: req.png_only,
            effective_bias: req.effective_bias,
        })
    }
}

/// A checked Maximize request.
#[derive(Debug, Clone)]
pub struct MaximizeJob {
    pub neuron: NeuronAt,
    pub options: MaximizeOptions,
    pub preview_every: usize,
}

impl TryFrom<(&Engine, pb::MaximizeRequest)> for MaximizeJob {
    type Error = Status;

    fn try_from((engine, req): (&Engine, pb::MaximizeRequest)) -> Result<Self, Status> {
        let n = req
            .neuron
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("neuron: required"))?;
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
        if req.preview_every > 10_000 {
            return Err(Status::invalid_argument(format!(
                "preview_every: {} is outside 0..=10000",
                req.preview_every
            )));
        }
        if req.fov_only == Some(false) {
            return Err(Status::invalid_argument(
                "fov_only: false is not supported; only the field of view influences the neuron",
            ));
        }
        Ok(MaximizeJob {
            neuron,
            options,
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
