//! Fovea's daemon library: the probe engine (model loading, recording,
//! backward reconstructions, maximization, statistics) and the gRPC server
//! that serves it.

pub mod backward;
pub mod credentials;
pub mod cuda;
pub mod doctor;
pub mod elf;
pub mod engine;
pub mod error;
pub mod fixtures;
mod head;
pub mod launch;
pub mod maximize;
pub mod network;
pub mod onnx;
mod parallel;
pub mod paths;
pub mod priority;
pub mod profile;
pub mod recording;
pub mod render;
pub mod requests;
pub mod scan;
pub mod server;
pub mod stop;
pub mod store;
pub mod supply;

pub use error::{Error, Result};
