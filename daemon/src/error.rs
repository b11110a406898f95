//! Typed errors of the engine and of the model / runtime supply.

use std::path::PathBuf;

/// Everything the engine can refuse or fail at. Request-shaped problems
/// (`InvalidArgument`, `NotFound`) are the caller's; the rest are the daemon's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field outside its allowed range; the message names both.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// A recording that is not (or no longer) cached.
    #[error("recording {0} is not cached; send the image again (Record) to recreate it")]
    RecordingNotFound(String),
    /// The image bytes could not be decoded or break a limit.
    #[error("image: {0}")]
    BadImage(String),
    /// The model file is not a network Fovea can probe.
    #[error("model: {0}")]
    Model(String),
    /// A request this model cannot serve (a head op without a gradient rule).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// ONNX Runtime failed.
    #[error("onnx runtime: {0}")]
    Runtime(String),
    /// The ONNX Runtime library or the model could not be supplied.
    #[error("{0}")]
    Supply(String),
    /// Work was cancelled (client gone, deadline, shutdown).
    #[error("cancelled")]
    Cancelled,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Runtime(e.to_string())
    }
}
