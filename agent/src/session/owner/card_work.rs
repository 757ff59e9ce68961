//! Renewal, repair and the Registration Authority's card work, each run by the operation
//! engine in a task of its own whose steps and outcome come back as reports.
//!
//! Rules kept here: one operation (or doctor) at a time; renewal is the signed-in holder's, on
//! the card in its reader; repair and cancelling a card need the officer's selected role to
//! hold the RA activity, and a repair is of a card in a second reader; a journaled repair
//! resumes when its card is in and an officer is signed in (but not at once after it failed);
//! `cancel_operation` stops an operation only before the card is changed; a certificate this
//! agent wrote becomes the session's, so the session stays signed in through its own renewal.

use super::{json, ReplyTo, SessionOwner, TaskReport};
use crate::audit::AuditEvent;
use crate::card::{whose_card, CardCertificate};
use crate::operation::{self, CardJob, Finished};
use crate::session::now;
use agent_ipc::{ErrorCode, ErrorObject, Event, OperationKind, OperationStatus};
use cms_api::client::CmsClient;
use cms_api::protocol::RoleView;
use cms_api::RA_ACTIVITY;
use piv::CardSerial;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A renewal or repair running in its own task.
#[derive(Debug)]
pub(super) struct OperationRun {
    pub(super) kind: OperationKind,
    pub(super) reader: String,
    pub(super) serial: CardSerial,
    /// The last step reported.
    pub(super) status: Option<OperationStatus>,
    pub(super) cancel: CancellationToken,
    pub(super) waiters: Vec<ReplyTo>,
}

impl OperationRun {
    /// Whether the card may already be changed (a cancel would leave it half done).
    pub(super) fn card_touched(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.step != agent_ipc::OperationStep::Started)
    }

    /// The last step reported, or "starting" before the first.
    fn status(&self) -> OperationStatus {
        self.status.clone().unwrap_or_else(|| OperationStatus {
            id: String::new(),
            kind: self.kind,
            serial: self.serial.to_string(),
            step: agent_ipc::OperationStep::Starting,
            message: "Waiting for the passcode".into(),
            done: false,
        })
    }
}

impl SessionOwner {
    /// `renew`: renews the signed-in holder's card, which must be in its reader; the holder
    /// gives the PIN in a prompt that a pulled card or `cancel_operation` ends.
    pub(super) fn call_renew(&mut self, reply: ReplyTo) {
        let target = self.signed_in().and_then(|s| {
            if !s.card_present {
                return Err(ErrorObject::new(
                    ErrorCode::NoCard,
                    "insert your smartcard to renew it",
                ));
            }
            let whose = whose_card(Some(&s.session.user.name), &s.serial.to_string());
            let algorithm = self.key_algorithm(&s.reader)?;
            Ok((
                s.reader.clone(),
                s.serial,
                whose,
                s.client.clone(),
                algorithm,
            ))
        });
        let target = target.and_then(|t| self.check_idle().map(|()| t));
        let (reader, serial, whose, holder, algorithm) = match target {
            Ok(target) => target,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let ops = self.engine.clone();
        self.start_operation(OperationKind::Renew, reader, serial, Some(reply), {
            move |job| async move {
                let asking = operation::ask_renewal_pin(&ops.pinentry, &whose);
                let pin =
                    operation::unless_cancelled(asking, &job.cancel, OperationKind::Renew).await?;
                ops.renew(job, pin, &holder, algorithm).await
            }
        });
    }

    /// The algorithm of the current 9A key of the card in `reader`, from the certificate read
    /// when it was inserted (or written by its last renewal).
    fn key_algorithm(&self, reader: &str) -> Result<piv::KeyAlgorithm, ErrorObject> {
        self.readers
            .get(reader)
            .and_then(|slot| slot.card.as_ref()?.certificate.as_ref())
            .and_then(|c| piv::Certificate::from_der(&c.der).ok()?.public_key().ok())
            .and_then(|key| key.algorithm().ok())
            .ok_or_else(|| {
                ErrorObject::new(
                    ErrorCode::CardError,
                    "the card's certificate could not be read; take the card out and insert it \
                     again",
                )
            })
    }

    /// `repair`: repairs the holder's card in a second reader (the one confirmed, when the
    /// caller names its serial) for the signed-in officer.
    pub(super) fn call_repair(&mut self, params: agent_ipc::RepairParams, reply: ReplyTo) {
        let target = self.officer().and_then(|client| {
            let reader = self.holder_reader(params.reader)?;
            let serial = self.serial_in(&reader)?;
            if params
                .serial
                .as_ref()
                .is_some_and(|s| *s != serial.to_string())
            {
                return Err(ErrorObject::new(
                    ErrorCode::BadRequest,
                    format!("the card in {reader} is {serial}, not the one confirmed"),
                ));
            }
            self.check_idle()?;
            Ok((client, reader, serial))
        });
        match target {
            Ok((client, reader, serial)) => self.start_repair(client, reader, serial, Some(reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Finishes a journaled repair when its card is in and an officer is signed in.
    pub(super) fn resume_repair(&mut self) {
        self.resume_repair_except(None);
    }

    /// [`Self::resume_repair`], leaving the card `skip` alone.
    pub(super) fn resume_repair_except(&mut self, skip: Option<CardSerial>) {
        if self.operation.is_some() || self.doctor.is_some() {
            return;
        }
        let Ok(client) = self.officer() else {
            return;
        };
        let session_reader = self.session.as_ref().map(|s| s.signed_in.reader.clone());
        let found = self.readers.iter().find_map(|(reader, slot)| {
            let serial = slot.card.as_ref()?.serial?;
            let entry = self.engine.journal.get(&serial.to_string())?;
            (entry.kind == OperationKind::Repair
                && Some(reader) != session_reader.as_ref()
                && skip != Some(serial))
            .then(|| (reader.clone(), serial))
        });
        if let Some((reader, serial)) = found {
            tracing::info!(%serial, "finishing an interrupted repair");
            self.start_repair(client, reader, serial, None);
        }
    }

    /// Starts (or resumes) the repair of card `serial` in `reader` with the officer's `client`.
    pub(super) fn start_repair(
        &mut self,
        client: CmsClient,
        reader: String,
        serial: CardSerial,
        reply: Option<ReplyTo>,
    ) {
        let ops = self.engine.clone();
        self.start_operation(OperationKind::Repair, reader, serial, reply, {
            move |job| async move { ops.repair(job, &client).await }
        });
    }

    /// Runs an operation in its own task; steps and the outcome come back as messages.
    pub(super) fn start_operation<F, Fut>(
        &mut self,
        kind: OperationKind,
        reader: String,
        serial: CardSerial,
        reply: Option<ReplyTo>,
        work: F,
    ) where
        F: FnOnce(CardJob) -> Fut,
        Fut: std::future::Future<Output = Result<Finished, ErrorObject>> + Send + 'static,
    {
        let job = CardJob::new(&reader, serial, self.operation_report());
        let cancel = job.cancel.clone();
        let future = work(job);
        let reports = self.reports_tx.clone();
        tokio::spawn(async move {
            let _ = reports.send(TaskReport::OperationDone(future.await));
        });
        self.operation = Some(OperationRun {
            kind,
            reader,
            serial,
            status: None,
            cancel,
            waiters: reply.into_iter().collect(),
        });
    }

    /// Where an operation's (or the doctor's healing's) steps go: back to the owner as
    /// [`TaskReport::OperationStep`].
    pub(super) fn operation_report(&self) -> operation::Report {
        let steps = self.reports_tx.clone();
        Arc::new(move |status| {
            let _ = steps.send(TaskReport::OperationStep(status));
        })
    }

    /// A step the running operation (or the doctor's healing) reported.
    pub(super) fn on_operation_step(&mut self, status: OperationStatus) {
        if let Some(run) = &mut self.operation {
            run.status = Some(status.clone());
        }
        self.pending
            .push(Event::OperationProgress { operation: status });
    }

    /// The running operation ended: the readers' view and the session take a certificate it
    /// wrote, it is audited and announced, its waiters answered, and the card signs in if it may.
    pub(super) fn on_operation_done(&mut self, result: Result<Finished, ErrorObject>) {
        let Some(run) = self.operation.take() else {
            return;
        };
        let mut status = run.status();
        let outcome = match &result {
            Ok(finished) => {
                status = finished.status.clone();
                if let Some(certificate) = &finished.certificate {
                    self.card_renewed(&run.reader, certificate.clone());
                    let until = certificate.expiry(now()).expires_on;
                    status.message = format!("{} until {until}", status.message);
                }
                status.step.to_string()
            }
            Err(e) => format!("failed: {}", e.message),
        };
        tracing::info!(serial = %run.serial, kind = ?run.kind, %outcome, "operation finished");
        let serial = run.serial.to_string();
        self.audit
            .record(AuditEvent::operation(run.kind, serial, outcome));
        let error = result.as_ref().err().cloned();
        self.pending.push(Event::OperationResult {
            operation: status.clone(),
            error: error.clone(),
        });
        let answer = match error {
            Some(e) => Err(e),
            None => Ok(json(&status)),
        };
        for waiter in run.waiters {
            let _ = waiter.send(answer.clone());
        }
        self.auto_login(&run.reader);
        // A repair that just failed is not restarted at once (it would ask the holder again
        // and again); it resumes when a card is next inserted or an officer next signs in.
        let failed = (run.kind == OperationKind::Repair && result.is_err()).then_some(run.serial);
        self.resume_repair_except(failed);
    }

    /// The card in `reader` got a new certificate from this agent: the readers' view and the
    /// session (if it is that card's) follow, so the session stays signed in.
    pub(super) fn card_renewed(&mut self, reader: &str, certificate: CardCertificate) {
        if let Some(card) = self.readers.get_mut(reader).and_then(|s| s.card.as_mut()) {
            card.certificate = Some(certificate.clone());
        }
        if let Some(session) = &mut self.session {
            if session.signed_in.reader == reader {
                session.signed_in.fingerprint = certificate.fingerprint;
                self.clocks.stop_expiry_warning();
            }
        }
        self.schedule_certificate_check();
    }

    /// `cancel_operation`: stops the running operation `id`, only before it changes the card.
    pub(super) fn call_cancel_operation(
        &mut self,
        id: &str,
    ) -> Result<serde_json::Value, ErrorObject> {
        let run = self
            .operation
            .as_ref()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.id == id))
            .ok_or_else(|| {
                ErrorObject::new(
                    ErrorCode::UnknownOperation,
                    format!("no operation {id:?} is running"),
                )
            })?;
        if run.card_touched() {
            return Err(ErrorObject::new(
                ErrorCode::Busy,
                "the card is being written: stopping now would leave it unable to sign in, so \
                 the operation finishes",
            ));
        }
        run.cancel.cancel();
        let mut status = run.status();
        status.message = "Cancelling before the card is changed".into();
        Ok(json(&status))
    }

    /// `busy` while an operation or the card doctor is running: one card job at a time.
    pub(super) fn check_idle(&self) -> Result<(), ErrorObject> {
        if let Some(run) = &self.operation {
            return Err(ErrorObject::new(
                ErrorCode::Busy,
                format!("an operation on card {} is running", run.serial),
            ));
        }
        if let Some(reader) = &self.doctor {
            return Err(ErrorObject::new(
                ErrorCode::Busy,
                format!("the card doctor is examining the card in {reader}"),
            ));
        }
        Ok(())
    }

    /// The signed-in officer's session client, if the selected role holds [`RA_ACTIVITY`].
    pub(super) fn officer(&self) -> Result<CmsClient, ErrorObject> {
        let s = self.signed_in()?;
        let holds = |r: &RoleView| r.activities.iter().any(|a| a == RA_ACTIVITY);
        let selected = s
            .session
            .selected_role
            .and_then(|id| s.session.roles.iter().find(|r| r.id == id));
        if selected.is_some_and(holds) {
            return Ok(s.client.clone());
        }
        let hint = match s.session.roles.iter().find(|r| holds(r)) {
            Some(r) => format!(": select your role {} ({}) first", r.id, r.job_role),
            None => String::new(),
        };
        Err(ErrorObject::new(
            ErrorCode::RoleNotPermitted,
            format!("your role does not permit Repair Smartcard (activity {RA_ACTIVITY}){hint}"),
        ))
    }

    /// The reader holding a holder's card: the one named, else the only one with a card that
    /// is not the signed-in card.
    pub(super) fn holder_reader(&self, named: Option<String>) -> Result<String, ErrorObject> {
        let own = self.session.as_ref().map(|s| s.signed_in.reader.clone());
        self.pick_reader(
            named,
            |reader, _| Some(reader) != own.as_deref(),
            "put the holder's card in a second reader",
            "there are cards in several readers: name the holder's reader",
        )
    }
}
