"""Fovea's Python client: probe a convolutional network's neurons on a
running `fovead` and get `numpy` arrays back.

    import fovea
    client = fovea.connect("127.0.0.1:50051")
    rec = client.record("samples/chelsea.png")
    best = rec.top("13", k=1)[0]
    pictures = rec.reconstruct(("13", best.feature, best.y, best.x))

The generated protobuf messages and stub are `fovea.v1.probe_pb2` and
`fovea.v1.probe_pb2_grpc`; `fovea.v1` is the API's compatibility promise.
"""

from .client import (
    MODES,
    Activation,
    Box,
    Cancelled,
    Client,
    FoveaError,
    InvalidArgument,
    Layer,
    LayerStats,
    LinearRegion,
    Attribution,
    Maximization,
    MaximizeResult,
    Model,
    Neuron,
    NotFound,
    PatternAgreement,
    PatternComparison,
    Picture,
    Prediction,
    Progress,
    Recording,
    Reconstructions,
    RegionEnd,
    ResourceExhausted,
    Unauthenticated,
    UnitChange,
    Unavailable,
    connect,
    show,
)

try:
    from importlib.metadata import version as _version

    __version__ = _version("fovea-client")
except Exception:  # running from a source tree that was not installed
    __version__ = "unknown"

__all__ = [
    "MODES",
    "Activation",
    "Box",
    "Cancelled",
    "Client",
    "FoveaError",
    "InvalidArgument",
    "Layer",
    "LayerStats",
    "LinearRegion",
    "Attribution",
    "Maximization",
    "MaximizeResult",
    "Model",
    "Neuron",
    "NotFound",
    "PatternAgreement",
    "PatternComparison",
    "Picture",
    "Prediction",
    "Progress",
    "Recording",
    "Reconstructions",
    "RegionEnd",
    "ResourceExhausted",
    "Unauthenticated",
    "UnitChange",
    "Unavailable",
    "connect",
    "show",
]
