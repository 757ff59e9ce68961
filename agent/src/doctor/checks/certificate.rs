//! The certificate check: whether the card holds its 9A certificate, and what heals it when
//! it does not (finishing a journaled renewal, or the service's copy written back).

use super::{check, Findings, HEALED, NEEDS_RA, OK, SEE_RA, WARNING};
use crate::doctor::facts::CertState;
use crate::doctor::healing::{Heal, Remedy};
use crate::doctor::key_proof::KeyProof;
use agent_ipc::{DoctorCheck, ErrorCode};

impl Findings<'_> {
    /// The card's 9A certificate: present, written back, or what would heal it.
    pub(super) fn certificate(&self) -> DoctorCheck {
        let problem = match &self.now.certificate {
            CertState::Present(_) => {
                return match (&self.first.certificate, self.healed, self.remedy) {
                    (CertState::Present(_), ..) => check(
                        "certificate",
                        OK,
                        "The card's certificate is present and readable.",
                    ),
                    (_, Heal::Done, Remedy::Restore) => check(
                        "certificate",
                        HEALED,
                        "The card's certificate was missing; it was written back from the Card \
                         Management Service's record.",
                    ),
                    (_, Heal::Done, _) => check(
                        "certificate",
                        HEALED,
                        "The card's certificate was missing; finishing its interrupted renewal \
                         put a new one on the card.",
                    ),
                    _ => check(
                        "certificate",
                        OK,
                        "The card's certificate is present and readable.",
                    ),
                };
            }
            CertState::Missing => "The card's certificate is missing".to_owned(),
            CertState::Unreadable(e) => format!("The card's certificate cannot be read ({e})"),
        };
        match self.remedy {
            Remedy::FinishRenewal => self.certificate_after_renewal(&problem),
            Remedy::Restore => self.certificate_to_restore(&problem),
            Remedy::Nothing => match self.service_copy {
                Some(Err(e)) if e.code == ErrorCode::CmsUnreachable => check(
                    "certificate",
                    WARNING,
                    format!(
                        "{problem}, and the Card Management Service, which holds a copy to write \
                         back, cannot be reached ({}): run the doctor again when it can.",
                        e.message
                    ),
                ),
                Some(Err(e)) => check(
                    "certificate",
                    NEEDS_RA,
                    format!(
                        "{problem}, and the Card Management Service gives no copy to write back \
                         ({}) {SEE_RA}.",
                        e.message
                    ),
                ),
                _ => check("certificate", NEEDS_RA, format!("{problem} {SEE_RA}.")),
            },
        }
    }

    /// A certificate that the service's record can replace.
    fn certificate_to_restore(&self, problem: &str) -> DoctorCheck {
        let message = match (self.heal_failure(), self.proof, self.healed) {
            (Some(reason), ..) => format!(
                "{problem}; writing it back from the Card Management Service's record failed: \
                 {reason}"
            ),
            (None, KeyProof::Mismatch, _) => {
                return check(
                    "certificate",
                    NEEDS_RA,
                    format!(
                        "{problem}, and the Card Management Service's record of it is not for \
                         the key the card holds {SEE_RA}."
                    ),
                )
            }
            (None, _, Heal::NoPin) | (None, KeyProof::NotChecked(_), _) => format!(
                "{problem}. The Card Management Service holds a copy; writing it back needs the \
                 passcode: run the doctor again with healing."
            ),
            _ => format!(
                "{problem}. The Card Management Service holds a copy: run the doctor with \
                 healing to write it back."
            ),
        };
        check("certificate", WARNING, message)
    }

    /// A certificate that finishing the journaled renewal replaces.
    fn certificate_after_renewal(&self, problem: &str) -> DoctorCheck {
        let message = match (self.healed, self.heal_failure()) {
            (_, Some(reason)) => format!(
                "{problem}. Finishing the card's interrupted renewal, which puts a new one on, \
                 failed: {reason}"
            ),
            (Heal::NoPin, _) => format!(
                "{problem}. The card's interrupted renewal puts a new one on; it needs the \
                 passcode to finish: run the doctor again with healing."
            ),
            _ => format!(
                "{problem}. The card's interrupted renewal puts a new one on: run the doctor \
                 with healing to finish it."
            ),
        };
        match self.still_journaled {
            Some(_) => check("certificate", WARNING, message),
            None => check("certificate", NEEDS_RA, format!("{message} {SEE_RA}.")),
        }
    }
}
