//! Renewals, repairs and restores as clients see them: which operation and where it is.

use serde::{Deserialize, Serialize};
use std::fmt;

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

/// Where a renew, repair or restore is. A renewal goes `started`, `management_key`,
/// `key_generated`, `certificate_issued`, `certificate_written`, `confirmed`; a repair also
/// `pin_set` and `puk_rotated`; a restore `started`, `management_key`, `certificate_written`,
/// `confirmed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStep {
    /// Not started yet: the agent waits for the passcode.
    Starting,
    /// Started; the card is not changed yet.
    Started,
    /// The holder's new passcode is set (repair).
    PinSet,
    /// The card's unblocking key is rotated (repair).
    PukRotated,
    /// The service unlocked the card (its management key).
    ManagementKey,
    /// A new key was generated on the card.
    KeyGenerated,
    /// The service issued the new certificate.
    CertificateIssued,
    /// The certificate is written to the card.
    CertificateWritten,
    /// The service confirmed it: done.
    Confirmed,
    /// Cancelled before the card was changed: done, the card is as it was.
    Cancelled,
}

impl OperationStep {
    /// The step's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStep::Starting => "starting",
            OperationStep::Started => "started",
            OperationStep::PinSet => "pin_set",
            OperationStep::PukRotated => "puk_rotated",
            OperationStep::ManagementKey => "management_key",
            OperationStep::KeyGenerated => "key_generated",
            OperationStep::CertificateIssued => "certificate_issued",
            OperationStep::CertificateWritten => "certificate_written",
            OperationStep::Confirmed => "confirmed",
            OperationStep::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OperationStep {
    /// The wire name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// The step it is at.
    pub step: OperationStep,
    /// The step in words.
    pub message: String,
    /// Whether it has finished.
    pub done: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_is_the_wire_name() {
        use OperationStep::*;
        let steps = [
            Starting,
            Started,
            PinSet,
            PukRotated,
            ManagementKey,
            KeyGenerated,
            CertificateIssued,
            CertificateWritten,
            Confirmed,
            Cancelled,
        ];
        for step in steps {
            assert_eq!(serde_json::json!(step.as_str()), serde_json::json!(step));
        }
        for kind in [
            OperationKind::Renew,
            OperationKind::Repair,
            OperationKind::Restore,
        ] {
            assert_eq!(serde_json::json!(kind.as_str()), serde_json::json!(kind));
        }
    }
}
