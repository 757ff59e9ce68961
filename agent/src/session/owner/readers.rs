//! The readers' view: pcscd coming and going, readers added and removed, cards inserted,
//! removed, reset or swapped. Every card that comes or goes gets a new reader generation, so a
//! report from a task started for an earlier card is recognised and dropped.
//!
//! Rules kept here: a session survives a pcscd restart only if its very card (serial and
//! certificate) is back in its reader with no renewal of it left unfinished; another card in
//! the session's reader, or its certificate changed by anyone else, ends the session; a removed
//! session card applies the configured removal action (`logout`, `lock`, `keep`), also when the
//! removal was only seen in the reader's event counter.

use super::{Aftermath, ReaderSlot, SessionOwner};
use crate::card::{CardEvent, CardIdentity, ReaderSnapshot};
use crate::config::RemovalAction;
use crate::session::login::SignedIn;
use crate::session::now;
use agent_ipc::{ErrorCode, ErrorObject, Event, OperationKind, PcscStatus, SessionEndReason};
use piv::CardSerial;

impl SessionOwner {
    /// A card event from the PC/SC watcher.
    pub(super) fn on_card_event(&mut self, event: CardEvent) {
        tracing::debug!(?event, "card event");
        match event {
            CardEvent::Available(snapshot) => self.on_available(snapshot),
            CardEvent::Unavailable(message) => {
                tracing::warn!("pcscd is unavailable: {message}");
                self.pcsc = PcscStatus {
                    available: false,
                    message: Some(message.clone()),
                };
                self.readers.clear();
                self.cancel_login(ErrorObject::new(ErrorCode::PcscUnavailable, &message));
                self.pending.push(Event::PcscUnavailable { message });
            }
            CardEvent::ReaderAdded(reader) => {
                self.readers.entry(reader.clone()).or_insert(ReaderSlot {
                    card: None,
                    generation: 0,
                });
                self.pending.push(Event::ReaderAdded { reader });
            }
            CardEvent::ReaderRemoved(reader) => {
                self.card_left(&reader, SessionEndReason::ReaderRemoved);
                self.readers.remove(&reader);
                self.pending.push(Event::ReaderRemoved { reader });
            }
            CardEvent::Inserted(card) => self.card_arrived(card),
            CardEvent::Removed { reader } => self.card_left(&reader, SessionEndReason::CardRemoved),
            CardEvent::Changed(card) => self.card_changed(card),
        }
    }

    /// pcscd answers (at start or back after a restart): the snapshot replaces the readers,
    /// and a session survives only if its very card is still in its reader.
    pub(super) fn on_available(&mut self, snapshot: Vec<ReaderSnapshot>) {
        let was_down = self.pcsc.message.as_deref() != Some("connecting to pcscd");
        self.pcsc = PcscStatus {
            available: true,
            message: None,
        };
        if was_down {
            self.pending.push(Event::PcscAvailable);
        }
        let known: Vec<String> = self.readers.keys().cloned().collect();
        for reader in known {
            if !snapshot.iter().any(|s| s.reader == reader) {
                self.card_left(&reader, SessionEndReason::ReaderRemoved);
                self.readers.remove(&reader);
                self.pending.push(Event::ReaderRemoved { reader });
            }
        }
        if let Some(session) = &self.session {
            let reader = session.signed_in.reader.clone();
            let present = snapshot
                .iter()
                .find(|s| s.reader == reader)
                .and_then(|s| s.card.as_ref());
            match present {
                Some(card) if same_card(&session.signed_in, card) => {}
                Some(_) => self.end_session(SessionEndReason::CardChanged),
                // The readers were forgotten while pcscd was away: the session's card is gone.
                None => self.session_card_left(&reader, SessionEndReason::CardRemoved),
            }
        }
        for ReaderSnapshot { reader, card } in snapshot {
            if !self.readers.contains_key(&reader) {
                self.readers.insert(
                    reader.clone(),
                    ReaderSlot {
                        card: None,
                        generation: 0,
                    },
                );
                self.pending.push(Event::ReaderAdded {
                    reader: reader.clone(),
                });
            }
            match card {
                Some(card) => {
                    let unchanged = self.readers[&reader]
                        .card
                        .as_ref()
                        .is_some_and(|known| known == &card);
                    if !unchanged {
                        self.card_arrived(card);
                    }
                }
                None => self.card_left(&reader, SessionEndReason::CardRemoved),
            }
        }
    }

    /// A card came into its reader (replacing any card there): it gets a new generation; the
    /// session's card coming back keeps its session unless its renewal was interrupted
    /// meanwhile; then it may sign in and an interrupted repair may resume.
    pub(super) fn card_arrived(&mut self, card: CardIdentity) {
        let reader = card.reader.clone();
        if self.readers.get(&reader).is_some_and(|s| s.card.is_some()) {
            self.card_left(&reader, SessionEndReason::CardChanged);
        }
        let generation = self.new_generation();
        let shown = self.card_status(&card, now());
        self.pending.push(Event::CardInserted {
            reader: reader.clone(),
            card: shown,
        });
        let unfinished = self.renewal_journaled(&card);
        if let Some(session) = &mut self.session {
            if session.signed_in.reader == reader {
                if !same_card(&session.signed_in, &card) {
                    self.end_session(SessionEndReason::CardChanged);
                } else if unfinished {
                    // The session's card is back (under the `keep` removal action, or after
                    // pcscd went away) with its renewal interrupted meanwhile: the session
                    // ends, and the sign-in that follows finishes the renewal first.
                    tracing::info!(
                        serial = %session.signed_in.serial,
                        "the card is back with its renewal unfinished: signing in again"
                    );
                    self.end_session(SessionEndReason::CardRemoved);
                } else {
                    // The card came back under the `keep` removal action, or after pcscd went
                    // away.
                    session.signed_in.card_present = true;
                    session.generation = generation;
                }
            }
        }
        self.readers.insert(
            reader.clone(),
            ReaderSlot {
                card: Some(card),
                generation,
            },
        );
        self.schedule_certificate_check();
        self.auto_login(&reader);
        self.resume_repair();
    }

    /// Whether the journal holds an unfinished renewal of `card`.
    pub(super) fn renewal_journaled(&self, card: &CardIdentity) -> bool {
        card.serial.is_some_and(|serial| {
            self.engine
                .journal
                .get(&serial.to_string())
                .is_some_and(|e| e.kind == OperationKind::Renew)
        })
    }

    /// The card left `reader`: a sign-in with it is cancelled, an operation not yet writing it
    /// stops, and the session's card applies the removal action.
    pub(super) fn card_left(&mut self, reader: &str, reason: SessionEndReason) {
        let Some(slot) = self.readers.get_mut(reader) else {
            return;
        };
        let Some(card) = slot.card.take() else {
            return;
        };
        slot.generation = 0;
        self.pending.push(Event::CardRemoved {
            reader: reader.to_owned(),
            serial: card.serial.map(|s| s.to_string()),
        });
        if self.login.as_ref().is_some_and(|l| l.reader == reader) {
            self.cancel_login(ErrorObject::new(
                ErrorCode::CardRemoved,
                "the card was removed during sign-in",
            ));
        }
        if self.ended_with_card_in.as_deref() == Some(reader) {
            self.ended_with_card_in = None;
        }
        // An operation still waiting to change this card (a new passcode being chosen) stops;
        // one writing it reports the pull itself and finishes at the next insertion.
        if let Some(run) = self
            .operation
            .as_ref()
            .filter(|r| r.reader == reader && !r.card_touched())
        {
            run.cancel.cancel();
        }
        self.session_card_left(reader, reason);
    }

    /// The session's card left `reader` (if the session is there): the removal action applies.
    pub(super) fn session_card_left(&mut self, reader: &str, reason: SessionEndReason) {
        let Some(session) = &mut self.session else {
            return;
        };
        if session.signed_in.reader != reader {
            return;
        }
        match (reason, self.config.session.removal_action) {
            (SessionEndReason::CardChanged, _) => self.end_session(reason),
            (_, RemovalAction::Keep) => {
                session.signed_in.card_present = false;
                session.generation = 0;
            }
            (_, RemovalAction::Lock) => {
                self.end_session(reason);
                self.aftermath.push(Aftermath::LockScreen);
            }
            (_, RemovalAction::Logout) => self.end_session(reason),
        }
    }

    /// The reader's event counter moved with no removal seen: pcscd counts only insertions and
    /// removals, so the card was pulled and a card (maybe the same one) put in between two
    /// looks. It is taken as that removal and that insertion: the removal action applies, and
    /// another card or another certificate ends the session.
    pub(super) fn card_changed(&mut self, card: CardIdentity) {
        let reader = card.reader.clone();
        self.card_left(&reader, SessionEndReason::CardRemoved);
        self.card_arrived(card);
    }

    /// A reader generation no card had before, for a card that just came.
    pub(super) fn new_generation(&mut self) -> u64 {
        self.last_generation += 1;
        self.last_generation
    }

    /// The card in `reader`, if any.
    pub(super) fn card_in(&self, reader: &str) -> Option<&CardIdentity> {
        self.readers.get(reader).and_then(|s| s.card.as_ref())
    }

    /// The reader `named` if it exists, else the only reader with a card that `wanted`
    /// accepts; `none` and `several` say what to do otherwise. The one place a reader is
    /// chosen for a caller who named none: signing in, the doctor and the RA's holder card.
    pub(super) fn pick_reader(
        &self,
        named: Option<String>,
        wanted: impl Fn(&str, &CardIdentity) -> bool,
        none: &str,
        several: &str,
    ) -> Result<String, ErrorObject> {
        if let Some(reader) = named {
            return match self.readers.contains_key(&reader) {
                true => Ok(reader),
                false => Err(ErrorObject::new(
                    ErrorCode::NoReader,
                    format!("there is no reader called {reader:?}"),
                )),
            };
        }
        let found: Vec<&String> = self
            .readers
            .iter()
            .filter(|(r, s)| s.card.as_ref().is_some_and(|c| wanted(r, c)))
            .map(|(r, _)| r)
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ErrorObject::new(ErrorCode::NoCard, none)),
            _ => Err(ErrorObject::new(ErrorCode::BadRequest, several)),
        }
    }

    /// The serial of the card in `reader`, or why there is none.
    pub(super) fn serial_in(&self, reader: &str) -> Result<CardSerial, ErrorObject> {
        let card = self.card_in(reader).ok_or_else(|| {
            ErrorObject::new(ErrorCode::NoCard, format!("there is no card in {reader}"))
        })?;
        card.serial.ok_or_else(|| {
            ErrorObject::new(
                ErrorCode::NotPiv,
                format!("the card in {reader} has no readable serial"),
            )
        })
    }
}

/// Whether `card` is the session's very card: the same serial and the same certificate.
pub(super) fn same_card(signed_in: &SignedIn, card: &CardIdentity) -> bool {
    card.serial == Some(signed_in.serial)
        && card
            .certificate
            .as_ref()
            .is_some_and(|c| c.fingerprint == signed_in.fingerprint)
}
