//! Generated types of Fovea's probe API (`fovea.v1`) and of the ONNX schema
//! subset the engine reads and writes (`onnx`).

/// The public gRPC API.
pub mod v1 {
    #![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
    tonic::include_proto!("fovea.v1");

    /// Encoded descriptor set of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fovea_descriptor");
}

/// Subset of the ONNX protobuf schema (upstream field numbers).
pub mod onnx {
    #![allow(clippy::doc_lazy_continuation, clippy::enum_variant_names)]
    tonic::include_proto!("onnx");
}

/// The recommended settings of a maximization (Yosinski et al. 2015's
/// regularizers at strengths that suit VGG-16), one place for the engine's
/// defaults and every client's.
pub mod maximize_defaults {
    pub const STARTS: u32 = 3;
    pub const STEPS: u32 = 200;
    /// Input units per unit of the RMS-normalised gradient.
    pub const LEARNING_RATE: f32 = 1.0;
    pub const L2_DECAY: f32 = 0.0005;
    pub const BLUR_SIGMA: f32 = 0.5;
    pub const BLUR_EVERY: u32 = 4;
    pub const JITTER: u32 = 2;
}
