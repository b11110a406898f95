//! Fovea's probe engine: everything that computes, with no server in it.
//!
//! - [`model`]: the network walk (conv/ReLU/pool chain, geometry, fields of
//!   view) and the preprocessing profiles.
//! - [`runtime`]: ONNX Runtime, its providers, and the one cache of sessions
//!   of generated graphs.
//! - [`graphs`]: pure builders of the ONNX graphs the engine runs (recording,
//!   transposed chains, ascent, head gradients).
//! - [`record`]: what a forward pass leaves behind (activations, ReLU masks,
//!   pool switches) and its bit packing; [`simd`] holds every vector kernel
//!   with its portable fallback.
//! - [`engine`]: a loaded model: forward passes and recordings.
//! - [`probe`]: what is asked of a recording: reconstructions, maximization,
//!   dataset scans, and their pictures.
//! - [`supply`]: fetching ONNX Runtime, the CUDA libraries and the models.
//! - [`launch`]: loading an engine from settings, and the set-up doctor.
//! - [`store`]: recordings kept on disk.

pub mod choice;
pub mod engine;
pub mod error;
pub mod fixtures;
pub mod graphs;
pub mod launch;
pub mod model;
mod parallel;
pub mod paths;
pub mod priority;
pub mod probe;
pub mod record;
pub mod runtime;
pub mod simd;
pub mod stop;
pub mod store;
pub mod supply;

pub use error::{Error, Result};
