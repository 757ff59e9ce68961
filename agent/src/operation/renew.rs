//! A holder's own operations: renewal, started in the holder's session and walked with the
//! token the service gives it (and finishing an interrupted one at sign-in), and the card
//! doctor's restore of a certificate the card lost, in a session of its own opened by signing a
//! challenge with the card's key.

use super::failure::Failure;
use super::finish::give_up;
use super::journal::{Algorithm, Entry};
use super::{clear, internal, pin_format, save, CardJob, Finished, OperationEngine};
use crate::card::with_card;
use crate::errors::card_error;
use agent_ipc::{ErrorCode, ErrorObject, OperationKind};
use cms_api::client::{ClientError, CmsClient};
use cms_api::protocol::{b64, OperationStarted};
use piv::consts::key;
use piv::{Certificate, KeyAlgorithm, Pin};
use zeroize::Zeroizing;

impl OperationEngine {
    /// Renews the card of `job` (the signed-in holder's, whose session is `holder` and whose
    /// current key is of `algorithm`) with `pin`: starts the renewal in the holder's session —
    /// the service gives it a token of its own, which the journal keeps — and walks it to the
    /// end in one card transaction. A renewal journaled for the card is finished instead.
    pub(crate) async fn renew(
        &self,
        job: CardJob,
        pin: Zeroizing<String>,
        holder: &CmsClient,
        algorithm: KeyAlgorithm,
    ) -> Result<Finished, ErrorObject> {
        let kind = OperationKind::Renew;
        let pin = Pin::new(&pin).map_err(|_| pin_format())?;
        let serial = job.serial.to_string();
        if let Some(entry) = self.journal.get(&serial).filter(|e| e.kind == kind) {
            return self.finish(job, entry, pin, None, None).await;
        }
        let started = start(holder, kind, &serial).await?;
        let token = started.operation_token.ok_or_else(|| {
            ErrorObject::new(
                ErrorCode::CmsRefused,
                "the service started the renewal without its token; nothing was done to the card",
            )
        })?;
        let entry = Entry::started(kind, &started.operation, algorithm.into(), Some(token));
        save(&self.journal, &entry)?;
        self.finish(job, entry, pin, None, Some(started.operation))
            .await
    }

    /// Finishes the renewal journaled for the card of `job` with the holder's `pin` (at sign-in,
    /// or by the card doctor, after an interruption). `Ok(None)` when nothing is journaled; a
    /// renewal that had not changed the card is given up, and the card signs in as it is.
    pub(crate) async fn resume_renewal(
        &self,
        job: CardJob,
        pin: &Pin,
    ) -> Result<Option<Finished>, ErrorObject> {
        let ops = self;
        let serial = job.serial.to_string();
        let Some(entry) = ops
            .journal
            .get(&serial)
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
        self.finish(job, entry, pin.clone(), None, None)
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

    /// Writes `certificate` (DER), the service's record of the current certificate of the card of
    /// `job`, back to the card, which lost it, with the holder's `pin`: signs in with it — the
    /// proof that the card still holds its key — and walks a restore operation in that session.
    pub(crate) async fn restore(
        &self,
        job: CardJob,
        certificate: &[u8],
        pin: &Pin,
    ) -> Result<Finished, ErrorObject> {
        let kind = OperationKind::Restore;
        let serial = job.serial.to_string();
        let cms = self.cms.clone().ok_or_else(crate::cms::not_configured)?;
        let (client, token, algorithm) =
            open_session(&cms, &job.reader, &serial, pin, certificate).await?;
        let started = start(&client, kind, &serial).await?;
        let entry = Entry::started(kind, &started.operation, algorithm, Some(token));
        self.finish(job, entry, pin.clone(), None, Some(started.operation))
            .await
    }
}

/// Starts (or resumes) an operation of `kind` on card `serial` in `client`'s session.
async fn start(
    client: &CmsClient,
    kind: OperationKind,
    serial: &str,
) -> Result<OperationStarted, ErrorObject> {
    client
        .start_operation(
            crate::cms::operation_kind(kind),
            serial,
            env!("CARGO_PKG_VERSION"),
        )
        .await
        .map_err(|e| Failure::Cms(e).unchanged(kind))
}

/// Opens a service session for the card in `reader` by signing a challenge with its 9A key
/// (the PIN verified on the card), presenting `certificate` (DER), the service's record of the
/// card's certificate; also gives the key's algorithm.
async fn open_session(
    cms: &CmsClient,
    reader: &str,
    serial: &str,
    pin: &Pin,
    certificate: &[u8],
) -> Result<(CmsClient, Zeroizing<String>, Algorithm), ErrorObject> {
    let cms_error = |e: ClientError| crate::cms::error_object(&e);
    let certificate = Certificate::from_der(certificate).map_err(|e| card_error(&e))?;
    let algorithm = certificate
        .public_key()
        .and_then(|key| key.algorithm())
        .map_err(|e| card_error(&e))?;
    let challenge = cms.challenge(serial).await.map_err(cms_error)?;
    let raw = b64::decode_url(&challenge.challenge)
        .ok_or_else(|| ErrorObject::new(ErrorCode::CmsRefused, "the challenge is not base64url"))?;
    let message = cms_api::protocol::auth_message(&challenge.serial, &raw);
    let reader = reader.to_owned();
    let pin = pin.clone();
    let signature = tokio::task::spawn_blocking(move || {
        with_card(&reader, |tx| {
            tx.verify_pin(&pin)?;
            let signed = tx.sign(key::AUTHENTICATION, algorithm, &message);
            let _ = tx.logout();
            signed
        })
    })
    .await
    .map_err(internal)?
    .map_err(|e| card_error(&e))?;
    let created = cms
        .create_session(&cms_api::protocol::SessionRequest {
            serial: challenge.serial,
            challenge: challenge.challenge,
            signature: b64::encode(&signature),
            certificate: b64::encode(certificate.der()),
        })
        .await
        .map_err(cms_error)?;
    let client = cms.with_session(&created.session_token);
    Ok((client, created.session_token, algorithm.into()))
}
