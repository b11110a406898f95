from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LayerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAYER_KIND_UNSPECIFIED: _ClassVar[LayerKind]
    LAYER_KIND_INPUT: _ClassVar[LayerKind]
    LAYER_KIND_CONV: _ClassVar[LayerKind]
    LAYER_KIND_DENSE: _ClassVar[LayerKind]

class ValueEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_ENCODING_UNSPECIFIED: _ClassVar[ValueEncoding]
    VALUE_ENCODING_FLOAT32: _ClassVar[ValueEncoding]
    VALUE_ENCODING_UINT8: _ClassVar[ValueEncoding]

class ReconstructionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECONSTRUCTION_MODE_UNSPECIFIED: _ClassVar[ReconstructionMode]
    DECONVNET: _ClassVar[ReconstructionMode]
    DECONVNET_MASKED: _ClassVar[ReconstructionMode]
    RANDOM_WEIGHTS: _ClassVar[ReconstructionMode]
    LINEAR_FILTER: _ClassVar[ReconstructionMode]

class StartValue(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    START_VALUE_UNSPECIFIED: _ClassVar[StartValue]
    ONE_HOT: _ClassVar[StartValue]
    RECORDED_ACTIVATION: _ClassVar[StartValue]

class Parameterization(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAMETERIZATION_UNSPECIFIED: _ClassVar[Parameterization]
    PARAM_PIXELS: _ClassVar[Parameterization]
    PARAM_FOURIER: _ClassVar[Parameterization]

class DirectionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_KIND_UNSPECIFIED: _ClassVar[DirectionKind]
    GRADIENT: _ClassVar[DirectionKind]
    RANDOM: _ClassVar[DirectionKind]
    TOWARD: _ClassVar[DirectionKind]

class AttributionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTRIBUTION_METHOD_UNSPECIFIED: _ClassVar[AttributionMethod]
    SALIENCY: _ClassVar[AttributionMethod]
    GUIDED_BACKPROP: _ClassVar[AttributionMethod]
    GRAD_CAM: _ClassVar[AttributionMethod]
    GUIDED_GRAD_CAM: _ClassVar[AttributionMethod]
    INTEGRATED_GRADIENTS: _ClassVar[AttributionMethod]

class AttributionBaseline(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTRIBUTION_BASELINE_UNSPECIFIED: _ClassVar[AttributionBaseline]
    BASELINE_BLACK: _ClassVar[AttributionBaseline]
    BASELINE_BLURRED: _ClassVar[AttributionBaseline]
    BASELINE_NOISE: _ClassVar[AttributionBaseline]
LAYER_KIND_UNSPECIFIED: LayerKind
LAYER_KIND_INPUT: LayerKind
LAYER_KIND_CONV: LayerKind
LAYER_KIND_DENSE: LayerKind
VALUE_ENCODING_UNSPECIFIED: ValueEncoding
VALUE_ENCODING_FLOAT32: ValueEncoding
VALUE_ENCODING_UINT8: ValueEncoding
RECONSTRUCTION_MODE_UNSPECIFIED: ReconstructionMode
DECONVNET: ReconstructionMode
DECONVNET_MASKED: ReconstructionMode
RANDOM_WEIGHTS: ReconstructionMode
LINEAR_FILTER: ReconstructionMode
START_VALUE_UNSPECIFIED: StartValue
ONE_HOT: StartValue
RECORDED_ACTIVATION: StartValue
PARAMETERIZATION_UNSPECIFIED: Parameterization
PARAM_PIXELS: Parameterization
PARAM_FOURIER: Parameterization
DIRECTION_KIND_UNSPECIFIED: DirectionKind
GRADIENT: DirectionKind
RANDOM: DirectionKind
TOWARD: DirectionKind
ATTRIBUTION_METHOD_UNSPECIFIED: AttributionMethod
SALIENCY: AttributionMethod
GUIDED_BACKPROP: AttributionMethod
GRAD_CAM: AttributionMethod
GUIDED_GRAD_CAM: AttributionMethod
INTEGRATED_GRADIENTS: AttributionMethod
ATTRIBUTION_BASELINE_UNSPECIFIED: AttributionBaseline
BASELINE_BLACK: AttributionBaseline
BASELINE_BLURRED: AttributionBaseline
BASELINE_NOISE: AttributionBaseline

class GetModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Layer(_message.Message):
    __slots__ = ("number", "name", "kind", "channels", "height", "width", "pooled", "fov", "stride", "source_node", "folded_batch_norm", "conv", "pool", "activation", "residual", "norm_only", "sources")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    POOLED_FIELD_NUMBER: _ClassVar[int]
    FOV_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NODE_FIELD_NUMBER: _ClassVar[int]
    FOLDED_BATCH_NORM_FIELD_NUMBER: _ClassVar[int]
    CONV_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_FIELD_NUMBER: _ClassVar[int]
    NORM_ONLY_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    number: int
    name: str
    kind: LayerKind
    channels: int
    height: int
    width: int
    pooled: bool
    fov: int
    stride: int
    source_node: str
    folded_batch_norm: str
    conv: ConvGeometry
    pool: PoolGeometry
    activation: ActivationFunction
    residual: Residual
    norm_only: bool
    sources: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, number: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[LayerKind, str]] = ..., channels: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., pooled: bool = ..., fov: _Optional[int] = ..., stride: _Optional[int] = ..., source_node: _Optional[str] = ..., folded_batch_norm: _Optional[str] = ..., conv: _Optional[_Union[ConvGeometry, _Mapping]] = ..., pool: _Optional[_Union[PoolGeometry, _Mapping]] = ..., activation: _Optional[_Union[ActivationFunction, _Mapping]] = ..., residual: _Optional[_Union[Residual, _Mapping]] = ..., norm_only: bool = ..., sources: _Optional[_Iterable[int]] = ...) -> None: ...

class Residual(_message.Message):
    __slots__ = ("from_layer", "projection", "add_node", "projection_node")
    FROM_LAYER_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    ADD_NODE_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_NODE_FIELD_NUMBER: _ClassVar[int]
    from_layer: int
    projection: ConvGeometry
    add_node: str
    projection_node: str
    def __init__(self, from_layer: _Optional[int] = ..., projection: _Optional[_Union[ConvGeometry, _Mapping]] = ..., add_node: _Optional[str] = ..., projection_node: _Optional[str] = ...) -> None: ...

class ActivationFunction(_message.Message):
    __slots__ = ("kind", "slope", "ceiling")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[ActivationFunction.Kind]
        RELU: _ClassVar[ActivationFunction.Kind]
        LEAKY_RELU: _ClassVar[ActivationFunction.Kind]
        CLIPPED_RELU: _ClassVar[ActivationFunction.Kind]
        LINEAR: _ClassVar[ActivationFunction.Kind]
    KIND_UNSPECIFIED: ActivationFunction.Kind
    RELU: ActivationFunction.Kind
    LEAKY_RELU: ActivationFunction.Kind
    CLIPPED_RELU: ActivationFunction.Kind
    LINEAR: ActivationFunction.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    SLOPE_FIELD_NUMBER: _ClassVar[int]
    CEILING_FIELD_NUMBER: _ClassVar[int]
    kind: ActivationFunction.Kind
    slope: float
    ceiling: float
    def __init__(self, kind: _Optional[_Union[ActivationFunction.Kind, str]] = ..., slope: _Optional[float] = ..., ceiling: _Optional[float] = ...) -> None: ...

class ConvGeometry(_message.Message):
    __slots__ = ("kernel", "stride", "dilation", "groups", "pads")
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    DILATION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PADS_FIELD_NUMBER: _ClassVar[int]
    kernel: int
    stride: int
    dilation: int
    groups: int
    pads: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, kernel: _Optional[int] = ..., stride: _Optional[int] = ..., dilation: _Optional[int] = ..., groups: _Optional[int] = ..., pads: _Optional[_Iterable[int]] = ...) -> None: ...

class PoolGeometry(_message.Message):
    __slots__ = ("kernel", "stride", "pads", "ceil_mode", "average")
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    PADS_FIELD_NUMBER: _ClassVar[int]
    CEIL_MODE_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_FIELD_NUMBER: _ClassVar[int]
    kernel: int
    stride: int
    pads: _containers.RepeatedScalarFieldContainer[int]
    ceil_mode: bool
    average: bool
    def __init__(self, kernel: _Optional[int] = ..., stride: _Optional[int] = ..., pads: _Optional[_Iterable[int]] = ..., ceil_mode: bool = ..., average: bool = ...) -> None: ...

class Preprocessing(_message.Message):
    __slots__ = ("input_size", "layout", "channel_order", "scale", "mean", "std", "profile")
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ORDER_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    input_size: int
    layout: str
    channel_order: str
    scale: float
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    profile: str
    def __init__(self, input_size: _Optional[int] = ..., layout: _Optional[str] = ..., channel_order: _Optional[str] = ..., scale: _Optional[float] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., profile: _Optional[str] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("source", "origin", "path", "sha256", "size_bytes")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    source: str
    origin: str
    path: str
    sha256: str
    size_bytes: int
    def __init__(self, source: _Optional[str] = ..., origin: _Optional[str] = ..., path: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "layers", "preprocessing", "execution_provider", "provenance", "num_classes", "class_labels", "producer", "onnxruntime_version", "runtime", "probe_stop")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABELS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PROBE_STOP_FIELD_NUMBER: _ClassVar[int]
    name: str
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    preprocessing: Preprocessing
    execution_provider: str
    provenance: Provenance
    num_classes: int
    class_labels: _containers.RepeatedScalarFieldContainer[str]
    producer: str
    onnxruntime_version: str
    runtime: RuntimeInfo
    probe_stop: str
    def __init__(self, name: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., execution_provider: _Optional[str] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ..., num_classes: _Optional[int] = ..., class_labels: _Optional[_Iterable[str]] = ..., producer: _Optional[str] = ..., onnxruntime_version: _Optional[str] = ..., runtime: _Optional[_Union[RuntimeInfo, _Mapping]] = ..., probe_stop: _Optional[str] = ...) -> None: ...

class RuntimeInfo(_message.Message):
    __slots__ = ("provider", "device", "driver_version", "cpu_reason", "onnxruntime_library", "cuda_libraries", "cudnn_version")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CPU_REASON_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_LIBRARY_FIELD_NUMBER: _ClassVar[int]
    CUDA_LIBRARIES_FIELD_NUMBER: _ClassVar[int]
    CUDNN_VERSION_FIELD_NUMBER: _ClassVar[int]
    provider: str
    device: str
    driver_version: str
    cpu_reason: str
    onnxruntime_library: str
    cuda_libraries: str
    cudnn_version: str
    def __init__(self, provider: _Optional[str] = ..., device: _Optional[str] = ..., driver_version: _Optional[str] = ..., cpu_reason: _Optional[str] = ..., onnxruntime_library: _Optional[str] = ..., cuda_libraries: _Optional[str] = ..., cudnn_version: _Optional[str] = ...) -> None: ...

class RecordRequest(_message.Message):
    __slots__ = ("image", "label")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    label: str
    def __init__(self, image: _Optional[bytes] = ..., label: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("class_index", "label", "score")
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    class_index: int
    label: str
    score: float
    def __init__(self, class_index: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class LayerActivity(_message.Message):
    __slots__ = ("layer", "fraction_active")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    FRACTION_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    layer: int
    fraction_active: float
    def __init__(self, layer: _Optional[int] = ..., fraction_active: _Optional[float] = ...) -> None: ...

class RecordResponse(_message.Message):
    __slots__ = ("recording_id", "original_width", "original_height", "input_width", "input_height", "predictions", "activity", "cached", "input_png", "exif_orientation", "alpha_composited")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    INPUT_PNG_FIELD_NUMBER: _ClassVar[int]
    EXIF_ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    ALPHA_COMPOSITED_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    original_width: int
    original_height: int
    input_width: int
    input_height: int
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    activity: _containers.RepeatedCompositeFieldContainer[LayerActivity]
    cached: bool
    input_png: bytes
    exif_orientation: int
    alpha_composited: bool
    def __init__(self, recording_id: _Optional[str] = ..., original_width: _Optional[int] = ..., original_height: _Optional[int] = ..., input_width: _Optional[int] = ..., input_height: _Optional[int] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., activity: _Optional[_Iterable[_Union[LayerActivity, _Mapping]]] = ..., cached: bool = ..., input_png: _Optional[bytes] = ..., exif_orientation: _Optional[int] = ..., alpha_composited: bool = ...) -> None: ...

class GetFeatureMapsRequest(_message.Message):
    __slots__ = ("recording_id", "layer", "features", "feature_start", "feature_end", "encoding")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_START_FIELD_NUMBER: _ClassVar[int]
    FEATURE_END_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    layer: str
    features: _containers.RepeatedScalarFieldContainer[int]
    feature_start: int
    feature_end: int
    encoding: ValueEncoding
    def __init__(self, recording_id: _Optional[str] = ..., layer: _Optional[str] = ..., features: _Optional[_Iterable[int]] = ..., feature_start: _Optional[int] = ..., feature_end: _Optional[int] = ..., encoding: _Optional[_Union[ValueEncoding, str]] = ...) -> None: ...

class FeatureMap(_message.Message):
    __slots__ = ("feature", "max", "values", "quantized", "scale")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    QUANTIZED_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    feature: int
    max: float
    values: _containers.RepeatedScalarFieldContainer[float]
    quantized: bytes
    scale: float
    def __init__(self, feature: _Optional[int] = ..., max: _Optional[float] = ..., values: _Optional[_Iterable[float]] = ..., quantized: _Optional[bytes] = ..., scale: _Optional[float] = ...) -> None: ...

class FeatureMaps(_message.Message):
    __slots__ = ("layer", "height", "width", "maps")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAPS_FIELD_NUMBER: _ClassVar[int]
    layer: int
    height: int
    width: int
    maps: _containers.RepeatedCompositeFieldContainer[FeatureMap]
    def __init__(self, layer: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., maps: _Optional[_Iterable[_Union[FeatureMap, _Mapping]]] = ...) -> None: ...

class TopActivationsRequest(_message.Message):
    __slots__ = ("recording_id", "layer", "k", "feature", "distinct_features")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    layer: str
    k: int
    feature: int
    distinct_features: bool
    def __init__(self, recording_id: _Optional[str] = ..., layer: _Optional[str] = ..., k: _Optional[int] = ..., feature: _Optional[int] = ..., distinct_features: bool = ...) -> None: ...

class Neuron(_message.Message):
    __slots__ = ("layer", "feature", "y", "x")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    layer: str
    feature: int
    y: int
    x: int
    def __init__(self, layer: _Optional[str] = ..., feature: _Optional[int] = ..., y: _Optional[int] = ..., x: _Optional[int] = ...) -> None: ...

class Activation(_message.Message):
    __slots__ = ("feature", "y", "x", "value")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    feature: int
    y: int
    x: int
    value: float
    def __init__(self, feature: _Optional[int] = ..., y: _Optional[int] = ..., x: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class TopActivationsResponse(_message.Message):
    __slots__ = ("layer", "activations")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    layer: int
    activations: _containers.RepeatedCompositeFieldContainer[Activation]
    def __init__(self, layer: _Optional[int] = ..., activations: _Optional[_Iterable[_Union[Activation, _Mapping]]] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: int
    y0: int
    x1: int
    y1: int
    def __init__(self, x0: _Optional[int] = ..., y0: _Optional[int] = ..., x1: _Optional[int] = ..., y1: _Optional[int] = ...) -> None: ...

class Normalization(_message.Message):
    __slots__ = ("kind", "max_abs", "min", "max", "colormap", "description")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    COLORMAP_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    max_abs: float
    min: float
    max: float
    colormap: str
    description: str
    def __init__(self, kind: _Optional[str] = ..., max_abs: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., colormap: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("recording_id", "neurons", "modes", "start", "seed", "crop_to_fov", "png_only", "effective_bias", "through_neuron_relu")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    NEURONS_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CROP_TO_FOV_FIELD_NUMBER: _ClassVar[int]
    PNG_ONLY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_BIAS_FIELD_NUMBER: _ClassVar[int]
    THROUGH_NEURON_RELU_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    neurons: _containers.RepeatedCompositeFieldContainer[Neuron]
    modes: _containers.RepeatedScalarFieldContainer[ReconstructionMode]
    start: StartValue
    seed: int
    crop_to_fov: bool
    png_only: bool
    effective_bias: bool
    through_neuron_relu: bool
    def __init__(self, recording_id: _Optional[str] = ..., neurons: _Optional[_Iterable[_Union[Neuron, _Mapping]]] = ..., modes: _Optional[_Iterable[_Union[ReconstructionMode, str]]] = ..., start: _Optional[_Union[StartValue, str]] = ..., seed: _Optional[int] = ..., crop_to_fov: bool = ..., png_only: bool = ..., effective_bias: bool = ..., through_neuron_relu: bool = ...) -> None: ...

class Reconstruction(_message.Message):
    __slots__ = ("neuron_index", "mode", "height", "width", "values", "png", "normalization", "fov", "effective_bias", "activation", "inactive")
    NEURON_INDEX_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    FOV_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_BIAS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    INACTIVE_FIELD_NUMBER: _ClassVar[int]
    neuron_index: int
    mode: ReconstructionMode
    height: int
    width: int
    values: _containers.RepeatedScalarFieldContainer[float]
    png: bytes
    normalization: Normalization
    fov: Box
    effective_bias: float
    activation: float
    inactive: bool
    def __init__(self, neuron_index: _Optional[int] = ..., mode: _Optional[_Union[ReconstructionMode, str]] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ..., png: _Optional[bytes] = ..., normalization: _Optional[_Union[Normalization, _Mapping]] = ..., fov: _Optional[_Union[Box, _Mapping]] = ..., effective_bias: _Optional[float] = ..., activation: _Optional[float] = ..., inactive: bool = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("reconstructions",)
    RECONSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    reconstructions: _containers.RepeatedCompositeFieldContainer[Reconstruction]
    def __init__(self, reconstructions: _Optional[_Iterable[_Union[Reconstruction, _Mapping]]] = ...) -> None: ...

class MaximizeRequest(_message.Message):
    __slots__ = ("neuron", "starts", "steps", "learning_rate", "l2_decay", "blur_sigma", "blur_every", "jitter", "clip", "seed", "preview_every", "fov_only", "objective", "direction", "param", "scale", "rotate", "diversity", "diversity_layer")
    NEURON_FIELD_NUMBER: _ClassVar[int]
    STARTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    L2_DECAY_FIELD_NUMBER: _ClassVar[int]
    BLUR_SIGMA_FIELD_NUMBER: _ClassVar[int]
    BLUR_EVERY_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    FOV_ONLY_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ROTATE_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_LAYER_FIELD_NUMBER: _ClassVar[int]
    neuron: Neuron
    starts: int
    steps: int
    learning_rate: float
    l2_decay: float
    blur_sigma: float
    blur_every: int
    jitter: int
    clip: bool
    seed: int
    preview_every: int
    fov_only: bool
    objective: str
    direction: _containers.RepeatedScalarFieldContainer[float]
    param: Parameterization
    scale: float
    rotate: float
    diversity: float
    diversity_layer: str
    def __init__(self, neuron: _Optional[_Union[Neuron, _Mapping]] = ..., starts: _Optional[int] = ..., steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., l2_decay: _Optional[float] = ..., blur_sigma: _Optional[float] = ..., blur_every: _Optional[int] = ..., jitter: _Optional[int] = ..., clip: bool = ..., seed: _Optional[int] = ..., preview_every: _Optional[int] = ..., fov_only: bool = ..., objective: _Optional[str] = ..., direction: _Optional[_Iterable[float]] = ..., param: _Optional[_Union[Parameterization, str]] = ..., scale: _Optional[float] = ..., rotate: _Optional[float] = ..., diversity: _Optional[float] = ..., diversity_layer: _Optional[str] = ...) -> None: ...

class MaximizeProgress(_message.Message):
    __slots__ = ("step", "total_steps", "objective", "previews")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    objective: _containers.RepeatedScalarFieldContainer[float]
    previews: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., objective: _Optional[_Iterable[float]] = ..., previews: _Optional[_Iterable[bytes]] = ...) -> None: ...

class MaximizeResult(_message.Message):
    __slots__ = ("pngs", "objective", "images", "fov", "normalization")
    PNGS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    FOV_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    pngs: _containers.RepeatedScalarFieldContainer[bytes]
    objective: _containers.RepeatedScalarFieldContainer[float]
    images: _containers.RepeatedCompositeFieldContainer[FloatImage]
    fov: Box
    normalization: Normalization
    def __init__(self, pngs: _Optional[_Iterable[bytes]] = ..., objective: _Optional[_Iterable[float]] = ..., images: _Optional[_Iterable[_Union[FloatImage, _Mapping]]] = ..., fov: _Optional[_Union[Box, _Mapping]] = ..., normalization: _Optional[_Union[Normalization, _Mapping]] = ...) -> None: ...

class FloatImage(_message.Message):
    __slots__ = ("height", "width", "values")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class MaximizeEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: MaximizeProgress
    result: MaximizeResult
    def __init__(self, progress: _Optional[_Union[MaximizeProgress, _Mapping]] = ..., result: _Optional[_Union[MaximizeResult, _Mapping]] = ...) -> None: ...

class ActivationStatsRequest(_message.Message):
    __slots__ = ("recording_id", "layers")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, recording_id: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ...) -> None: ...

class LayerStats(_message.Message):
    __slots__ = ("layer", "name", "features", "locations", "histogram", "fraction_active", "feature_fraction_active")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    FRACTION_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FRACTION_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    layer: int
    name: str
    features: int
    locations: int
    histogram: _containers.RepeatedScalarFieldContainer[int]
    fraction_active: float
    feature_fraction_active: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, layer: _Optional[int] = ..., name: _Optional[str] = ..., features: _Optional[int] = ..., locations: _Optional[int] = ..., histogram: _Optional[_Iterable[int]] = ..., fraction_active: _Optional[float] = ..., feature_fraction_active: _Optional[_Iterable[float]] = ...) -> None: ...

class ActivationStatsResponse(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[LayerStats]
    def __init__(self, layers: _Optional[_Iterable[_Union[LayerStats, _Mapping]]] = ...) -> None: ...

class ListRecordingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecordingInfo(_message.Message):
    __slots__ = ("recording_id", "label", "original_width", "original_height", "size_bytes", "last_used_unix")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    label: str
    original_width: int
    original_height: int
    size_bytes: int
    last_used_unix: int
    def __init__(self, recording_id: _Optional[str] = ..., label: _Optional[str] = ..., original_width: _Optional[int] = ..., original_height: _Optional[int] = ..., size_bytes: _Optional[int] = ..., last_used_unix: _Optional[int] = ...) -> None: ...

class ListRecordingsResponse(_message.Message):
    __slots__ = ("recordings", "cache_bytes", "cache_limit_bytes")
    RECORDINGS_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    recordings: _containers.RepeatedCompositeFieldContainer[RecordingInfo]
    cache_bytes: int
    cache_limit_bytes: int
    def __init__(self, recordings: _Optional[_Iterable[_Union[RecordingInfo, _Mapping]]] = ..., cache_bytes: _Optional[int] = ..., cache_limit_bytes: _Optional[int] = ...) -> None: ...

class DropRecordingRequest(_message.Message):
    __slots__ = ("recording_id",)
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    def __init__(self, recording_id: _Optional[str] = ...) -> None: ...

class DropRecordingResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: bool
    def __init__(self, dropped: bool = ...) -> None: ...

class ScanTopRequest(_message.Message):
    __slots__ = ("layer", "feature", "k", "patches")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    PATCHES_FIELD_NUMBER: _ClassVar[int]
    layer: str
    feature: int
    k: int
    patches: bool
    def __init__(self, layer: _Optional[str] = ..., feature: _Optional[int] = ..., k: _Optional[int] = ..., patches: bool = ...) -> None: ...

class ScanHit(_message.Message):
    __slots__ = ("image", "value", "y", "x", "fov", "patch_png")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    FOV_FIELD_NUMBER: _ClassVar[int]
    PATCH_PNG_FIELD_NUMBER: _ClassVar[int]
    image: str
    value: float
    y: int
    x: int
    fov: Box
    patch_png: bytes
    def __init__(self, image: _Optional[str] = ..., value: _Optional[float] = ..., y: _Optional[int] = ..., x: _Optional[int] = ..., fov: _Optional[_Union[Box, _Mapping]] = ..., patch_png: _Optional[bytes] = ...) -> None: ...

class ScanTopResponse(_message.Message):
    __slots__ = ("layer", "feature", "hits", "scanned", "skipped")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    layer: int
    feature: int
    hits: _containers.RepeatedCompositeFieldContainer[ScanHit]
    scanned: int
    skipped: int
    def __init__(self, layer: _Optional[int] = ..., feature: _Optional[int] = ..., hits: _Optional[_Iterable[_Union[ScanHit, _Mapping]]] = ..., scanned: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class ComparePatternsRequest(_message.Message):
    __slots__ = ("recording_a", "recording_b", "neuron")
    RECORDING_A_FIELD_NUMBER: _ClassVar[int]
    RECORDING_B_FIELD_NUMBER: _ClassVar[int]
    NEURON_FIELD_NUMBER: _ClassVar[int]
    recording_a: str
    recording_b: str
    neuron: Neuron
    def __init__(self, recording_a: _Optional[str] = ..., recording_b: _Optional[str] = ..., neuron: _Optional[_Union[Neuron, _Mapping]] = ...) -> None: ...

class PatternAgreement(_message.Message):
    __slots__ = ("layer", "units", "same_state", "mask_agreement", "active_a", "active_b", "active_both", "jaccard", "windows", "same_switch", "switch_agreement")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    SAME_STATE_FIELD_NUMBER: _ClassVar[int]
    MASK_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_A_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_B_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_BOTH_FIELD_NUMBER: _ClassVar[int]
    JACCARD_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    SAME_SWITCH_FIELD_NUMBER: _ClassVar[int]
    SWITCH_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    layer: int
    units: int
    same_state: int
    mask_agreement: float
    active_a: int
    active_b: int
    active_both: int
    jaccard: float
    windows: int
    same_switch: int
    switch_agreement: float
    def __init__(self, layer: _Optional[int] = ..., units: _Optional[int] = ..., same_state: _Optional[int] = ..., mask_agreement: _Optional[float] = ..., active_a: _Optional[int] = ..., active_b: _Optional[int] = ..., active_both: _Optional[int] = ..., jaccard: _Optional[float] = ..., windows: _Optional[int] = ..., same_switch: _Optional[int] = ..., switch_agreement: _Optional[float] = ...) -> None: ...

class NeuronPatterns(_message.Message):
    __slots__ = ("active_a", "active_b", "same_linear_filter", "first_difference")
    ACTIVE_A_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_B_FIELD_NUMBER: _ClassVar[int]
    SAME_LINEAR_FILTER_FIELD_NUMBER: _ClassVar[int]
    FIRST_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    active_a: bool
    active_b: bool
    same_linear_filter: bool
    first_difference: int
    def __init__(self, active_a: bool = ..., active_b: bool = ..., same_linear_filter: bool = ..., first_difference: _Optional[int] = ...) -> None: ...

class ComparePatternsResponse(_message.Message):
    __slots__ = ("layers", "neuron")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    NEURON_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[PatternAgreement]
    neuron: NeuronPatterns
    def __init__(self, layers: _Optional[_Iterable[_Union[PatternAgreement, _Mapping]]] = ..., neuron: _Optional[_Union[NeuronPatterns, _Mapping]] = ...) -> None: ...

class LinearRegionRequest(_message.Message):
    __slots__ = ("recording_id", "neuron", "direction", "seed", "toward_recording", "max_regions", "extent")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    NEURON_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TOWARD_RECORDING_FIELD_NUMBER: _ClassVar[int]
    MAX_REGIONS_FIELD_NUMBER: _ClassVar[int]
    EXTENT_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    neuron: Neuron
    direction: DirectionKind
    seed: int
    toward_recording: str
    max_regions: int
    extent: float
    def __init__(self, recording_id: _Optional[str] = ..., neuron: _Optional[_Union[Neuron, _Mapping]] = ..., direction: _Optional[_Union[DirectionKind, str]] = ..., seed: _Optional[int] = ..., toward_recording: _Optional[str] = ..., max_regions: _Optional[int] = ..., extent: _Optional[float] = ...) -> None: ...

class UnitChange(_message.Message):
    __slots__ = ("kind", "layer", "feature", "y", "x")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[UnitChange.Kind]
        RELU: _ClassVar[UnitChange.Kind]
        SWITCH: _ClassVar[UnitChange.Kind]
        CEILING: _ClassVar[UnitChange.Kind]
    KIND_UNSPECIFIED: UnitChange.Kind
    RELU: UnitChange.Kind
    SWITCH: UnitChange.Kind
    CEILING: UnitChange.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    kind: UnitChange.Kind
    layer: int
    feature: int
    y: int
    x: int
    def __init__(self, kind: _Optional[_Union[UnitChange.Kind, str]] = ..., layer: _Optional[int] = ..., feature: _Optional[int] = ..., y: _Optional[int] = ..., x: _Optional[int] = ...) -> None: ...

class RegionEnd(_message.Message):
    __slots__ = ("t", "unit", "value")
    T_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    t: float
    unit: UnitChange
    value: float
    def __init__(self, t: _Optional[float] = ..., unit: _Optional[_Union[UnitChange, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class ProfileSegment(_message.Message):
    __slots__ = ("t0", "t1", "v0", "v1", "end", "slope")
    T0_FIELD_NUMBER: _ClassVar[int]
    T1_FIELD_NUMBER: _ClassVar[int]
    V0_FIELD_NUMBER: _ClassVar[int]
    V1_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SLOPE_FIELD_NUMBER: _ClassVar[int]
    t0: float
    t1: float
    v0: float
    v1: float
    end: UnitChange
    slope: float
    def __init__(self, t0: _Optional[float] = ..., t1: _Optional[float] = ..., v0: _Optional[float] = ..., v1: _Optional[float] = ..., end: _Optional[_Union[UnitChange, _Mapping]] = ..., slope: _Optional[float] = ...) -> None: ...

class LinearRegionProgress(_message.Message):
    __slots__ = ("regions", "t")
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    regions: int
    t: float
    def __init__(self, regions: _Optional[int] = ..., t: _Optional[float] = ...) -> None: ...

class LinearRegionResult(_message.Message):
    __slots__ = ("value", "slope", "forward", "backward", "direction_norm", "to", "segments", "complete", "units_on_boundary")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SLOPE_FIELD_NUMBER: _ClassVar[int]
    FORWARD_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_NORM_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    UNITS_ON_BOUNDARY_FIELD_NUMBER: _ClassVar[int]
    value: float
    slope: float
    forward: RegionEnd
    backward: RegionEnd
    direction_norm: float
    to: float
    segments: _containers.RepeatedCompositeFieldContainer[ProfileSegment]
    complete: bool
    units_on_boundary: int
    def __init__(self, value: _Optional[float] = ..., slope: _Optional[float] = ..., forward: _Optional[_Union[RegionEnd, _Mapping]] = ..., backward: _Optional[_Union[RegionEnd, _Mapping]] = ..., direction_norm: _Optional[float] = ..., to: _Optional[float] = ..., segments: _Optional[_Iterable[_Union[ProfileSegment, _Mapping]]] = ..., complete: bool = ..., units_on_boundary: _Optional[int] = ..., **kwargs) -> None: ...

class LinearRegionEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: LinearRegionProgress
    result: LinearRegionResult
    def __init__(self, progress: _Optional[_Union[LinearRegionProgress, _Mapping]] = ..., result: _Optional[_Union[LinearRegionResult, _Mapping]] = ...) -> None: ...

class StudyRequest(_message.Message):
    __slots__ = ("recording_ids", "layer", "neurons_per_image", "seed")
    RECORDING_IDS_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    NEURONS_PER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    recording_ids: _containers.RepeatedScalarFieldContainer[str]
    layer: str
    neurons_per_image: int
    seed: int
    def __init__(self, recording_ids: _Optional[_Iterable[str]] = ..., layer: _Optional[str] = ..., neurons_per_image: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ConditionSimilarity(_message.Message):
    __slots__ = ("condition", "pearson_to_trained", "ssim_to_trained", "pearson_to_image", "ssim_to_image")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    PEARSON_TO_TRAINED_FIELD_NUMBER: _ClassVar[int]
    SSIM_TO_TRAINED_FIELD_NUMBER: _ClassVar[int]
    PEARSON_TO_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SSIM_TO_IMAGE_FIELD_NUMBER: _ClassVar[int]
    condition: str
    pearson_to_trained: float
    ssim_to_trained: float
    pearson_to_image: float
    ssim_to_image: float
    def __init__(self, condition: _Optional[str] = ..., pearson_to_trained: _Optional[float] = ..., ssim_to_trained: _Optional[float] = ..., pearson_to_image: _Optional[float] = ..., ssim_to_image: _Optional[float] = ...) -> None: ...

class StudyRow(_message.Message):
    __slots__ = ("recording_index", "other_index", "feature", "y", "x", "activation", "fov", "conditions", "filter_high_frequency", "patch_high_frequency")
    RECORDING_INDEX_FIELD_NUMBER: _ClassVar[int]
    OTHER_INDEX_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    FOV_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    FILTER_HIGH_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    PATCH_HIGH_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    recording_index: int
    other_index: int
    feature: int
    y: int
    x: int
    activation: float
    fov: Box
    conditions: _containers.RepeatedCompositeFieldContainer[ConditionSimilarity]
    filter_high_frequency: float
    patch_high_frequency: float
    def __init__(self, recording_index: _Optional[int] = ..., other_index: _Optional[int] = ..., feature: _Optional[int] = ..., y: _Optional[int] = ..., x: _Optional[int] = ..., activation: _Optional[float] = ..., fov: _Optional[_Union[Box, _Mapping]] = ..., conditions: _Optional[_Iterable[_Union[ConditionSimilarity, _Mapping]]] = ..., filter_high_frequency: _Optional[float] = ..., patch_high_frequency: _Optional[float] = ...) -> None: ...

class StudyProgress(_message.Message):
    __slots__ = ("images_done", "images")
    IMAGES_DONE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images_done: int
    images: int
    def __init__(self, images_done: _Optional[int] = ..., images: _Optional[int] = ...) -> None: ...

class StudyResult(_message.Message):
    __slots__ = ("layer", "rows")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    layer: int
    rows: _containers.RepeatedCompositeFieldContainer[StudyRow]
    def __init__(self, layer: _Optional[int] = ..., rows: _Optional[_Iterable[_Union[StudyRow, _Mapping]]] = ...) -> None: ...

class StudyEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: StudyProgress
    result: StudyResult
    def __init__(self, progress: _Optional[_Union[StudyProgress, _Mapping]] = ..., result: _Optional[_Union[StudyResult, _Mapping]] = ...) -> None: ...

class AttributeRequest(_message.Message):
    __slots__ = ("recording_id", "layer", "unit", "class_label", "method", "cam_layer", "steps", "baseline", "blur_sigma", "seed", "png_only")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CAM_LAYER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BLUR_SIGMA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PNG_ONLY_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    layer: str
    unit: int
    class_label: str
    method: AttributionMethod
    cam_layer: str
    steps: int
    baseline: AttributionBaseline
    blur_sigma: float
    seed: int
    png_only: bool
    def __init__(self, recording_id: _Optional[str] = ..., layer: _Optional[str] = ..., unit: _Optional[int] = ..., class_label: _Optional[str] = ..., method: _Optional[_Union[AttributionMethod, str]] = ..., cam_layer: _Optional[str] = ..., steps: _Optional[int] = ..., baseline: _Optional[_Union[AttributionBaseline, str]] = ..., blur_sigma: _Optional[float] = ..., seed: _Optional[int] = ..., png_only: bool = ...) -> None: ...

class CamMap(_message.Message):
    __slots__ = ("layer", "height", "width", "grid", "weights")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    layer: int
    height: int
    width: int
    grid: _containers.RepeatedScalarFieldContainer[float]
    weights: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, layer: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., grid: _Optional[_Iterable[float]] = ..., weights: _Optional[_Iterable[float]] = ...) -> None: ...

class Completeness(_message.Message):
    __slots__ = ("attribution_sum", "objective_difference", "baseline_objective")
    ATTRIBUTION_SUM_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    attribution_sum: float
    objective_difference: float
    baseline_objective: float
    def __init__(self, attribution_sum: _Optional[float] = ..., objective_difference: _Optional[float] = ..., baseline_objective: _Optional[float] = ...) -> None: ...

class AttributeProgress(_message.Message):
    __slots__ = ("done", "total")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class AttributeResult(_message.Message):
    __slots__ = ("layer", "unit", "label", "method", "objective", "height", "width", "channels", "values", "png", "normalization", "cam", "completeness")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    CAM_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    layer: int
    unit: int
    label: str
    method: AttributionMethod
    objective: float
    height: int
    width: int
    channels: int
    values: _containers.RepeatedScalarFieldContainer[float]
    png: bytes
    normalization: Normalization
    cam: CamMap
    completeness: Completeness
    def __init__(self, layer: _Optional[int] = ..., unit: _Optional[int] = ..., label: _Optional[str] = ..., method: _Optional[_Union[AttributionMethod, str]] = ..., objective: _Optional[float] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ..., png: _Optional[bytes] = ..., normalization: _Optional[_Union[Normalization, _Mapping]] = ..., cam: _Optional[_Union[CamMap, _Mapping]] = ..., completeness: _Optional[_Union[Completeness, _Mapping]] = ...) -> None: ...

class AttributeEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: AttributeProgress
    result: AttributeResult
    def __init__(self, progress: _Optional[_Union[AttributeProgress, _Mapping]] = ..., result: _Optional[_Union[AttributeResult, _Mapping]] = ...) -> None: ...
