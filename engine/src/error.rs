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
    #[error("recording {} is not cached; send the image again (Record) to recreate it", quote(.0))]
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
    /// Work was cancelled: the client went away.
    #[error("cancelled")]
    Cancelled,
    /// The request's deadline passed before the work was done.
    #[error("the deadline passed before the work was done")]
    DeadlineExceeded,
    /// The daemon is shutting down.
    #[error("the server is shutting down; retry against a running daemon")]
    ShuttingDown,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<fovea_onnx::Error> for Error {
    fn from(e: fovea_onnx::Error) -> Self {
        match e {
            fovea_onnx::Error::Model(m) => Error::Model(m),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest client value quoted in a message, in characters.
pub const QUOTE_CHARS: usize = 64;

/// A client-supplied value as a message quotes it: in quotes, control
/// characters escaped, cut to [`QUOTE_CHARS`] with "..." (an error must
/// never grow with the request).
pub fn quote(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    let cut = chars.next().is_some();
    let q = format!("{head:?}");
    if cut {
        format!("{}...\"", &q[..q.len() - 1])
    } else {
        q
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_bounded_and_escaped() {
        assert_eq!(quote("conv5_3"), "\"conv5_3\"");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(20_000);
        let q = quote(&long);
        assert_eq!(q, format!("\"{}...\"", "x".repeat(QUOTE_CHARS)));
        let wide = "\u{3000}".repeat(100);
        // The longest escape, \u{10ffff}, is 10 characters.
        assert!(quote(&wide).chars().count() <= QUOTE_CHARS * 10 + 5);
        let e = Error::RecordingNotFound(long);
        assert!(e.to_string().len() < 200, "{e}");
    }
}
