//! The one cache of sessions of generated graphs: built on first use, per
//! layer and kind, shared by every request. Graphs a request can vary
//! without bound (random weights per seed, objectives per layout) are few
//! at a time; the others live as long as the engine.

use crate::error::{Error, Result};
use crate::graphs::GraphKind;
use ort::session::Session;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A session several requests may run in turn.
pub(crate) type SharedSession = Arc<Mutex<Session>>;

/// Sessions of per-request graphs kept at once.
const RANDOM_SESSIONS: usize = 8;

#[derive(Default)]
pub struct SessionCache {
    sessions: Mutex<HashMap<(usize, GraphKind), SharedSession>>,
    random_order: Mutex<Vec<(usize, GraphKind)>>,
}

impl SessionCache {
    /// The session of `layer`'s graph of `kind`, made by `make` the first
    /// time (which builds the graph and opens a session on it).
    pub(crate) fn get_or_make(
        &self,
        layer: usize,
        kind: GraphKind,
        make: impl FnOnce() -> Result<Session>,
    ) -> Result<SharedSession> {
        let key = (layer, kind);
        if let Some(s) = self.sessions.lock().map_err(poisoned)?.get(&key) {
            return Ok(s.clone());
        }
        let session = Arc::new(Mutex::new(make()?));
        let mut sessions = self.sessions.lock().map_err(poisoned)?;
        if kind.per_request() {
            let mut order = self.random_order.lock().map_err(poisoned)?;
            order.push(key);
            if order.len() > RANDOM_SESSIONS {
                let old = order.remove(0);
                sessions.remove(&old);
            }
        }
        Ok(sessions.entry(key).or_insert(session).clone())
    }
}

pub(crate) fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::Runtime("a session lock was poisoned by an earlier failure".into())
}
