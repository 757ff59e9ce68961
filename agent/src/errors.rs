//! The agent's refusals in the socket API's words, where more than one room says them: a card's
//! error (the status word in the log and in `data`, not in the message), a PIN prompt that
//! ended, a locked passcode, and a card that lost its certificate.

use crate::pinentry::PinentryError;
use agent_ipc::{ErrorCode, ErrorObject};

/// A card without its authentication certificate, and what heals it: the one message the agent
/// gives for such a card, whether it is signing in or asked to.
pub(crate) fn certificate_lost(serial: &str) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::CardError,
        format!(
            "card {serial} has lost its certificate: heal it with the card doctor \
             (iactl doctor --heal), which writes it back from the Card Management Service"
        ),
    )
}

/// A card whose passcode is locked: only the Registration Authority can unblock it.
pub(crate) fn pin_blocked() -> ErrorObject {
    ErrorObject::new(
        ErrorCode::PinBlocked,
        "Your smartcard's passcode is locked — contact your Registration Authority",
    )
}

/// A card error in the socket API's words.
pub(crate) fn card_error(e: &piv::Error) -> ErrorObject {
    use piv::Error as E;
    match e {
        E::WrongPin { tries_left } => ErrorObject::new(
            ErrorCode::WrongPin,
            match tries_left {
                1 => "Wrong passcode: 1 try left before the card locks".to_owned(),
                n => format!("Wrong passcode: {n} tries left before the card locks"),
            },
        )
        .with_data(serde_json::json!({ "tries_left": tries_left })),
        E::PinBlocked => pin_blocked(),
        E::NotPiv => ErrorObject::new(ErrorCode::NotPiv, e.to_string()),
        E::CardRemoved => ErrorObject::new(ErrorCode::CardRemoved, e.to_string()),
        E::NoReader => ErrorObject::new(ErrorCode::NoReader, e.to_string()),
        E::ServiceUnavailable => ErrorObject::new(ErrorCode::PcscUnavailable, e.to_string()),
        // The status word is for logs and tools, not for the holder.
        E::Status(sw) => {
            tracing::info!(status = %sw, "the card refused a command");
            ErrorObject::new(
                ErrorCode::CardError,
                format!("the card refused a step: {}", sw.meaning()),
            )
            .with_data(serde_json::json!({ "status": sw.to_string() }))
        }
        other => ErrorObject::new(ErrorCode::CardError, other.to_string()),
    }
}

/// A PIN prompt that did not give a PIN, in the socket API's words.
pub(crate) fn pinentry_error(e: &PinentryError) -> ErrorObject {
    match e {
        PinentryError::Cancelled | PinentryError::TimedOut => {
            ErrorObject::new(ErrorCode::PinCancelled, e.to_string())
        }
        PinentryError::Failed(_) => ErrorObject::new(ErrorCode::PinentryFailed, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_from_the_card_is_said_in_words_with_the_status_word_in_data() {
        let e = card_error(&piv::Error::Status(piv::StatusWord::WRONG_P1P2));
        assert_eq!(e.code, ErrorCode::CardError);
        assert!(!e.message.contains("6A86"), "{}", e.message);
        assert!(e.message.contains("algorithm"), "{}", e.message);
        assert_eq!(e.data.unwrap()["status"], "6A86");
        let e = card_error(&piv::Error::ManagementAlgorithmRefused(
            piv::ManagementAlgorithm::Aes128,
        ));
        assert!(e.message.contains("does not use AES-128"), "{}", e.message);
    }

    #[test]
    fn card_errors_keep_tries_left_and_point_to_the_ra() {
        let wrong = card_error(&piv::Error::WrongPin { tries_left: 2 });
        assert_eq!(wrong.code, ErrorCode::WrongPin);
        assert_eq!(wrong.data.unwrap()["tries_left"], 2);
        let blocked = card_error(&piv::Error::PinBlocked);
        assert!(blocked.message.contains("Registration Authority"));
        assert_eq!(
            card_error(&piv::Error::ServiceUnavailable).code,
            ErrorCode::PcscUnavailable
        );
    }
}
