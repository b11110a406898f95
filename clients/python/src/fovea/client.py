"""A thin, typed layer over the generated `fovea.v1` stubs: arrays in, arrays
out, errors as exceptions."""

from __future__ import annotations

import os
import pathlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

from .v1 import probe_pb2 as pb
from .v1 import probe_pb2_grpc as rpc

DEFAULT_ADDRESS = "127.0.0.1:50051"

# Mode names as the `fovea` command line spells them, with the proto's
# longer names accepted too.
MODES: Dict[str, int] = {
    "deconvnet": pb.DECONVNET,
    "masked": pb.DECONVNET_MASKED,
    "random": pb.RANDOM_WEIGHTS,
    "linear": pb.LINEAR_FILTER,
}
_MODE_ALIASES = {
    "deconvnet_masked": "masked",
    "random_weights": "random",
    "linear_filter": "linear",
}
_MODE_NAMES = {v: k for k, v in MODES.items()}


# ------------------------------------------------------------------ errors


class FoveaError(Exception):
    """The daemon answered with an error status, or could not be reached.

    `code` is the `grpc.StatusCode`; `details` the daemon's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name.lower().replace('_', ' ')}: {details}")
        self.code = code
        self.details = details


class InvalidArgument(FoveaError):
    """A request field is out of range; the message names it."""


class NotFound(FoveaError):
    """An unknown or evicted recording."""


class ResourceExhausted(FoveaError):
    """The daemon's work queue is full: try again later."""


class Unavailable(FoveaError):
    """The daemon is unreachable, still loading, or shutting down."""


class Unauthenticated(FoveaError):
    """A missing or wrong token."""


class Cancelled(FoveaError):
    """The call was cancelled (for example by Ctrl-C)."""


_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def _error(e: grpc.RpcError) -> FoveaError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else None) or str(e)
    return _ERRORS.get(code, FoveaError)(code, details)


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Neuron:
    """A neuron: layer (number or name), feature and location in the
    layer's grid (ignored for dense layers)."""

    layer: str
    feature: int
    y: int = 0
    x: int = 0

    def _proto(self) -> pb.Neuron:
        return pb.Neuron(layer=str(self.layer), feature=self.feature, y=self.y, x=self.x)


NeuronLike = Union[Neuron, Tuple[Any, int, int, int], Tuple[Any, int]]


def _neuron(n: NeuronLike) -> Neuron:
    if isinstance(n, Neuron):
        return n
    if isinstance(n, tuple) and len(n) in (2, 4):
        layer, feature, *at = n
        y, x = at if at else (0, 0)
        return Neuron(str(layer), int(feature), int(y), int(x))
    raise TypeError(f"a neuron is a Neuron or a (layer, feature, y, x) tuple, not {type(n).__name__}")


@dataclass(frozen=True)
class Box:
    """A box in input pixels: [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @staticmethod
    def _from(b: pb.Box) -> "Box":
        return Box(b.x0, b.y0, b.x1, b.y1)


@dataclass(frozen=True)
class Layer:
    """A layer of the network. For conv layers `activation` is "relu",
    "leaky_relu" (with its `slope` below zero), "clipped_relu" (with its
    `ceiling`, 6 for ReLU6) or "linear" (none), `pool` the pool in front of the convolution:
    "max", "average" or "", and `residual_from` the layer whose input a
    residual sum adds to this layer's (0 without one; the projection, if
    any, is in the model's `raw` message). `norm_only` marks a batch norm
    with no convolution before it (pre-activation networks): the layer is
    its per-channel scale and shift. `sources` are the layers whose outputs,
    concatenated on channels, the layer reads (0 the input; the one before
    it in a chain, several after an Inception block's Concat)."""

    number: int
    name: str
    kind: str
    channels: int
    height: int
    width: int
    fov: int
    stride: int
    activation: str = ""
    slope: float = 0.0
    ceiling: float = 0.0
    pool: str = ""
    residual_from: int = 0
    norm_only: bool = False
    sources: Tuple[int, ...] = ()


@dataclass(frozen=True)
class Model:
    """The daemon's network. `raw` is the full `ModelInfo` message."""

    name: str
    layers: List[Layer]
    input_size: int
    execution_provider: str
    num_classes: int
    class_labels: List[str]
    # Why the probe-able layers end before the head ("" when they do not):
    # the node and op where the chain stops; the rest only predicts.
    probe_stop: str
    raw: pb.ModelInfo = field(repr=False)

    def conv_layers(self) -> List[Layer]:
        return [layer for layer in self.layers if layer.kind == "conv"]


@dataclass(frozen=True)
class Prediction:
    class_index: int
    label: str
    score: float


@dataclass(frozen=True)
class Activation:
    feature: int
    y: int
    x: int
    value: float


@dataclass(frozen=True)
class LayerStats:
    """Paper fig. 6: `histogram[n]` locations have exactly n features active."""

    layer: int
    name: str
    features: int
    locations: int
    histogram: np.ndarray
    fraction_active: float
    feature_fraction_active: np.ndarray


class Picture:
    """An encoded PNG from the daemon; shows itself in Jupyter."""

    def __init__(self, png: bytes):
        self.png = bytes(png)

    def _repr_png_(self) -> bytes:
        return self.png

    def save(self, path: Union[str, os.PathLike]) -> None:
        pathlib.Path(path).write_bytes(self.png)

    def __repr__(self) -> str:
        return f"Picture({len(self.png)} bytes of PNG)"


class Reconstructions(dict):
    """Mode name -> float32 array (H, W, 3) in input space, full frame, with
    what describes them alongside: `fov` (the neuron's field of view),
    `normalization` and `png` (the rendered pictures) per mode, `activation`
    (the neuron's recorded value) and, for `linear` with
    `effective_bias=True`, `effective_bias`."""

    fov: Optional[Box]
    activation: float
    effective_bias: Optional[float]
    normalization: Dict[str, pb.Normalization]
    png: Dict[str, bytes]

    def picture(self, mode: str) -> Picture:
        return Picture(self.png[_mode_name(mode)])


@dataclass
class Progress:
    """One maximization event: the step and each start's objective."""

    step: int
    total_steps: int
    objective: np.ndarray
    previews: List[Picture]


@dataclass
class MaximizeResult:
    """The final images, float32 (starts, H, W, 3) in input space."""

    images: np.ndarray
    objective: np.ndarray
    pictures: List[Picture]
    fov: Optional[Box]
    normalization: pb.Normalization


@dataclass(frozen=True)
class PatternAgreement:
    """How alike two recordings' configurations are at one layer: ReLU
    states (`mask_agreement`, `jaccard` of the active sets) and max-pool
    switches (`switch_agreement`, over `windows` windows; 0 when the layer
    is not pooled)."""

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


@dataclass(frozen=True)
class PatternComparison:
    """Per-layer agreement; with a neuron, over its FOV tree, plus whether
    both images see the same linear filter and, if not, the lowest layer
    where their configurations differ."""

    layers: List[PatternAgreement]
    neuron_active: Optional[Tuple[bool, bool]] = None
    same_linear_filter: Optional[bool] = None
    first_difference: Optional[int] = None


@dataclass(frozen=True)
class UnitChange:
    """The unit whose change ends a region: `kind` "relu" (its ReLU changes
    state), "ceiling" (its clipped ReLU reaches or leaves its ceiling) or
    "switch" (the maximum of a pool window moves to it)."""

    kind: str
    layer: int
    feature: int
    y: int
    x: int


@dataclass(frozen=True)
class RegionEnd:
    t: float
    unit: UnitChange
    value: float


@dataclass
class LinearRegion:
    """A neuron's linear region along `input + t * d`: its pre-activation
    `value` at the input and `slope` along d, the nearest ends on either
    side (None where unbounded), |d|, and with a walk the profile:
    `segments` float64 (n, 5) rows (t0, t1, v0, v1, slope), `ends[i]` the
    unit changing at the end of segment i (None for the last), whether
    the walk reached the end of the line, and how many units sit exactly at
    their threshold at the input (ties: the region has zero width there)."""

    value: float
    slope: float
    forward: Optional[RegionEnd]
    backward: Optional[RegionEnd]
    direction_norm: float
    segments: np.ndarray
    ends: List[Optional[UnitChange]]
    complete: bool
    line: Tuple[float, float]
    units_on_boundary: int = 0


@dataclass
class Attribution:
    """What a class (or dense unit) owes to the input: `values` float32
    (H, W, 3) in input space for the pixel methods, (H, W) for Grad-CAM;
    `objective` the unit's value (a logit); `cam` Grad-CAM's map on its
    layer's grid and `cam_weights` its channel weights; `completeness`
    (attribution sum, objective difference, baseline objective) for
    integrated gradients."""

    layer: int
    unit: int
    label: str
    objective: float
    values: np.ndarray
    picture: Picture
    cam_layer: Optional[int] = None
    cam: Optional[np.ndarray] = None
    cam_weights: Optional[np.ndarray] = None
    completeness: Optional[Tuple[float, float, float]] = None


_METHODS = {
    "saliency": pb.SALIENCY,
    "guided": pb.GUIDED_BACKPROP,
    "gradcam": pb.GRAD_CAM,
    "guided-gradcam": pb.GUIDED_GRAD_CAM,
    "ig": pb.INTEGRATED_GRADIENTS,
}
_BASELINES = {"black": pb.BASELINE_BLACK, "blurred": pb.BASELINE_BLURRED, "noise": pb.BASELINE_NOISE}


def _attribution(r: pb.AttributeResult) -> Attribution:
    shape = (r.height, r.width) if r.channels == 1 else (r.height, r.width, r.channels)
    a = Attribution(
        r.layer,
        r.unit,
        r.label,
        r.objective,
        np.asarray(r.values, dtype=np.float32).reshape(shape),
        Picture(r.png),
    )
    if r.HasField("cam"):
        a.cam_layer = r.cam.layer
        a.cam = np.asarray(r.cam.grid, dtype=np.float32).reshape(r.cam.height, r.cam.width)
        a.cam_weights = np.asarray(r.cam.weights, dtype=np.float32)
    if r.HasField("completeness"):
        c = r.completeness
        a.completeness = (c.attribution_sum, c.objective_difference, c.baseline_objective)
    return a


def _unit_change(u: pb.UnitChange) -> UnitChange:
    kinds = {pb.UnitChange.SWITCH: "switch", pb.UnitChange.CEILING: "ceiling"}
    return UnitChange(kinds.get(u.kind, "relu"), u.layer, u.feature, u.y, u.x)


def _region_end(r: pb.LinearRegionResult, name: str) -> Optional[RegionEnd]:
    if not r.HasField(name):
        return None
    e = getattr(r, name)
    return RegionEnd(e.t, _unit_change(e.unit), e.value)


def _linear_region(r: pb.LinearRegionResult) -> LinearRegion:
    rows = [(s.t0, s.t1, s.v0, s.v1, s.slope) for s in r.segments]
    return LinearRegion(
        value=r.value,
        slope=r.slope,
        forward=_region_end(r, "forward"),
        backward=_region_end(r, "backward"),
        direction_norm=r.direction_norm,
        segments=np.asarray(rows, dtype=np.float64).reshape(len(rows), 5),
        ends=[_unit_change(s.end) if s.HasField("end") else None for s in r.segments],
        complete=r.complete,
        line=(getattr(r, "from"), r.to),
        units_on_boundary=r.units_on_boundary,
    )


# ------------------------------------------------------------------ images


def _png(rgb: np.ndarray) -> bytes:
    """Encodes an (H, W, 3) or (H, W) uint8 array as PNG: the daemon takes
    encoded images, and numpy alone has no encoder."""
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


ImageLike = Union[str, os.PathLike, bytes, bytearray, np.ndarray, Any]


def _image_bytes(image: ImageLike) -> Tuple[bytes, str]:
    """Encoded bytes and a label for any accepted image."""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image), ""
    if isinstance(image, (str, os.PathLike)):
        path = pathlib.Path(image)
        return path.read_bytes(), path.name
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 3 and a.shape[-1] == 4:
            a = a[..., :3]
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
            raise ValueError(f"an image array is (H, W), (H, W, 3) or (H, W, 4), not {a.shape}")
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
                a = a * 255.0
            a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
        return _png(np.ascontiguousarray(a)), ""
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        import io

        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        return buf.getvalue(), ""
    raise TypeError(f"an image is a path, bytes, a numpy array or a PIL image, not {type(image).__name__}")


def _mode_name(mode: Union[str, int]) -> str:
    if isinstance(mode, int):
        return _MODE_NAMES[mode]
    name = _MODE_ALIASES.get(mode.lower(), mode.lower())
    if name not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    return name


# ------------------------------------------------------------------ client


class _Auth(grpc.AuthMetadataPlugin):
    def __init__(self, token: str):
        self._token = token

    def __call__(self, context, callback):
        callback((("authorization", f"Bearer {self._token}"),), None)


def _read_token(path: Union[str, os.PathLike]) -> str:
    text = pathlib.Path(path).read_text()
    return text.splitlines()[0].strip() if text else ""


def connect(
    address: Optional[str] = None,
    *,
    token: Optional[str] = None,
    token_file: Optional[Union[str, os.PathLike]] = None,
    tls_ca: Optional[Union[str, os.PathLike, bytes]] = None,
    timeout: Optional[float] = None,
) -> "Client":
    """Connects to a daemon: `host:port` or `unix:/path` (default
    `FOVEA_CONNECT`, else 127.0.0.1:50051). A token (or `token_file`, else
    `FOVEA_TOKEN_FILE`) is sent as a bearer token; `tls_ca` (else
    `FOVEA_TLS_CA`) is the certificate authority of a daemon serving TLS.
    `timeout` is a deadline in seconds for each unary call (none by
    default)."""
    address = address or os.environ.get("FOVEA_CONNECT") or DEFAULT_ADDRESS
    token_file = token_file or os.environ.get("FOVEA_TOKEN_FILE") or None
    if token is None and token_file:
        token = _read_token(token_file)
    tls_ca = tls_ca or os.environ.get("FOVEA_TLS_CA") or None
    for prefix in ("http://", "https://"):
        if address.startswith(prefix):
            address = address[len(prefix):]
    options = [
        ("grpc.max_receive_message_length", 256 << 20),
        ("grpc.max_send_message_length", 64 << 20),
    ]
    if address.startswith("unix:"):
        # grpc-core sends the socket path as :authority, which the daemon's
        # HTTP/2 layer refuses; a host name is what it expects.
        options.append(("grpc.default_authority", "localhost"))
    if tls_ca is not None:
        ca = tls_ca if isinstance(tls_ca, bytes) else pathlib.Path(tls_ca).read_bytes()
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
        if token:
            creds = grpc.composite_channel_credentials(creds, grpc.metadata_call_credentials(_Auth(token)))
        channel = grpc.secure_channel(address, creds, options=options)
        metadata: Tuple[Tuple[str, str], ...] = ()
    else:
        channel = grpc.insecure_channel(address, options=options)
        # Call credentials need TLS in grpcio: plain metadata over loopback.
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return Client(channel, address, metadata, timeout)


class Client:
    """A connection to a Fovea daemon; make one with `fovea.connect()`."""

    def __init__(self, channel: grpc.Channel, address: str, metadata, timeout: Optional[float]):
        self._channel = channel
        self._stub = rpc.ProbeStub(channel)
        self.address = address
        self._metadata = metadata
        self._timeout = timeout
        self._model: Optional[Model] = None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request):
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e) from None

    # -------------------------------------------------------------- model

    def model(self) -> Model:
        """The loaded network: layers, geometry, provider."""
        m = self._call("GetModel", pb.GetModelRequest())
        kinds = {pb.LAYER_KIND_INPUT: "input", pb.LAYER_KIND_CONV: "conv", pb.LAYER_KIND_DENSE: "dense"}
        activations = {
            pb.ActivationFunction.RELU: "relu",
            pb.ActivationFunction.LEAKY_RELU: "leaky_relu",
            pb.ActivationFunction.CLIPPED_RELU: "clipped_relu",
            pb.ActivationFunction.LINEAR: "linear",
        }
        layers = [
            Layer(
                l.number,
                l.name,
                kinds.get(l.kind, "unknown"),
                l.channels,
                l.height,
                l.width,
                l.fov,
                l.stride,
                activations.get(l.activation.kind, "") if l.HasField("activation") else "",
                l.activation.slope,
                l.activation.ceiling,
                ("average" if l.pool.average else "max") if l.HasField("pool") else "",
                l.residual.from_layer,
                l.norm_only,
                tuple(l.sources),
            )
            for l in m.layers
        ]
        self._model = Model(
            m.name,
            layers,
            m.preprocessing.input_size,
            m.execution_provider,
            m.num_classes,
            list(m.class_labels),
            m.probe_stop,
            m,
        )
        return self._model

    # -------------------------------------------------------------- record

    def record(self, image: ImageLike, label: Optional[str] = None) -> "Recording":
        """Records an image (a path, encoded bytes, an (H, W, 3) array or a
        PIL image): one forward pass with every activation, mask and switch
        kept on the daemon."""
        data, name = _image_bytes(image)
        label = name if label is None else label
        r = self._call("Record", pb.RecordRequest(image=data, label=label))
        return Recording(self, r, data, label)

    def recordings(self) -> List[pb.RecordingInfo]:
        """Recordings the daemon's cache holds, most recently used first."""
        return list(self._call("ListRecordings", pb.ListRecordingsRequest()).recordings)

    # -------------------------------------------------------------- maximize

    def maximize(
        self,
        neuron: NeuronLike,
        *,
        starts: int = 0,
        steps: int = 0,
        learning_rate: float = 0.0,
        l2_decay: float = 0.0,
        blur_sigma: float = 0.0,
        blur_every: int = 0,
        jitter: int = 0,
        clip: Optional[bool] = None,
        seed: int = 0,
        preview_every: int = 0,
        fov_only: Optional[bool] = None,
    ) -> "Maximization":
        """Best-input maximization of a neuron (paper eq. 10). Zero for
        `starts`, `steps` or `learning_rate` takes the daemon's default
        (3, 200, 1.0). Iterate over the result for progress; `.result` holds
        the final images once it has ended, `.wait()` runs it to the end."""
        request = pb.MaximizeRequest(
            neuron=_neuron(neuron)._proto(),
            starts=starts,
            steps=steps,
            learning_rate=learning_rate,
            l2_decay=l2_decay,
            blur_sigma=blur_sigma,
            blur_every=blur_every,
            jitter=jitter,
            seed=seed,
            preview_every=preview_every,
        )
        if clip is not None:
            request.clip = clip
        if fov_only is not None:
            request.fov_only = fov_only
        call = self._stub.Maximize(request, metadata=self._metadata)
        return Maximization(call)

    def visualize(
        self,
        objective: str,
        *,
        direction: Optional[Sequence[float]] = None,
        param: str = "fourier",
        starts: int = 1,
        steps: int = 256,
        learning_rate: float = 0.05,
        jitter: int = 8,
        scale: float = 0.1,
        rotate: float = 10.0,
        diversity: float = 0.0,
        diversity_layer: Optional[Union[str, int]] = None,
        seed: int = 0,
        preview_every: int = 0,
    ) -> "Maximization":
        """Feature visualisation over the whole image (Lucid): an objective
        such as "channel(10,42) - 0.5*channel(10,7)" (terms neuron(L,F,Y,X),
        channel(L,C), layer(L), direction(L) with `direction`, class(K)), in
        the "fourier" or "pixels" parameterisation, with random jitter,
        scale and rotation each step and an optional diversity penalty
        across the starts. Iterate for progress, or `.wait()`."""
        if param not in ("fourier", "pixels"):
            raise ValueError(f"param {param!r}: use 'fourier' or 'pixels'")
        request = pb.MaximizeRequest(
            objective=objective,
            direction=list(direction or []),
            param=pb.PARAM_FOURIER if param == "fourier" else pb.PARAM_PIXELS,
            starts=starts,
            steps=steps,
            learning_rate=learning_rate,
            jitter=jitter,
            scale=scale,
            rotate=rotate,
            diversity=diversity,
            diversity_layer=str(diversity_layer) if diversity_layer is not None else "",
            seed=seed,
            preview_every=preview_every,
        )
        call = self._stub.Maximize(request, metadata=self._metadata)
        return Maximization(call)


class Maximization:
    """A running maximization: iterate for `Progress` events. Ctrl-C (or
    `cancel()`) cancels the call on the daemon."""

    def __init__(self, call):
        self._call = call
        self.result: Optional[MaximizeResult] = None

    def __iter__(self) -> Iterator[Progress]:
        try:
            for event in self._call:
                kind = event.WhichOneof("event")
                if kind == "progress":
                    p = event.progress
                    yield Progress(
                        p.step,
                        p.total_steps,
                        np.asarray(p.objective, dtype=np.float32),
                        [Picture(b) for b in p.previews],
                    )
                elif kind == "result":
                    self.result = _maximize_result(event.result)
        except KeyboardInterrupt:
            self.cancel()
            raise
        except grpc.RpcError as e:
            raise _error(e) from None
        finally:
            # A loop left early (break, an exception) stops the daemon's work.
            if self.result is None:
                self.cancel()

    def wait(self) -> MaximizeResult:
        """Runs to the end and returns the result."""
        for _ in self:
            pass
        if self.result is None:
            raise FoveaError(grpc.StatusCode.INTERNAL, "the maximization ended without a result")
        return self.result

    def cancel(self) -> None:
        self._call.cancel()

    @property
    def cancelled(self) -> bool:
        return self._call.cancelled()


def _maximize_result(r: pb.MaximizeResult) -> MaximizeResult:
    images = [np.asarray(i.values, dtype=np.float32).reshape(i.height, i.width, 3) for i in r.images]
    return MaximizeResult(
        images=np.stack(images) if images else np.zeros((0, 0, 0, 3), np.float32),
        objective=np.asarray(r.objective, dtype=np.float32),
        pictures=[Picture(b) for b in r.pngs],
        fov=Box._from(r.fov) if r.HasField("fov") else None,
        normalization=r.normalization,
    )


class Recording:
    """One recorded image on the daemon. Requests that find it evicted send
    the image again and retry, once."""

    def __init__(self, client: Client, response: pb.RecordResponse, image: bytes, label: str):
        self._client = client
        self._image = image
        self.label = label
        self._set(response)

    def _set(self, r: pb.RecordResponse) -> None:
        self.raw = r
        self.id = r.recording_id
        self.predictions = [Prediction(p.class_index, p.label, p.score) for p in r.predictions]
        self.activity = {a.layer: a.fraction_active for a in r.activity}
        self.input = Picture(r.input_png)

    def __repr__(self) -> str:
        return f"Recording({self.id[:12]}..., {self.label!r})"

    def _call(self, method: str, make):
        try:
            return self._client._call(method, make(self.id))
        except NotFound:
            again = self._client._call("Record", pb.RecordRequest(image=self._image, label=self.label))
            self._set(again)
            return self._client._call(method, make(self.id))

    def feature_maps(self, layer: Union[str, int], features: Optional[Iterable[int]] = None) -> np.ndarray:
        """Activations after the ReLU: float32 (features, H, W), in the order
        asked (default all of the layer's features)."""
        fs = list(features) if features is not None else []
        r = self._call(
            "GetFeatureMaps",
            lambda rid: pb.GetFeatureMapsRequest(
                recording_id=rid, layer=str(layer), features=fs, encoding=pb.VALUE_ENCODING_FLOAT32
            ),
        )
        if not r.maps:
            return np.zeros((0, r.height, r.width), np.float32)
        return np.stack([np.asarray(m.values, dtype=np.float32).reshape(r.height, r.width) for m in r.maps])

    def top(
        self, layer: Union[str, int], k: int = 9, *, feature: Optional[int] = None, distinct: bool = False
    ) -> List[Activation]:
        """The k strongest neurons of a layer, strongest first (at most one
        per feature with `distinct`)."""
        r = self._call(
            "TopActivations",
            lambda rid: pb.TopActivationsRequest(
                recording_id=rid, layer=str(layer), k=k, feature=feature, distinct_features=distinct
            ),
        )
        return [Activation(a.feature, a.y, a.x, a.value) for a in r.activations]

    def reconstruct(
        self,
        neuron: NeuronLike,
        modes: Sequence[Union[str, int]] = ("deconvnet", "masked", "random", "linear"),
        *,
        recorded_start: bool = False,
        seed: int = 0,
        crop_to_fov: bool = True,
        effective_bias: bool = False,
        through_relu: bool = False,
    ) -> Reconstructions:
        """Backward reconstructions of one neuron onto the input plane
        (paper section 3), one per mode: a conv neuron, or a dense one (a
        class: layer 17 of VGG-16, y and x 0) over the whole image. The
        arrays are the full input frame; `crop_to_fov` crops only the
        rendered PNGs. Every mode starts at the pre-activation unless
        `through_relu` (an inactive neuron then gives zeros);
        `.inactive` says whether the neuron's ReLU is off."""
        names = [_mode_name(m) for m in modes]
        n = _neuron(neuron)
        r = self._call(
            "Reconstruct",
            lambda rid: pb.ReconstructRequest(
                recording_id=rid,
                neurons=[n._proto()],
                modes=[MODES[m] for m in names],
                start=pb.RECORDED_ACTIVATION if recorded_start else pb.ONE_HOT,
                seed=seed,
                crop_to_fov=crop_to_fov,
                effective_bias=effective_bias,
                through_neuron_relu=through_relu,
            ),
        )
        out = Reconstructions()
        out.normalization, out.png = {}, {}
        out.fov, out.activation, out.effective_bias = None, 0.0, None
        out.inactive = any(rec.inactive for rec in r.reconstructions)
        for rec in r.reconstructions:
            name = _MODE_NAMES[rec.mode]
            out[name] = np.asarray(rec.values, dtype=np.float32).reshape(rec.height, rec.width, 3)
            out.normalization[name] = rec.normalization
            out.png[name] = rec.png
            out.activation = rec.activation
            if rec.HasField("fov"):
                out.fov = Box._from(rec.fov)
            if name == "linear" and effective_bias:
                out.effective_bias = rec.effective_bias
        return out

    def stats(self, layers: Optional[Iterable[Union[str, int]]] = None) -> List[LayerStats]:
        """Paper fig. 6 for the given layers (default every conv layer)."""
        ls = [str(x) for x in layers] if layers is not None else []
        r = self._call("ActivationStats", lambda rid: pb.ActivationStatsRequest(recording_id=rid, layers=ls))
        return [
            LayerStats(
                s.layer,
                s.name,
                s.features,
                s.locations,
                np.asarray(s.histogram, dtype=np.int64),
                s.fraction_active,
                np.asarray(s.feature_fraction_active, dtype=np.float32),
            )
            for s in r.layers
        ]

    def _call_with(self, other: "Recording", method: str, request):
        """A call naming this recording and `other`: when either was
        evicted, both are sent again and the call retried once."""
        try:
            return self._client._call(method, request())
        except NotFound:
            for r in (self, other):
                r._set(r._client._call("Record", pb.RecordRequest(image=r._image, label=r.label)))
            return self._client._call(method, request())

    def compare(self, other: "Recording", neuron: Optional[NeuronLike] = None) -> PatternComparison:
        """How alike this recording's activation patterns are to `other`'s,
        per layer, or inside a conv neuron's FOV tree."""
        n = _neuron(neuron)._proto() if neuron is not None else None
        r = self._call_with(
            other,
            "ComparePatterns",
            lambda: pb.ComparePatternsRequest(recording_a=self.id, recording_b=other.id, neuron=n),
        )
        layers = [
            PatternAgreement(
                l.layer,
                l.units,
                l.same_state,
                l.mask_agreement,
                l.active_a,
                l.active_b,
                l.active_both,
                l.jaccard,
                l.windows,
                l.same_switch,
                l.switch_agreement,
            )
            for l in r.layers
        ]
        if not r.HasField("neuron"):
            return PatternComparison(layers)
        p = r.neuron
        return PatternComparison(
            layers,
            (p.active_a, p.active_b),
            p.same_linear_filter,
            p.first_difference or None,
        )

    def linear_region(
        self,
        neuron: NeuronLike,
        direction: Union[str, "Recording"] = "gradient",
        *,
        seed: int = 0,
        max_regions: int = 0,
        extent: float = 0.0,
        progress=None,
    ) -> LinearRegion:
        """The linear region of a conv neuron around this image along a
        direction: "gradient" (its linear filter, unit norm), "random"
        (seeded, unit norm) or another Recording (the line to it, t = 1 at
        the other image). With `max_regions` > 0 the line is walked region
        by region (over [-extent, extent], or [0, 1] toward a recording);
        `progress(regions, t)` is called as it goes. Ctrl-C cancels it on
        the daemon."""
        other = direction if isinstance(direction, Recording) else None
        kinds = {"gradient": pb.GRADIENT, "random": pb.RANDOM}
        if other is None and direction not in kinds:
            raise ValueError(f"direction {direction!r}: use 'gradient', 'random' or a Recording")
        n = _neuron(neuron)._proto()

        def request():
            return pb.LinearRegionRequest(
                recording_id=self.id,
                neuron=n,
                direction=pb.TOWARD if other is not None else kinds[direction],
                seed=seed,
                toward_recording=other.id if other is not None else "",
                max_regions=max_regions,
                extent=extent,
            )

        def on_progress(p):
            if progress is not None:
                progress(p.regions, p.t)

        others = (other,) if other is not None else ()
        return self._stream("LinearRegion", request, on_progress, _linear_region, "region query", others)

    def attribute(
        self,
        method: str = "guided-gradcam",
        *,
        unit: Optional[int] = None,
        label: Optional[str] = None,
        layer: Optional[Union[str, int]] = None,
        cam_layer: Optional[Union[str, int]] = None,
        steps: int = 32,
        baseline: str = "black",
        blur_sigma: float = 0.0,
        seed: int = 0,
        progress=None,
    ) -> Attribution:
        """Attributes a class (default the top one; `unit` or `label` picks
        another, `layer` a hidden dense layer) to the input: "saliency",
        "guided", "gradcam", "guided-gradcam" or "ig" (integrated gradients
        from a "black", "blurred" or "noise" baseline, `steps` points,
        `progress(done, total)` as it goes). Ctrl-C cancels it on the
        daemon."""
        if method not in _METHODS:
            raise ValueError(f"method {method!r}: use one of {', '.join(_METHODS)}")
        if baseline not in _BASELINES:
            raise ValueError(f"baseline {baseline!r}: use one of {', '.join(_BASELINES)}")

        def request():
            return pb.AttributeRequest(
                recording_id=self.id,
                layer=str(layer) if layer is not None else "",
                unit=unit,
                class_label=label or "",
                method=_METHODS[method],
                cam_layer=str(cam_layer) if cam_layer is not None else "",
                steps=steps,
                baseline=_BASELINES[baseline],
                blur_sigma=blur_sigma,
                seed=seed,
            )

        def on_progress(p):
            if progress is not None:
                progress(p.done, p.total)

        return self._stream("Attribute", request, on_progress, _attribution, "attribution")

    def _stream(self, method: str, request, on_progress, convert, what: str, others=()):
        """A streamed call naming this recording (and `others`): progress
        events go to `on_progress`, the result through `convert`; Ctrl-C
        cancels it on the daemon; when a recording was evicted, they are
        sent again and the call retried once."""

        def run():
            call = getattr(self._client._stub, method)(request(), metadata=self._client._metadata)
            try:
                for event in call:
                    kind = event.WhichOneof("event")
                    if kind == "progress":
                        on_progress(event.progress)
                    elif kind == "result":
                        return convert(event.result)
            except KeyboardInterrupt:
                call.cancel()
                raise
            except grpc.RpcError as e:
                raise _error(e) from None
            raise FoveaError(grpc.StatusCode.INTERNAL, f"the {what} ended without a result")

        try:
            return run()
        except NotFound:
            for r in (self, *others):
                r._set(r._client._call("Record", pb.RecordRequest(image=r._image, label=r.label)))
            return run()

    def drop(self) -> bool:
        """Removes the recording from the daemon's cache."""
        return self._client._call("DropRecording", pb.DropRecordingRequest(recording_id=self.id)).dropped


# ------------------------------------------------------------------ display


def show(picture: Union[Picture, np.ndarray], title: Optional[str] = None):
    """Shows a picture: with matplotlib when installed (arrays in input
    space are rescaled for display), else as PNG in IPython."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        fig, ax = plt.subplots()
        if isinstance(picture, Picture):
            import io

            ax.imshow(plt.imread(io.BytesIO(picture.png), format="png"))
        else:
            a = np.asarray(picture, dtype=np.float32)
            span = float(np.abs(a).max()) or 1.0
            ax.imshow(np.clip(0.5 + a / (2 * span), 0, 1) if a.min() < 0 else a / span)
        ax.set_axis_off()
        if title:
            ax.set_title(title)
        return fig
    try:
        from IPython.display import Image, display
    except ImportError:
        raise RuntimeError("show() needs matplotlib or IPython (pip install matplotlib)") from None
    png = picture.png if isinstance(picture, Picture) else _png(
        np.clip(np.asarray(picture, dtype=np.float32) * 255, 0, 255).astype(np.uint8)
    )
    display(Image(data=png))
    return None
