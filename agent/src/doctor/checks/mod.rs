//! The report's checks, in plain words, each judged from the findings of one examination:
//! `ok`, `healed`, `warning` (worth knowing, or not checked) or `needs_ra`. One file per check
//! that needs more than a few lines.

mod certificate;
mod chain;
mod expiry;
mod key;
mod pin;
mod unfinished;

use super::facts::Facts;
use super::healing::{Heal, Remedy};
use super::key_proof::KeyProof;
use super::DoctorContext;
use crate::operation::journal::Entry;
use agent_ipc::{CheckOutcome, DoctorCheck, ErrorObject};
use piv::Certificate;

/// Everything the checks are judged from.
pub(super) struct Findings<'a> {
    /// What healing can mend.
    pub(super) remedy: Remedy,
    /// The service's copy of a certificate the card lost, or why there is none.
    pub(super) service_copy: Option<&'a Result<Certificate, ErrorObject>>,
    /// The card before healing.
    pub(super) first: &'a Facts,
    /// The card now (after healing, if it healed).
    pub(super) now: &'a Facts,
    /// The journal's entry for the card before healing.
    pub(super) journaled: Option<&'a Entry>,
    /// The journal's entry for the card after healing.
    pub(super) still_journaled: Option<&'a Entry>,
    /// The key proof before healing.
    pub(super) proof_before: &'a KeyProof,
    /// The key proof now (after healing, if it healed).
    pub(super) proof: &'a KeyProof,
    /// What healing did.
    pub(super) healed: &'a Heal,
}

/// One check's outcome.
pub(super) fn check(name: &str, outcome: CheckOutcome, message: impl Into<String>) -> DoctorCheck {
    DoctorCheck {
        name: name.into(),
        outcome,
        message: message.into(),
    }
}

/// All is well.
pub(super) const OK: CheckOutcome = CheckOutcome::Ok;
/// Healing mended it.
pub(super) const HEALED: CheckOutcome = CheckOutcome::Healed;
/// Worth knowing, or not checked.
pub(super) const WARNING: CheckOutcome = CheckOutcome::Warning;
/// Only the Registration Authority can put it right.
pub(super) const NEEDS_RA: CheckOutcome = CheckOutcome::NeedsRa;

/// Appended to what only the Registration Authority can put right.
pub(super) const SEE_RA: &str = "— contact your Registration Authority";

impl Findings<'_> {
    /// The report's checks, in order, judged from the findings.
    pub(super) fn checks(&self, ctx: &DoctorContext) -> Vec<DoctorCheck> {
        if !self.now.piv {
            let mut checks = vec![check(
                "applet",
                NEEDS_RA,
                format!("The card does not answer as a smartcard this agent can use {SEE_RA}."),
            )];
            for name in [
                "chuid",
                "certificate",
                "certificate_chain",
                "expiry",
                "pin",
                "key_matches_certificate",
                "unfinished_operation",
            ] {
                checks.push(check(
                    name,
                    WARNING,
                    "Not checked: the card does not answer as a smartcard.",
                ));
            }
            return checks;
        }
        vec![
            check("applet", OK, "The card answers as a PIV smartcard."),
            self.chuid(),
            self.certificate(),
            self.chain(ctx),
            self.expiry(ctx),
            self.pin(),
            self.key(),
            self.unfinished(),
        ]
    }

    /// Why healing failed, if it did.
    fn heal_failure(&self) -> Option<&str> {
        match self.healed {
            Heal::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    /// The card's identity (its serial).
    fn chuid(&self) -> DoctorCheck {
        match &self.now.serial {
            Some(serial) => check(
                "chuid",
                OK,
                format!("The card's identity reads correctly (serial {serial})."),
            ),
            None => check(
                "chuid",
                NEEDS_RA,
                format!("The card's identity (its serial number) cannot be read {SEE_RA}."),
            ),
        }
    }
}
