//! The steps of a run, each reported to the owner as a progress event in the holder's words.

use agent_ipc::{OperationKind, OperationStep as Step};

/// What the holder reads at `step` of an operation of `kind`.
pub(super) fn message(step: Step, kind: OperationKind) -> &'static str {
    match (step, kind) {
        (Step::Starting, _) => "Waiting for the passcode",
        (Step::Started, OperationKind::Renew) => "Renewal started",
        (Step::Started, OperationKind::Repair) => "Repair started",
        (Step::Started, OperationKind::Restore) => "Restoring the card's certificate",
        (Step::CertificateWritten, OperationKind::Restore) => {
            "The card's certificate is written back"
        }
        (Step::Confirmed, OperationKind::Restore) => "Certificate restored",
        (Step::PinSet, _) => "The holder's new passcode is set",
        (Step::PukRotated, _) => "The card's unblocking key is rotated",
        (Step::ManagementKey, _) => "The service unlocked the card",
        (Step::KeyGenerated, _) => "New key generated on the card",
        (Step::CertificateIssued, _) => "The service issued the new certificate",
        (Step::CertificateWritten, _) => "New certificate written to the card",
        (Step::Confirmed, OperationKind::Renew) => "Renewed",
        (Step::Confirmed, OperationKind::Repair) => "Repaired",
        (Step::Cancelled, _) => "Cancelled before the card was changed; the card is as it was",
    }
}
