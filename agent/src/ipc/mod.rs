//! The socket server: a per-user socket in a 0700 directory, the peer's UID checked on every
//! connection, a connection cap, one task per connection, events to subscribers through a
//! bounded queue each.

use agent_ipc::{Call, ErrorObject, Event, Status};
use std::path::Path;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// One call the server hands to the session owner, with where to send the answer.
#[derive(Debug)]
pub struct AgentCall {
    /// The call (never `hello`, `status`, `readers` or `subscribe`: the server answers those).
    pub call: Call,
    /// The result (the method's result type, as JSON) or the error.
    pub reply: oneshot::Sender<Result<serde_json::Value, ErrorObject>>,
}

/// What the server needs from the rest of the agent.
#[derive(Debug, Clone)]
pub struct AgentLink {
    /// Calls for the session owner.
    pub calls: mpsc::Sender<AgentCall>,
    /// The current status, kept up to date by the session owner.
    pub status: watch::Receiver<Status>,
    /// Events; each subscriber holds a receiver (bounded: a lagging one is dropped).
    pub events: broadcast::Sender<Event>,
    /// The methods served, for `hello`.
    pub capabilities: Vec<String>,
}

/// Limits of the server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// At most this many connections at once.
    pub max_connections: usize,
}

/// A bound socket, ready to serve.
#[derive(Debug)]
pub struct Listener {}

/// Creates the socket's directory (0700, owned by us), removes a stale socket (not one a live
/// agent answers on: that is an error), and binds.
pub fn bind(path: &Path) -> std::io::Result<Listener> {
    let _ = path;
    unimplemented!("ipc helper")
}

/// Serves connections until `shutdown` is cancelled, then closes every connection and returns.
pub async fn serve(
    listener: Listener,
    link: AgentLink,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let _ = (listener, link, limits, shutdown);
    unimplemented!("ipc helper")
}
