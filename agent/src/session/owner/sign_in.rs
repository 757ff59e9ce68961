//! Signing in: on insertion (when configured) or when asked, in a task of its own that reports
//! each step back to the owner, so a pulled card cancels it at once.
//!
//! Rules kept here: a card that cannot sign in (not PIV, expired, its repair unfinished, its
//! certificate lost) is refused before any PIN prompt; a wrong PIN is never retried by the
//! agent (the error carries the tries left); one sign-in runs at a time; a sign-in overtaken by
//! its card leaving logs its new session out at once.

use super::{json, spawn_logout, ReplyTo, Session, SessionOwner, TaskReport};
use crate::audit::AuditEvent;
use crate::errors::certificate_lost;
use crate::session::login::{self, LoginStep, SignedIn};
use crate::session::now;
use agent_ipc::{ErrorCode, ErrorObject, Event, OperationKind, SessionState};
use piv::CardSerial;
use tokio::task::JoinHandle;

/// A sign-in running in its own task, for the card in `reader` as of `generation`.
#[derive(Debug)]
pub(super) struct LoginRun {
    pub(super) reader: String,
    pub(super) serial: Option<CardSerial>,
    pub(super) generation: u64,
    pub(super) state: SessionState,
    pub(super) waiters: Vec<ReplyTo>,
    pub(super) task: JoinHandle<()>,
}

impl SessionOwner {
    /// Signs in on insertion, when configured and nothing else runs: not a card that cannot
    /// (a card that cannot sign in is reported as a failed sign-in), not a card that lost its
    /// certificate with an operation journaled (the doctor finishes it), not a card an operation
    /// is working on (it signs in once the operation lets go).
    pub(super) fn auto_login(&mut self, reader: &str) {
        if !self.config.session.login_on_insert
            || self.session.is_some()
            || self.login.is_some()
            || self.doctor.is_some()
        {
            return;
        }
        let Some(card) = self.card_in(reader) else {
            return;
        };
        let serial = card.serial.map(|s| s.to_string()).unwrap_or_default();
        let journaled = self.engine.journal.get(&serial).is_some();
        // Without its certificate the card cannot sign in; the doctor finishes what is journaled.
        if !card.piv || (card.certificate.is_none() && journaled) {
            return;
        }
        if self.operation.as_ref().is_some_and(|o| o.reader == reader) {
            // Signed in once the operation on this card has let go of it.
            return;
        }
        if let Err(error) = self.check_usable(reader) {
            let serial = card.serial;
            self.login_failed(reader, serial, &error);
            return;
        }
        self.start_login(reader, None);
    }

    /// Whether the card in `reader` can sign in at all (an expired certificate cannot).
    pub(super) fn check_usable(&self, reader: &str) -> Result<(), ErrorObject> {
        let card = self.card_in(reader).ok_or_else(|| {
            ErrorObject::new(ErrorCode::NoCard, format!("there is no card in {reader}"))
        })?;
        if !card.piv {
            return Err(ErrorObject::new(
                ErrorCode::NotPiv,
                format!(
                    "the card in {reader} ({}) is not a PIV card this agent can sign in with",
                    card.card_type
                ),
            ));
        }
        let serial = card.serial.map(|s| s.to_string()).unwrap_or_default();
        let journaled = self.engine.journal.get(&serial).map(|e| e.kind);
        if journaled == Some(OperationKind::Repair) {
            return Err(ErrorObject::new(
                ErrorCode::CardError,
                format!(
                    "the repair of card {serial} is unfinished: it finishes when the Registration \
                     Authority is signed in here with the card in a second reader"
                ),
            ));
        }
        if card.status(now()).expired && journaled.is_none() {
            return Err(ErrorObject::new(
                ErrorCode::CertificateExpired,
                crate::cms::EXPIRED_MESSAGE,
            ));
        }
        if card.certificate.is_none() && journaled.is_none() {
            return Err(certificate_lost(&serial));
        }
        Ok(())
    }

    /// `login`: signs in with the card in `reader` (else the only reader with a PIV card).
    /// Already signed in with that card, it answers the session; a sign-in already running for
    /// it gets this caller as one more waiter; any other card waits for a logout.
    pub(super) fn call_login(&mut self, reader: Option<String>, reply: ReplyTo) {
        let reader = match self.login_reader(reader) {
            Ok(reader) => reader,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if let Some(session) = &self.session {
            let answer = if session.signed_in.reader == reader {
                Ok(json(&self.session_status()))
            } else {
                Err(ErrorObject::new(
                    ErrorCode::Busy,
                    format!(
                        "already signed in with card {}: log out first",
                        session.signed_in.serial
                    ),
                ))
            };
            let _ = reply.send(answer);
            return;
        }
        if let Some(run) = &mut self.login {
            if run.reader == reader {
                run.waiters.push(reply);
            } else {
                let _ = reply.send(Err(ErrorObject::new(
                    ErrorCode::Busy,
                    format!("a sign-in with the card in {} is running", run.reader),
                )));
            }
            return;
        }
        if let Err(e) = self.check_usable(&reader) {
            let _ = reply.send(Err(e));
            return;
        }
        if let Some(card) = self.card_in(&reader).filter(|c| c.certificate.is_none()) {
            // Its renewal is journaled: the card doctor finishes it (signing in cannot).
            let serial = card.serial.map(|s| s.to_string()).unwrap_or_default();
            let _ = reply.send(Err(certificate_lost(&serial)));
            return;
        }
        self.start_login(&reader, Some(reply));
    }

    /// The reader to sign in with: the one `named`, else — pcscd running and a reader
    /// connected — the only one with a PIV card.
    fn login_reader(&self, named: Option<String>) -> Result<String, ErrorObject> {
        if named.is_none() {
            if !self.pcsc.available {
                return Err(ErrorObject::new(
                    ErrorCode::PcscUnavailable,
                    "the PC/SC service (pcscd) is not running",
                ));
            }
            if self.readers.is_empty() {
                return Err(ErrorObject::new(
                    ErrorCode::NoReader,
                    "no card reader is connected",
                ));
            }
        }
        self.pick_reader(
            named,
            |_, card| card.piv,
            "insert your smartcard to sign in",
            "there are cards in several readers: name the reader to sign in with",
        )
    }

    /// Starts the sign-in task for the card in `reader` as of its current generation.
    pub(super) fn start_login(&mut self, reader: &str, waiter: Option<ReplyTo>) {
        let Some(slot) = self.readers.get(reader) else {
            return;
        };
        let Some(card) = slot.card.clone() else {
            return;
        };
        let generation = slot.generation;
        let reports = self.reports_tx.clone();
        let steps = self.reports_tx.clone();
        let context = self.login_context.clone();
        let task = tokio::spawn(async move {
            let report = move |step| {
                let _ = steps.send(TaskReport::LoginStep { generation, step });
            };
            let result = login::login(context, card, report).await;
            let _ = reports.send(TaskReport::LoginDone {
                generation,
                result: Box::new(result),
            });
        });
        let serial = self.card_in(reader).and_then(|c| c.serial);
        self.ended_with_card_in = None;
        self.login = Some(LoginRun {
            reader: reader.to_owned(),
            serial,
            generation,
            state: SessionState::CardPresent,
            waiters: waiter.into_iter().collect(),
            task,
        });
    }

    /// A step the sign-in task of `generation` reported (dropped when that sign-in is gone).
    pub(super) fn on_login_step(&mut self, generation: u64, step: LoginStep) {
        let Some(run) = self.login.as_mut().filter(|r| r.generation == generation) else {
            return;
        };
        match step {
            LoginStep::State(state) => run.state = state,
            LoginStep::WrongPin(tries_left) => {
                let serial = run.serial.map(|s| s.to_string()).unwrap_or_default();
                self.audit
                    .record(AuditEvent::WrongPin { serial, tries_left });
            }
            LoginStep::Operation(operation) => {
                self.pending.push(Event::OperationProgress { operation });
            }
        }
    }

    /// Stops the running sign-in (its prompt with it) and answers its waiters with `error`.
    pub(super) fn cancel_login(&mut self, error: ErrorObject) {
        if let Some(run) = self.login.take() {
            run.task.abort();
            for waiter in run.waiters {
                let _ = waiter.send(Err(error.clone()));
            }
        }
    }

    /// The sign-in of `generation` ended: a session whose card left meanwhile is logged out at
    /// once; otherwise the session starts (audited, announced, the expiry warning checked, the
    /// certificate re-check scheduled) or the failure is reported.
    pub(super) fn on_login_done(&mut self, generation: u64, result: Result<SignedIn, ErrorObject>) {
        let run = match self.login.take() {
            Some(run) if run.generation == generation => run,
            other => {
                // A login overtaken by its card leaving: its session must not linger.
                self.login = other;
                if let Ok(orphan) = result {
                    spawn_logout(orphan.client);
                }
                return;
            }
        };
        let still_there = self
            .readers
            .get(&run.reader)
            .is_some_and(|s| s.generation == generation && s.card.is_some());
        let result = match result {
            Ok(orphan) if !still_there => {
                spawn_logout(orphan.client);
                Err(ErrorObject::new(
                    ErrorCode::CardRemoved,
                    "the card was removed during sign-in",
                ))
            }
            other => other,
        };
        let answer = match result {
            Ok(signed_in) => {
                if let Some(renewed) = &signed_in.renewed {
                    self.card_renewed(&run.reader, renewed.clone());
                }
                self.record(AuditEvent::SignIn {
                    serial: signed_in.serial.to_string(),
                    user: signed_in.session.user.id.clone(),
                });
                tracing::info!(serial = %signed_in.serial, "signed in");
                self.session = Some(Session {
                    signed_in,
                    generation,
                });
                self.schedule_certificate_check();
                let status = self.session_status();
                self.pending.push(Event::SessionStarted {
                    session: status.clone(),
                });
                self.warn_expiry();
                self.resume_repair();
                Ok(json(&status))
            }
            Err(error) => {
                self.login_failed(&run.reader, run.serial, &error);
                Err(error)
            }
        };
        for waiter in run.waiters {
            let _ = waiter.send(answer.clone());
        }
    }

    /// Audits and announces a failed sign-in (a wrong PIN is audited at its step, with the tries
    /// left).
    pub(super) fn login_failed(
        &mut self,
        reader: &str,
        serial: Option<CardSerial>,
        error: &ErrorObject,
    ) {
        let serial_text = serial.map(|s| s.to_string()).unwrap_or_default();
        let event = match error.code {
            ErrorCode::WrongPin => None, // recorded at the step, with the tries left
            ErrorCode::PinBlocked => Some(AuditEvent::PinBlocked {
                serial: serial_text.clone(),
            }),
            _ => Some(AuditEvent::SignInFailed {
                serial: serial_text.clone(),
                code: error.code.as_str().to_owned(),
            }),
        };
        if let Some(event) = event {
            self.record(event);
        }
        tracing::info!(serial = %serial_text, code = ?error.code, "sign-in failed");
        self.pending.push(Event::LoginFailed {
            reader: reader.to_owned(),
            serial: serial.map(|s| s.to_string()),
            error: error.clone(),
        });
    }
}
