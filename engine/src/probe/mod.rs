//! What is asked of a recording: reconstructions of neurons (the paper's
//! backward modes), maximization of a neuron, dataset scans, and the
//! pictures of their results.

pub mod attribute;
pub mod fourier;
pub mod maximize;
pub mod patterns;
pub mod reconstruct;
pub mod regions;
pub mod render;
pub mod scan;
pub mod study;
pub mod visualize;
