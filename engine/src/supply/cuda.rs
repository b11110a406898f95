//! CUDA for ONNX Runtime's CUDA provider on a box that may have nothing but
//! the NVIDIA driver. The provider links the CUDA runtime, cuBLAS and cuRAND
//! and opens cuDNN, cuFFT and NVRTC at run time; when the system does not
//! have them, the NVIDIA wheels that `onnxruntime-gpu` declares for its
//! `cuda` and `cudnn` extras are fetched into the cache and loaded by
//! absolute path, in dependency order, before the provider loads, so that
//! the loader finds them already mapped under their sonames.
//!
//! The same facts make `fovead doctor` and GetModel's `runtime`.

use crate::error::{Error, Result};
use crate::supply::elf::{self, Dynamic, Search};
use crate::supply::{cache_lock, extract_from_wheel, file_sha256, write_atomically};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `cuda` and `cudnn` extras of `onnxruntime-gpu` 1.31.1 (its
/// METADATA's `Requires-Dist`; a test compares them with the wheel).
pub const CUDA_REQUIREMENTS: &[&str] = &[
    "nvidia-cuda-nvrtc~=13.0",
    "nvidia-cuda-runtime~=13.0",
    "nvidia-cufft~=12.0",
    "nvidia-curand~=10.0",
    "nvidia-cudnn-cu13~=9.0",
];

/// Libraries the provider opens with dlopen rather than links, so they are
/// not in its DT_NEEDED: cuDNN, cuFFT, and NVRTC (cuDNN's runtime fusion).
pub const PROVIDER_OPENS: &[&str] = &["libcudnn.so.9", "libcufft.so.12", "libnvrtc.so.13"];

/// The driver's own library: never fetched, it comes with the driver.
pub const DRIVER_LIBRARY: &str = "libcuda.so.1";

/// CUDA 13 needs driver branch 580 or newer.
pub const MIN_DRIVER_MAJOR: u32 = 580;

/// Libraries every Linux system supplies; the set does not carry them.
const BASE_SYSTEM: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "libz.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// Wheel members the provider never uses (BLAS and FFTW shims).
const UNUSED: &[&str] = &["libnvblas", "libcufftw"];

/// The provider file next to `libonnxruntime.so`.
pub fn provider_path(ort_lib: &Path) -> PathBuf {
    ort_lib
        .parent()
        .unwrap_or(Path::new("."))
        .join("libonnxruntime_providers_cuda.so")
}

// ------------------------------------------------------------------ driver

/// What the NVIDIA driver tells about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Driver {
    /// From `/proc/driver/nvidia/version`, such as "580.65.06".
    pub version: Option<String>,
    /// GPU names from `/proc/driver/nvidia/gpus/*/information`.
    pub devices: Vec<String>,
    /// Where the loader finds `libcuda.so.1`.
    pub library: Option<PathBuf>,
}

impl Driver {
    pub fn probe(search: &Search) -> Driver {
        let version = fs::read_to_string("/proc/driver/nvidia/version")
            .ok()
            .and_then(|t| parse_driver_version(&t));
        let mut devices: Vec<String> = fs::read_dir("/proc/driver/nvidia/gpus")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| fs::read_to_string(e.path().join("information")).ok())
                    .filter_map(|t| parse_model_line(&t))
                    .collect()
            })
            .unwrap_or_default();
        devices.sort();
        let library = search.resolve(DRIVER_LIBRARY, &Dynamic::default(), &HashMap::new());
        Driver {
            version,
            devices,
            library,
        }
    }

    /// Why CUDA cannot run on this driver, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.library.is_none() {
            return Some(format!(
                "the NVIDIA driver is missing ({DRIVER_LIBRARY} not found{})",
                if self.version.is_none() {
                    ", no /proc/driver/nvidia/version"
                } else {
                    ""
                }
            ));
        }
        if let Some(v) = &self.version {
            let major: u32 = v
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < MIN_DRIVER_MAJOR {
                return Some(format!(
                    "NVIDIA driver {v} is older than {MIN_DRIVER_MAJOR}, which CUDA 13 needs"
                ));
            }
        }
        None
    }
}

fn parse_driver_version(text: &str) -> Option<String> {
    // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 ..."
    let line = text.lines().find(|l| l.starts_with("NVRM version"))?;
    line.split_whitespace()
        .find(|w| {
            w.contains('.')
                && w.split('.').count() >= 2
                && w.split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string)
}

fn parse_model_line(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Model:"))
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
}

// ------------------------------------------------------------------ the fetched set

/// One NVIDIA wheel of a fetched set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub libraries: Vec<String>,
}

/// The CUDA libraries fetched into the cache; `fovea-cuda.json`, written
/// last, marks a finished set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CudaSet {
    #[serde(skip)]
    pub dir: PathBuf,
    pub requirements: Vec<String>,
    pub packages: Vec<Package>,
}

const MANIFEST: &str = "fovea-cuda.json";

impl CudaSet {
    /// The set's folder for the pinned requirements.
    pub fn dir_in(cache: &Path) -> PathBuf {
        cache.join("cuda").join(format!(
            "onnxruntime-gpu-{}",
            crate::supply::ORT_GPU_VERSION
        ))
    }

    /// The finished set in `cache`, if there is one.
    pub fn cached(cache: &Path) -> Option<CudaSet> {
        let dir = CudaSet::dir_in(cache);
        let text = fs::read_to_string(dir.join(MANIFEST)).ok()?;
        let mut set: CudaSet = serde_json::from_str(&text).ok()?;
        if set.requirements != CUDA_REQUIREMENTS {
            return None;
        }
        set.dir = dir;
        Some(set)
    }

    /// Soname -> path of every library in the set.
    pub fn libraries(&self) -> BTreeMap<String, PathBuf> {
        self.packages
            .iter()
            .flat_map(|p| p.libraries.iter())
            .map(|l| (l.clone(), self.dir.join(l)))
            .collect()
    }

    /// The package a library came from.
    pub fn package_of(&self, library: &str) -> Option<&Package> {
        self.packages
            .iter()
            .find(|p| p.libraries.iter().any(|l| l == library))
    }

    /// Fetches the set (resolved by pip, each wheel fetched by pip against
    /// the index's SHA-256, so pip's configuration, proxies and mirrors
    /// apply), unless it is cached.
    pub fn fetch(cache: &Path) -> Result<CudaSet> {
        if let Some(set) = CudaSet::cached(cache) {
            return Ok(set);
        }
        let _lock = cache_lock(cache, "cuda")?;
        if let Some(set) = CudaSet::cached(cache) {
            return Ok(set);
        }
        let dir = CudaSet::dir_in(cache);
        let downloads = cache.join("downloads");
        fs::create_dir_all(&downloads).map_err(|e| Error::io(&downloads, e))?;
        tracing::info!(
            "fetching the CUDA libraries of onnxruntime-gpu {} (about 1.3 GB, 2.1 GB unpacked) into {}",
            crate::supply::ORT_GPU_VERSION,
            dir.display()
        );
        let wheels = resolve_wheels(&downloads)?;
        // Every wheel first, each kept once whole: an interrupted fetch
        // resumes with the wheels it does not have yet.
        let mut files = Vec::new();
        for w in &wheels {
            files.push(fetch_wheel(w, &downloads)?);
        }
        let mut packages = Vec::new();
        for (w, file) in wheels.iter().zip(&files) {
            let written = extract_from_wheel(file, &dir, |member| {
                let base = member.rsplit('/').next().unwrap_or(member);
                member.starts_with("nvidia/")
                    && member.contains("/lib/")
                    && base.contains(".so")
                    && !UNUSED.iter().any(|u| base.starts_with(u))
            })?;
            let mut libraries: Vec<String> = written
                .iter()
                .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .collect();
            libraries.sort();
            packages.push(Package {
                name: w.name.clone(),
                version: w.version.clone(),
                sha256: w.sha256.clone(),
                libraries,
            });
        }
        let mut set = CudaSet {
            dir: dir.clone(),
            requirements: CUDA_REQUIREMENTS.iter().map(|s| s.to_string()).collect(),
            packages,
        };
        let json = serde_json::to_vec_pretty(&set)
            .map_err(|e| Error::Supply(format!("CUDA set manifest: {e}")))?;
        write_atomically(&dir.join(MANIFEST), |f| std::io::Write::write_all(f, &json))?;
        for file in &files {
            let _ = fs::remove_file(file);
        }
        set.dir = dir;
        Ok(set)
    }
}

/// One wheel in `downloads`, fetched by pip with its hash required (pip's
/// own check) and checked again here; a whole one from an earlier,
/// interrupted fetch is kept.
fn fetch_wheel(w: &Wheel, downloads: &Path) -> Result<PathBuf> {
    let file = downloads.join(&w.file_name);
    if file.is_file() {
        if let Ok((sha, _)) = file_sha256(&file)
            && sha.eq_ignore_ascii_case(&w.sha256)
        {
            return Ok(file);
        }
        let _ = fs::remove_file(&file);
    }
    tracing::info!("fetching {} {} with pip", w.name, w.version);
    let requirement = downloads.join(format!("{}.requirements.txt", w.name));
    let line = format!("{}=={} --hash=sha256:{}\n", w.name, w.version, w.sha256);
    write_atomically(&requirement, |f| {
        std::io::Write::write_all(f, line.as_bytes())
    })?;
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--disable-pip-version-check",
        "-d",
    ])
    .arg(downloads)
    .arg("-r")
    .arg(&requirement);
    if pip_resumes() {
        cmd.args(["--resume-retries", "5"]);
    }
    let status = cmd
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .map_err(|e| {
            Error::Supply(format!(
                "cannot run python3 -m pip to fetch {}: {e}",
                w.name
            ))
        });
    let _ = fs::remove_file(&requirement);
    if !status?.success() {
        return Err(Error::Supply(format!(
            "pip could not fetch {} {} (offline, or its checksum did not match)",
            w.name, w.version
        )));
    }
    let (sha, _) = file_sha256(&file)?;
    if !sha.eq_ignore_ascii_case(&w.sha256) {
        let _ = fs::remove_file(&file);
        return Err(Error::Supply(format!(
            "{}: checksum mismatch: expected sha256 {}, got {sha}",
            w.file_name, w.sha256
        )));
    }
    Ok(file)
}

/// pip 25.1 and later resume an interrupted download themselves.
fn pip_resumes() -> bool {
    Command::new("python3")
        .args(["-m", "pip", "download", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--resume-retries"))
        .unwrap_or(false)
}

/// A wheel pip resolved for the requirements.
#[derive(Debug, Clone)]
struct Wheel {
    name: String,
    version: String,
    file_name: String,
    sha256: String,
}

/// Asks pip (its resolver and index settings, without installing or
/// downloading the wheels) for the wheels of [`CUDA_REQUIREMENTS`] and their
/// dependencies.
fn resolve_wheels(scratch: &Path) -> Result<Vec<Wheel>> {
    let report = scratch.join("cuda-report.json");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "--report",
        ])
        .arg(&report)
        .args(CUDA_REQUIREMENTS)
        .output()
        .map_err(|e| {
            Error::Supply(format!(
                "cannot run python3 -m pip to resolve the CUDA libraries: {e}"
            ))
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::Supply(format!(
            "pip could not resolve the CUDA libraries (offline, or pip older than 22.2): {}",
            last.chars().take(300).collect::<String>()
        )));
    }
    let text = fs::read_to_string(&report).map_err(|e| Error::io(&report, e))?;
    let _ = fs::remove_file(&report);
    parse_report(&text)
}

fn parse_report(text: &str) -> Result<Vec<Wheel>> {
    #[derive(Deserialize)]
    struct Report {
        install: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        download_info: DownloadInfo,
        metadata: Metadata,
    }
    #[derive(Deserialize)]
    struct DownloadInfo {
        url: String,
        archive_info: Option<ArchiveInfo>,
    }
    #[derive(Deserialize)]
    struct ArchiveInfo {
        hashes: Option<BTreeMap<String, String>>,
    }
    #[derive(Deserialize)]
    struct Metadata {
        name: String,
        version: String,
    }
    let report: Report = serde_json::from_str(text)
        .map_err(|e| Error::Supply(format!("pip's report could not be read: {e}")))?;
    report
        .install
        .into_iter()
        .map(|i| {
            let sha256 = i
                .download_info
                .archive_info
                .and_then(|a| a.hashes)
                .and_then(|h| h.get("sha256").cloned())
                .ok_or_else(|| {
                    Error::Supply(format!(
                        "the package index gave no SHA-256 for {}",
                        i.metadata.name
                    ))
                })?;
            let url = i.download_info.url;
            let file_name = url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .split(['#', '?'])
                .next()
                .unwrap_or_default()
                .to_string();
            if !file_name.ends_with(".whl") {
                return Err(Error::Supply(format!(
                    "pip resolved {} to something other than a wheel",
                    i.metadata.name
                )));
            }
            Ok(Wheel {
                name: i.metadata.name,
                version: i.metadata.version,
                file_name,
                sha256,
            })
        })
        .collect()
}

// ------------------------------------------------------------------ dependencies

/// Where one library the provider needs (directly or through another) was
/// found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    /// The library that needs it ("provider (dlopen)" for those opened at
    /// run time).
    pub needed_by: String,
    pub found: Found,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// In the fetched set.
    Set(PathBuf),
    /// Through the system's loader search.
    System(PathBuf),
    Missing,
}

impl Found {
    pub fn path(&self) -> Option<&Path> {
        match self {
            Found::Set(p) | Found::System(p) => Some(p),
            Found::Missing => None,
        }
    }
}

/// Every library the provider needs, transitively, resolved the way the
/// loader will once `set` (if any) is preloaded: the provider's DT_NEEDED,
/// the libraries it opens at run time ([`PROVIDER_OPENS`]), every library of
/// the set (cuDNN and NVRTC open their own parts at run time too), then each
/// found library's own DT_NEEDED.
pub fn dependencies(
    provider: &Path,
    set: Option<&CudaSet>,
    search: &Search,
) -> Result<Vec<Dependency>> {
    let preloaded: HashMap<String, PathBuf> = set
        .map(|s| s.libraries().into_iter().collect())
        .unwrap_or_default();
    let top = elf::read(provider)?;
    let mut queue: Vec<(String, String, Dynamic)> = Vec::new();
    let provider_name = "libonnxruntime_providers_cuda.so".to_string();
    for n in &top.needed {
        queue.push((n.clone(), provider_name.clone(), top.clone()));
    }
    for n in PROVIDER_OPENS {
        queue.push((
            n.to_string(),
            format!("{provider_name} (dlopen)"),
            top.clone(),
        ));
    }
    if let Some(set) = set {
        for p in &set.packages {
            for l in &p.libraries {
                queue.push((
                    l.clone(),
                    format!("{} (dlopen)", p.name),
                    Dynamic::default(),
                ));
            }
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    let mut i = 0;
    while i < queue.len() {
        let (name, by, requester) = queue[i].clone();
        i += 1;
        if !seen.insert(name.clone()) {
            continue;
        }
        let found = match search.resolve(&name, &requester, &preloaded) {
            Some(p) if preloaded.get(&name) == Some(&p) => Found::Set(p),
            Some(p) => Found::System(p),
            None => Found::Missing,
        };
        // The base system's own dependencies are the system's business.
        if let Some(p) = found
            .path()
            .filter(|_| !BASE_SYSTEM.contains(&name.as_str()))
        {
            let d = elf::read(p)?;
            for n in &d.needed {
                queue.push((n.clone(), name.clone(), d.clone()));
            }
        }
        out.push(Dependency {
            name,
            needed_by: by,
            found,
        });
    }
    Ok(out)
}

/// True for a library the set is meant to carry (not the driver, not the
/// base system).
pub fn is_cuda_library(name: &str) -> bool {
    name != DRIVER_LIBRARY && !BASE_SYSTEM.contains(&name)
}

/// The libraries of `set` in an order where each comes after those it
/// needs from the set.
pub fn load_order(set: &CudaSet) -> Result<Vec<PathBuf>> {
    let libs = set.libraries();
    let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, path) in &libs {
        let d = elf::read(path)?;
        needs.insert(
            name.clone(),
            d.needed
                .into_iter()
                .filter(|n| libs.contains_key(n))
                .collect(),
        );
    }
    let mut order = Vec::new();
    let mut state: HashMap<String, bool> = HashMap::new(); // false: in progress
    fn visit(
        n: &str,
        needs: &BTreeMap<String, Vec<String>>,
        state: &mut HashMap<String, bool>,
        order: &mut Vec<String>,
    ) {
        if state.contains_key(n) {
            return;
        }
        state.insert(n.to_string(), false);
        for m in needs.get(n).into_iter().flatten() {
            visit(m, needs, state, order);
        }
        state.insert(n.to_string(), true);
        order.push(n.to_string());
    }
    for n in needs.keys() {
        visit(n, &needs, &mut state, &mut order);
    }
    Ok(order.into_iter().map(|n| libs[&n].clone()).collect())
}

/// Maps every library of `set` into the process, globally and for good, so
/// the provider's links and dlopen calls find them by soname.
pub fn preload(set: &CudaSet) -> Result<()> {
    preload_paths(&load_order(set)?)
}

/// Maps `paths` into the process in this order, globally and for good.
pub fn preload_paths(paths: &[PathBuf]) -> Result<()> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LAZY};
    for path in paths {
        // SAFETY: these are NVIDIA's libraries from the checksummed wheels;
        // their initialisers only set up their own state. They stay loaded
        // for the life of the process, as the provider that uses them does.
        let lib = unsafe { Library::open(Some(path), RTLD_LAZY | RTLD_GLOBAL) }
            .map_err(|e| Error::Supply(format!("cannot load {}: {e}", path.display())))?;
        std::mem::forget(lib);
    }
    Ok(())
}

/// cuDNN's version, asked of the library itself (`cudnnGetVersion`, which
/// needs no GPU).
pub fn cudnn_version(path: &Path) -> Option<String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LAZY};
    // SAFETY: libcudnn.so.9's initialiser touches no device, and
    // cudnnGetVersion takes no arguments and returns a size_t.
    unsafe {
        let lib = Library::open(Some(path), RTLD_LAZY | RTLD_GLOBAL).ok()?;
        let f = lib
            .get::<unsafe extern "C" fn() -> usize>(b"cudnnGetVersion")
            .ok()?;
        let v = f();
        std::mem::forget(lib);
        Some(format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100))
    }
}

// ------------------------------------------------------------------ the plan

/// Where the CUDA libraries come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libraries {
    /// The system satisfies the provider; nothing fetched.
    System,
    Fetched(CudaSet),
}

impl Libraries {
    pub fn describe(&self) -> String {
        match self {
            Libraries::System => "system".into(),
            Libraries::Fetched(s) => s.dir.display().to_string(),
        }
    }
}

/// The system's answer for the provider's CUDA libraries: `Ok` when every
/// one is found (through LD_LIBRARY_PATH, the ld.so cache or the default
/// folders), else the names of those missing.
pub fn system_libraries(
    provider: &Path,
    search: &Search,
) -> Result<std::result::Result<(), Vec<String>>> {
    let missing: Vec<String> = dependencies(provider, None, search)?
        .into_iter()
        .filter(|d| is_cuda_library(&d.name) && d.found == Found::Missing)
        .map(|d| d.name)
        .collect();
    Ok(if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    })
}

/// Makes the CUDA libraries available to the provider next to `ort_lib`:
/// the system's when it has them all, else the fetched set (fetched now if
/// `fetch`), preloaded. The error is the reason to run on CPU.
pub fn prepare(
    ort_lib: &Path,
    cache: &Path,
    fetch: bool,
) -> std::result::Result<Libraries, String> {
    let provider = provider_path(ort_lib);
    if !provider.is_file() {
        return Err(format!(
            "this ONNX Runtime ({}) has no CUDA provider; unset ORT_DYLIB_PATH/--ort-lib to let Fovea fetch onnxruntime-gpu",
            ort_lib.display()
        ));
    }
    let search = Search::system();
    match system_libraries(&provider, &search) {
        Ok(Ok(())) => return Ok(Libraries::System),
        Ok(Err(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    let set = match CudaSet::cached(cache) {
        Some(s) => s,
        None if fetch => CudaSet::fetch(cache).map_err(|e| {
            format!("the CUDA libraries are missing and could not be fetched ({e}); install CUDA 13 and cuDNN 9, or run `fovead doctor --ep cuda`")
        })?,
        None => return Err("the CUDA libraries are missing (run `fovead doctor --ep cuda`)".into()),
    };
    preload(&set).map_err(|e| e.to_string())?;
    Ok(Libraries::Fetched(set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_version_and_gpu_names_are_read_from_proc() {
        let v = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder@U16-I3-B03-4-3)  Sun Jul 27 06:54:38 UTC 2025\nGCC version:  gcc version 12.2.0\n";
        assert_eq!(parse_driver_version(v).as_deref(), Some("580.65.06"));
        assert_eq!(parse_driver_version("GCC version: 12.2.0"), None);
        let info = "Model: \t\t NVIDIA GH200 480GB\nIRQ:   \t\t 34\n";
        assert_eq!(
            parse_model_line(info).as_deref(),
            Some("NVIDIA GH200 480GB")
        );
    }

    #[test]
    fn an_old_or_absent_driver_is_a_reason() {
        let mut d = Driver::default();
        assert!(d.problem().unwrap().contains("libcuda.so.1 not found"));
        d.library = Some("/usr/lib/x86_64-linux-gnu/libcuda.so.1".into());
        d.version = Some("535.104.05".into());
        assert!(d.problem().unwrap().contains("older than 580"));
        d.version = Some("580.65.06".into());
        assert_eq!(d.problem(), None);
    }

    #[test]
    fn pip_reports_give_wheels_with_their_checksums() {
        let text = r#"{"version":"1","install":[{"download_info":{"url":"https://example.invalid/packages/ab/nvidia_curand-10.4.5.25-py3-none-manylinux_2_27_x86_64.whl","archive_info":{"hash":"sha256=22bb","hashes":{"sha256":"22bb"}}},"metadata":{"name":"nvidia-curand","version":"10.4.5.25"}}]}"#;
        let w = parse_report(text).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].file_name,
            "nvidia_curand-10.4.5.25-py3-none-manylinux_2_27_x86_64.whl"
        );
        assert_eq!(w[0].sha256, "22bb");
        let no_hash = text.replace(r#","hashes":{"sha256":"22bb"}"#, "");
        assert!(
            parse_report(&no_hash)
                .unwrap_err()
                .to_string()
                .contains("no SHA-256")
        );
    }
}
