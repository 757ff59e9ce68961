//! The holder choosing a new PIN during a repair: asked twice and checked against the PIN
//! policy, asked again with the broken rule (or the mismatch) named, up to three times.
//!
//! Pinentry is asked to take the PIN twice (`SETREPEAT`). Not every pinentry does (Debian's
//! pinentry-curses 1.2.1 accepts the command and asks once): unless pinentry says it checked
//! the repeat, the agent asks for it in a second prompt and compares the two itself.

use crate::config::PinentryConfig;
use crate::errors::pinentry_error;
use crate::pinentry::{self, PinPrompt};
use agent_ipc::{ErrorCode, ErrorObject};
use cms_api::pin_policy::check_pin;
use zeroize::Zeroizing;

/// How many refused choices (breaking the policy, or two entries that differ) the holder may
/// make before the repair stops.
const ATTEMPTS: usize = 3;

/// The error shown when the two entries of a new PIN differ.
const MISMATCH: &str = "The passcodes did not match. Choose again.";

/// Asks the holder of the card `whose` names ([`crate::card::whose_card`]) for the PIN that
/// renews it.
pub(crate) async fn ask_renewal_pin(
    config: &PinentryConfig,
    whose: &str,
) -> Result<Zeroizing<String>, ErrorObject> {
    let prompt = PinPrompt {
        title: "Identity Agent — renewal".into(),
        description: format!(
            "Enter the passcode of {whose} to renew its certificates. You stay \
             signed in."
        ),
        prompt: "Passcode:".into(),
        error: None,
        repeat: None,
    };
    pinentry::ask_pin(config, &prompt)
        .await
        .map_err(|e| pinentry_error(&e))
}

/// Why a new PIN was refused.
enum Refusal {
    Policy(cms_api::pin_policy::PinPolicyError),
    Mismatch,
}

/// Asks the holder of the card `whose` names for a new PIN that keeps the policy, entered
/// twice alike.
pub(crate) async fn ask_new_pin(
    config: &PinentryConfig,
    whose: &str,
) -> Result<Zeroizing<String>, ErrorObject> {
    let mut prompt = PinPrompt {
        title: "Identity Agent — new passcode".into(),
        description: format!(
            "Choose a new passcode for {whose}: 4 to 8 digits, not one digit \
             repeated and not a run such as 1234 or 4321."
        ),
        prompt: "New passcode:".into(),
        error: None,
        repeat: Some("Repeat the passcode:".into()),
    };
    let again = PinPrompt {
        title: prompt.title.clone(),
        description: format!("Enter the new passcode for {whose} again."),
        prompt: "Repeat the passcode:".into(),
        error: None,
        repeat: None,
    };
    let mut refused = None;
    for _ in 0..ATTEMPTS {
        let entry = pinentry::ask_pin_entry(config, &prompt)
            .await
            .map_err(|e| pinentry_error(&e))?;
        if let Err(rule) = check_pin(&entry.pin) {
            prompt.error = Some(format!("Refused: {rule}. Choose another."));
            refused = Some(Refusal::Policy(rule));
            continue;
        }
        if !entry.repeated {
            tracing::debug!("pinentry did not confirm the repeat: asking for it");
            let repeat = pinentry::ask_pin(config, &again)
                .await
                .map_err(|e| pinentry_error(&e))?;
            if !same_secret(entry.pin.as_bytes(), repeat.as_bytes()) {
                prompt.error = Some(MISMATCH.into());
                refused = Some(Refusal::Mismatch);
                continue;
            }
        }
        return Ok(entry.pin);
    }
    let message = match refused {
        Some(Refusal::Mismatch) => "no passcode was chosen: the two entries did not match".into(),
        Some(Refusal::Policy(rule)) => {
            format!("no passcode was chosen that keeps the policy: {rule}")
        }
        None => "no passcode was chosen".into(),
    };
    Err(ErrorObject::new(ErrorCode::PinPolicy, message))
}

/// Whether two secrets are equal, looking at every byte whatever the first difference (only
/// the lengths are compared early).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"918273", b"918273"));
        assert!(same_secret(b"", b""));
        assert!(!same_secret(b"918273", b"918274"));
        assert!(!same_secret(b"918273", b"018273"));
        assert!(!same_secret(b"918273", b"9182730"));
        assert!(!same_secret(b"9182", b""));
    }
}
