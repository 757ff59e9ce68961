//! The key check: the card's key against its certificate, or against the service's copy of a
//! certificate the card lost.

use super::{check, Findings, HEALED, NEEDS_RA, OK, SEE_RA, WARNING};
use crate::doctor::facts::CertState;
use crate::doctor::healing::{Heal, Remedy};
use crate::doctor::key_proof::KeyProof;
use agent_ipc::{DoctorCheck, OperationKind};

impl Findings<'_> {
    /// Whether the card's key matches its certificate (or the service's copy of it).
    pub(super) fn key(&self) -> DoctorCheck {
        const NAME: &str = "key_matches_certificate";
        let mismatch_before = *self.proof_before == KeyProof::Mismatch;
        // A card without its certificate is proved against the service's copy.
        let against_copy = self.remedy == Remedy::Restore
            && !matches!(self.now.certificate, CertState::Present(_));
        match self.proof {
            KeyProof::Matches if against_copy => check(
                NAME,
                OK,
                "The card's key matches the Card Management Service's record of its certificate.",
            ),
            KeyProof::Mismatch if against_copy => check(
                NAME,
                NEEDS_RA,
                format!(
                    "The card's key does not match the Card Management Service's record of its \
                     certificate, so the card cannot sign in {SEE_RA}."
                ),
            ),
            KeyProof::Matches if mismatch_before && matches!(self.healed, Heal::Done) => check(
                NAME,
                HEALED,
                "The card's key did not match its certificate; finishing its interrupted \
                 renewal put a matching key and certificate on the card.",
            ),
            KeyProof::Matches => check(NAME, OK, "The card's key matches its certificate."),
            KeyProof::PinOnly => check(
                NAME,
                WARNING,
                "Not checked: the card holds no certificate to check its key against.",
            ),
            KeyProof::NotChecked(reason) => check(NAME, WARNING, format!("Not checked: {reason}.")),
            KeyProof::WrongPin(left) => check(
                NAME,
                WARNING,
                format!(
                    "Not checked: the passcode was wrong ({left} {} left before the card locks).",
                    if *left == 1 { "try" } else { "tries" }
                ),
            ),
            KeyProof::Blocked => check(NAME, WARNING, "Not checked: the passcode is locked."),
            KeyProof::Mismatch => {
                let problem = "The card's key does not match its certificate, so the card cannot \
                               sign in";
                match (self.still_journaled, self.heal_failure()) {
                    (Some(e), Some(reason)) if e.kind == OperationKind::Renew => check(
                        NAME,
                        WARNING,
                        format!(
                            "{problem} until its interrupted renewal finishes; finishing it \
                             failed: {reason}. It is tried again at the next sign-in."
                        ),
                    ),
                    (Some(e), None) if e.kind == OperationKind::Renew => check(
                        NAME,
                        WARNING,
                        format!(
                            "{problem} until its interrupted renewal finishes; it finishes at \
                             the next sign-in."
                        ),
                    ),
                    _ => check(NAME, NEEDS_RA, format!("{problem} {SEE_RA}.")),
                }
            }
        }
    }
}
