//! The card doctor as the owner runs it: one examination at a time, never beside a sign-in or
//! an operation, in a task of its own; what it healed becomes the readers' view and the
//! session's (when the card is still the one examined), and is audited. The doctor's look at
//! the session's card is a use of it: the session's certificate is verified right after.

use super::{json, ReplyTo, SessionOwner, TaskReport};
use crate::audit::AuditEvent;
use crate::doctor::{self, DoctorContext, DoctorOutcome};
use agent_ipc::{ErrorCode, ErrorObject, Event};

impl SessionOwner {
    /// The reader the doctor examines: the one named, else the only one with a card.
    pub(super) fn doctor_reader(&self, named: Option<String>) -> Result<String, ErrorObject> {
        self.pick_reader(
            named,
            |_, _| true,
            "insert the card to check",
            "there are cards in several readers: name the reader of the card to check",
        )
    }

    /// Runs the doctor in its own task; its report comes back as a message.
    pub(super) fn call_doctor(&mut self, params: agent_ipc::DoctorParams, reply: ReplyTo) {
        let target = self.check_idle().and_then(|()| {
            if let Some(run) = &self.login {
                return Err(ErrorObject::new(
                    ErrorCode::Busy,
                    format!("a sign-in with the card in {} is running", run.reader),
                ));
            }
            let reader = self.doctor_reader(params.reader)?;
            let slot = &self.readers[&reader];
            let card = slot.card.clone().ok_or_else(|| {
                ErrorObject::new(ErrorCode::NoCard, format!("there is no card in {reader}"))
            })?;
            Ok((reader, slot.generation, card))
        });
        let (reader, generation, card) = match target {
            Ok(target) => target,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let context = DoctorContext {
            engine: self.engine.clone(),
            pinentry: self.config.pinentry.clone(),
            ca_file: self.config.cms.ca_file.clone(),
            warning_days: self.config.expiry.warning_days,
        };
        let progress = self.operation_report();
        let reports = self.reports_tx.clone();
        let task_reader = reader.clone();
        tokio::spawn(async move {
            let result = doctor::examine(context, card, params.heal, progress).await;
            let _ = reports.send(TaskReport::DoctorDone {
                reader: task_reader,
                generation,
                result: Box::new(result),
                reply,
            });
        });
        tracing::info!(%reader, heal = params.heal, "card doctor started");
        self.doctor = Some(reader);
    }

    /// The doctor's report for the card of `reader` as of `generation`: a certificate it wrote
    /// is taken only if that card is still there; a wrong PIN and a finished operation are
    /// audited; an interrupted repair may resume.
    pub(super) fn on_doctor_done(
        &mut self,
        reader: &str,
        generation: u64,
        result: Result<DoctorOutcome, ErrorObject>,
        reply: ReplyTo,
    ) {
        self.doctor = None;
        let mut renewed = false;
        let answer = result.map(|outcome| {
            let serial = outcome.report.card.serial.clone().unwrap_or_default();
            if let Some(tries_left) = outcome.wrong_pin {
                self.record(AuditEvent::WrongPin {
                    serial: serial.clone(),
                    tries_left,
                });
            }
            if let Some(finished) = outcome.finished {
                let same_card = self
                    .readers
                    .get(reader)
                    .is_some_and(|s| s.generation == generation && s.card.is_some());
                if let (true, Some(certificate)) = (same_card, &finished.certificate) {
                    self.card_renewed(reader, certificate.clone());
                    renewed = true;
                }
                self.record(AuditEvent::operation(
                    finished.status.kind,
                    serial.clone(),
                    format!("{} by the card doctor", finished.status.step),
                ));
                self.pending.push(Event::OperationResult {
                    operation: finished.status,
                    error: None,
                });
            }
            let summary: Vec<String> = outcome
                .report
                .checks
                .iter()
                .map(|c| format!("{}={}", c.name, c.outcome))
                .collect();
            tracing::info!(%serial, checks = %summary.join(" "), "card doctor finished");
            json(&outcome.report)
        });
        let _ = reply.send(answer);
        if !renewed {
            self.verify_session_card(reader, generation);
        }
        self.resume_repair();
    }
}
