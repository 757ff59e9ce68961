//! Renewals, repairs and restores as clients see them: which operation and where it is.

use serde::{Deserialize, Serialize};

wire_enum::wire_enum! {
    /// Which operation.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OperationKind {
        /// Self-renewal of the signed-in card.
        Renew = "renew",
        /// RA repair of a holder's card.
        Repair = "repair",
        /// The card doctor writing the card's current certificate back from the service.
        Restore = "restore",
    }
}

wire_enum::wire_enum! {
    /// Where a renew, repair or restore is. A renewal goes `started`, `management_key`,
    /// `key_generated`, `certificate_issued`, `certificate_written`, `confirmed`; a repair also
    /// `pin_set` and `puk_rotated`; a restore `started`, `management_key`, `certificate_written`,
    /// `confirmed`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OperationStep {
        /// Not started yet: the agent waits for the passcode.
        Starting = "starting",
        /// Started; the card is not changed yet.
        Started = "started",
        /// The holder's new passcode is set (repair).
        PinSet = "pin_set",
        /// The card's unblocking key is rotated (repair).
        PukRotated = "puk_rotated",
        /// The service unlocked the card (its management key).
        ManagementKey = "management_key",
        /// A new key was generated on the card.
        KeyGenerated = "key_generated",
        /// The service issued the new certificate.
        CertificateIssued = "certificate_issued",
        /// The certificate is written to the card.
        CertificateWritten = "certificate_written",
        /// The service confirmed it: done.
        Confirmed = "confirmed",
        /// Cancelled before the card was changed: done, the card is as it was.
        Cancelled = "cancelled",
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
        for step in OperationStep::ALL {
            assert_eq!(serde_json::json!(step.as_str()), serde_json::json!(step));
        }
        for kind in OperationKind::ALL {
            assert_eq!(serde_json::json!(kind.as_str()), serde_json::json!(kind));
        }
    }
}
