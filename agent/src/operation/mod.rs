//! Renewal and repair of a card's credentials with the Card Management Service, journaled so
//! an interruption at any point — the card pulled after any APDU, the agent killed, the
//! service unreachable — is finished at the next insertion or start.
//!
//! Every run is the same idempotent walk, whether it starts or resumes: the service says
//! where the operation is; the card is compared with it; only what is missing is done. A new
//! key is generated again rather than trusted from an interrupted run (the service gives the
//! new key a certificate that supersedes the earlier one), so the journal holds nothing the
//! card or the service can tell.
//!
//! A restore (the card doctor's) walks the same way without a new key: the service's record of
//! the card's current certificate is written back to a card that lost it. It is not journaled:
//! an interrupted restore leaves the card as it was, and healing again starts it over.

//! | file | what it holds |
//! |---|---|
//! | `renew.rs` | the holder's own operations: renewal, its resumption, the doctor's restore |
//! | `repair.rs` | the Registration Authority's repair |
//! | `finish.rs` | finishing a journaled operation and giving one up |
//! | `walk.rs` | the walk on the card, in one transaction |
//! | `step.rs`, `failure.rs` | the steps reported, and why a run stopped |
//! | `journal.rs`, `secrets.rs` | the journal on disk; the renewal's own token in the keyring |
//! | `pin_choice.rs` | the PIN prompts of renewal and repair |

mod failure;
mod finish;
pub mod journal;
mod pin_choice;
mod renew;
mod repair;
pub mod secrets;
mod step;
mod walk;

pub(crate) use pin_choice::{ask_new_pin, ask_renewal_pin};

use crate::card::CardCertificate;
use crate::config::PinentryConfig;
use agent_ipc::{ErrorCode, ErrorObject, OperationKind, OperationStatus};
use cms_api::client::CmsClient;
use journal::{Entry, Journal};
use piv::CardSerial;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The operation engine: what runs an operation needs besides the card and the caller's
/// session. Its methods start, resume and finish renewals, repairs and restores.
#[derive(Debug, Clone)]
pub(crate) struct OperationEngine {
    /// The service, without a session.
    pub cms: Option<CmsClient>,
    /// The journal of unfinished operations.
    pub journal: Journal,
    /// How to ask for PINs.
    pub pinentry: PinentryConfig,
}

/// Receives each step as it happens.
pub(crate) type Report = Arc<dyn Fn(OperationStatus) + Send + Sync>;

/// The card an operation works on, where its steps go, and what cancels it (the card pulled,
/// or `cancel_operation`, before the card is changed).
#[derive(Clone)]
pub(crate) struct CardJob {
    /// The reader the card is in.
    pub reader: String,
    /// The card's serial.
    pub serial: CardSerial,
    /// Where each step is reported.
    pub report: Report,
    /// Fires to stop the operation before it changes the card.
    pub cancel: CancellationToken,
}

impl CardJob {
    /// A job on the card `serial` in `reader`, reporting to `report`, that nothing cancels yet.
    pub(crate) fn new(reader: impl Into<String>, serial: CardSerial, report: Report) -> Self {
        CardJob {
            reader: reader.into(),
            serial,
            report,
            cancel: CancellationToken::new(),
        }
    }
}

impl std::fmt::Debug for CardJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardJob")
            .field("reader", &self.reader)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// A finished operation: its last status and the certificate now on the card.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// The last status (confirmed, or cancelled before the card changed).
    pub status: OperationStatus,
    /// The certificate the card holds at the end.
    pub certificate: Option<CardCertificate>,
}

/// What `asking` answers (a passcode prompt), unless `cancel` fires first — the card pulled or
/// `cancel_operation` — which ends the prompt (pinentry is told to leave) before the card of an
/// operation of `kind` was changed.
pub(crate) async fn unless_cancelled<T>(
    asking: impl std::future::Future<Output = Result<T, ErrorObject>>,
    cancel: &CancellationToken,
    kind: OperationKind,
) -> Result<T, ErrorObject> {
    tokio::select! {
        asked = asking => asked,
        () = cancel.cancelled() => Err(ErrorObject::new(
            ErrorCode::PinCancelled,
            format!(
                "the {} was cancelled while the passcode was asked; the card is as it was",
                noun(kind)
            ),
        )),
    }
}

/// What an operation of `kind` is called in messages.
pub(super) fn noun(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Renew => "renewal",
        OperationKind::Repair => "repair",
        OperationKind::Restore => "restore",
    }
}

/// Removes `entry` from the journal if it is the one journaled for its card.
pub(super) fn clear(journal: &Journal, entry: &Entry) {
    if let Err(e) = journal.remove_operation(&entry.serial, &entry.operation) {
        tracing::warn!("cannot clear the journal entry of {}: {e}", entry.serial);
    }
}

/// Saves `entry`; a journal that cannot be written leaves the card untouched.
pub(super) fn save(journal: &Journal, entry: &Entry) -> Result<(), ErrorObject> {
    journal.save(entry).map_err(|e| {
        ErrorObject::new(
            ErrorCode::Internal,
            format!("cannot write the operations journal, so the card is left untouched: {e}"),
        )
    })
}

/// A PIN that is not 4 to 8 digits.
pub(super) fn pin_format() -> ErrorObject {
    ErrorObject::new(ErrorCode::PinPolicy, "a passcode is 4 to 8 digits")
}

/// A step that failed inside the agent (a task that panicked).
pub(super) fn internal(e: impl std::fmt::Display) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::Internal,
        format!("an operation step failed: {e}"),
    )
}
