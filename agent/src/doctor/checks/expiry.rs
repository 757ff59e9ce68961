//! The expiry check.

use super::{check, Findings, NEEDS_RA, OK, WARNING};
use crate::card::CardCertificate;
use crate::doctor::facts::certificate_of;
use crate::doctor::DoctorContext;
use agent_ipc::DoctorCheck;

impl Findings<'_> {
    /// The certificate's expiry: expired, within the warning window, or valid.
    pub(super) fn expiry(&self, ctx: &DoctorContext) -> DoctorCheck {
        let Some(certificate) =
            certificate_of(&self.now.certificate).and_then(CardCertificate::from_certificate)
        else {
            return check(
                "expiry",
                WARNING,
                "Not checked: the card holds no readable certificate.",
            );
        };
        let expiry = certificate.expiry(crate::time::now());
        if expiry.expired {
            return check("expiry", NEEDS_RA, crate::cms::EXPIRED_MESSAGE);
        }
        let days = match expiry.days_left {
            0 => "today".to_owned(),
            1 => "in 1 day".to_owned(),
            n => format!("in {n} days"),
        };
        if expiry.days_left <= i64::from(ctx.warning_days) {
            check(
                "expiry",
                WARNING,
                format!(
                    "The card expires {days} ({}): renew it while signed in.",
                    expiry.expires_on
                ),
            )
        } else {
            check(
                "expiry",
                OK,
                format!("The card is valid until {}.", expiry.expires_on),
            )
        }
    }
}
