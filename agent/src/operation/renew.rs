//! A holder's own operations, each in its own service session opened by signing a challenge
//! with the card's current key: renewal (and finishing an interrupted one at sign-in), and the
//! card doctor's restore of a certificate the card lost.

use super::failure::Failure;
use super::finish::give_up;
use super::journal::{Algorithm, Entry, PukRotation};
use super::{clear, internal, pin_format, save, CardJob, Finished, OperationEngine};
use crate::card::with_card;
use crate::errors::card_error;
use agent_ipc::{ErrorCode, ErrorObject, OperationKind};
use cms_api::client::{ClientError, CmsClient};
use cms_api::protocol::b64;
use piv::consts::key;
use piv::{Certificate, Pin};
use zeroize::Zeroizing;

impl OperationEngine {
    /// Renews the card of `job` (the signed-in holder's) with `pin`: opens the
    /// renewal's own service session by signing a challenge with the card's current key,
    /// starts (or resumes) the operation, and walks it to the end.
    pub(crate) async fn renew(
        &self,
        job: CardJob,
        pin: Zeroizing<String>,
    ) -> Result<Finished, ErrorObject> {
        let pin = Pin::new(&pin).map_err(|_| pin_format())?;
        if let Some(entry) = self.journal.get(&job.serial.to_string()) {
            if entry.kind == OperationKind::Renew {
                return self.finish(job, entry, pin, None).await;
            }
        }
        let entry = self
            .start_own(&job, &pin, OperationKind::Renew, None)
            .await?;
        save(&self.journal, &entry)?;
        self.finish(job, entry, pin, None).await
    }

    /// Starts (or resumes) an operation of `kind` on the holder's card in its own service session,
    /// opened by signing a challenge with the card's key for `certificate` (else the card's own).
    async fn start_own(
        &self,
        job: &CardJob,
        pin: &Pin,
        kind: OperationKind,
        certificate: Option<&[u8]>,
    ) -> Result<Entry, ErrorObject> {
        let serial = &job.serial.to_string();
        let cms = self.cms.clone().ok_or_else(crate::cms::not_configured)?;
        let (client, token, algorithm) =
            open_session(&cms, &job.reader, serial, pin, certificate).await?;
        let op = client
            .start_operation(
                crate::cms::operation_kind(kind),
                serial,
                env!("CARGO_PKG_VERSION"),
            )
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
        self.finish(job, entry, pin.clone(), None)
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
    /// proof that the card still holds its key — and walks a restore operation.
    pub(crate) async fn restore(
        &self,
        job: CardJob,
        certificate: &[u8],
        pin: &Pin,
    ) -> Result<Finished, ErrorObject> {
        let kind = OperationKind::Restore;
        let entry = self.start_own(&job, pin, kind, Some(certificate)).await?;
        self.finish(job, entry, pin.clone(), None).await
    }
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
    let message = cms_api::protocol::auth_message(&challenge.serial, &raw);
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
        .create_session(&cms_api::protocol::SessionRequest {
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
