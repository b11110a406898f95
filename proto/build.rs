//! Compiles the protos with protox (pure Rust), so no system `protoc` is needed.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["fovea/v1/probe.proto", "onnx/onnx.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The descriptor set serves gRPC reflection, so only the public API goes in.
    let mut api = fds.clone();
    api.file.retain(|f| f.package() == "fovea.v1");
    std::fs::write(out_dir.join("fovea_descriptor.bin"), api.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".onnx.TensorProto.raw_data")
        .compile_fds(fds)?;
    Ok(())
}
