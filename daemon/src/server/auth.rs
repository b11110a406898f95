//! The bearer token every RPC must carry when the daemon has one.

use crate::server::convert;
use std::sync::Arc;
use tonic::{Request, Status};

/// Checks the bearer token in constant time; never logs it.
#[derive(Clone)]
pub struct TokenCheck(pub Option<Arc<str>>);

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        use subtle::ConstantTimeEq;
        let Some(expected) = &self.0 else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| convert::unauthenticated("a bearer token is required"))?;
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(req)
        } else {
            Err(convert::unauthenticated("the token is not valid"))
        }
    }
}
