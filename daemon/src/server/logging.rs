//! One log line per RPC, with its status and latency.

use std::pin::Pin;

/// One log line per RPC: method, gRPC status and latency.
#[derive(Clone, Copy)]
pub struct RpcLogLayer;

impl<S> tower::Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;
    fn layer(&self, inner: S) -> RpcLog<S> {
        RpcLog { inner }
    }
}

#[derive(Clone)]
pub struct RpcLog<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<tonic::codegen::http::Request<B>> for RpcLog<S>
where
    S: tower::Service<
            tonic::codegen::http::Request<B>,
            Response = tonic::codegen::http::Response<R>,
        >,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let started = std::time::Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            // A number, rounded to 0.1 ms, so logs can be filtered on it.
            let ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
            match &res {
                // Errors travel in the headers of a trailers-only answer;
                // otherwise the call succeeded (its status follows in trailers).
                Ok(r) => {
                    let code = r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0);
                    let status = tonic::Code::from_i32(code);
                    if code == 0 {
                        tracing::info!(%method, status = ?status, latency_ms = ms, "rpc");
                    } else {
                        tracing::warn!(%method, status = ?status, latency_ms = ms, "rpc");
                    }
                }
                Err(e) => {
                    tracing::warn!(%method, latency_ms = ms, "rpc failed: {e}")
                }
            }
            res
        })
    }
}
