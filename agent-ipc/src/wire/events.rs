//! Events: what subscribers are told, in the order it happened.

use super::{
    CardStatus, ErrorObject, OperationStatus, Role, SessionEndReason, SessionState, SessionStatus,
};
use serde::{Deserialize, Serialize};

/// An event, sent to subscribers in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// A reader was plugged in (or appeared when pcscd came back).
    ReaderAdded {
        /// The reader.
        reader: String,
    },
    /// A reader was unplugged.
    ReaderRemoved {
        /// The reader.
        reader: String,
    },
    /// A card was inserted and identified.
    CardInserted {
        /// The reader.
        reader: String,
        /// The card.
        card: CardStatus,
    },
    /// A card was removed.
    CardRemoved {
        /// The reader.
        reader: String,
        /// The card's serial, when it was known.
        serial: Option<String>,
    },
    /// pcscd stopped; the agent reconnects by itself.
    PcscUnavailable {
        /// Why.
        message: String,
    },
    /// pcscd is back.
    PcscAvailable,
    /// The session moved to another state.
    SessionState {
        /// The new state.
        state: SessionState,
    },
    /// A sign-in failed (wrong PIN, blocked, expired, refused …).
    LoginFailed {
        /// The reader.
        reader: String,
        /// The card's serial.
        serial: Option<String>,
        /// Why.
        error: ErrorObject,
    },
    /// A session started.
    SessionStarted {
        /// The session.
        session: SessionStatus,
    },
    /// The session ended.
    SessionEnded {
        /// Why.
        reason: SessionEndReason,
        /// The reader it was bound to.
        reader: Option<String>,
        /// The card it was bound to.
        serial: Option<String>,
    },
    /// The session's role changed.
    RoleChanged {
        /// The selected role.
        role: Role,
    },
    /// The card's certificates expire soon (or have expired).
    ExpiryWarning {
        /// The card.
        serial: String,
        /// Days until expiry (negative once expired).
        days_left: i64,
        /// The expiry date, `YYYY-MM-DD`.
        expires_on: String,
    },
    /// A renew or repair moved on a step.
    OperationProgress {
        /// The operation.
        operation: OperationStatus,
    },
    /// A renew or repair finished (successfully or not).
    OperationResult {
        /// The operation.
        operation: OperationStatus,
        /// Why it failed, if it did.
        error: Option<ErrorObject>,
    },
}

impl Event {
    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ReaderAdded { .. } => "reader_added",
            Event::ReaderRemoved { .. } => "reader_removed",
            Event::CardInserted { .. } => "card_inserted",
            Event::CardRemoved { .. } => "card_removed",
            Event::PcscUnavailable { .. } => "pcsc_unavailable",
            Event::PcscAvailable => "pcsc_available",
            Event::SessionState { .. } => "session_state",
            Event::LoginFailed { .. } => "login_failed",
            Event::SessionStarted { .. } => "session_started",
            Event::SessionEnded { .. } => "session_ended",
            Event::RoleChanged { .. } => "role_changed",
            Event::ExpiryWarning { .. } => "expiry_warning",
            Event::OperationProgress { .. } => "operation_progress",
            Event::OperationResult { .. } => "operation_result",
        }
    }
}
