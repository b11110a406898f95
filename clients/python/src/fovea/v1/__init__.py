"""Generated protobuf and gRPC code for the `fovea.v1` API."""
