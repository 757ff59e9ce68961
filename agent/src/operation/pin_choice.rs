//! The holder choosing a new PIN during a repair: asked twice through pinentry (which checks
//! both entries match) and checked against the PIN policy, asked again with the broken rule
//! named, up to three times.

use crate::config::PinentryConfig;
use crate::pinentry::{self, PinPrompt};
use crate::session::pinentry_error;
use agent_ipc::{ErrorCode, ErrorObject};
use cms::pin_policy::check_pin;
use zeroize::Zeroizing;

/// How many policy-breaking choices the holder may make before the repair stops.
const ATTEMPTS: usize = 3;

/// Asks the holder of card `serial` for the PIN that renews it.
pub(crate) async fn ask_renewal_pin(
    config: &PinentryConfig,
    serial: &str,
) -> Result<Zeroizing<String>, ErrorObject> {
    let prompt = PinPrompt {
        title: "Identity Agent — renewal".into(),
        description: format!(
            "Enter the passcode of smartcard {serial} to renew its certificates. You stay \
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

/// Asks the holder of card `serial` for a new PIN that keeps the policy.
pub(crate) async fn ask_new_pin(
    config: &PinentryConfig,
    serial: &str,
) -> Result<Zeroizing<String>, ErrorObject> {
    let mut prompt = PinPrompt {
        title: "Identity Agent — new passcode".into(),
        description: format!(
            "Choose a new passcode for smartcard {serial}: 4 to 8 digits, not one digit \
             repeated and not a run such as 1234 or 4321."
        ),
        prompt: "New passcode:".into(),
        error: None,
        repeat: Some("Repeat the passcode:".into()),
    };
    let mut broken = None;
    for _ in 0..ATTEMPTS {
        let pin = pinentry::ask_pin(config, &prompt)
            .await
            .map_err(|e| pinentry_error(&e))?;
        match check_pin(&pin) {
            Ok(()) => return Ok(pin),
            Err(rule) => {
                prompt.error = Some(format!("Refused: {rule}. Choose another."));
                broken = Some(rule);
            }
        }
    }
    let rule = broken.map(|r| r.to_string()).unwrap_or_default();
    Err(ErrorObject::new(
        ErrorCode::PinPolicy,
        format!("no passcode was chosen that keeps the policy: {rule}"),
    ))
}
