//! CUDA on a box with nothing but the driver, checked without a GPU: the
//! fetched NVIDIA set completes every dependency of ONNX Runtime's CUDA
//! provider except the driver's own `libcuda.so.1`, resolved the way the
//! loader resolves them; the pinned requirements are the GPU package's own
//! extras; and `fovead doctor` names exactly what is missing.
//!
//! The first run fetches onnxruntime-gpu (256 MB) and the NVIDIA wheels
//! (1.3 GB) into the user cache; later runs find them there.

use fovea_daemon::cuda::{self, CudaSet, Driver, Found};
use fovea_daemon::elf::{self, Search};
use fovea_daemon::paths::cache_dir;
use fovea_daemon::supply::{ExecutionProvider, resolve_ort_library};
use fovea_tests::bin;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn gpu_library() -> PathBuf {
    resolve_ort_library(None, ExecutionProvider::Cuda, &cache_dir()).expect("onnxruntime-gpu")
}

fn driver_present() -> bool {
    Driver::probe(&Search::system()).problem().is_none()
}

#[test]
fn the_fetched_set_resolves_every_dependency_of_the_provider_but_the_driver() {
    let provider = cuda::provider_path(&gpu_library());
    let set = CudaSet::fetch(&cache_dir()).expect("CUDA set");
    let deps = cuda::dependencies(&provider, Some(&set), &Search::system()).unwrap();
    let names: BTreeSet<&str> = deps.iter().map(|d| d.name.as_str()).collect();
    // What the provider links, what it opens, and what cuDNN opens.
    for needed in [
        "libcudart.so.13",
        "libcublas.so.13",
        "libcublasLt.so.13",
        "libcurand.so.10",
        "libcudnn.so.9",
        "libcufft.so.12",
        "libnvrtc.so.13",
        "libcudnn_graph.so.9",
        "libcudnn_ops.so.9",
        "libcudnn_cnn.so.9",
        "libcudnn_engines_precompiled.so.9",
        "libcuda.so.1",
        "libstdc++.so.6",
        "libz.so.1",
    ] {
        assert!(names.contains(needed), "{needed} not among {names:?}");
    }
    for d in &deps {
        match (&d.found, d.name.as_str()) {
            (Found::Set(p), name) => {
                assert!(cuda::is_cuda_library(name), "{d:?}");
                assert!(p.starts_with(&set.dir) && p.is_file(), "{d:?}");
            }
            (Found::Missing, cuda::DRIVER_LIBRARY) => {
                assert!(!driver_present(), "the driver is installed: {d:?}")
            }
            // The driver's library comes from the driver, never the set.
            (Found::System(_), cuda::DRIVER_LIBRARY) => assert!(driver_present()),
            (Found::System(p), name) => {
                assert!(
                    !cuda::is_cuda_library(name),
                    "{name} from the system: {p:?}"
                )
            }
            (Found::Missing, _) => panic!("unresolved: {d:?}"),
        }
    }
    // Every library of the set comes after the set's libraries it needs.
    let order = cuda::load_order(&set).unwrap();
    assert_eq!(order.len(), set.libraries().len());
    let position = |name: &str| order.iter().position(|p| p.ends_with(name));
    for (i, path) in order.iter().enumerate() {
        for needed in elf::read(path).unwrap().needed {
            if let Some(j) = position(&needed) {
                assert!(j < i, "{} before {needed}", path.display());
            }
        }
    }
}

#[test]
fn the_pinned_requirements_are_the_gpu_packages_cuda_and_cudnn_extras() {
    let lib = gpu_library();
    let metadata = std::fs::read_to_string(lib.with_file_name("METADATA")).expect("METADATA");
    let declared: BTreeSet<String> = metadata
        .lines()
        .filter_map(|l| l.strip_prefix("Requires-Dist: "))
        .filter(|l| l.contains("extra == \"cuda\"") || l.contains("extra == \"cudnn\""))
        .filter_map(|l| l.split(';').next())
        .map(|r| r.trim().to_string())
        .collect();
    let pinned: BTreeSet<String> = cuda::CUDA_REQUIREMENTS
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(declared, pinned);
}

#[test]
fn doctor_names_the_missing_driver_and_nothing_else() {
    gpu_library();
    let out = Command::new(bin("fovead"))
        .args(["doctor", "--ep", "cuda"])
        .output()
        .expect("fovead doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    if driver_present() {
        assert!(out.status.success(), "{text}");
        assert!(text.contains("The daemon would run on CUDA."), "{text}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{text}");
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" MISSING ") || l.contains(" WRONG VERSION "))
        .collect();
    assert_eq!(problems.len(), 2, "{text}");
    assert!(problems[0].starts_with("NVIDIA driver "), "{text}");
    assert!(
        problems[1].trim_start().starts_with("libcuda.so.1 "),
        "{text}"
    );
    let set = CudaSet::cached(&cache_dir()).expect("fetched by doctor");
    for (name, path) in set.libraries() {
        let listed = text
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{name} ")) && l.contains(" OK "));
        assert!(
            listed,
            "{name} ({}) not listed as OK:\n{text}",
            path.display()
        );
    }
    assert!(
        text.contains("The daemon would run on the CPU: the NVIDIA driver is missing"),
        "{text}"
    );
    assert!(text.contains("fix: install the NVIDIA driver"), "{text}");
}
