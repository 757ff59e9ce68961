//! Answers to the calls that need no connection: `status` and `readers` from the status the
//! session owner keeps, everything else from the owner itself.

use super::{AgentCall, AgentLink};
use agent_ipc::{Call, ErrorCode, ErrorObject};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Answers `call`. `hello` and `subscribe` belong to a connection: they are `not_supported`
/// here.
pub async fn answer(link: &AgentLink, call: Call) -> Result<Value, ErrorObject> {
    match call {
        Call::Status => to_json(&*link.status.borrow()),
        Call::Readers => to_json(&link.status.borrow().readers),
        Call::Hello(_) | Call::Subscribe => Err(ErrorObject::new(
            ErrorCode::NotSupported,
            format!("{} is served on a connection only", call.method()),
        )),
        call => {
            served(link, call.method())?;
            ask_owner(link.calls.clone(), call).await
        }
    }
}

/// `Ok` when the session owner serves `method` (it is among the capabilities).
pub(super) fn served(link: &AgentLink, method: &str) -> Result<(), ErrorObject> {
    if link.capabilities.iter().any(|c| c == method) {
        Ok(())
    } else {
        Err(ErrorObject::new(
            ErrorCode::NotSupported,
            format!("this agent does not serve {method} yet"),
        ))
    }
}

/// Hands `call` to the session owner and waits for its answer.
pub(super) async fn ask_owner(
    calls: mpsc::Sender<AgentCall>,
    call: Call,
) -> Result<Value, ErrorObject> {
    let (reply, answer) = oneshot::channel();
    match calls.send(AgentCall { call, reply }).await {
        Ok(()) => answer.await.unwrap_or_else(|_| Err(shutting_down())),
        Err(_) => Err(shutting_down()),
    }
}

/// `value` as JSON; an `internal` error if it cannot be encoded.
pub(super) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, ErrorObject> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a result");
        ErrorObject::new(ErrorCode::Internal, "the agent could not encode its result")
    })
}

/// The error of a call the agent stopped before answering.
pub(super) fn shutting_down() -> ErrorObject {
    ErrorObject::new(ErrorCode::ShuttingDown, "the agent is shutting down")
}
