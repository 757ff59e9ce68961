//! What the owner publishes: the status snapshot (readers, cards, the session) on a watch
//! channel, and the events of each turn after it, in order.

use super::calls::role;
use super::readers::same_card;
use super::SessionOwner;
use crate::card::CardIdentity;
use crate::session::now;
use agent_ipc::{CardStatus, Event, ReaderStatus, SessionState, SessionStatus, Status, User};

impl SessionOwner {
    /// The session as the socket API shows it: signed in, else a sign-in's state, else `ended`
    /// where a session just ended with its card in, else whether a PIV card is present.
    pub(super) fn session_status(&self) -> SessionStatus {
        if let Some(session) = &self.session {
            let s = &session.signed_in;
            return SessionStatus {
                state: SessionState::SignedIn,
                reader: Some(s.reader.clone()),
                serial: Some(s.serial.to_string()),
                user: Some(User {
                    id: s.session.user.id.clone(),
                    name: s.session.user.name.clone(),
                }),
                role: s
                    .session
                    .selected_role
                    .and_then(|id| s.session.roles.iter().find(|r| r.id == id))
                    .map(role),
                signed_in_at: Some(s.signed_in_at),
                expires_at: Some(s.session.expires_at),
            };
        }
        let (state, reader) = if let Some(run) = &self.login {
            (run.state, Some(run.reader.clone()))
        } else if let Some(reader) = &self.ended_with_card_in {
            (SessionState::Ended, Some(reader.clone()))
        } else if let Some((reader, _)) = self
            .readers
            .iter()
            .find(|(_, s)| s.card.as_ref().is_some_and(|c| c.piv))
        {
            (SessionState::CardPresent, Some(reader.clone()))
        } else {
            (SessionState::NoCard, None)
        };
        let serial = reader
            .as_deref()
            .and_then(|r| self.card_in(r))
            .and_then(|c| c.serial)
            .map(|s| s.to_string());
        SessionStatus {
            reader,
            serial,
            ..SessionStatus::idle(state)
        }
    }

    /// A card as the socket API shows it, as of `now`: the session's card names its holder
    /// as the service's session does (by the name it records now, whatever the certificate
    /// says).
    pub(super) fn card_status(&self, card: &CardIdentity, now: i64) -> CardStatus {
        let mut status = card.status(now);
        if let Ok(signed_in) = self.signed_in() {
            if same_card(signed_in, card) {
                let user = &signed_in.session.user;
                status.holder = Some(user.name.clone());
                status.holder_id = Some(user.id.clone());
            }
        }
        status
    }

    /// The whole status: agent, pcscd, readers with their cards, the session.
    pub(super) fn snapshot(&self) -> Status {
        let now = now();
        Status {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            pcsc: self.pcsc.clone(),
            readers: self
                .readers
                .iter()
                .map(|(name, slot)| ReaderStatus {
                    name: name.clone(),
                    card: slot.card.as_ref().map(|c| self.card_status(c, now)),
                })
                .collect(),
            session: self.session_status(),
        }
    }

    /// Publishes the status, then the events of this turn in order (so a subscriber reacting
    /// to an event reads a status that already includes it).
    pub(super) fn flush(&mut self) {
        let status = self.snapshot();
        let state = status.session.state;
        self.status.send_replace(status);
        if state != self.last_state {
            self.last_state = state;
            self.pending.push(Event::SessionState { state });
        }
        for event in self.pending.drain(..) {
            let _ = self.events.send(event);
        }
    }
}
