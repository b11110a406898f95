//! Loading an engine from its settings (the flags shared by `fovead`, the
//! CLI's and the TUI's embedded daemons fill them), and the set-up doctor.

pub mod doctor;

use crate::engine::{Engine, EngineOptions};
use crate::error::Result;
use crate::model::profile::ProfileName;
use crate::paths::cache_dir;
use crate::runtime::{Runtime, RuntimeInfo};
use crate::supply::cuda::{self, Driver, Libraries};
use crate::supply::elf::Search;
use crate::supply::{ExecutionProvider, ModelSource, resolve_model, resolve_ort_library};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which model to load and how to run it.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The model: `vgg16` for the default VGG-16; `vgg19`, `vgg16-bn`,
    /// `vgg19-bn`, `resnet18|34|50|101|152` (v1), `resnet18-v2` ..
    /// `resnet152-v2`, `mobilenetv2`, `alexnet`, `caffenet`, `googlenet` or
    /// `inception-v1` from the ONNX model zoo (downloaded once into the
    /// cache); or a path to an ONNX file.
    pub model: String,
    /// Where the default model may come from.
    pub model_source: ModelSource,
    /// The ONNX Runtime shared library (else ORT_DYLIB_PATH, the cache, an
    /// installed Python onnxruntime, or a pip fetch).
    pub ort_lib: Option<PathBuf>,
    /// Execution provider.
    pub ep: ExecutionProvider,
    /// ONNX Runtime intra-op threads (0: one per core).
    pub threads: usize,
    /// Side of the square network input, pixels.
    pub input_size: usize,
    /// Preprocessing profile (default: chosen from the model file).
    pub profile: Option<ProfileName>,
    /// Write every generated ONNX graph to this folder.
    pub dump_graphs: Option<PathBuf>,
    /// Where ONNX Runtime and the models are fetched to and kept (default
    /// $XDG_CACHE_HOME/fovea or ~/.cache/fovea).
    pub cache_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            model: "vgg16".into(),
            model_source: ModelSource::Auto,
            ort_lib: None,
            ep: ExecutionProvider::Auto,
            threads: 0,
            input_size: 224,
            profile: None,
            dump_graphs: None,
            cache_dir: None,
        }
    }
}

/// [`load`] for a daemon that serves RPCs (`fovead`, or one in-process):
/// on the calling thread lowered to engine priority, so ONNX Runtime's
/// pool, created here, runs below the threads that answer RPCs, as the
/// server's engine work does. Mixing priorities among the threads of one
/// computation would slow it down, so direct users of the engine (the
/// bench, `fovea scan`) call [`load`].
pub fn load_for_serving(opts: &LoadOptions) -> Result<Arc<Engine>> {
    crate::priority::lower_this_thread();
    load(opts)
}

/// Resolves ONNX Runtime and the model, and loads the engine.
pub fn load(opts: &LoadOptions) -> Result<Arc<Engine>> {
    let cache = opts.cache_dir.clone().unwrap_or_else(cache_dir);
    let plan = plan_runtime(opts, &cache, true)?;
    let runtime = Runtime::start(&plan.library, plan.try_cuda, opts.threads, plan.facts)?;
    let info = runtime.info();
    if info.provider == "cuda" {
        tracing::info!(
            device = %info.device,
            driver = %info.driver_version,
            cuda_libraries = %info.cuda_libraries,
            cudnn = %info.cudnn_version,
            "running on CUDA"
        );
    } else if opts.ep == ExecutionProvider::Cuda {
        tracing::warn!("CUDA was requested but {}; running on CPU", info.cpu_reason);
    } else if opts.ep == ExecutionProvider::Auto {
        tracing::info!("CUDA not used ({}); running on CPU", info.cpu_reason);
    }
    let (path, provenance) = resolve_model(&opts.model, opts.model_source, &cache)?;
    tracing::info!(
        source = %provenance.source,
        origin = %provenance.origin,
        path = %path.display(),
        sha256 = %provenance.sha256,
        "model"
    );
    let options = EngineOptions {
        input_size: opts.input_size,
        // The Caffe networks of the zoo take BGR minus the mean.
        profile: opts.profile.or(crate::supply::zoo_profile(&provenance)),
        dump_graphs: opts.dump_graphs.clone(),
        ..Default::default()
    };
    Ok(Arc::new(Engine::load(
        runtime, &path, provenance, &options,
    )?))
}

/// The ONNX Runtime library to load, whether to start its CUDA provider,
/// and the facts gathered on the way.
#[derive(Debug, Clone)]
pub struct RuntimePlan {
    pub library: PathBuf,
    pub try_cuda: bool,
    pub facts: RuntimeInfo,
}

/// Decides the provider before ONNX Runtime loads: with CUDA wanted (`cuda`,
/// or `auto` on a box with a driver), checks the driver, resolves the GPU
/// build of ONNX Runtime and makes its CUDA libraries available (the
/// system's, else the fetched set when `fetch`). Anything missing makes it
/// the CPU, with the reason in `facts.cpu_reason`.
pub fn plan_runtime(opts: &LoadOptions, cache: &Path, fetch: bool) -> Result<RuntimePlan> {
    let mut facts = RuntimeInfo::default();
    let mut try_cuda = false;
    if opts.ep == ExecutionProvider::Cpu {
        facts.cpu_reason = "--ep cpu".into();
    } else {
        let driver = Driver::probe(&Search::system());
        facts.driver_version = driver.version.clone().unwrap_or_default();
        facts.device = driver.devices.first().cloned().unwrap_or_default();
        match driver.problem() {
            Some(why) => facts.cpu_reason = why,
            None => try_cuda = true,
        }
    }
    let ep = if try_cuda {
        ExecutionProvider::Cuda
    } else {
        ExecutionProvider::Cpu
    };
    let library = resolve_ort_library(opts.ort_lib.as_deref(), ep, cache)?;
    if try_cuda {
        match cuda::prepare(&library, cache, fetch) {
            Ok(libs) => {
                facts.cudnn_version = cudnn_of(&libs).unwrap_or_default();
                facts.cuda_libraries = libs.describe();
            }
            Err(why) => {
                facts.cpu_reason = why;
                try_cuda = false;
            }
        }
    }
    Ok(RuntimePlan {
        library,
        try_cuda,
        facts,
    })
}

fn cudnn_of(libs: &Libraries) -> Option<String> {
    let path = match libs {
        Libraries::Fetched(set) => set.libraries().get("libcudnn.so.9").cloned(),
        Libraries::System => Search::system().resolve(
            "libcudnn.so.9",
            &crate::supply::elf::Dynamic::default(),
            &Default::default(),
        ),
    }?;
    cuda::cudnn_version(&path)
}
