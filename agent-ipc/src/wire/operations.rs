//! Renewals, repairs and restores as clients see them: which operation and where it is.

use serde::{Deserialize, Serialize};

/// Which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Self-renewal of the signed-in card.
    Renew,
    /// RA repair of a holder's card.
    Repair,
    /// The card doctor writing the card's current certificate back from the service.
    Restore,
}

impl OperationKind {
    /// The kind's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Renew => "renew",
            OperationKind::Repair => "repair",
            OperationKind::Restore => "restore",
        }
    }
}

/// A renew, repair or restore and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationStatus {
    /// Its id.
    pub id: String,
    /// Renew, repair or restore.
    pub kind: OperationKind,
    /// The card it works on.
    pub serial: String,
    /// The step it is at (`started`, `key_generated`, `certificate_written`, `confirmed` …).
    pub step: String,
    /// The step in words.
    pub message: String,
    /// Whether it has finished.
    pub done: bool,
}
