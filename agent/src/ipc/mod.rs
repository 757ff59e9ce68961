//! The socket server: a per-user socket in a 0700 directory, the peer's UID checked on every
//! connection, a connection cap, one task per connection, events to subscribers through a
//! bounded queue each.
//!
//! `endpoint` binds the socket and tells who a peer is (the platform's part), `server` accepts
//! and admits connections, `connection` speaks the protocol on one of them over a `transport`,
//! reading each request with `request` and answering the stateless calls with `answer`. The web
//! bridge (`crate::bridge`) serves its WebSocket through the same connection code.

use agent_ipc::{Call, ErrorObject, Event, Status};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

mod answer;
mod connection;
mod endpoint;
mod request;
mod server;
mod transport;

pub use answer::answer;
pub use connection::run as serve_connection;
pub use endpoint::{bind, from_systemd, Listener};
pub use request::{parse_value, unknown_method, Admission, AdmitAll, Refusal};
pub use server::serve;
pub use transport::{Inbound, LineSink, LineSource};

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
    /// The methods served, for `hello`. A method handed to the session owner that is not
    /// listed here is answered `not_supported` by the server without reaching the owner.
    pub capabilities: Vec<String>,
}

/// Limits of the server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// At most this many connections at once.
    pub max_connections: usize,
    /// A connection that has not said `hello` this long after it was accepted is closed
    /// (zero: no deadline).
    pub hello_timeout: Duration,
    /// A connection that is not subscribed, has no request running and has sent nothing for
    /// this long is closed (zero: never).
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    /// 256 connections, 10 s to say `hello`, 5 min idle.
    fn default() -> Self {
        Self {
            max_connections: 256,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}
