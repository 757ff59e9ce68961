//! Why a run stopped, and how that is said: differently before the card was changed (it is as
//! it was: try again) and after (it finishes at the next insertion).

use super::noun;
use crate::errors::card_error;
use agent_ipc::{ErrorCode, ErrorObject, OperationKind};
use cms_api::client::ClientError;

/// Why a run stopped.
#[derive(Debug)]
pub(super) enum Failure {
    /// The card refused or went away.
    Card(piv::Error),
    /// The service refused or could not be reached.
    Cms(ClientError),
    /// `cancel_operation`, or the card pulled, before the card was changed.
    Cancelled,
    /// Anything else, already in the socket API's words.
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
    pub(super) fn unchanged(self, kind: OperationKind) -> ErrorObject {
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

    /// The error of a run that may have changed the card, with what finishes it.
    pub(super) fn into_error(self, kind: OperationKind) -> ErrorObject {
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

/// A PUK from the service that is not a PUK.
pub(super) fn bad_puk() -> Failure {
    Failure::Other(ErrorObject::new(
        ErrorCode::CmsRefused,
        "the service released a PUK the card cannot take",
    ))
}
