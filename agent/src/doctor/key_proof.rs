//! The passcode, asked once, and the proof that the card's key matches a certificate: the card
//! signs 32 random bytes with its 9A key and the signature is checked with the certificate's
//! key.

use super::facts::{card_gone, certificate_of};
use super::healing::Remedy;
use super::{Visit, PIN_MAX_TRIES};
use crate::card::{blocking, with_card};
use crate::config::PinentryConfig;
use crate::pinentry::{self, PinPrompt, PinentryError};
use agent_ipc::ErrorObject;
use piv::consts::key;
use piv::{Certificate, Pin, PinStatus};

/// What proving the key gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyProof {
    /// Not tried, and why.
    NotChecked(String),
    /// The card's signature verifies with the certificate's key.
    Matches,
    /// It does not (or the card could not sign with its 9A key).
    Mismatch,
    /// The passcode was verified; there was no certificate to check against.
    PinOnly,
    /// A wrong passcode, with the tries left.
    WrongPin(u8),
    /// The passcode is locked.
    Blocked,
}

impl KeyProof {
    /// Whether the passcode was verified on the card.
    pub(super) fn pin_verified(&self) -> bool {
        matches!(
            self,
            KeyProof::Matches | KeyProof::Mismatch | KeyProof::PinOnly
        )
    }
}

impl Visit<'_> {
    /// Asks for the passcode (unless the card's is locked) and proves the card's key against
    /// its certificate, else the service's copy; gives the passcode back when it was verified,
    /// for healing.
    pub(super) async fn prove(
        &self,
        healing: Remedy,
    ) -> Result<(KeyProof, Option<Pin>), ErrorObject> {
        let first = &self.first;
        if first.pin == Some(PinStatus::Blocked) {
            return Ok((KeyProof::Blocked, None));
        }
        let serial = first
            .serial
            .map(|s| s.to_string())
            .unwrap_or_else(|| "in the reader".into());
        let tries = match first.pin {
            Some(PinStatus::NotVerified { tries_left }) => Some(tries_left),
            _ => None,
        };
        match ask_pin(&self.ctx.pinentry, &serial, tries, healing).await {
            Ok(given) => {
                let certificate = certificate_of(&first.certificate).or(self.copy());
                let proof = prove_key(&self.reader, &given, certificate).await?;
                let pin = proof.pin_verified().then_some(given);
                Ok((proof, pin))
            }
            Err(reason) => Ok((KeyProof::NotChecked(reason), None)),
        }
    }
}

/// Verifies `pin`, has the card sign 32 random bytes with its 9A key, checks the signature
/// with `certificate`'s key, and logs the passcode out again.
pub(super) async fn prove_key(
    reader: &str,
    pin: &Pin,
    certificate: Option<&Certificate>,
) -> Result<KeyProof, ErrorObject> {
    let reader = reader.to_owned();
    let pin = pin.clone();
    let certificate = certificate.cloned();
    blocking(move || {
        with_card(&reader, |tx| {
            match tx.verify_pin(&pin) {
                Ok(()) => {}
                Err(piv::Error::WrongPin { tries_left: 0 }) | Err(piv::Error::PinBlocked) => {
                    return Ok(KeyProof::Blocked)
                }
                Err(piv::Error::WrongPin { tries_left }) => {
                    return Ok(KeyProof::WrongPin(tries_left))
                }
                Err(e) => return Err(e),
            }
            let Some(certificate) = certificate else {
                let _ = tx.logout();
                return Ok(KeyProof::PinOnly);
            };
            let challenge = random_challenge()?;
            let proof = match certificate.public_key().and_then(|k| k.algorithm()) {
                Ok(algorithm) => match tx.sign(key::AUTHENTICATION, algorithm, &challenge) {
                    Ok(signature) if certificate.verify(&challenge, &signature).is_ok() => {
                        KeyProof::Matches
                    }
                    Ok(_) => KeyProof::Mismatch,
                    Err(e) if card_gone(&e) => return Err(e),
                    Err(e) => {
                        tracing::info!(error = %e, "the card cannot sign with its 9A key");
                        KeyProof::Mismatch
                    }
                },
                Err(e) => {
                    tracing::info!(error = %e, "the certificate's key is not usable");
                    KeyProof::Mismatch
                }
            };
            let _ = tx.logout();
            Ok(proof)
        })
    })
    .await
}

/// 32 bytes from the operating system's random source (`getrandom(2)` on Linux,
/// `BCryptGenRandom` on Windows).
fn random_challenge() -> Result<[u8; 32], piv::Error> {
    let mut challenge = [0u8; 32];
    getrandom::getrandom(&mut challenge)
        .map_err(|e| piv::Error::Malformed(format!("no random bytes: {e}")))?;
    Ok(challenge)
}

/// Asks the holder for the passcode, naming the card and why; `Err` says why there is none.
async fn ask_pin(
    config: &PinentryConfig,
    serial: &str,
    tries_left: Option<u8>,
    healing: Remedy,
) -> Result<Pin, String> {
    let tries = match tries_left {
        Some(1) => "\nThis is the last try before the card locks.".to_owned(),
        Some(n) if n < PIN_MAX_TRIES => format!("\n{n} tries left before the card locks."),
        _ => String::new(),
    };
    let finish = match healing {
        Remedy::Nothing => "",
        Remedy::FinishRenewal => "\nIts interrupted renewal then finishes.",
        Remedy::Restore => {
            "\nIts certificate is then written back from the Card Management Service."
        }
    };
    let prompt = PinPrompt {
        title: "Identity Agent — card doctor".into(),
        description: format!(
            "Enter the passcode of smartcard {serial} so the card doctor can check that its key \
             matches its certificate.{finish}{tries}"
        ),
        prompt: "Passcode:".into(),
        error: None,
        repeat: None,
    };
    match pinentry::ask_pin(config, &prompt).await {
        Ok(given) => Pin::new(&given).map_err(|_| {
            "the passcode given is not 4 to 8 digits; nothing was sent to the card".into()
        }),
        Err(PinentryError::Cancelled) => Err("the passcode prompt was cancelled".into()),
        Err(PinentryError::TimedOut) => Err("the passcode prompt timed out".into()),
        Err(e @ PinentryError::Failed(_)) => Err(format!("the passcode prompt failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_challenges_differ() {
        let a = random_challenge().unwrap();
        let b = random_challenge().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
