//! Signing in with a card: the tries left read from the card, the PIN through pinentry, the
//! PIN verified on the card, the service's challenge signed by the 9A key, the session opened,
//! and the remembered default role selected.

use super::roles::RoleMemory;
use crate::card::{CardCertificate, CardIdentity};
use crate::config::PinentryConfig;
use crate::operation::{self, Operations};
use crate::pinentry::{self, PinPrompt, PinentryError};
use agent_ipc::{ErrorCode, ErrorObject, OperationStatus, SessionState};
use cms_api::client::CmsClient;
use cms_api::protocol::{auth_message, b64, SessionRequest, SessionView};
use piv::consts::key;
use piv::{Pin, PinStatus, PivCard};
use std::ffi::CString;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What the login task needs besides the card.
#[derive(Debug, Clone)]
pub(crate) struct LoginContext {
    pub pinentry: PinentryConfig,
    pub cms: Option<CmsClient>,
    pub roles: Arc<RoleMemory>,
    pub operations: Operations,
}

/// A session the service opened for a card.
pub(crate) struct SignedIn {
    pub reader: String,
    pub serial: String,
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
    let serial = card
        .serial
        .map(|s| s.to_string())
        .ok_or_else(|| ErrorObject::new(ErrorCode::NotPiv, "the card has no readable serial"))?;
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
        .operations
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
        let resumed =
            operation::resume_renewal(&ctx.operations, &card.reader, &serial, &pin, progress).await;
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
        serial,
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

/// How a PIN prompt names a card: `Jane Doe's smartcard 4082…`, or `smartcard 4082…` when the
/// holder's name is not known (a certificate from before the service named holders gives their
/// user id only; the serial is printed on the card).
pub(crate) fn whose_card(holder: Option<&str>, serial: &str) -> String {
    match holder {
        Some(name) => format!("{name}'s smartcard {serial}"),
        None => format!("smartcard {serial}"),
    }
}

/// Runs a blocking card step off the async workers.
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

/// Connects to the card in `reader` (shared, LeaveCard on the way out) and runs `step` in one
/// transaction, whose outcome is the answer.
///
/// Letting go of the card afterwards can fail (pcscd stopped, the card pulled) without undoing
/// anything the step did: a renewal the service has confirmed stays renewed, and is not
/// reported as failed.
pub(crate) fn with_card<T>(
    reader: &str,
    step: impl FnOnce(&piv::Transaction<'_>) -> Result<T, piv::Error>,
) -> Result<T, piv::Error> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)?;
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
        if super::fingerprint(certificate.der()) != *expected_fingerprint {
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

/// A card without its authentication certificate, and what heals it.
pub(crate) fn certificate_lost(serial: &str) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::CardError,
        format!(
            "card {serial} has lost its certificate: heal it with the card doctor \
             (iactl doctor --heal), which writes it back from the Card Management Service"
        ),
    )
}

fn pin_blocked() -> ErrorObject {
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
