//! Finishing a journaled operation: the run's session chosen, the walk run on the card off the
//! async workers, and its outcome — confirmed, cancelled, given up before the card changed,
//! or left journaled to finish at the next insertion.

use super::failure::Failure;
use super::journal::{Entry, Journal};
use super::walk::WalkPlan;
use super::{clear, internal, noun, CardJob, Finished, OperationEngine, Report};
use crate::card::CardCertificate;
use agent_ipc::OperationStep as Step;
use agent_ipc::{ErrorCode, ErrorObject, OperationKind, OperationStatus};
use cms_api::client::CmsClient;
use cms_api::protocol::OperationView;
use piv::{CardSerial, Pin};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// One run on one card.
pub(super) struct Run {
    pub(super) kind: OperationKind,
    pub(super) serial: CardSerial,
    pub(super) reader: String,
    /// The service's operation id.
    pub(super) operation: String,
    report: Report,
    pub(super) cancel: CancellationToken,
}

impl Run {
    /// The run of `job` on the operation `entry` journals.
    fn new(job: CardJob, entry: &Entry) -> Self {
        Run {
            kind: entry.kind,
            serial: job.serial,
            reader: job.reader,
            operation: entry.operation.clone(),
            report: job.report,
            cancel: job.cancel,
        }
    }

    /// The status of the run at `step`.
    pub(super) fn status(&self, step: Step) -> OperationStatus {
        OperationStatus {
            id: self.operation.clone(),
            kind: self.kind,
            serial: self.serial.to_string(),
            step,
            message: super::step::message(step, self.kind).into(),
            done: matches!(step, Step::Confirmed | Step::Cancelled),
        }
    }

    /// Logs `step` and reports it.
    pub(super) fn step(&self, step: Step) {
        tracing::info!(serial = %self.serial, operation = %self.operation, step = step.as_str(), "operation step");
        (self.report)(self.status(step));
    }
}

impl OperationEngine {
    /// Walks the journaled operation `entry` to the end on the card of `job`, in the officer's
    /// session (a repair) or with the token the entry keeps; `started` is the service's answer
    /// when this run just started the operation (the walk need not ask where it is). A walk
    /// that fails before anything on the card changed gives the operation up (aborted at the
    /// service, out of the journal): the card is as it was and nothing waits for it.
    pub(super) async fn finish(
        &self,
        job: CardJob,
        entry: Entry,
        pin: Pin,
        officer: Option<CmsClient>,
        started: Option<OperationView>,
    ) -> Result<Finished, ErrorObject> {
        let ops = self;
        let kind = entry.kind;
        let cms = ops.cms.clone().ok_or_else(crate::cms::not_configured)?;
        let client = match (&officer, &entry.session_token) {
            (Some(officer), _) => officer.clone(),
            (None, Some(token)) => cms.with_session(token),
            (None, None) if kind != OperationKind::Renew => {
                return Err(internal("an operation journaled without its session"))
            }
            (None, None) => {
                return Err(ErrorObject::new(
                    ErrorCode::Internal,
                    format!(
                        "the {} of card {} cannot reach its service session: the keyring that \
                         keeps it is locked or gone (see the agent's log); unlock it and insert \
                         the card again",
                        noun(kind),
                        entry.serial
                    ),
                ))
            }
        };
        let run = Run::new(job, &entry);
        run.step(Step::Started);
        let mut plan = WalkPlan {
            run,
            entry,
            pin,
            client,
            started,
            journal: ops.journal.clone(),
            rt: Handle::current(),
        };
        let (plan, result) = tokio::task::spawn_blocking(move || {
            let result = plan.on_card();
            (plan, result)
        })
        .await
        .map_err(internal)?;
        let WalkPlan {
            run, entry, client, ..
        } = plan;
        let (step, certificate) = match result {
            Ok(certificate) => (
                Step::Confirmed,
                CardCertificate::from_certificate(&certificate),
            ),
            Err(Failure::Cancelled) if !entry.card_changed => {
                give_up(&ops.journal, &entry, &client, officer.is_none()).await;
                (Step::Cancelled, None)
            }
            Err(failure) if !entry.card_changed => {
                give_up(&ops.journal, &entry, &client, officer.is_none()).await;
                return Err(failure.unchanged(kind));
            }
            Err(Failure::Cms(e))
                if officer.is_none()
                    && crate::cms::error_object(&e).code == ErrorCode::NoSession =>
            {
                // The operation's own token is gone (12 hours passed, or the service's sessions
                // were ended): a new one needs the card to sign in.
                clear(&ops.journal, &entry);
                return Err(ErrorObject::new(
                    ErrorCode::CardError,
                    format!(
                        "the {} of card {} lost its service session: insert the card again to \
                     start over, or ask your Registration Authority to repair it if it cannot \
                     sign in",
                        noun(kind),
                        entry.serial
                    ),
                ));
            }
            Err(failure) => return Err(failure.into_error(kind)),
        };
        clear(&ops.journal, &entry);
        if officer.is_none() {
            tokio::spawn(async move {
                if let Err(e) = client.logout().await {
                    tracing::debug!("logging out the operation's own token: {e}");
                }
            });
        }
        Ok(Finished {
            status: run.status(step),
            certificate,
        })
    }
}

/// Gives up an operation that has not changed the card: aborts it at the service and takes
/// it out of the journal; the operation's own token (or restore session) is logged out. When the service cannot be
/// reached the entry stays, so the next sign-in (which it never holds up) or renewal tries
/// again.
pub(super) async fn give_up(
    journal: &Journal,
    entry: &Entry,
    client: &CmsClient,
    own_session: bool,
) {
    tracing::info!(serial = %entry.serial, operation = %entry.operation, "giving up an operation that did not change the card");
    match client.abort_operation(&entry.operation).await {
        Err(e) if crate::cms::error_object(&e).code == ErrorCode::CmsUnreachable => {
            tracing::info!(operation = %entry.operation, "the service cannot be reached to abort the operation; it stays journaled: {e}");
            return;
        }
        Err(e) => {
            tracing::info!(operation = %entry.operation, "the service did not abort the operation: {e}")
        }
        Ok(_) => {}
    }
    clear(journal, entry);
    if own_session {
        if let Err(e) = client.logout().await {
            tracing::debug!("logging out the operation's session: {e}");
        }
    }
}
