//! Generated types and gRPC stubs of Fovea's probe API (`fovea.v1`).

/// The public gRPC API.
pub mod v1 {
    #![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
    tonic::include_proto!("fovea.v1");

    /// Encoded descriptor set of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fovea_descriptor");
}
