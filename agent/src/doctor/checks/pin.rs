//! The passcode check.

use super::{check, Findings, NEEDS_RA, OK, SEE_RA, WARNING};
use crate::doctor::PIN_MAX_TRIES;
use agent_ipc::DoctorCheck;
use piv::PinStatus;

impl Findings<'_> {
    /// The passcode's tries left, as the card said before the doctor's prompt.
    pub(super) fn pin(&self) -> DoctorCheck {
        let reset = if self.proof_before.pin_verified() {
            " The correct passcode just entered set the count back."
        } else {
            ""
        };
        match self.first.pin {
            Some(PinStatus::Blocked) => {
                check("pin", NEEDS_RA, format!("The passcode is locked {SEE_RA}."))
            }
            Some(PinStatus::Verified) => check("pin", OK, "The passcode is verified on the card."),
            Some(PinStatus::NotVerified { tries_left }) if tries_left >= PIN_MAX_TRIES => check(
                "pin",
                OK,
                format!("The passcode has all its {PIN_MAX_TRIES} tries left."),
            ),
            Some(PinStatus::NotVerified { tries_left }) => check(
                "pin",
                WARNING,
                format!(
                    "A wrong passcode was entered: {tries_left} of {PIN_MAX_TRIES} tries are \
                     left before the card locks.{reset}"
                ),
            ),
            None => check(
                "pin",
                WARNING,
                "Not checked: the card does not say how many passcode tries are left.",
            ),
        }
    }
}
