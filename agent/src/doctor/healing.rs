//! Healing: the only writes the agent may make to a card, through the operation engine —
//! finishing a journaled renewal, or writing back the service's record of a certificate the
//! card lost once its key is proved to match it. Everything else is the Registration
//! Authority's.

use super::key_proof::KeyProof;
use super::Visit;
use crate::operation::{self, CardJob, Finished, OperationEngine};
use agent_ipc::{ErrorCode, ErrorObject};
use piv::{Certificate, Pin};

/// What healing can mend on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Remedy {
    /// Nothing the agent may write.
    Nothing,
    /// Finish the journaled renewal.
    FinishRenewal,
    /// Write the service's record of the card's certificate back.
    Restore,
}

/// The healing, if any.
#[derive(Debug)]
pub(super) enum Heal {
    /// Not asked for, or nothing to heal.
    NotTried,
    /// Not possible without the passcode.
    NoPin,
    /// Finished.
    Done,
    /// Tried and failed.
    Failed(String),
}

impl Visit<'_> {
    /// Heals what `healing` names with the verified `pin`, given the key's `proof`: a copy the
    /// card's key does not match is not written. Steps go to `progress`.
    pub(super) async fn heal(
        &self,
        healing: Remedy,
        pin: Option<&Pin>,
        proof: &KeyProof,
        progress: operation::Report,
    ) -> (Heal, Option<Finished>) {
        let engine = &self.ctx.engine;
        let reader = &self.reader;
        let job = |serial| CardJob::new(reader, serial, progress.clone());
        let outcome = match (healing, pin, self.first.serial, self.copy()) {
            (Remedy::Nothing, ..) => return (Heal::NotTried, None),
            (Remedy::FinishRenewal, Some(pin), Some(serial), _) => {
                engine.resume_renewal(job(serial), pin).await
            }
            // A copy the card's key does not match is not written: the key check says so.
            (Remedy::Restore, Some(_), _, _) if *proof != KeyProof::Matches => {
                return (Heal::NotTried, None)
            }
            (Remedy::Restore, Some(pin), Some(serial), Some(copy)) => {
                engine.restore(job(serial), copy.der(), pin).await.map(Some)
            }
            _ => return (Heal::NoPin, None),
        };
        match outcome {
            Ok(Some(done)) => (Heal::Done, Some(done)),
            Ok(None) => (Heal::NotTried, None),
            Err(e) => (Heal::Failed(e.message), None),
        }
    }
}

/// The service's record of the current certificate of card `serial`, or why there is none.
pub(super) async fn service_certificate(
    ops: &OperationEngine,
    serial: &str,
) -> Result<Certificate, ErrorObject> {
    let cms = ops.cms.as_ref().ok_or_else(crate::cms::not_configured)?;
    let record = cms
        .card_certificate(serial)
        .await
        .map_err(|e| crate::cms::error_object(&e))?;
    let unusable = |why: String| ErrorObject::new(ErrorCode::CmsRefused, why);
    let der = cms_api::protocol::b64::decode(&record.certificate)
        .ok_or_else(|| unusable("the service's copy is not base64".into()))?;
    Certificate::from_der(&der).map_err(|e| unusable(format!("the service's copy: {e}")))
}
