//! The errors of the PC/SC client, written for the person who reads them.

use crate::apdu::StatusWord;
use crate::consts::key;
use thiserror::Error;

/// What [`Error::ServiceUnavailable`] says, with the platform's way to start the service.
#[cfg(not(windows))]
const SERVICE_UNAVAILABLE: &str =
    "the PC/SC service (pcscd) is not running: start it with `systemctl start pcscd.socket`";
/// What [`Error::ServiceUnavailable`] says, with the platform's way to start the service.
#[cfg(windows)]
const SERVICE_UNAVAILABLE: &str =
    "the Smart Card service is not running: start it (Services, \"Smart Card\", or `sc start SCardSvr`)";

/// Everything that can go wrong talking to a PIV card.
#[derive(Debug, Error)]
pub enum Error {
    /// The PIN check failed; the card allows `tries_left` more attempts.
    #[error("wrong PIN: {tries_left} {} left before the PIN is blocked", tries(*tries_left))]
    WrongPin {
        /// Attempts left before the PIN is blocked.
        tries_left: u8,
    },
    /// No PIN attempts left.
    #[error("the PIN is blocked: a Registration Authority can unblock it with the card's PUK")]
    PinBlocked,
    /// The PUK check failed; the card allows `tries_left` more attempts.
    #[error("wrong PUK: {tries_left} {} left before the PUK is blocked", tries(*tries_left))]
    WrongPuk {
        /// Attempts left before the PUK is blocked.
        tries_left: u8,
    },
    /// No PUK attempts left.
    #[error("the PUK is blocked: the card must be re-issued by a Registration Authority")]
    PukBlocked,
    /// A PIN that is not 4 to 8 digits (checked before anything is sent).
    #[error("a PIN is 4 to 8 digits")]
    BadPinFormat,
    /// A PUK that is not 4 to 8 characters (checked before anything is sent).
    #[error("a PUK is 4 to 8 printable characters")]
    BadPukFormat,
    /// SELECT of the PIV application failed: this is not a PIV card.
    #[error("this card has no PIV application")]
    NotPiv,
    /// The card left the reader (or was reset by another program) during the operation.
    #[error("the card was removed from the reader")]
    CardRemoved,
    /// The reader is gone or unknown.
    #[error("the smartcard reader is not available (unplugged?)")]
    NoReader,
    /// pcscd (Windows: the Smart Card service) is not running or stopped during the operation.
    #[error("{}", SERVICE_UNAVAILABLE)]
    ServiceUnavailable,
    /// The operation needs the PIN or the management key to have been presented first.
    #[error("the card refused: the PIN or the management key must be presented first")]
    SecurityStatusNotSatisfied,
    /// The data object or key does not exist on the card.
    #[error("the card has no such data object or key")]
    NotFound,
    /// Mutual authentication with the 9B management key failed.
    #[error("the card rejected the management key (or failed to prove it holds the same key)")]
    ManagementKeyRejected,
    /// The card refused a management-key authentication in `0`: its 9B key uses another
    /// algorithm.
    #[error("this card's management key does not use {0}: the card refused a {0} authentication")]
    ManagementAlgorithmRefused(crate::ManagementAlgorithm),
    /// The card refused a management-key authentication in every algorithm there is.
    #[error(
        "this card's management key uses none of 3DES, AES-128, AES-192 and AES-256, the \
         algorithms of PIV cards: it cannot be managed"
    )]
    ManagementAlgorithmUnknown,
    /// SET MANAGEMENT KEY refused a new key in `0`: the card does not take keys of it.
    #[error("this card does not take {0} management keys")]
    ManagementAlgorithmNotAccepted(crate::ManagementAlgorithm),
    /// The card answered with a status word that has no more specific meaning here.
    #[error("{meaning} (status {sw})", meaning = .0.meaning(), sw = .0)]
    Status(StatusWord),
    /// The card's reply is not what the protocol allows.
    #[error("the card sent a malformed reply: {0}")]
    Malformed(String),
    /// A key algorithm this client does not support.
    #[error("key algorithm {0:02X} is not supported (RSA-2048 07, P-256 11)")]
    UnsupportedAlgorithm(u8),
    /// A certificate that cannot be parsed or used.
    #[error("the certificate cannot be used: {0}")]
    BadCertificate(String),
    /// A public key that cannot be read or encoded.
    #[error("the public key cannot be used: {0}")]
    BadPublicKey(String),
    /// A signature that does not verify against the public key.
    #[error("the signature does not verify against the public key")]
    BadSignature,
    /// A management key that cannot be used.
    #[error(transparent)]
    ManagementKey(#[from] crate::management_key::ManagementKeyError),
    /// The service answering the management-key challenge (local or remote) failed.
    #[error("the management-key service failed: {0}")]
    Responder(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other PC/SC failure.
    #[error("PC/SC error: {0}")]
    Pcsc(#[source] pcsc::Error),
}

fn tries(n: u8) -> &'static str {
    if n == 1 {
        "try"
    } else {
        "tries"
    }
}

impl Error {
    /// Whether the card is gone (removed or reset), so the caller should wait for the next
    /// insertion rather than retry.
    pub fn is_card_removed(&self) -> bool {
        matches!(self, Error::CardRemoved)
    }
}

impl From<pcsc::Error> for Error {
    fn from(e: pcsc::Error) -> Self {
        use pcsc::Error as P;
        match e {
            P::RemovedCard | P::ResetCard | P::NoSmartcard => Error::CardRemoved,
            P::NoService | P::ServiceStopped => Error::ServiceUnavailable,
            P::UnknownReader | P::ReaderUnavailable | P::NoReadersAvailable => Error::NoReader,
            other => Error::Pcsc(other),
        }
    }
}

/// Maps a failing status word to an error for a command that concerns key reference `key_ref`
/// (the PIN, the PUK, the management key or an asymmetric slot).
pub(crate) fn from_status(sw: StatusWord, key_ref: Option<u8>) -> Error {
    match (sw, key_ref) {
        (sw, Some(key::PUK)) if sw.counter().is_some() => Error::WrongPuk {
            tries_left: sw.counter().unwrap_or(0),
        },
        (StatusWord::AUTH_BLOCKED, Some(key::PUK)) => Error::PukBlocked,
        (sw, Some(key::PIN)) if sw.counter() == Some(0) => Error::PinBlocked,
        (sw, Some(key::PUK)) if sw.counter() == Some(0) => Error::PukBlocked,
        (sw, _) if sw.counter().is_some() => Error::WrongPin {
            tries_left: sw.counter().unwrap_or(0),
        },
        (StatusWord::AUTH_BLOCKED, _) => Error::PinBlocked,
        (StatusWord::SECURITY_STATUS_NOT_SATISFIED, Some(key::MANAGEMENT)) => {
            Error::ManagementKeyRejected
        }
        (StatusWord::SECURITY_STATUS_NOT_SATISFIED, _) => Error::SecurityStatusNotSatisfied,
        (StatusWord::NOT_FOUND | StatusWord::REFERENCE_NOT_FOUND, _) => Error::NotFound,
        (sw, _) => Error::Status(sw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_map_to_typed_errors() {
        assert!(matches!(
            from_status(StatusWord(0x63C2), Some(key::PIN)),
            Error::WrongPin { tries_left: 2 }
        ));
        assert!(matches!(
            from_status(StatusWord(0x63C0), Some(key::PIN)),
            Error::PinBlocked
        ));
        assert!(matches!(
            from_status(StatusWord(0x63C1), Some(key::PUK)),
            Error::WrongPuk { tries_left: 1 }
        ));
        assert!(matches!(
            from_status(StatusWord::AUTH_BLOCKED, Some(key::PUK)),
            Error::PukBlocked
        ));
        assert!(matches!(
            from_status(StatusWord::AUTH_BLOCKED, Some(key::PIN)),
            Error::PinBlocked
        ));
        assert!(matches!(
            from_status(
                StatusWord::SECURITY_STATUS_NOT_SATISFIED,
                Some(key::MANAGEMENT)
            ),
            Error::ManagementKeyRejected
        ));
        assert!(matches!(
            from_status(StatusWord::SECURITY_STATUS_NOT_SATISFIED, Some(0x9A)),
            Error::SecurityStatusNotSatisfied
        ));
        assert!(matches!(
            from_status(StatusWord::NOT_FOUND, None),
            Error::NotFound
        ));
        assert!(matches!(
            from_status(StatusWord::WRONG_DATA, None),
            Error::Status(StatusWord::WRONG_DATA)
        ));
    }

    #[test]
    fn pcsc_errors_map_to_typed_errors() {
        for e in [
            pcsc::Error::RemovedCard,
            pcsc::Error::ResetCard,
            pcsc::Error::NoSmartcard,
        ] {
            assert!(Error::from(e).is_card_removed());
        }
        for e in [pcsc::Error::NoService, pcsc::Error::ServiceStopped] {
            let err = Error::from(e);
            assert!(matches!(err, Error::ServiceUnavailable));
            assert_eq!(err.to_string(), SERVICE_UNAVAILABLE);
        }
        assert!(matches!(
            Error::from(pcsc::Error::UnknownReader),
            Error::NoReader
        ));
        let other = Error::from(pcsc::Error::SharingViolation);
        assert!(matches!(other, Error::Pcsc(pcsc::Error::SharingViolation)));
        assert!(std::error::Error::source(&other).is_some());
    }

    #[test]
    fn messages_read_well() {
        assert_eq!(
            Error::WrongPin { tries_left: 1 }.to_string(),
            "wrong PIN: 1 try left before the PIN is blocked"
        );
        assert_eq!(
            Error::WrongPin { tries_left: 2 }.to_string(),
            "wrong PIN: 2 tries left before the PIN is blocked"
        );
    }
}
