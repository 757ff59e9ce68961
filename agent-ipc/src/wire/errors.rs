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

/// The closed set of error codes (documented in `PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message is not valid JSON or not a valid request (bad params, missing id).
    BadRequest,
    /// The line is longer than [`MAX_MESSAGE_BYTES`].
    MessageTooLarge,
    /// No such method.
    UnknownMethod,
    /// The first message on a connection must be `hello`.
    HelloRequired,
    /// The client speaks another protocol version.
    ProtocolMismatch,
    /// The peer is not the user the agent runs for.
    PermissionDenied,
    /// The agent serves as many connections as it will.
    TooManyConnections,
    /// This agent does not serve the method (yet).
    NotSupported,
    /// The agent is shutting down.
    ShuttingDown,
    /// A subscriber read events too slowly and was dropped.
    SubscriberOverflow,
    /// Another login or operation is running.
    Busy,
    /// The smartcard service (pcscd) is not running.
    PcscUnavailable,
    /// No such reader, or no reader at all.
    NoReader,
    /// No card in the reader.
    NoCard,
    /// The card is not a PIV card the agent can sign in with.
    NotPiv,
    /// The card was removed during the operation.
    CardRemoved,
    /// The card answered something the agent cannot use.
    CardError,
    /// The PIN was wrong; `data.tries_left` says how many tries are left.
    WrongPin,
    /// The PIN is blocked; the Registration Authority can unblock it.
    PinBlocked,
    /// The holder cancelled the PIN prompt.
    PinCancelled,
    /// The PIN prompt (pinentry) could not be shown.
    PinentryFailed,
    /// The new PIN breaks the PIN policy; the message names the rule.
    PinPolicy,
    /// The card's certificate has expired; the Registration Authority can repair it.
    CertificateExpired,
    /// The card has been cancelled at the Card Management Service.
    CardCancelled,
    /// The Card Management Service cannot be reached.
    CmsUnreachable,
    /// The Card Management Service refused; `data.cms_code` carries its code.
    CmsRefused,
    /// The method needs a signed-in session.
    NoSession,
    /// No such role for the signed-in user.
    UnknownRole,
    /// The selected role does not permit this (repair needs activity B0267).
    RoleNotPermitted,
    /// No such operation.
    UnknownOperation,
    /// Something inside the agent went wrong; its log has the details.
    Internal,
}

impl ErrorCode {
    /// The code's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::ProtocolMismatch => "protocol_mismatch",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::NotSupported => "not_supported",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::SubscriberOverflow => "subscriber_overflow",
            ErrorCode::Busy => "busy",
            ErrorCode::PcscUnavailable => "pcsc_unavailable",
            ErrorCode::NoReader => "no_reader",
            ErrorCode::NoCard => "no_card",
            ErrorCode::NotPiv => "not_piv",
            ErrorCode::CardRemoved => "card_removed",
            ErrorCode::CardError => "card_error",
            ErrorCode::WrongPin => "wrong_pin",
            ErrorCode::PinBlocked => "pin_blocked",
            ErrorCode::PinCancelled => "pin_cancelled",
            ErrorCode::PinentryFailed => "pinentry_failed",
            ErrorCode::PinPolicy => "pin_policy",
            ErrorCode::CertificateExpired => "certificate_expired",
            ErrorCode::CardCancelled => "card_cancelled",
            ErrorCode::CmsUnreachable => "cms_unreachable",
            ErrorCode::CmsRefused => "cms_refused",
            ErrorCode::NoSession => "no_session",
            ErrorCode::UnknownRole => "unknown_role",
            ErrorCode::RoleNotPermitted => "role_not_permitted",
            ErrorCode::UnknownOperation => "unknown_operation",
            ErrorCode::Internal => "internal",
        }
    }
}
