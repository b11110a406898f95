//! Command-line flags shared by `fovead`, `fovea-bench` and the embedded
//! daemons of the CLI and the TUI, and the parser of the engine's named
//! settings ([`Choice`]).

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use fovea_engine::choice::Choice;
use fovea_engine::launch::LoadOptions;
use fovea_engine::model::profile::ProfileName;
use fovea_engine::supply::{ExecutionProvider, ModelSource};
use std::path::PathBuf;

/// Parses one of `T`'s names; `--help` lists them with their meaning.
pub fn choice<T: Choice + Clone>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(
        T::CHOICES
            .iter()
            .map(|(_, name, help)| PossibleValue::new(*name).help(*help)),
    )
    .try_map(|name| T::from_name(&name).ok_or("not one of the possible values"))
}

/// Which model to load and how to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadFlags {
    /// The model: `vgg16` for the default VGG-16; `vgg19`, `vgg16-bn`,
    /// `vgg19-bn`, `resnet18|34|50|101|152` (v1), `resnet18-v2` ..
    /// `resnet152-v2`, `mobilenetv2`, `alexnet`, `caffenet`, `googlenet` or
    /// `inception-v1` from the ONNX model zoo (downloaded once into the
    /// cache); or a path to an ONNX file.
    #[arg(long, default_value = "vgg16", env = "FOVEA_MODEL")]
    pub model: String,
    /// Where the default model may come from.
    #[arg(long, value_parser = choice::<ModelSource>(), default_value = "auto", env = "FOVEA_MODEL_SOURCE")]
    pub model_source: ModelSource,
    /// The ONNX Runtime shared library (else ORT_DYLIB_PATH, the cache, an
    /// installed Python onnxruntime, or a pip fetch).
    #[arg(long, env = "FOVEA_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Execution provider.
    #[arg(long, value_parser = choice::<ExecutionProvider>(), default_value = "auto", env = "FOVEA_EP")]
    pub ep: ExecutionProvider,
    /// ONNX Runtime intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0, env = "FOVEA_THREADS")]
    pub threads: usize,
    /// Side of the square network input, pixels.
    #[arg(long, default_value_t = 224, env = "FOVEA_INPUT_SIZE")]
    pub input_size: usize,
    /// Preprocessing profile (default: chosen from the model file).
    #[arg(long, value_parser = choice::<ProfileName>(), env = "FOVEA_PROFILE")]
    pub profile: Option<ProfileName>,
    /// Write every generated ONNX graph to this folder.
    #[arg(long)]
    pub dump_graphs: Option<PathBuf>,
    /// Where ONNX Runtime and the models are fetched to and kept (default
    /// $XDG_CACHE_HOME/fovea or ~/.cache/fovea).
    #[arg(long, env = "FOVEA_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl LoadFlags {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            model: self.model.clone(),
            model_source: self.model_source,
            ort_lib: self.ort_lib.clone(),
            ep: self.ep,
            threads: self.threads,
            input_size: self.input_size,
            profile: self.profile,
            dump_graphs: self.dump_graphs.clone(),
            cache_dir: self.cache_dir.clone(),
        }
    }
}
