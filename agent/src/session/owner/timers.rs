//! The clocks the owner keeps while a session lasts, apart from the owner so they can be
//! driven by paused time in tests: the CMS session's deadline, the re-check of the session
//! card's certificate (only when `session.certificate_check_secs` is set), and the daily repeat
//! of the expiry warning. The owner's run loop waits
//! on [`SessionClocks::next_due`] beside its channels and acts on what it returns.

use std::time::Duration;
use tokio::time::Instant;

/// How often the expiry warning repeats while the session lasts.
pub(super) const EXPIRY_WARNING_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The clock that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// The CMS session expired: the session ends.
    SessionExpired,
    /// Time to re-read the session card's certificate.
    CertificateCheck,
    /// Time to repeat the expiry warning.
    ExpiryWarning,
}

/// The certificate re-check and the expiry warning's repeat, each unset while it does not run.
#[derive(Debug, Default)]
pub(super) struct SessionClocks {
    certificate_check: Option<Instant>,
    expiry_warning: Option<Instant>,
}

impl SessionClocks {
    /// Schedules the next certificate re-check `period_secs` from now, only while the session's
    /// card is `live` in its reader and the check is configured (a period of 0 turns it off).
    pub(super) fn check_certificate_in(&mut self, period_secs: u64, live: bool) {
        self.certificate_check =
            (live && period_secs > 0).then(|| Instant::now() + Duration::from_secs(period_secs));
    }

    /// No certificate re-check until one is scheduled again.
    pub(super) fn stop_certificate_check(&mut self) {
        self.certificate_check = None;
    }

    /// The expiry warning was given now: it repeats a day later.
    pub(super) fn warned(&mut self) {
        self.expiry_warning = Some(Instant::now() + EXPIRY_WARNING_EVERY);
    }

    /// No expiry warning until one is given again.
    pub(super) fn stop_expiry_warning(&mut self) {
        self.expiry_warning = None;
    }

    /// Both clocks stop (the session ended).
    pub(super) fn stop(&mut self) {
        *self = Self::default();
    }

    /// Waits for the first clock to run out, the session's `deadline` among them; never returns
    /// while none is set.
    pub(super) async fn next_due(&self, deadline: Option<Instant>) -> Due {
        // An unset clock sleeps forever, so the branches need no preconditions (and with all
        // three unset this waits instead of finding every branch disabled).
        tokio::select! {
            () = sleep_until(deadline) => Due::SessionExpired,
            () = sleep_until(self.certificate_check) => Due::CertificateCheck,
            () = sleep_until(self.expiry_warning) => Due::ExpiryWarning,
        }
    }
}

/// When a CMS session that expires at `expires_at` (Unix seconds) ends, as of `now_unix`: at
/// once when that is past.
pub(super) fn session_deadline(expires_at: i64, now_unix: i64) -> Instant {
    let left = expires_at.saturating_sub(now_unix).max(0) as u64;
    Instant::now() + Duration::from_secs(left)
}

/// Whether a certificate with `days_left` is within the warning window of `warning_days`.
pub(super) fn expiry_warning_due(days_left: i64, warning_days: u32) -> bool {
    days_left <= i64::from(warning_days)
}

/// Sleeps until `deadline`, or forever without one.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long `clocks` wait for their next clock, and which one it is.
    async fn wait(clocks: &SessionClocks, deadline: Option<Instant>) -> (Duration, Due) {
        let start = Instant::now();
        let due = clocks.next_due(deadline).await;
        (start.elapsed(), due)
    }

    /// Whether nothing runs out within `within`.
    async fn quiet(clocks: &SessionClocks, deadline: Option<Instant>, within: Duration) -> bool {
        tokio::time::timeout(within, clocks.next_due(deadline))
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn the_certificate_is_re_checked_every_period_while_the_card_is_in() {
        let mut clocks = SessionClocks::default();
        clocks.check_certificate_in(30, true);
        assert_eq!(
            wait(&clocks, None).await,
            (Duration::from_secs(30), Due::CertificateCheck)
        );
        // The owner schedules the next one after each read.
        clocks.check_certificate_in(30, true);
        assert_eq!(
            wait(&clocks, None).await,
            (Duration::from_secs(30), Due::CertificateCheck)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_certificate_check_without_the_card_or_with_period_zero() {
        let mut clocks = SessionClocks::default();
        clocks.check_certificate_in(30, false);
        assert!(quiet(&clocks, None, Duration::from_secs(3600)).await);
        clocks.check_certificate_in(0, true);
        assert!(quiet(&clocks, None, Duration::from_secs(3600)).await);
        clocks.check_certificate_in(30, true);
        clocks.stop_certificate_check();
        assert!(quiet(&clocks, None, Duration::from_secs(3600)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_expiry_warning_repeats_once_a_day_between_certificate_checks() {
        let mut clocks = SessionClocks::default();
        clocks.warned();
        clocks.check_certificate_in(1000, true);
        let start = Instant::now();
        let mut checks = 0;
        loop {
            match clocks.next_due(None).await {
                Due::CertificateCheck => {
                    checks += 1;
                    clocks.check_certificate_in(1000, true);
                }
                Due::ExpiryWarning => break,
                Due::SessionExpired => panic!("no session deadline was set"),
            }
        }
        assert_eq!(start.elapsed(), EXPIRY_WARNING_EVERY);
        assert_eq!(checks, 86);
        // Renewed (or ended): no more warnings.
        clocks.stop_expiry_warning();
        clocks.stop_certificate_check();
        assert!(quiet(&clocks, None, 2 * EXPIRY_WARNING_EVERY).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_session_ends_at_the_cms_deadline_before_later_clocks() {
        let mut clocks = SessionClocks::default();
        clocks.warned();
        clocks.check_certificate_in(120, true);
        let deadline = session_deadline(1_000 + 90, 1_000);
        assert_eq!(
            wait(&clocks, Some(deadline)).await,
            (Duration::from_secs(90), Due::SessionExpired)
        );
        // A session already past its deadline ends at once.
        let past = session_deadline(1_000, 5_000);
        assert_eq!(
            wait(&clocks, Some(past)).await,
            (Duration::ZERO, Due::SessionExpired)
        );
        clocks.stop();
        assert!(quiet(&clocks, None, 2 * EXPIRY_WARNING_EVERY).await);
    }

    #[test]
    fn the_warning_window_includes_its_last_day() {
        assert!(expiry_warning_due(90, 90));
        assert!(expiry_warning_due(0, 90));
        assert!(expiry_warning_due(-1, 90));
        assert!(!expiry_warning_due(91, 90));
    }
}
