//! The network as Fovea sees it: the conv/ReLU/pool chain read from the
//! model file, its geometry and fields of view, and how images are prepared.

pub mod network;
pub mod profile;
