//! The unfinished-operation check: what the journal holds for the card.

use super::{check, Findings, HEALED, NEEDS_RA, OK, WARNING};
use crate::doctor::facts::CertState;
use crate::doctor::healing::Heal;
use agent_ipc::{DoctorCheck, OperationKind};

impl Findings<'_> {
    /// A renewal or repair left unfinished in the journal, and what finishes it.
    pub(super) fn unfinished(&self) -> DoctorCheck {
        const NAME: &str = "unfinished_operation";
        let Some(entry) = self.journaled else {
            return match &self.first.serial {
                Some(_) => check(NAME, OK, "No renewal or repair is left unfinished."),
                None => check(
                    NAME,
                    WARNING,
                    "Not checked: the card's serial number cannot be read.",
                ),
            };
        };
        if entry.kind == OperationKind::Repair {
            return check(
                NAME,
                NEEDS_RA,
                "An interrupted repair: the Registration Authority finishes it, with the card in \
                 a second reader.",
            );
        }
        match (self.healed, self.still_journaled) {
            (Heal::Done, _) => check(NAME, HEALED, "The interrupted renewal is finished."),
            (Heal::Failed(reason), Some(_)) => check(
                NAME,
                WARNING,
                format!(
                    "An interrupted renewal; finishing it failed: {reason}. It is tried again at \
                     the next sign-in."
                ),
            ),
            (Heal::Failed(reason), None) => check(
                NAME,
                NEEDS_RA,
                format!("An interrupted renewal could not be finished: {reason}"),
            ),
            (Heal::NoPin, _) => check(
                NAME,
                WARNING,
                "An interrupted renewal; it was not finished because the passcode was not \
                 given.",
            ),
            (Heal::NotTried, _) if !matches!(self.now.certificate, CertState::Present(_)) => check(
                NAME,
                WARNING,
                "An interrupted renewal; the card cannot sign in without its certificate, \
                     so run the doctor with healing to finish it.",
            ),
            (Heal::NotTried, _) => check(
                NAME,
                WARNING,
                "An interrupted renewal; it finishes at the next sign-in.",
            ),
        }
    }
}
