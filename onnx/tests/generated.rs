//! The checked-in Rust types match `proto/onnx.proto`: the schema is
//! compiled again (protox, then prost) and the output compared. Run with
//! `FOVEA_REGENERATE=1` after editing the schema to rewrite the file.

use std::path::Path;

#[test]
fn generated_types_match_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["onnx.proto"], [root.join("proto")]).unwrap();
    let out = tempfile::tempdir().unwrap();
    prost_build::Config::new()
        .bytes([".onnx.TensorProto.raw_data"])
        .out_dir(out.path())
        .compile_fds(fds)
        .unwrap();
    let fresh = std::fs::read_to_string(out.path().join("onnx.rs")).unwrap();
    let kept = root.join("src/generated/onnx.rs");
    if std::env::var_os("FOVEA_REGENERATE").is_some() {
        std::fs::write(&kept, &fresh).unwrap();
    }
    let current = std::fs::read_to_string(&kept).unwrap_or_default();
    assert!(
        current == fresh,
        "{} is out of date with proto/onnx.proto; run `FOVEA_REGENERATE=1 cargo test -p fovea-onnx --test generated`",
        kept.display()
    );
}
