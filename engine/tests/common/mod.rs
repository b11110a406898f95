//! Shared set-up for the engine tests: ONNX Runtime from the cache (fetched
//! on first use) and engines on the generated tiny model.

#![allow(dead_code)]

use fovea_engine::engine::{Engine, EngineOptions};
use fovea_engine::fixtures::tiny_model;
use fovea_engine::model::network::Layout;
use fovea_engine::model::profile::ProfileName;
use fovea_engine::paths::cache_dir;
use fovea_engine::runtime::Runtime;
use fovea_engine::supply::{ExecutionProvider, Provenance, resolve_ort_library};
use std::path::PathBuf;

pub mod reference;

pub const TINY_SIZE: usize = 32;

pub fn runtime() -> std::sync::Arc<Runtime> {
    let lib =
        resolve_ort_library(None, ExecutionProvider::Cpu, &cache_dir()).expect("ONNX Runtime");
    Runtime::new(&lib, ExecutionProvider::Cpu, 2).expect("runtime")
}

pub fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    (dir, path)
}

pub fn tiny_engine(layout: Layout, head: bool) -> Engine {
    engine_of(
        &tiny_model(layout, head, TINY_SIZE),
        TINY_SIZE,
        &format!("tiny-{layout:?}-{head}"),
    )
}

/// An engine on a generated model at `size` x `size` (torchvision
/// preprocessing). The file is kept: the engine re-reads it for
/// full-precision passes and for graphs built later.
pub fn engine_of(model: &[u8], size: usize, name: &str) -> Engine {
    engine_with(model, size, name, None)
}

/// [`engine_of`] with the recording graph chosen (`None`: by provider).
pub fn engine_with(model: &[u8], size: usize, name: &str, compact: Option<bool>) -> Engine {
    let (dir, path) = write_temp(model, &format!("{name}.onnx"));
    let _kept = dir.keep();
    let options = EngineOptions {
        input_size: size,
        profile: Some(ProfileName::Torchvision),
        compact_recording: compact,
        ..Default::default()
    };
    let provenance = Provenance {
        source: "file".into(),
        origin: name.into(),
        path: path.clone(),
        sha256: name.into(),
        ..Default::default()
    };
    Engine::load(runtime(), &path, provenance, &options).expect("engine")
}

/// A sample image shipped in the repository's `samples/` folder.
pub fn sample_image(name: &str) -> Vec<u8> {
    let path = fovea_samples::source_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
