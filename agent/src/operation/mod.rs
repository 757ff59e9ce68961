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

pub mod journal;
mod pin_choice;
pub mod secrets;

pub(crate) use pin_choice::{ask_new_pin, ask_renewal_pin};

use crate::card::CardCertificate;
use crate::config::PinentryConfig;
use crate::session::{card_error, with_card};
use agent_ipc::{ErrorCode, ErrorObject, OperationKind, OperationStatus, OperationStep as Step};
use cms::client::{ClientError, CmsClient, RelayResponder};
use cms::protocol::{b64, confirm_message, OperationView};
use journal::{Algorithm, Entry, Journal, PukRotation};
use piv::consts::key;
use piv::{Certificate, KeyAlgorithm, Pin, Puk};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// What runs an operation needs besides the card and the caller's session.
#[derive(Debug, Clone)]
pub(crate) struct Operations {
    /// The service, without a session.
    pub cms: Option<CmsClient>,
    /// The journal of unfinished operations.
    pub journal: Journal,
    /// How to ask for PINs.
    pub pinentry: PinentryConfig,
}

/// Receives each step as it happens.
pub(crate) type Report = Arc<dyn Fn(OperationStatus) + Send + Sync>;

/// A finished operation: its last status and the certificate now on the card.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub status: OperationStatus,
    pub certificate: Option<CardCertificate>,
}

/// Where a run is (each step becomes a progress event), in words.
fn step_message(step: Step, kind: OperationKind) -> &'static str {
    match (step, kind) {
        (Step::Starting, _) => "Waiting for the passcode",
        (Step::Started, OperationKind::Renew) => "Renewal started",
        (Step::Started, OperationKind::Repair) => "Repair started",
        (Step::Started, OperationKind::Restore) => "Restoring the card's certificate",
        (Step::CertificateWritten, OperationKind::Restore) => {
            "The card's certificate is written back"
        }
        (Step::Confirmed, OperationKind::Restore) => "Certificate restored",
        (Step::PinSet, _) => "The holder's new passcode is set",
        (Step::PukRotated, _) => "The card's unblocking key is rotated",
        (Step::ManagementKey, _) => "The service unlocked the card",
        (Step::KeyGenerated, _) => "New key generated on the card",
        (Step::CertificateIssued, _) => "The service issued the new certificate",
        (Step::CertificateWritten, _) => "New certificate written to the card",
        (Step::Confirmed, OperationKind::Renew) => "Renewed",
        (Step::Confirmed, OperationKind::Repair) => "Repaired",
        (Step::Cancelled, _) => "Cancelled before the card was changed; the card is as it was",
    }
}

/// One run on one card.
struct Run {
    kind: OperationKind,
    serial: String,
    reader: String,
    operation: String,
    report: Report,
    cancel: CancellationToken,
}

impl Run {
    fn status(&self, step: Step) -> OperationStatus {
        OperationStatus {
            id: self.operation.clone(),
            kind: self.kind,
            serial: self.serial.clone(),
            step,
            message: step_message(step, self.kind).into(),
            done: matches!(step, Step::Confirmed | Step::Cancelled),
        }
    }

    fn step(&self, step: Step) {
        tracing::info!(serial = %self.serial, operation = %self.operation, step = step.as_str(), "operation step");
        (self.report)(self.status(step));
    }
}

/// Why a run stopped.
#[derive(Debug)]
enum Failure {
    Card(piv::Error),
    Cms(ClientError),
    Cancelled,
    Other(ErrorObject),
}

impl From<piv::Error> for Failure {
    fn from(e: piv::Error) -> Self {
        match e {
            // The management-key relay failed at the service, not at the card.
            piv::Error::Responder(source) => match source.downcast::<ClientError>() {
                Ok(cms) => Failure::Cms(*cms),
                Err(source) => Failure::Card(piv::Error::Responder(source)),
            },
            e => Failure::Card(e),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Cms(e)
    }
}

impl Failure {
    /// The error of a run that stopped before it changed the card, which is as it was.
    fn unchanged(self, kind: OperationKind) -> ErrorObject {
        let what = noun(kind);
        let mut error = match self {
            Failure::Card(e) => card_error(&e),
            Failure::Cms(e) => crate::cms::error_object(&e),
            Failure::Cancelled => ErrorObject::new(ErrorCode::PinCancelled, "cancelled"),
            Failure::Other(error) => error,
        };
        error.message = format!(
            "{}; the {what} stopped before it changed the card, which is as it was: try again",
            error.message
        );
        error
    }

    fn into_error(self, kind: OperationKind) -> ErrorObject {
        let what = noun(kind);
        let then = match kind {
            OperationKind::Restore => {
                "the card is as it was: heal it again with the card doctor".to_owned()
            }
            _ => format!("the {what} finishes when the card is next inserted"),
        };
        match self {
            Failure::Card(piv::Error::CardRemoved) => ErrorObject::new(
                ErrorCode::CardRemoved,
                format!("the card was removed during its {what}: put it back and {then}"),
            ),
            Failure::Card(piv::Error::ServiceUnavailable) => ErrorObject::new(
                ErrorCode::PcscUnavailable,
                format!(
                    "the smartcard service (pcscd) stopped during the {what}: once it runs \
                     again, {then}"
                ),
            ),
            Failure::Card(e) => card_error(&e),
            Failure::Cms(e) => {
                let mut error = crate::cms::error_object(&e);
                if error.code == ErrorCode::CmsUnreachable {
                    error.message = format!("{}: {then}", error.message);
                }
                error
            }
            Failure::Cancelled => ErrorObject::new(ErrorCode::PinCancelled, "cancelled"),
            Failure::Other(error) => error,
        }
    }
}

/// Renews the card in `reader` (the signed-in holder's, `serial`) with `pin`: opens the
/// renewal's own service session by signing a challenge with the card's current key,
/// starts (or resumes) the operation, and walks it to the end.
pub(crate) async fn renew(
    ops: &Operations,
    reader: &str,
    serial: &str,
    pin: Zeroizing<String>,
    report: Report,
    cancel: CancellationToken,
) -> Result<Finished, ErrorObject> {
    let pin = Pin::new(&pin).map_err(|_| pin_format())?;
    if let Some(entry) = ops.journal.get(serial) {
        if entry.kind == OperationKind::Renew {
            return finish(ops, reader, entry, pin, None, report, cancel).await;
        }
    }
    let entry = start_own(ops, reader, serial, &pin, OperationKind::Renew, None).await?;
    save(&ops.journal, &entry)?;
    finish(ops, reader, entry, pin, None, report, cancel).await
}

/// Starts (or resumes) an operation of `kind` on the holder's card in its own service session,
/// opened by signing a challenge with the card's key for `certificate` (else the card's own).
async fn start_own(
    ops: &Operations,
    reader: &str,
    serial: &str,
    pin: &Pin,
    kind: OperationKind,
    certificate: Option<&[u8]>,
) -> Result<Entry, ErrorObject> {
    let cms = ops.cms.clone().ok_or_else(crate::cms::not_configured)?;
    let (client, token, algorithm) = open_session(&cms, reader, serial, pin, certificate).await?;
    let op = client
        .start_operation(kind.as_str(), serial, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| Failure::Cms(e).unchanged(kind))?;
    Ok(Entry {
        operation: op.id,
        kind,
        serial: serial.to_owned(),
        algorithm,
        session_token: Some(token),
        puk: PukRotation::Old,
        card_changed: false,
        started_at: crate::time::now(),
    })
}

/// Finishes the renewal journaled for `serial` with the holder's `pin` (at sign-in, after an
/// interruption). `Ok(None)` when nothing is journaled.
pub(crate) async fn resume_renewal(
    ops: &Operations,
    reader: &str,
    serial: &str,
    pin: &Pin,
    report: Report,
) -> Result<Option<Finished>, ErrorObject> {
    let Some(entry) = ops
        .journal
        .get(serial)
        .filter(|e| e.kind == OperationKind::Renew)
    else {
        return Ok(None);
    };
    if !entry.card_changed {
        // Interrupted before it changed the card: the card signs in as it is.
        match (&ops.cms, &entry.session_token) {
            (Some(cms), Some(token)) => {
                give_up(&ops.journal, &entry, &cms.with_session(token), true).await
            }
            _ => clear(&ops.journal, &entry),
        }
        return Ok(None);
    }
    tracing::info!(%serial, operation = %entry.operation, "finishing an interrupted renewal");
    let cancel = CancellationToken::new();
    finish(ops, reader, entry, pin.clone(), None, report, cancel)
        .await
        .map(Some)
        .map_err(|mut error| {
            // Between two keys: say why this card cannot simply sign in.
            if !matches!(
                error.code,
                ErrorCode::WrongPin | ErrorCode::PinBlocked | ErrorCode::PinCancelled
            ) {
                error.message = format!(
                    "this smartcard was part-way through renewing its certificate and signs in \
                     once that is finished, which failed now: {}",
                    error.message
                );
            }
            error
        })
}

/// Writes `certificate` (DER), the service's record of the current certificate of card
/// `serial` in `reader`, back to the card, which lost it, with the holder's `pin`: signs in with
/// it — the proof that the card still holds its key — and walks a restore operation.
pub(crate) async fn restore(
    ops: &Operations,
    reader: &str,
    serial: &str,
    certificate: &[u8],
    pin: &Pin,
    report: Report,
) -> Result<Finished, ErrorObject> {
    let kind = OperationKind::Restore;
    let entry = start_own(ops, reader, serial, pin, kind, Some(certificate)).await?;
    let cancel = CancellationToken::new();
    finish(ops, reader, entry, pin.clone(), None, report, cancel).await
}

/// Repairs the holder's card `serial` in `reader` for the officer signed in with `officer`:
/// starts (or resumes) the repair, has the holder choose a new PIN, and walks it to the end.
pub(crate) async fn repair(
    ops: &Operations,
    officer: &CmsClient,
    reader: &str,
    serial: &str,
    report: Report,
    cancel: CancellationToken,
) -> Result<Finished, ErrorObject> {
    let entry = match ops
        .journal
        .get(serial)
        .filter(|e| e.kind == OperationKind::Repair)
    {
        Some(entry) => entry,
        None => {
            // The new key takes the algorithm of the card's current one, read before the
            // service opens the operation: a card pulled meanwhile leaves nothing open, and
            // the journal never records a guessed algorithm. Only a card without a usable
            // certificate gets P-256.
            let reader_owned = reader.to_owned();
            let current =
                tokio::task::spawn_blocking(move || with_card(&reader_owned, current_algorithm))
                    .await
                    .map_err(internal)?;
            let algorithm = match current {
                Ok(algorithm) => algorithm,
                Err(
                    piv::Error::NotFound
                    | piv::Error::BadCertificate(_)
                    | piv::Error::BadPublicKey(_)
                    | piv::Error::UnsupportedAlgorithm(_)
                    | piv::Error::Malformed(_),
                ) => KeyAlgorithm::P256,
                Err(e) => return Err(Failure::from(e).into_error(OperationKind::Repair)),
            };
            let op = officer
                .start_operation("repair", serial, env!("CARGO_PKG_VERSION"))
                .await
                .map_err(|e| Failure::Cms(e).into_error(OperationKind::Repair))?;
            let entry = Entry {
                operation: op.id,
                kind: OperationKind::Repair,
                serial: serial.to_owned(),
                algorithm: algorithm.into(),
                session_token: None,
                puk: PukRotation::Old,
                card_changed: false,
                started_at: crate::time::now(),
            };
            save(&ops.journal, &entry)?;
            entry
        }
    };
    // The holder reads their name in the prompt where the service knows it.
    let holder = match officer.card(serial).await {
        Ok(details) => details.holder_name,
        Err(e) => {
            tracing::debug!(%serial, "no holder's name for the prompt: {e}");
            None
        }
    };
    let whose = crate::session::whose_card(holder.as_deref(), serial);
    let asked = unless_cancelled(
        ask_new_pin(&ops.pinentry, &whose),
        &cancel,
        OperationKind::Repair,
    );
    let pin = match asked.await {
        Ok(pin) => pin,
        Err(e) => {
            // Nothing was done to the card yet, so nothing is left to finish.
            if !entry.card_changed {
                give_up(&ops.journal, &entry, officer, false).await;
            }
            return Err(e);
        }
    };
    let pin = Pin::new(&pin).map_err(|_| pin_format())?;
    finish(
        ops,
        reader,
        entry,
        pin,
        Some(officer.clone()),
        report,
        cancel,
    )
    .await
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

/// Walks the journaled operation `entry` to the end on the card in `reader`. A walk that
/// fails before anything on the card changed gives the operation up (aborted at the service,
/// out of the journal): the card is as it was and nothing waits for it.
async fn finish(
    ops: &Operations,
    reader: &str,
    entry: Entry,
    pin: Pin,
    officer: Option<CmsClient>,
    report: Report,
    cancel: CancellationToken,
) -> Result<Finished, ErrorObject> {
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
                    "the {} of card {} cannot reach its service session: the keyring that keeps \
                     it is locked or gone (see the agent's log); unlock it and insert the card \
                     again",
                    noun(kind),
                    entry.serial
                ),
            ))
        }
    };
    let run = Run {
        kind,
        serial: entry.serial.clone(),
        reader: reader.to_owned(),
        operation: entry.operation.clone(),
        report,
        cancel,
    };
    run.step(Step::Started);
    let journal = ops.journal.clone();
    let handle = Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let (result, entry) = on_card(&run, entry, &pin, &client, &journal, &handle);
        (run, entry, client, result)
    })
    .await
    .map_err(internal)?;
    let (run, entry, client, result) = outcome;
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
            if officer.is_none() && crate::cms::error_object(&e).code == ErrorCode::NoSession =>
        {
            // The operation's own session is gone (the service restarted its sessions, or 12
            // hours passed): a new one needs the card's current key to sign in.
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
                tracing::debug!("logging out the renewal's session: {e}");
            }
        });
    }
    Ok(Finished {
        status: run.status(step),
        certificate,
    })
}

/// Gives up an operation that has not changed the card: aborts it at the service and takes
/// it out of the journal; a renewal's own session is logged out. When the service cannot be
/// reached the entry stays, so the next sign-in (which it never holds up) or renewal tries
/// again.
async fn give_up(journal: &Journal, entry: &Entry, client: &CmsClient, own_session: bool) {
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

/// The card part of a run, in one card transaction (the management-key relay must share it
/// with the writes it unlocks). Returns the certificate the card holds at the end, and the
/// journal entry as the walk left it. The PIN and the management key are logged out on every
/// path.
fn on_card(
    run: &Run,
    mut entry: Entry,
    pin: &Pin,
    client: &CmsClient,
    journal: &Journal,
    rt: &Handle,
) -> (Result<Certificate, Failure>, Entry) {
    let result = with_card(&run.reader, |tx| {
        let on_card = tx.card_serial()?.to_string();
        if on_card != run.serial {
            return Ok(Err(Failure::Other(ErrorObject::new(
                ErrorCode::CardError,
                format!(
                    "the card in {} is {on_card}, not {}",
                    run.reader, run.serial
                ),
            ))));
        }
        let mut walk = Walk {
            run,
            entry: &mut entry,
            tx,
            pin,
            client,
            journal,
            rt,
            unlocked: None,
        };
        let result = walk.walk();
        walk.sign_off();
        Ok(result)
    });
    (result.unwrap_or_else(|e| Err(e.into())), entry)
}

/// One walk of an operation on the card, in one transaction.
struct Walk<'a, 'tx> {
    run: &'a Run,
    entry: &'a mut Entry,
    tx: &'a piv::Transaction<'tx>,
    pin: &'a Pin,
    client: &'a CmsClient,
    journal: &'a Journal,
    rt: &'a Handle,
    /// The algorithm of the management key, once it was authenticated in this transaction.
    unlocked: Option<u8>,
}

impl Walk<'_, '_> {
    fn walk(&mut self) -> Result<Certificate, Failure> {
        if self.run.cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        let mut op = self
            .rt
            .block_on(self.client.operation(&self.run.operation))?;
        if self.entry.kind == OperationKind::Repair && op.state != "completed" {
            self.set_pin()?;
        }
        self.tx.verify_pin(self.pin)?;
        let current = self.tx.read_certificate(key::AUTHENTICATION).ok();
        if op.state == "completed" {
            return current.ok_or(Failure::Card(piv::Error::NotFound));
        }
        if op.state != "started" && op.state != "certificate_issued" {
            return Err(Failure::Other(ErrorObject::new(
                ErrorCode::CmsRefused,
                format!(
                    "the service {}ed the operation",
                    op.state.trim_end_matches("ed")
                ),
            )));
        }
        let issued = issued_certificate(&op)?;
        let written = matches!((&current, &issued), (Some(c), Some(i)) if c.der() == i.der());
        let certificate = match issued {
            Some(issued) if written => issued,
            Some(issued) if self.run.kind == OperationKind::Restore => {
                self.unlock(&op)?;
                self.changing()?;
                self.tx.write_certificate(key::AUTHENTICATION, &issued)?;
                self.run.step(Step::CertificateWritten);
                issued
            }
            _ => {
                self.unlock(&op)?;
                self.changing()?;
                let algorithm = KeyAlgorithm::from(self.entry.algorithm);
                let public = self.tx.generate_key(key::AUTHENTICATION, algorithm)?;
                self.run.step(Step::KeyGenerated);
                let csr = self.tx.certificate_request(
                    key::AUTHENTICATION,
                    &public,
                    &format!("CN={}", self.run.serial),
                )?;
                op = self
                    .rt
                    .block_on(self.client.submit_csr(&self.run.operation, &csr))?;
                let certificate = issued_certificate(&op)?.ok_or_else(|| {
                    Failure::Other(ErrorObject::new(
                        ErrorCode::CmsRefused,
                        "the service answered the certificate request without a certificate",
                    ))
                })?;
                if certificate.public_key()? != public {
                    return Err(Failure::Other(ErrorObject::new(
                        ErrorCode::CmsRefused,
                        "the service's certificate is not for the card's new key",
                    )));
                }
                self.run.step(Step::CertificateIssued);
                self.tx
                    .write_certificate(key::AUTHENTICATION, &certificate)?;
                self.run.step(Step::CertificateWritten);
                certificate
            }
        };
        let challenge = op
            .confirm_challenge
            .as_deref()
            .and_then(b64::decode_url)
            .ok_or_else(|| {
                Failure::Other(ErrorObject::new(
                    ErrorCode::CmsRefused,
                    "the service gave no confirmation challenge",
                ))
            })?;
        let algorithm = certificate.public_key()?.algorithm()?;
        let signature = self.tx.sign(
            key::AUTHENTICATION,
            algorithm,
            &confirm_message(&self.run.operation, &challenge),
        )?;
        self.rt
            .block_on(self.client.confirm(&self.run.operation, &signature))?;
        self.run.step(Step::Confirmed);
        Ok(certificate)
    }

    /// Journals that the card is about to change, before the first command that changes it.
    fn changing(&mut self) -> Result<(), Failure> {
        if self.entry.card_changed {
            return Ok(());
        }
        self.entry.card_changed = true;
        // A restore is not journaled: it writes back what the card had.
        if self.entry.kind != OperationKind::Restore {
            save(self.journal, self.entry).map_err(Failure::Other)?;
        }
        Ok(())
    }

    /// Authenticates the card's management key through the service's relay, in the algorithm
    /// the service gave the card, unless cancelled.
    fn unlock(&mut self, op: &OperationView) -> Result<(), Failure> {
        if self.run.cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        let mut relay = RelayResponder::new(self.client.clone(), op, self.rt.clone());
        self.unlocked = Some(op.management_algorithm);
        self.tx.authenticate_management_key(&mut relay)?;
        self.run.step(Step::ManagementKey);
        Ok(())
    }

    /// Logs the PIN and the management key out, whatever the walk's outcome; a card already
    /// gone needs nothing.
    fn sign_off(&self) {
        if let Err(e) = self.tx.logout() {
            tracing::debug!(serial = %self.run.serial, "logging the PIN out: {e}");
        }
        if let Some(algorithm) = self.unlocked {
            if let Err(e) = self.tx.end_management_authentication(algorithm) {
                tracing::debug!(serial = %self.run.serial, "logging the management key out: {e}");
            }
        }
    }

    /// A repair's PIN part: the PIN unblocked to the holder's new one with the PUK the card
    /// holds, then the PUK rotated to the service's next one (journaled around the change, so
    /// an interrupted rotation is tried both ways; a wrong try is restored by the right one).
    fn set_pin(&mut self) -> Result<(), Failure> {
        let release = self
            .rt
            .block_on(self.client.release_puk(&self.run.operation))?;
        let puk = Puk::new(&release.puk).map_err(|_| bad_puk())?;
        let next = Puk::new(&release.next_puk).map_err(|_| bad_puk())?;
        let order: &[(&Puk, bool)] = match self.entry.puk {
            PukRotation::Old => &[(&puk, false)],
            PukRotation::Sent => &[(&next, true), (&puk, false)],
            PukRotation::Done => &[(&next, true)],
        };
        self.changing()?;
        let mut rotated = None;
        let mut last = None;
        for (candidate, is_next) in order {
            match self.tx.unblock_pin(candidate, self.pin) {
                Ok(()) => {
                    rotated = Some(*is_next);
                    break;
                }
                Err(e @ piv::Error::WrongPuk { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        let Some(rotated) = rotated else {
            return Err(last.unwrap_or(piv::Error::NotFound).into());
        };
        self.run.step(Step::PinSet);
        if !rotated {
            self.entry.puk = PukRotation::Sent;
            save(self.journal, self.entry).map_err(Failure::Other)?;
            self.tx.change_puk(&puk, &next)?;
        }
        self.entry.puk = PukRotation::Done;
        save(self.journal, self.entry).map_err(Failure::Other)?;
        self.run.step(Step::PukRotated);
        Ok(())
    }
}

/// The operation's certificate, parsed.
fn issued_certificate(op: &OperationView) -> Result<Option<Certificate>, Failure> {
    let Some(text) = op.certificate.as_deref() else {
        return Ok(None);
    };
    let der = b64::decode(text).ok_or_else(|| {
        Failure::Other(ErrorObject::new(
            ErrorCode::CmsRefused,
            "the service's certificate is not base64",
        ))
    })?;
    Ok(Some(Certificate::from_der(&der)?))
}

/// Opens a service session for the card in `reader` by signing a challenge with its 9A key
/// (the PIN verified on the card), presenting `certificate` (DER) or else the card's own; also
/// gives the key's algorithm.
async fn open_session(
    cms: &CmsClient,
    reader: &str,
    serial: &str,
    pin: &Pin,
    certificate: Option<&[u8]>,
) -> Result<(CmsClient, Zeroizing<String>, Algorithm), ErrorObject> {
    let cms_error = |e: ClientError| crate::cms::error_object(&e);
    let challenge = cms.challenge(serial).await.map_err(cms_error)?;
    let raw = b64::decode_url(&challenge.challenge)
        .ok_or_else(|| ErrorObject::new(ErrorCode::CmsRefused, "the challenge is not base64url"))?;
    let message = cms::protocol::auth_message(&challenge.serial, &raw);
    let reader = reader.to_owned();
    let pin = pin.clone();
    let given = certificate
        .map(Certificate::from_der)
        .transpose()
        .map_err(|e| card_error(&e))?;
    let signed = tokio::task::spawn_blocking(move || {
        with_card(&reader, |tx| {
            let certificate = match given {
                Some(certificate) => certificate,
                None => tx.read_certificate(key::AUTHENTICATION)?,
            };
            let algorithm = certificate.public_key()?.algorithm()?;
            tx.verify_pin(&pin)?;
            let signed = tx.sign(key::AUTHENTICATION, algorithm, &message);
            let _ = tx.logout();
            Ok((signed?, certificate.der().to_vec(), algorithm))
        })
    })
    .await
    .map_err(internal)?
    .map_err(|e| card_error(&e))?;
    let (signature, der, algorithm) = signed;
    let created = cms
        .create_session(&cms::protocol::SessionRequest {
            serial: challenge.serial,
            challenge: challenge.challenge,
            signature: b64::encode(&signature),
            certificate: b64::encode(&der),
        })
        .await
        .map_err(cms_error)?;
    let client = cms.with_session(&created.session_token);
    Ok((client, created.session_token, algorithm.into()))
}

fn current_algorithm(tx: &piv::Transaction<'_>) -> Result<KeyAlgorithm, piv::Error> {
    tx.read_certificate(key::AUTHENTICATION)?
        .public_key()?
        .algorithm()
}

/// What an operation of `kind` is called in messages.
fn noun(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Renew => "renewal",
        OperationKind::Repair => "repair",
        OperationKind::Restore => "restore",
    }
}

/// Removes `entry` from the journal if it is the one journaled for its card.
fn clear(journal: &Journal, entry: &Entry) {
    if let Err(e) = journal.remove_operation(&entry.serial, &entry.operation) {
        tracing::warn!("cannot clear the journal entry of {}: {e}", entry.serial);
    }
}

fn save(journal: &Journal, entry: &Entry) -> Result<(), ErrorObject> {
    journal.save(entry).map_err(|e| {
        ErrorObject::new(
            ErrorCode::Internal,
            format!("cannot write the operations journal, so the card is left untouched: {e}"),
        )
    })
}

fn pin_format() -> ErrorObject {
    ErrorObject::new(ErrorCode::PinPolicy, "a passcode is 4 to 8 digits")
}

fn bad_puk() -> Failure {
    Failure::Other(ErrorObject::new(
        ErrorCode::CmsRefused,
        "the service released a PUK the card cannot take",
    ))
}

fn internal(e: impl std::fmt::Display) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::Internal,
        format!("an operation step failed: {e}"),
    )
}
