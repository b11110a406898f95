//! Fovea's daemon: the gRPC server in front of the probe engine
//! (`fovea-engine`), and the flags and progress display its binaries share.

pub mod credentials;
pub mod flags;
pub mod progress;
pub mod server;
