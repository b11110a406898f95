//! Loading an engine from command-line settings: one set of flags shared by
//! `fovead`, the CLI's and the TUI's embedded daemons.

use crate::engine::{Engine, EngineOptions, Runtime};
use crate::error::Result;
use crate::paths::cache_dir;
use crate::profile::ProfileName;
use crate::supply::{ExecutionProvider, ModelSource, resolve_model, resolve_ort_library};
use std::path::PathBuf;
use std::sync::Arc;

/// Which model to load and how to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadOptions {
    /// The model: `vgg16` for the default VGG-16, or a path to an ONNX file.
    #[arg(long, default_value = "vgg16", env = "FOVEA_MODEL")]
    pub model: String,
    /// Where the default model may come from.
    #[arg(long, value_enum, default_value = "auto", env = "FOVEA_MODEL_SOURCE")]
    pub model_source: ModelSource,
    /// The ONNX Runtime shared library (else ORT_DYLIB_PATH, the cache, an
    /// installed Python onnxruntime, or a pip fetch).
    #[arg(long, env = "FOVEA_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Execution provider.
    #[arg(long, value_enum, default_value = "auto", env = "FOVEA_EP")]
    pub ep: ExecutionProvider,
    /// ONNX Runtime intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0, env = "FOVEA_THREADS")]
    pub threads: usize,
    /// Side of the square network input, pixels.
    #[arg(long, default_value_t = 224, env = "FOVEA_INPUT_SIZE")]
    pub input_size: usize,
    /// Preprocessing profile (default: chosen from the model file).
    #[arg(long, value_enum, env = "FOVEA_PROFILE")]
    pub profile: Option<ProfileName>,
    /// Write every generated ONNX graph to this folder.
    #[arg(long)]
    pub dump_graphs: Option<PathBuf>,
    /// Where ONNX Runtime and the models are fetched to and kept (default
    /// $XDG_CACHE_HOME/fovea or ~/.cache/fovea).
    #[arg(long, env = "FOVEA_CACHE_DIR")]
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
    let lib = resolve_ort_library(opts.ort_lib.as_deref(), opts.ep, &cache)?;
    let runtime = Runtime::new(&lib, opts.ep, opts.threads)?;
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
        profile: opts.profile,
        dump_graphs: opts.dump_graphs.clone(),
        ..Default::default()
    };
    Ok(Arc::new(Engine::load(
        runtime, &path, provenance, &options,
    )?))
}
