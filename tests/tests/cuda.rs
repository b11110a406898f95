//! CUDA on a box with nothing but the driver, checked without a GPU: the
//! fetched NVIDIA set completes every dependency of ONNX Runtime's CUDA
//! provider except the driver's own `libcuda.so.1`, resolved the way the
//! loader resolves them; the pinned requirements are the GPU package's own
//! extras; and `fovead doctor` names exactly what is missing.
//!
//! The first run fetches onnxruntime-gpu (256 MB) and the NVIDIA wheels
//! (1.3 GB) into the user cache; later runs find them there.

use fovea_engine::paths::cache_dir;
use fovea_engine::supply::cuda::{self, CudaSet, Driver, Found};
use fovea_engine::supply::elf::{self, Search};
use fovea_engine::supply::{ExecutionProvider, resolve_ort_library};
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
    // With a driver the answer is CUDA; without one, exactly the driver.
    if driver_present() {
        assert!(out.status.success(), "{text}");
        assert!(text.contains("The daemon would run on CUDA."), "{text}");
    } else {
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
}

#[test]
fn preloaded_libraries_are_found_by_soname_and_only_the_driver_stops_the_provider() {
    let provider = cuda::provider_path(&gpu_library());
    let set = CudaSet::fetch(&cache_dir()).expect("CUDA set");
    let by_soname = |name: &str| unsafe { libloading::Library::new(name) };
    if !driver_present() {
        // Not on the system's search path: only the preload can make it found.
        assert!(by_soname("libcudart.so.13").is_err());
    }
    // What loads without a driver: every library of the set that does not
    // need libcuda.so.1, itself or through the set.
    let order = cuda::load_order(&set).unwrap();
    let mut needs_driver = BTreeSet::new();
    let mut loadable = Vec::new();
    for path in &order {
        let needed = elf::read(path).unwrap().needed;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if needed
            .iter()
            .any(|n| n == cuda::DRIVER_LIBRARY || needs_driver.contains(n))
        {
            needs_driver.insert(name);
        } else {
            loadable.push(path.clone());
        }
    }
    assert!(loadable.len() >= 15, "{loadable:?}");
    cuda::preload_paths(&loadable).expect("preload");
    // A dlopen by soname, as the provider does for cuDNN, finds the copy
    // from the set that is already mapped.
    for name in [
        "libcudart.so.13",
        "libcudnn.so.9",
        "libcublasLt.so.13",
        "libcufft.so.12",
    ] {
        by_soname(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let cudart: BTreeSet<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains("libcudart.so"))
        .collect();
    let expected = set.dir.join("libcudart.so.13");
    assert_eq!(cudart, BTreeSet::from([expected.to_str().unwrap()]));
    // cuDNN's own answer agrees with its package's version (9.28.1.4 -> 9.28.1).
    let package = set.package_of("libcudnn.so.9").expect("cuDNN package");
    let expected: Vec<&str> = package.version.split('.').take(3).collect();
    assert_eq!(
        cuda::cudnn_version(&set.dir.join("libcudnn.so.9")),
        Some(expected.join("."))
    );
    // The provider itself now lacks nothing but the driver's library.
    match unsafe { libloading::Library::new(&provider) } {
        Ok(_) => assert!(driver_present(), "the provider loaded without a driver"),
        Err(e) => {
            // The loader's own words (the Debug form carries them).
            let e = format!("{e:?}");
            assert!(e.contains(cuda::DRIVER_LIBRARY), "{e}");
        }
    }
}
