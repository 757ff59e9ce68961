//! Which of the socket API's methods the bridge serves, and the per-connection rate: the
//! bridge's [`Admission`] for the shared request code.

use super::limits::{retry_after_secs, TokenBucket};
use crate::ipc::Admission;
use agent_ipc::{ErrorCode, ErrorObject};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The methods served over HTTP (`POST /v1/call/{method}`). Not `cancel_card`: cancelling a
/// card is for the holder at the workstation, not for a web page.
pub const CALL_METHODS: [&str; 12] = [
    "status",
    "readers",
    "login",
    "logout",
    "roles",
    "select_role",
    "ticket",
    "card_details",
    "renew",
    "repair",
    "cancel_operation",
    "doctor",
];

/// The methods served over the WebSocket: those of HTTP, and the connection's own.
pub fn socket_serves(method: &str) -> bool {
    matches!(method, "hello" | "subscribe") || CALL_METHODS.contains(&method)
}

/// The `not_supported` error for a method the bridge does not serve.
pub fn not_served(method: &str) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::NotSupported,
        format!("{method} is not served over the web bridge; use the local socket"),
    )
}

/// The `busy` error of a connection over its rate, with the wait.
pub fn over_rate(retry_after_secs: u64) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::Busy,
        format!("too many requests on this connection; try again in {retry_after_secs} s"),
    )
    .with_data(serde_json::json!({ "retry_after_secs": retry_after_secs }))
}

/// A connection's token bucket, shared by its HTTP requests and its WebSocket messages.
pub type SharedBucket = Arc<Mutex<TokenBucket>>;

/// Takes a token from `bucket`: `Err` with the seconds to wait when there is none.
pub fn take_token(bucket: &SharedBucket) -> Result<(), u64> {
    // A poisoned lock only means another request panicked mid-take; the count is still usable.
    let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
    bucket.take(Instant::now()).map_err(retry_after_secs)
}

/// HTTP calls: the allow-list (the rate is taken per request before the call is read).
#[derive(Debug, Clone, Copy)]
pub struct CallAdmission;

impl Admission for CallAdmission {
    fn admit(&mut self, method: &str) -> Result<(), ErrorObject> {
        if CALL_METHODS.contains(&method) {
            Ok(())
        } else {
            Err(not_served(method))
        }
    }
}

/// WebSocket messages: the allow-list and the connection's rate.
#[derive(Debug, Clone)]
pub struct SocketAdmission {
    /// The connection's bucket.
    pub bucket: SharedBucket,
}

impl Admission for SocketAdmission {
    fn admit(&mut self, method: &str) -> Result<(), ErrorObject> {
        if !socket_serves(method) {
            return Err(not_served(method));
        }
        take_token(&self.bucket).map_err(over_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_card_and_the_connection_methods_are_not_calls() {
        let mut calls = CallAdmission;
        for method in CALL_METHODS {
            assert_eq!(calls.admit(method), Ok(()), "{method}");
        }
        for method in ["cancel_card", "hello", "subscribe"] {
            let err = calls.admit(method).unwrap_err();
            assert_eq!(err.code, ErrorCode::NotSupported, "{method}");
        }
    }

    #[test]
    fn the_socket_serves_hello_and_subscribe_but_not_cancel_card() {
        let bucket = Arc::new(Mutex::new(TokenBucket::new(1, 100, Instant::now())));
        let mut socket = SocketAdmission { bucket };
        for method in ["hello", "subscribe", "status", "login", "ticket"] {
            assert_eq!(socket.admit(method), Ok(()), "{method}");
        }
        assert_eq!(
            socket.admit("cancel_card").unwrap_err().code,
            ErrorCode::NotSupported
        );
    }

    #[test]
    fn the_socket_is_metered() {
        let bucket = Arc::new(Mutex::new(TokenBucket::new(1, 2, Instant::now())));
        let mut socket = SocketAdmission { bucket };
        assert_eq!(socket.admit("status"), Ok(()));
        assert_eq!(socket.admit("status"), Ok(()));
        let err = socket.admit("status").unwrap_err();
        assert_eq!(err.code, ErrorCode::Busy);
        assert_eq!(err.data, Some(serde_json::json!({ "retry_after_secs": 1 })));
    }
}
