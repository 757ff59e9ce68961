//! What the agent sends back: a reply (result or error) to each request, the envelope that
//! tells replies from events, and the results of the connection's own methods.

use super::{ErrorObject, Event};
use serde::{Deserialize, Serialize};

/// Result of `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloResult {
    /// The protocol version the agent speaks.
    pub protocol: u32,
    /// The agent's version.
    pub agent_version: String,
    /// The methods this agent serves (a method not listed answers `not_supported`).
    pub capabilities: Vec<String>,
}
/// Result of `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// Always true.
    pub subscribed: bool,
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id; none when the request was too malformed to carry one.
    pub id: Option<u64>,
    /// The result or the error.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Success, with the method's result.
    Result(serde_json::Value),
    /// Failure.
    Error(ErrorObject),
}
/// Anything the agent sends: a reply or an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerMessage {
    /// An event (it has an `event` member).
    Event(Event),
    /// A reply (it has an `id` member).
    Reply(Reply),
}
