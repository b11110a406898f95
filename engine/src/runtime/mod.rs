//! ONNX Runtime: the loaded library with its execution provider and thread
//! pool, sessions on it, and the cache of sessions of generated graphs.

pub mod sessions;

use crate::error::{Error, Result};
use crate::supply::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

impl From<ort::Error<ort::session::builder::SessionBuilder>> for Error {
    fn from(e: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        Error::Runtime(e.to_string())
    }
}

/// A loaded ONNX Runtime and the execution provider chosen for it.
pub struct Runtime {
    env: ort::environment::Environment,
    pub(crate) cuda: bool,
    threads: usize,
    version: String,
    info: RuntimeInfo,
}

/// Where the network runs, and why there: GetModel's `runtime`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// "cuda" or "cpu".
    pub provider: String,
    /// The GPU's name on CUDA.
    pub device: String,
    pub driver_version: String,
    /// Why the daemon runs on the CPU although CUDA was wanted (empty on
    /// CUDA, or when the CPU was asked for).
    pub cpu_reason: String,
    /// The ONNX Runtime library file.
    pub library: PathBuf,
    /// "system", the folder of the fetched CUDA set, or empty on CPU.
    pub cuda_libraries: String,
    pub cudnn_version: String,
}

impl Runtime {
    /// [`Runtime::start`] without the facts of a CUDA preparation: CUDA is
    /// tried for `Auto` and `Cuda` with whatever libraries the system has.
    pub fn new(lib: &Path, ep: ExecutionProvider, threads: usize) -> Result<Arc<Runtime>> {
        Runtime::start(
            lib,
            ep != ExecutionProvider::Cpu,
            threads,
            RuntimeInfo::default(),
        )
    }

    /// Loads the shared library and, if `try_cuda`, starts the CUDA
    /// provider; when it cannot start, the runtime is on the CPU and
    /// `info().cpu_reason` says why (`facts` may carry an earlier reason).
    /// ONNX Runtime allows one environment per process, so later calls
    /// return the first runtime.
    pub fn start(
        lib: &Path,
        try_cuda: bool,
        threads: usize,
        facts: RuntimeInfo,
    ) -> Result<Arc<Runtime>> {
        static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);
        let mut slot = RUNTIME
            .lock()
            .map_err(|_| Error::Runtime("runtime lock poisoned".into()))?;
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        // The pool's threads inherit the calling thread's CPU priority: a
        // daemon loads on a lowered thread (see `priority`).
        let rt = Arc::new(Runtime::create(lib, try_cuda, threads, facts)?);
        *slot = Some(rt.clone());
        Ok(rt)
    }

    fn create(
        lib: &Path,
        try_cuda: bool,
        threads: usize,
        mut info: RuntimeInfo,
    ) -> Result<Runtime> {
        let env = ort::init_from(lib)
            .map_err(|e| {
                Error::Supply(format!(
                    "cannot load ONNX Runtime from {}: {e}",
                    lib.display()
                ))
            })?
            .with_name("fovea")
            .with_global_thread_pool(
                thread_pool(threads).map_err(|e| Error::Runtime(e.to_string()))?,
            )
            .build()
            .map_err(|e| Error::Runtime(e.to_string()))?;
        // The versioned file name is the most reliable source of the version.
        let version = lib
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .and_then(|f| f.split_once(".so.").map(|(_, v)| v.to_string()))
            .unwrap_or_else(|| "unknown".into());
        let cuda = try_cuda
            && match cuda_usable(&env) {
                Ok(()) => true,
                Err(why) => {
                    info.cpu_reason = why;
                    false
                }
            };
        info.provider = if cuda { "cuda" } else { "cpu" }.into();
        info.library = lib.to_path_buf();
        if !cuda {
            info.device.clear();
            info.cuda_libraries.clear();
        }
        tracing::info!(
            provider = %info.provider,
            onnxruntime = %version,
            library = %lib.display(),
            "ONNX Runtime loaded"
        );
        Ok(Runtime {
            env,
            cuda,
            threads,
            version,
            info,
        })
    }

    pub fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    pub fn provider(&self) -> &'static str {
        if self.cuda { "cuda" } else { "cpu" }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// A session on the chosen provider for an encoded model; it runs on the
    /// runtime's shared thread pool.
    pub fn session(&self, model: &[u8]) -> Result<Session> {
        let mut b =
            Session::builder(&self.env)?.with_optimization_level(GraphOptimizationLevel::All)?;
        if self.cuda {
            b = b.with_execution_providers([ort::ep::CUDA::default().build()])?;
        }
        Ok(b.commit_from_memory(model)?)
    }
}

/// One pool for every session: with a pool per session, the threads of the
/// session that ran last keep spinning and take the cores from the next one
/// (alternating two sessions ran at 60% speed on two cores).
fn thread_pool(threads: usize) -> ort::Result<ort::environment::GlobalThreadPoolOptions> {
    ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(threads)?
        .with_inter_threads(1)
}

fn cuda_usable(env: &ort::environment::Environment) -> std::result::Result<(), String> {
    use ort::ep::ExecutionProvider as _;
    match ort::ep::CUDA::is_available() {
        Ok(true) => {}
        Ok(false) => return Err("this ONNX Runtime library has no CUDA execution provider".into()),
        Err(e) => return Err(e.to_string()),
    }
    let builder = Session::builder(env).map_err(|e| e.to_string())?;
    builder
        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map(|_| ())
        .map_err(|e| format!("the CUDA provider failed to start: {e}"))
}
