//! The session once signed in: how it ends (with the audit record, the event, and the logout
//! at the service in the background) and the clocks that run while it lasts — the CMS session's
//! deadline, the daily expiry warning, and the certificate re-check when one is configured.
//!
//! The session's card is not touched on a clock by default: a card swapped (even too quickly
//! for the removal to be seen) moves the reader's event counter, and the watcher re-identifies
//! it at once. A certificate rewritten in place by another program is noticed at the agent's next
//! use of the card — the doctor's look at it ([`SessionOwner::verify_session_card`]) or the next
//! sign-in — or by the re-check every `session.certificate_check_secs` (0, off, by default).

use super::timers::{expiry_warning_due, session_deadline};
use super::{Aftermath, SessionOwner, TaskReport};
use crate::card::{fingerprint, with_card};
use crate::session::now;
use agent_ipc::{Event, SessionEndReason};
use tokio::time::Instant;

impl SessionOwner {
    /// Ends the session now; the logout at the service (none for a session the service already
    /// expired) starts once the end is published. The clocks stop; a session ended by logout, a
    /// changed certificate or the service's deadline, with its card still in, leaves the status
    /// `ended` for that reader.
    pub(super) fn end_session(&mut self, reason: SessionEndReason) {
        let Some(session) = self.session.take() else {
            return;
        };
        let s = session.signed_in;
        // Recorded once the event is out: subscribers hear of the end before the audit log.
        self.aftermath.push(Aftermath::SessionEnded {
            serial: s.serial.to_string(),
            reason,
        });
        self.pending.push(Event::SessionEnded {
            reason,
            reader: Some(s.reader.clone()),
            serial: Some(s.serial.to_string()),
        });
        self.clocks.stop();
        let card_still_in = self.card_in(&s.reader).is_some() && s.card_present;
        if card_still_in
            && matches!(
                reason,
                SessionEndReason::Logout
                    | SessionEndReason::CertificateChanged
                    | SessionEndReason::CmsSessionExpired
            )
        {
            self.ended_with_card_in = Some(s.reader.clone());
        }
        if reason != SessionEndReason::CmsSessionExpired {
            self.aftermath.push(Aftermath::Logout(s.client));
        }
    }

    /// Warns when the session card's certificate expires within the warning window: at
    /// sign-in, then once a day while the session lasts.
    pub(super) fn warn_expiry(&mut self) {
        self.clocks.stop_expiry_warning();
        let Some(session) = &self.session else {
            return;
        };
        let s = &session.signed_in;
        let Some(certificate) = self.card_in(&s.reader).and_then(|c| c.certificate.as_ref()) else {
            return;
        };
        let expiry = certificate.expiry(now());
        if !expiry_warning_due(expiry.days_left, self.config.expiry.warning_days) {
            return;
        }
        tracing::info!(serial = %s.serial, days_left = expiry.days_left, "expiry warning");
        self.pending.push(Event::ExpiryWarning {
            serial: s.serial.to_string(),
            days_left: expiry.days_left,
            expires_on: expiry.expires_on,
        });
        self.clocks.warned();
    }

    /// When the service's session ends (as it last said), if there is one.
    pub(super) fn session_deadline(&self) -> Option<Instant> {
        let expires_at = self.session.as_ref()?.signed_in.session.expires_at;
        Some(session_deadline(expires_at, now()))
    }

    /// Schedules the next certificate re-check (every `certificate_check_secs`, when that is not
    /// 0) while the session's card is in its reader.
    pub(super) fn schedule_certificate_check(&mut self) {
        let period = self.config.session.certificate_check_secs;
        let live = self
            .session
            .as_ref()
            .is_some_and(|s| s.signed_in.card_present);
        self.clocks.check_certificate_in(period, live);
    }

    /// The agent just used the card of `reader` as of `generation` for something else: when it is
    /// the session's card, its certificate is re-read so a change made by anyone else ends the
    /// session now rather than at the next sign-in.
    pub(super) fn verify_session_card(&mut self, reader: &str, generation: u64) {
        let is_session_card = self.session.as_ref().is_some_and(|s| {
            s.signed_in.reader == reader && s.generation == generation && s.signed_in.card_present
        });
        if is_session_card {
            self.check_certificate();
        }
    }

    /// Re-reads the session card's certificate to notice a change made by anyone else; skipped
    /// (and scheduled again) while the agent's own operation or doctor works on that card.
    pub(super) fn check_certificate(&mut self) {
        self.clocks.stop_certificate_check();
        let Some(session) = &self.session else {
            return;
        };
        let reader = session.signed_in.reader.clone();
        if self.operation.as_ref().is_some_and(|o| o.reader == reader)
            || self.doctor.as_ref() == Some(&reader)
        {
            // The agent's own renewal is changing the certificate: checked once it is done.
            return self.schedule_certificate_check();
        }
        let generation = session.generation;
        let reports = self.reports_tx.clone();
        tokio::task::spawn_blocking(move || {
            let fingerprint = with_card(&reader, |tx| {
                tx.read_certificate(piv::consts::key::AUTHENTICATION)
                    .map(|c| fingerprint(c.der()))
            });
            let _ = reports.send(TaskReport::CertificateRead {
                generation,
                fingerprint,
            });
        });
    }

    /// The re-read certificate of the session of `generation`: a different or missing one ends
    /// the session; an unreadable one (a busy card) is checked again later.
    pub(super) fn on_certificate_read(
        &mut self,
        generation: u64,
        read: Result<[u8; 32], piv::Error>,
    ) {
        let Some(session) = &self.session else {
            return;
        };
        if session.generation != generation || !session.signed_in.card_present {
            return;
        }
        let changed = match read {
            Ok(fingerprint) => fingerprint != session.signed_in.fingerprint,
            Err(piv::Error::NotFound) => true,
            Err(e) => {
                tracing::debug!("re-reading the session card's certificate: {e}");
                false
            }
        };
        if changed {
            self.end_session(SessionEndReason::CertificateChanged);
        } else {
            self.schedule_certificate_check();
        }
    }
}
