//! `fovead doctor`: line by line, what the daemon needs to run on the
//! provider asked for, where each piece was found, and the fix for each
//! piece missing.

use crate::launch::LoadOptions;
use crate::supply::cuda::{self, CudaSet, Driver, Found};
use crate::supply::elf::Search;
use crate::supply::{ExecutionProvider, ORT_GPU_VERSION, resolve_ort_library};
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Missing,
    WrongVersion,
    /// Not looked at, since something it depends on is missing.
    Unchecked,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Missing => "MISSING",
            Status::WrongVersion => "WRONG VERSION",
            Status::Unchecked => "-",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub item: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

/// The whole answer.
#[derive(Debug, Clone)]
pub struct Report {
    pub wanted: ExecutionProvider,
    pub checks: Vec<Check>,
    /// "cuda" or "cpu": where the daemon would run.
    pub provider: String,
    /// Why not CUDA, when CUDA was wanted and the answer is the CPU.
    pub reason: String,
}

impl Report {
    /// The daemon would run on the provider asked for.
    pub fn satisfied(&self) -> bool {
        match self.wanted {
            ExecutionProvider::Cuda => self.provider == "cuda",
            _ => !self.provider.is_empty(),
        }
    }

    /// The checks whose status is not OK.
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.status, Status::Missing | Status::WrongVersion))
    }

    fn push(&mut self, item: &str, status: Status, detail: String, fix: Option<String>) {
        self.checks.push(Check {
            item: item.into(),
            status,
            detail,
            fix,
        });
    }
}

const DRIVER_FIX: &str = "install the NVIDIA driver, branch 580 or newer (Debian/Ubuntu: `sudo apt install nvidia-driver-580`, or NVIDIA's installer); in a container, start it with the GPU passed in (`docker run --gpus all`, or the NVIDIA device plugin on Kubernetes)";

/// Looks at everything; with `fetch`, supplies ONNX Runtime and the CUDA
/// libraries as the daemon would (with progress), so that what is reported
/// is what the daemon will use.
pub fn examine(opts: &LoadOptions, cache: &Path, fetch: bool) -> Report {
    let mut r = Report {
        wanted: opts.ep,
        checks: Vec::new(),
        provider: String::new(),
        reason: String::new(),
    };
    let search = Search::system();
    let cuda_wanted = opts.ep != ExecutionProvider::Cpu;
    let mut driver_ok = false;
    if cuda_wanted {
        let driver = Driver::probe(&search);
        driver_ok = driver_lines(&mut r, &driver);
    }
    // The GPU build whenever CUDA is wanted, even without a driver: its
    // libraries are checked all the same.
    let ep = if cuda_wanted {
        ExecutionProvider::Cuda
    } else {
        ExecutionProvider::Cpu
    };
    let library = match ort_library(opts, ep, cache, fetch) {
        Ok(lib) => lib,
        Err(e) => {
            r.push(
                "ONNX Runtime",
                Status::Missing,
                e.clone(),
                Some(format!(
                    "give the library with --ort-lib PATH or ORT_DYLIB_PATH, or let fovead fetch onnxruntime{} with pip (python3 with pip and access to PyPI)",
                    if cuda_wanted { "-gpu" } else { "" }
                )),
            );
            r.provider = String::new();
            r.reason = format!("no ONNX Runtime: {e}");
            return r;
        }
    };
    let version = library
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .and_then(|f| f.split_once(".so.").map(|(_, v)| v.to_string()))
        .unwrap_or_else(|| "version unknown".into());
    r.push(
        "ONNX Runtime",
        Status::Ok,
        format!("{version}  {}", library.display()),
        None,
    );
    if !cuda_wanted {
        r.provider = "cpu".into();
        return r;
    }
    let cuda_ok = cuda_lines(&mut r, &library, cache, fetch, &search);
    if !driver_ok || !cuda_ok {
        r.provider = "cpu".into();
        let reason = r
            .problems()
            .next()
            .map(|c| c.detail.clone())
            .unwrap_or_default();
        r.reason = reason;
        return r;
    }
    // Everything is there: start the provider for real.
    match crate::launch::plan_runtime(opts, cache, fetch).and_then(|plan| {
        crate::runtime::Runtime::start(&plan.library, plan.try_cuda, opts.threads, plan.facts)
    }) {
        Ok(rt) => {
            let info = rt.info();
            r.provider = info.provider.clone();
            r.reason = info.cpu_reason.clone();
        }
        Err(e) => {
            r.provider = "cpu".into();
            r.reason = e.to_string();
        }
    }
    r
}

fn ort_library(
    opts: &LoadOptions,
    ep: ExecutionProvider,
    cache: &Path,
    fetch: bool,
) -> Result<std::path::PathBuf, String> {
    if !fetch && opts.ort_lib.is_none() && std::env::var_os("ORT_DYLIB_PATH").is_none() {
        let (package, version) = if ep == ExecutionProvider::Cuda {
            ("onnxruntime-gpu", ORT_GPU_VERSION)
        } else {
            ("onnxruntime", crate::supply::ORT_VERSION)
        };
        let dir = cache
            .join("onnxruntime")
            .join(format!("{package}-{version}"));
        return crate::supply::find_main_library(&dir).ok_or_else(|| {
            format!(
                "{package} {version} is not in {} (--no-fetch)",
                dir.display()
            )
        });
    }
    resolve_ort_library(opts.ort_lib.as_deref(), ep, cache).map_err(|e| e.to_string())
}

/// The GPU and driver lines; true when the driver can run CUDA 13.
fn driver_lines(r: &mut Report, driver: &Driver) -> bool {
    let problem = driver.problem();
    if driver.devices.is_empty() {
        let (status, detail) = if driver.version.is_some() {
            (Status::Missing, "the driver lists no GPU".to_string())
        } else {
            (
                Status::Unchecked,
                "none seen (no driver to ask)".to_string(),
            )
        };
        r.push("GPU devices", status, detail, None);
    } else {
        r.push("GPU devices", Status::Ok, driver.devices.join(", "), None);
    }
    match (&problem, &driver.library) {
        (Some(why), None) => r.push(
            "NVIDIA driver",
            Status::Missing,
            why.clone(),
            Some(DRIVER_FIX.into()),
        ),
        (Some(why), Some(_)) => r.push(
            "NVIDIA driver",
            Status::WrongVersion,
            why.clone(),
            Some(DRIVER_FIX.into()),
        ),
        (None, lib) => r.push(
            "NVIDIA driver",
            Status::Ok,
            format!(
                "{}  {}",
                driver.version.as_deref().unwrap_or("version unknown"),
                lib.as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            None,
        ),
    }
    problem.is_none()
}

/// The provider, each library it needs and cuDNN's version; true when all
/// but the driver's own library are there.
fn cuda_lines(r: &mut Report, library: &Path, cache: &Path, fetch: bool, search: &Search) -> bool {
    let provider = cuda::provider_path(library);
    if !provider.is_file() {
        r.push(
            "CUDA provider",
            Status::Missing,
            format!("{} has no libonnxruntime_providers_cuda.so beside it", library.display()),
            Some(format!(
                "point --ort-lib / ORT_DYLIB_PATH at an onnxruntime-gpu {ORT_GPU_VERSION} build, or unset them and fovead fetches it"
            )),
        );
        return false;
    }
    r.push(
        "CUDA provider",
        Status::Ok,
        provider.display().to_string(),
        None,
    );
    let system = cuda::system_libraries(&provider, search);
    let set = match system {
        Ok(Ok(())) => None,
        _ => match CudaSet::cached(cache) {
            Some(s) => Some(s),
            None if fetch => match CudaSet::fetch(cache) {
                Ok(s) => Some(s),
                Err(e) => {
                    r.push(
                        "CUDA libraries",
                        Status::Missing,
                        format!("not on the system, and the fetch failed: {e}"),
                        Some("let fovead reach PyPI through pip (or a pip index in pip.conf), or install CUDA 13 and cuDNN 9 and put their lib folders on LD_LIBRARY_PATH".into()),
                    );
                    None
                }
            },
            None => None,
        },
    };
    let where_from = match &set {
        Some(s) => format!("fetched set {}", s.dir.display()),
        None => "system".into(),
    };
    let deps = match cuda::dependencies(&provider, set.as_ref(), search) {
        Ok(d) => d,
        Err(e) => {
            r.push("CUDA libraries", Status::Missing, e.to_string(), None);
            return false;
        }
    };
    let system_ok = matches!(system, Ok(Ok(())));
    if set.is_some() || system_ok {
        r.push("CUDA libraries", Status::Ok, where_from, None);
    }
    let mut all = true;
    let mut system_found = Vec::new();
    for d in &deps {
        if d.name == cuda::DRIVER_LIBRARY {
            let status = if d.found == Found::Missing {
                Status::Missing
            } else {
                Status::Ok
            };
            let detail = match d.found.path() {
                Some(p) => p.display().to_string(),
                None => format!("the driver's own library (needed by {})", d.needed_by),
            };
            let fix = (status == Status::Missing).then(|| DRIVER_FIX.to_string());
            r.push(&format!("  {}", d.name), status, detail, fix);
            continue;
        }
        if !cuda::is_cuda_library(&d.name) {
            match &d.found {
                Found::Missing => {
                    all = false;
                    r.push(
                        &format!("  {}", d.name),
                        Status::Missing,
                        format!("a system library (needed by {})", d.needed_by),
                        Some(format!(
                            "install the package that provides {} (for libz.so.1: zlib1g)",
                            d.name
                        )),
                    );
                }
                _ => system_found.push(d.name.clone()),
            }
            continue;
        }
        match &d.found {
            Found::Set(p) => {
                let pkg = set
                    .as_ref()
                    .and_then(|s| s.package_of(&d.name))
                    .map(|p| format!(" ({} {})", p.name, p.version))
                    .unwrap_or_default();
                r.push(
                    &format!("  {}", d.name),
                    Status::Ok,
                    format!("{}{pkg}", p.display()),
                    None,
                );
            }
            Found::System(p) => {
                r.push(
                    &format!("  {}", d.name),
                    Status::Ok,
                    format!("{} (system)", p.display()),
                    None,
                );
            }
            Found::Missing => {
                all = false;
                let other = other_version(&d.name, search);
                let (status, detail) = match other {
                    Some(o) => (
                        Status::WrongVersion,
                        format!("only {o} is installed; this ONNX Runtime needs {}", d.name),
                    ),
                    None => (Status::Missing, format!("needed by {}", d.needed_by)),
                };
                r.push(
                    &format!("  {}", d.name),
                    status,
                    detail,
                    Some(format!(
                        "run `fovead doctor --ep cuda` with network to fetch it, or `pip install '{}'` and add its nvidia/*/lib folder to LD_LIBRARY_PATH",
                        requirement_for(&d.name)
                    )),
                );
            }
        }
    }
    if !system_found.is_empty() {
        r.push(
            "  system libraries",
            Status::Ok,
            system_found.join(" "),
            None,
        );
    }
    let cudnn = deps
        .iter()
        .find(|d| d.name == "libcudnn.so.9")
        .and_then(|d| d.found.path());
    match cudnn.and_then(cuda::cudnn_version) {
        Some(v) if v.starts_with("9.") => r.push("cuDNN", Status::Ok, v, None),
        Some(v) => {
            all = false;
            r.push(
                "cuDNN",
                Status::WrongVersion,
                format!("{v}; this ONNX Runtime needs cuDNN 9"),
                Some(format!(
                    "`pip install '{}'`",
                    requirement_for("libcudnn.so.9")
                )),
            );
        }
        None => r.push(
            "cuDNN",
            Status::Unchecked,
            "version not read (libcudnn.so.9 not found)".into(),
            None,
        ),
    }
    all
}

/// Another major version of `name` in the ld.so cache (`libcudart.so.12`
/// for `libcudart.so.13`).
fn other_version(name: &str, search: &Search) -> Option<String> {
    let stem = name.split(".so").next()?;
    let mut others: Vec<&String> = search
        .ld_cache
        .keys()
        .filter(|k| k.starts_with(&format!("{stem}.so.")) && *k != name)
        .collect();
    others.sort();
    others.last().map(|s| s.to_string())
}

/// The pip package of each CUDA library, by the library's name prefix.
const PACKAGES: &[(&str, &str)] = &[
    ("libcudnn", "nvidia-cudnn-cu13"),
    ("libcublas", "nvidia-cublas"),
    ("libcudart", "nvidia-cuda-runtime"),
    ("libcurand", "nvidia-curand"),
    ("libcufft", "nvidia-cufft"),
    ("libnvrtc", "nvidia-cuda-nvrtc"),
    ("libnvJitLink", "nvidia-nvjitlink"),
];

/// The pip requirement that carries a CUDA library.
fn requirement_for(name: &str) -> String {
    let Some((_, package)) = PACKAGES.iter().find(|(prefix, _)| name.starts_with(prefix)) else {
        return name.to_string();
    };
    cuda::CUDA_REQUIREMENTS
        .iter()
        .find(|r| r.starts_with(&format!("{package}~=")))
        .map(|r| r.to_string())
        .unwrap_or_else(|| package.to_string())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wanted = match self.wanted {
            ExecutionProvider::Auto => "auto",
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
        };
        writeln!(f, "fovead doctor --ep {wanted}")?;
        let width = self
            .checks
            .iter()
            .map(|c| c.item.len())
            .max()
            .unwrap_or(0)
            .max(14);
        for c in &self.checks {
            writeln!(
                f,
                "{:width$}  {:13}  {}",
                c.item,
                c.status.label(),
                c.detail
            )?;
            if let Some(fix) = &c.fix {
                writeln!(f, "{:width$}  {:13}  fix: {fix}", "", "")?;
            }
        }
        match self.provider.as_str() {
            "cuda" => writeln!(f, "\nThe daemon would run on CUDA."),
            "cpu" if self.wanted == ExecutionProvider::Cpu => {
                writeln!(f, "\nThe daemon would run on the CPU (--ep cpu).")
            }
            "cpu" => writeln!(f, "\nThe daemon would run on the CPU: {}.", self.reason),
            _ => writeln!(f, "\nThe daemon cannot start: {}.", self.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cuda_library_maps_to_a_pinned_requirement() {
        for (lib, req) in [
            ("libcudnn.so.9", "nvidia-cudnn-cu13~=9.0"),
            ("libcudart.so.13", "nvidia-cuda-runtime~=13.0"),
            ("libcurand.so.10", "nvidia-curand~=10.0"),
            ("libnvrtc.so.13", "nvidia-cuda-nvrtc~=13.0"),
            ("libcufft.so.12", "nvidia-cufft~=12.0"),
        ] {
            assert_eq!(requirement_for(lib), req);
        }
        // cuBLAS comes as a dependency of cuDNN, unpinned by onnxruntime-gpu.
        assert_eq!(requirement_for("libcublasLt.so.13"), "nvidia-cublas");
    }

    #[test]
    fn another_major_version_in_the_ld_cache_is_a_wrong_version() {
        let mut s = Search::default();
        s.ld_cache
            .insert("libcudart.so.12".into(), "/usr/lib/libcudart.so.12".into());
        assert_eq!(
            other_version("libcudart.so.13", &s).as_deref(),
            Some("libcudart.so.12")
        );
        assert_eq!(other_version("libcurand.so.10", &s), None);
    }
}
