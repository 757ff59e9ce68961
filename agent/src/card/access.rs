//! Reaching a card from the agent's tasks: one connection and one transaction per step, run off
//! the async workers, and the certificate fingerprint the readers' view compares cards by.

use crate::errors::card_error;
use agent_ipc::{ErrorCode, ErrorObject};
use piv::PivCard;
use sha2::{Digest, Sha256};
use std::ffi::CString;

/// SHA-256 of a certificate's DER, as the card identity keeps it.
pub(crate) fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Connects to the card in `reader` (shared, LeaveCard on the way out) and runs `step` in one
/// transaction, whose outcome is the answer. `step` may fail with any error a card error
/// converts into, so a walk that also fails for other reasons answers in one error type.
///
/// Letting go of the card afterwards can fail (pcscd stopped, the card pulled) without undoing
/// anything the step did: a renewal the service has confirmed stays renewed, and is not
/// reported as failed.
pub(crate) fn with_card<T, E: From<piv::Error>>(
    reader: &str,
    step: impl FnOnce(&piv::Transaction<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(piv::Error::from)?;
    let name = CString::new(reader).map_err(|_| piv::Error::NoReader)?;
    let mut card = PivCard::connect(&ctx, &name)?;
    let result = {
        let tx = card.transaction()?;
        step(&tx)
    };
    if let Err(e) = card.disconnect() {
        tracing::debug!(%reader, "disconnecting from the card after its transaction: {e}");
    }
    result
}

/// Runs a blocking card step off the async workers; a card error is said in the socket API's
/// words.
pub(crate) async fn blocking<T: Send + 'static>(
    step: impl FnOnce() -> Result<T, piv::Error> + Send + 'static,
) -> Result<T, ErrorObject> {
    match tokio::task::spawn_blocking(step).await {
        Ok(result) => result.map_err(|e| card_error(&e)),
        Err(e) => Err(ErrorObject::new(
            ErrorCode::Internal,
            format!("a card step failed: {e}"),
        )),
    }
}
