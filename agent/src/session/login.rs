//! Signing in with a card: the tries left read from the card, the PIN through pinentry, the
//! PIN verified on the card, the service's challenge signed by the 9A key, the session opened,
//! and the remembered default role selected.

use super::roles::RoleMemory;
use crate::card::{blocking, fingerprint, whose_card, with_card, CardCertificate, CardIdentity};
use crate::config::PinentryConfig;
use crate::errors::{certificate_lost, pin_blocked, pinentry_error};
use crate::operation::{self, OperationEngine};
use crate::pinentry::{self, PinPrompt};
use agent_ipc::{ErrorCode, ErrorObject, OperationStatus, SessionState};
use cms_api::client::CmsClient;
use cms_api::protocol::{auth_message, b64, SessionRequest, SessionView};
use piv::consts::key;
use piv::{CardSerial, Pin, PinStatus};
use std::sync::Arc;
use zeroize::Zeroizing;

/// What the login task needs besides the card.
#[derive(Debug, Clone)]
pub(crate) struct LoginContext {
    pub pinentry: PinentryConfig,
    pub cms: Option<CmsClient>,
    pub roles: Arc<RoleMemory>,
    pub engine: OperationEngine,
}

/// A session the service opened for a card.
pub(crate) struct SignedIn {
    pub reader: String,
    pub serial: CardSerial,
    pub fingerprint: [u8; 32],
    pub session: SessionView,
    pub client: CmsClient,
    pub ticket: Zeroizing<String>,
    pub signed_in_at: i64,
    /// Whether the card is in its reader (false only under the `keep` removal action).
    pub card_present: bool,
    /// The card's new certificate when an interrupted renewal was finished before signing in.
    pub renewed: Option<CardCertificate>,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("reader", &self.reader)
            .field("serial", &self.serial)
            .field("user", &self.session.user.id)
            .finish_non_exhaustive()
    }
}

/// A step of a login, reported to the session owner as it happens.
#[derive(Debug)]
pub(crate) enum LoginStep {
    /// The login entered a new state (waiting for the PIN, authenticating).
    State(SessionState),
    /// A wrong PIN was entered (for the audit log).
    WrongPin(u8),
    /// A step of an interrupted renewal finished before signing in.
    Operation(OperationStatus),
}

/// Signs in with `card`, reporting each step to `report`.
pub(crate) async fn login(
    ctx: LoginContext,
    card: CardIdentity,
    report: impl Fn(LoginStep) + Send + Sync + Clone + 'static,
) -> Result<SignedIn, ErrorObject> {
    let cms = ctx.cms.clone().ok_or_else(crate::cms::not_configured)?;
    let card_serial = card
        .serial
        .ok_or_else(|| ErrorObject::new(ErrorCode::NotPiv, "the card has no readable serial"))?;
    let serial = card_serial.to_string();
    let mut certificate = card
        .certificate
        .clone()
        .ok_or_else(|| certificate_lost(&serial))?;

    let reader = card.reader.clone();
    let tries_left = match blocking(move || pin_status(&reader)).await? {
        PinStatus::Blocked => return Err(pin_blocked()),
        PinStatus::Verified => None,
        PinStatus::NotVerified { tries_left } => Some(tries_left),
    };

    report(LoginStep::State(SessionState::WaitingForPin));
    let unfinished = ctx
        .engine
        .journal
        .get(&serial)
        .is_some_and(|e| e.kind == agent_ipc::OperationKind::Renew);
    let mut asked = prompt(certificate.holder.as_deref(), &serial, tries_left);
    if unfinished {
        asked.description = format!(
            "{}\nIts renewal was interrupted: it finishes first.",
            asked.description
        );
    }
    let pin = pinentry::ask_pin(&ctx.pinentry, &asked)
        .await
        .map_err(|e| pinentry_error(&e))?;
    let pin = Pin::new(&pin).map_err(|_| {
        ErrorObject::new(
            ErrorCode::PinPolicy,
            "a passcode is 4 to 8 digits; nothing was sent to the card",
        )
    })?;

    report(LoginStep::State(SessionState::Authenticating));
    let mut renewed = None;
    if unfinished {
        let steps = report.clone();
        let progress: operation::Report = Arc::new(move |s| steps(LoginStep::Operation(s)));
        let job = operation::CardJob::new(&card.reader, card_serial, progress);
        let resumed = ctx.engine.resume_renewal(job, &pin).await;
        if let Some(finished) = resumed? {
            if let Some(fresh) = finished.certificate {
                certificate = fresh.clone();
                renewed = Some(fresh);
            }
        }
    }
    let challenge = cms
        .challenge(&serial)
        .await
        .map_err(|e| crate::cms::error_object(&e))?;
    let raw = b64::decode_url(&challenge.challenge)
        .ok_or_else(|| ErrorObject::new(ErrorCode::CmsRefused, "the challenge is not base64url"))?;
    let message = auth_message(&challenge.serial, &raw);
    let reader = card.reader.clone();
    let expected = certificate.fingerprint;
    let signed = blocking(move || sign_challenge(&reader, &pin, &message, &expected)).await;
    let Signed {
        signature,
        certificate: der,
    } = match signed {
        Ok(Some(signed)) => signed,
        Ok(None) => return Err(certificate_lost(&serial)),
        Err(e) => {
            if e.code == ErrorCode::WrongPin {
                let left = e.data.as_ref().and_then(|d| d["tries_left"].as_u64());
                report(LoginStep::WrongPin(left.unwrap_or(0) as u8));
            }
            return Err(e);
        }
    };
    let created = cms
        .create_session(&SessionRequest {
            serial: challenge.serial.clone(),
            challenge: challenge.challenge,
            signature: b64::encode(&signature),
            certificate: b64::encode(&der),
        })
        .await
        .map_err(|e| crate::cms::error_object(&e))?;
    let client = cms.with_session(&created.session_token);
    let mut session = created.session.clone();
    if session.selected_role.is_none() {
        if let Some(role) = ctx.roles.default_for(&session.user.id) {
            if session.roles.iter().any(|r| r.id == role) {
                match client.select_role(role).await {
                    Ok(view) => session = view,
                    Err(e) => tracing::warn!("selecting the default role failed: {e}"),
                }
            }
        }
    }
    Ok(SignedIn {
        reader: card.reader,
        serial: card_serial,
        fingerprint: expected,
        session,
        client,
        ticket: created.ticket.clone(),
        signed_in_at: super::now(),
        card_present: true,
        renewed,
    })
}

/// The PIN prompt: names the holder (by name, when the certificate gives one) and the card,
/// and the tries left.
fn prompt(holder: Option<&str>, serial: &str, tries_left: Option<u8>) -> PinPrompt {
    let tries = match tries_left {
        Some(1) => "This is the last try before the card locks.".to_owned(),
        Some(n) => format!("{n} tries left before the card locks."),
        None => String::new(),
    };
    let whose = whose_card(holder, serial);
    PinPrompt {
        title: "Identity Agent".into(),
        description: format!("Enter the passcode of {whose}.\n{tries}")
            .trim_end()
            .to_owned(),
        prompt: "Passcode:".into(),
        error: None,
        repeat: None,
    }
}

fn pin_status(reader: &str) -> Result<PinStatus, piv::Error> {
    with_card(reader, |tx| tx.pin_status())
}

/// The card's signature over a challenge, and the certificate (DER) it was made for.
struct Signed {
    signature: Vec<u8>,
    certificate: Vec<u8>,
}

/// Verifies the PIN, checks the certificate is the one identified at insertion, signs
/// `message` with the 9A key and logs the PIN out again. `None` when the certificate is gone
/// (before the PIN is sent).
fn sign_challenge(
    reader: &str,
    pin: &Pin,
    message: &[u8],
    expected_fingerprint: &[u8; 32],
) -> Result<Option<Signed>, piv::Error> {
    with_card(reader, |tx| {
        let certificate = match tx.read_certificate(key::AUTHENTICATION) {
            Err(piv::Error::NotFound) => return Ok(None),
            read => read?,
        };
        if fingerprint(certificate.der()) != *expected_fingerprint {
            return Err(piv::Error::BadCertificate(
                "the card's certificate changed since it was inserted".into(),
            ));
        }
        let algorithm = certificate.public_key()?.algorithm()?;
        tx.verify_pin(pin)?;
        let signed = tx.sign(key::AUTHENTICATION, algorithm, message);
        let logged_out = tx.logout();
        let signature = signed?;
        logged_out?;
        Ok(Some(Signed {
            signature,
            certificate: certificate.der().to_vec(),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_names_holder_card_and_tries() {
        let p = prompt(Some("Jane Doe"), "4082A001132F2817", Some(2));
        assert_eq!(
            p.description,
            "Enter the passcode of Jane Doe's smartcard 4082A001132F2817.\n\
             2 tries left before the card locks."
        );
        assert!(prompt(Some("J"), "S", Some(1))
            .description
            .contains("last try"));
        let unnamed = prompt(None, "4082A001132F2817", None);
        assert_eq!(
            unnamed.description,
            "Enter the passcode of smartcard 4082A001132F2817."
        );
    }
}
