//! One request read: checked and turned into a [`Call`], or the error to answer. Shared by every
//! transport (the socket's lines, the web bridge's WebSocket messages and HTTP calls).

use agent_ipc::{Call, ErrorCode, ErrorObject, Request, METHODS, PROTOCOL_VERSION};
use serde_json::Value;

/// What a transport serves of the protocol's methods: asked for each well-formed request before
/// its params are read (the web bridge serves fewer methods than the socket, and meters them).
pub trait Admission: Send + Sync + 'static {
    /// `Ok` to serve `method` (one of the protocol's [`METHODS`]), else the error to answer.
    fn admit(&mut self, method: &str) -> Result<(), ErrorObject>;
}

/// Every method, unmetered: the socket's admission.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit(&mut self, _method: &str) -> Result<(), ErrorObject> {
        Ok(())
    }
}

/// A request that is not served: the error, with the request's id when it had one.
#[derive(Debug)]
pub struct Refusal {
    /// The request's id, when it could be read.
    pub id: Option<u64>,
    /// What to answer.
    pub error: ErrorObject,
}

impl Refusal {
    fn new(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            error: ErrorObject::new(code, message),
        }
    }
}

/// Reads the request `line`: its id and call. `hello_done` says whether the connection has said
/// `hello` (before it, only `hello` is served).
pub fn parse_line(
    line: &str,
    hello_done: bool,
    admission: &mut dyn Admission,
) -> Result<(u64, Call), Refusal> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        Refusal::new(
            None,
            ErrorCode::BadRequest,
            format!("message is not valid JSON: {e}"),
        )
    })?;
    parse_value(value, hello_done, admission)
}

/// As [`parse_line`], for a request already read as JSON.
pub fn parse_value(
    value: Value,
    hello_done: bool,
    admission: &mut dyn Admission,
) -> Result<(u64, Call), Refusal> {
    let Some(object) = value.as_object() else {
        return Err(Refusal::new(
            None,
            ErrorCode::BadRequest,
            "a request is a JSON object",
        ));
    };
    let Some(id) = object.get("id").and_then(Value::as_u64) else {
        return Err(Refusal::new(
            None,
            ErrorCode::BadRequest,
            "a request needs an \"id\" (an unsigned integer)",
        ));
    };
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        return Err(Refusal::new(
            Some(id),
            ErrorCode::BadRequest,
            "a request needs a \"method\" (a string)",
        ));
    };
    if !hello_done && method != "hello" {
        return Err(Refusal::new(
            Some(id),
            ErrorCode::HelloRequired,
            format!(
                "the first request on a connection must be hello, e.g. \
                 {{\"id\":1,\"method\":\"hello\",\"params\":{{\"protocol\":{PROTOCOL_VERSION}}}}}"
            ),
        ));
    }
    let Some(&method) = METHODS.iter().find(|&&m| m == method) else {
        return Err(Refusal {
            id: Some(id),
            error: unknown_method(method),
        });
    };
    admission.admit(method).map_err(|error| Refusal {
        id: Some(id),
        error,
    })?;
    let request: Request = serde_json::from_value(without_empty_params(value)).map_err(|e| {
        Refusal::new(
            Some(id),
            ErrorCode::BadRequest,
            format!("bad params for {method}: {e}"),
        )
    })?;
    Ok((id, request.call))
}

/// The `unknown_method` error for `method` (shown cut to 64 characters), listing the methods.
pub fn unknown_method(method: &str) -> ErrorObject {
    let mut shown: String = method.chars().take(64).collect();
    if shown.len() < method.len() {
        shown.push('…');
    }
    ErrorObject::new(ErrorCode::UnknownMethod, format!("no method {shown:?}"))
        .with_data(serde_json::json!({ "methods": METHODS }))
}

/// Methods without parameters accept `"params":{}` or `"params":null` too.
fn without_empty_params(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        let empty = match object.get("params") {
            Some(Value::Null) => true,
            Some(Value::Object(params)) => params.is_empty(),
            _ => false,
        };
        let takes_params = matches!(
            object.get("method").and_then(Value::as_str),
            Some(
                "hello"
                    | "login"
                    | "select_role"
                    | "repair"
                    | "cancel_operation"
                    | "doctor"
                    | "card_details"
                    | "cancel_card"
            )
        );
        if empty && !takes_params {
            object.remove("params");
        }
    }
    value
}
