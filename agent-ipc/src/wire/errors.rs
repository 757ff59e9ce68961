//! Errors on the wire: the error object and the closed set of codes scripts match on.

#[cfg(doc)]
use super::MAX_MESSAGE_BYTES;
use serde::{Deserialize, Serialize};

/// An error on the wire: a stable code, a message for people, and details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorObject {
    /// The stable code scripts match on.
    pub code: ErrorCode,
    /// What happened and what to do, for the person reading it.
    pub message: String,
    /// Details, such as `{"tries_left":2}` for `wrong_pin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ErrorObject {
    /// An error with `code` and `message` and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with details.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

wire_enum::wire_enum! {
    /// The closed set of error codes (documented in `PROTOCOL.md`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ErrorCode {
        /// The message is not valid JSON or not a valid request (bad params, missing id).
        BadRequest = "bad_request",
        /// The line is longer than [`MAX_MESSAGE_BYTES`].
        MessageTooLarge = "message_too_large",
        /// No such method.
        UnknownMethod = "unknown_method",
        /// The first message on a connection must be `hello`.
        HelloRequired = "hello_required",
        /// The client speaks another protocol version.
        ProtocolMismatch = "protocol_mismatch",
        /// The peer is not the user the agent runs for.
        PermissionDenied = "permission_denied",
        /// The agent serves as many connections as it will.
        TooManyConnections = "too_many_connections",
        /// This agent does not serve the method (yet).
        NotSupported = "not_supported",
        /// The agent is shutting down.
        ShuttingDown = "shutting_down",
        /// A subscriber read events too slowly and was dropped.
        SubscriberOverflow = "subscriber_overflow",
        /// Another login or operation is running.
        Busy = "busy",
        /// The smartcard service (pcscd) is not running.
        PcscUnavailable = "pcsc_unavailable",
        /// No such reader, or no reader at all.
        NoReader = "no_reader",
        /// No card in the reader.
        NoCard = "no_card",
        /// The card is not a PIV card the agent can sign in with.
        NotPiv = "not_piv",
        /// The card was removed during the operation.
        CardRemoved = "card_removed",
        /// The card answered something the agent cannot use.
        CardError = "card_error",
        /// The PIN was wrong; `data.tries_left` says how many tries are left.
        WrongPin = "wrong_pin",
        /// The PIN is blocked; the Registration Authority can unblock it.
        PinBlocked = "pin_blocked",
        /// The holder cancelled the PIN prompt.
        PinCancelled = "pin_cancelled",
        /// The PIN prompt (pinentry) could not be shown.
        PinentryFailed = "pinentry_failed",
        /// The new PIN breaks the PIN policy; the message names the rule.
        PinPolicy = "pin_policy",
        /// The card's certificate has expired; the Registration Authority can repair it.
        CertificateExpired = "certificate_expired",
        /// The card has been cancelled at the Card Management Service.
        CardCancelled = "card_cancelled",
        /// The Card Management Service cannot be reached.
        CmsUnreachable = "cms_unreachable",
        /// The Card Management Service refused; `data.cms_code` carries its code.
        CmsRefused = "cms_refused",
        /// The method needs a signed-in session.
        NoSession = "no_session",
        /// No such role for the signed-in user.
        UnknownRole = "unknown_role",
        /// The selected role does not permit this (repair needs activity B0267).
        RoleNotPermitted = "role_not_permitted",
        /// No such operation.
        UnknownOperation = "unknown_operation",
        /// Something inside the agent went wrong; its log has the details.
        Internal = "internal",
    }
}
