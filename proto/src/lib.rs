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
