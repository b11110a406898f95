//! One log line per RPC, through `tower-http`'s trace layer: each call runs
//! in an `rpc` span with a request id and its method; the line carries the
//! gRPC status and the latency in milliseconds (a number, so logs can be
//! filtered on it). A call that fails before answering is logged when its
//! headers go out (a trailers-only answer); any other call when its
//! trailers do, so a stream is logged when it ends, with its duration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tower_http::classify::{GrpcErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnEos, OnResponse, TraceLayer};
use tracing::Span;

/// The trace layer of the server.
pub type RpcLogLayer =
    TraceLayer<SharedClassifier<GrpcErrorsAsFailures>, RpcSpan, (), Answered, (), Ended, ()>;

pub fn rpc_log_layer() -> RpcLogLayer {
    TraceLayer::new_for_grpc()
        .make_span_with(RpcSpan)
        .on_request(())
        .on_response(Answered)
        .on_body_chunk(())
        .on_eos(Ended)
        .on_failure(())
}

/// The span of one call: `rpc{id=.. method=..}`.
#[derive(Clone, Copy)]
pub struct RpcSpan;

impl<B> MakeSpan<B> for RpcSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        tracing::info_span!(
            "rpc",
            id = NEXT.fetch_add(1, Ordering::Relaxed),
            method = %request.uri().path(),
            latency_ms = tracing::field::Empty,
        )
    }
}

/// The answer's headers: a trailers-only answer (an error) is logged here.
#[derive(Clone, Copy)]
pub struct Answered;

impl<B> OnResponse<B> for Answered {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        span.record("latency_ms", millis(latency));
        if let Some(code) = grpc_status(response.headers()) {
            log(code, None);
        }
    }
}

/// The end of the answer's body: its trailers hold the status.
#[derive(Clone, Copy)]
pub struct Ended;

impl OnEos for Ended {
    fn on_eos(self, trailers: Option<&HeaderMap>, stream: Duration, _: &Span) {
        if let Some(code) = trailers.and_then(grpc_status) {
            log(code, Some(stream));
        }
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(code))
}

fn log(code: tonic::Code, stream: Option<Duration>) {
    let stream_ms = stream.map(millis);
    if code == tonic::Code::Ok {
        tracing::info!(status = ?code, stream_ms, "rpc");
    } else {
        tracing::warn!(status = ?code, stream_ms, "rpc");
    }
}

/// Milliseconds rounded to 0.1.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}
