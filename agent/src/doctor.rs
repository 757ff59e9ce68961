//! The card doctor: checks a card in plain words (the PIV applet, its identity, its
//! certificate and who issued it, its expiry, the passcode's tries, whether its key matches
//! its certificate, an unfinished operation) and, when asked to heal, finishes an interrupted
//! renewal through the journaled operation engine — the only way the agent writes to a card.
//!
//! The agent holds no management key and the Card Management Service has no call that gives
//! a card's active certificate back outside an operation, so a missing or unusable
//! certificate is restored only by finishing the card's journaled renewal (which puts a new
//! key and its certificate on the card); otherwise the Registration Authority repairs it.

use crate::card::{CardCertificate, CardIdentity};
use crate::config::PinentryConfig;
use crate::operation::{self, journal::Entry, Finished, Operations};
use crate::pinentry::{self, PinPrompt, PinentryError};
use crate::session::{card_error, with_card};
use agent_ipc::{DoctorCheck, DoctorReport, ErrorCode, ErrorObject, OperationKind};
use der::{DecodePem, Encode};
use piv::consts::key;
use piv::{Certificate, Pin, PinStatus};
use std::path::PathBuf;

/// The passcode tries a card has when none were spent (the PIV default the service keeps).
pub const PIN_MAX_TRIES: u8 = 3;

/// What the doctor needs besides the card.
#[derive(Debug, Clone)]
pub(crate) struct DoctorContext {
    /// The operation engine (journal and service) that finishes an interrupted renewal.
    pub operations: Operations,
    /// How to ask for the passcode.
    pub pinentry: PinentryConfig,
    /// The Card Management Service's CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// How many days before expiry a certificate is worth a warning.
    pub warning_days: u32,
}

/// The doctor's findings, and what the owner must follow.
#[derive(Debug)]
pub(crate) struct DoctorOutcome {
    /// The report for the caller.
    pub report: DoctorReport,
    /// The renewal the doctor finished, with the card's new certificate.
    pub finished: Option<Finished>,
    /// A wrong passcode entered at the doctor's prompt, with the tries left (for the audit).
    pub wrong_pin: Option<u8>,
}

/// The 9A certificate as read.
#[derive(Debug, Clone)]
enum CertState {
    Present(Box<Certificate>),
    Missing,
    Unreadable(String),
}

/// What one read of the card gives.
#[derive(Debug, Clone)]
struct Facts {
    /// Whether the PIV applet answered SELECT.
    piv: bool,
    serial: Option<String>,
    certificate: CertState,
    pin: Option<PinStatus>,
}

/// What proving the key gave.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyProof {
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
    fn pin_verified(&self) -> bool {
        matches!(
            self,
            KeyProof::Matches | KeyProof::Mismatch | KeyProof::PinOnly
        )
    }
}

/// The healing of a journaled renewal.
#[derive(Debug)]
enum Heal {
    /// Not asked for, or nothing to heal.
    NotTried,
    /// Not possible without the passcode.
    NoPin,
    /// Finished.
    Done,
    /// Tried and failed.
    Failed(String),
}

/// Examines the card in `card.reader` and heals what is safe to heal when `heal` is set.
/// Steps of a renewal it finishes go to `progress`.
pub(crate) async fn examine(
    ctx: DoctorContext,
    card: CardIdentity,
    heal: bool,
    progress: operation::Report,
) -> Result<DoctorOutcome, ErrorObject> {
    let reader = card.reader.clone();
    let first = read_facts(&reader).await?;
    let journaled = first
        .serial
        .as_deref()
        .and_then(|s| ctx.operations.journal.get(s));
    let renewal = journaled
        .as_ref()
        .filter(|e| e.kind == OperationKind::Renew)
        .is_some();
    let has_certificate = matches!(first.certificate, CertState::Present(_));

    // The passcode, once: to prove the key, and to finish a renewal when healing.
    let mut proof =
        KeyProof::NotChecked("the card holds no certificate to check its key against".into());
    let mut pin = None;
    let wants_pin = first.piv && (has_certificate || (heal && renewal));
    if wants_pin {
        match first.pin {
            Some(PinStatus::Blocked) => proof = KeyProof::Blocked,
            _ => {
                let serial = first
                    .serial
                    .clone()
                    .unwrap_or_else(|| "in the reader".into());
                let tries = match first.pin {
                    Some(PinStatus::NotVerified { tries_left }) => Some(tries_left),
                    _ => None,
                };
                match ask_pin(&ctx.pinentry, &serial, tries, heal && renewal).await {
                    Ok(given) => {
                        let certificate = certificate_of(&first.certificate);
                        proof = prove_key(&reader, &given, certificate).await?;
                        if proof.pin_verified() {
                            pin = Some(given);
                        }
                    }
                    Err(reason) => proof = KeyProof::NotChecked(reason),
                }
            }
        }
    }
    let wrong_pin = match proof {
        KeyProof::WrongPin(left) => Some(left),
        _ => None,
    };

    // Healing: finishing the journaled renewal is the only write the agent may make.
    let mut healed = Heal::NotTried;
    let mut finished = None;
    if heal && renewal {
        healed = match (&pin, first.serial.as_deref()) {
            (Some(pin), Some(serial)) => {
                match operation::resume_renewal(&ctx.operations, &reader, serial, pin, progress)
                    .await
                {
                    Ok(Some(done)) => {
                        finished = Some(done);
                        Heal::Done
                    }
                    Ok(None) => Heal::NotTried,
                    Err(e) => Heal::Failed(e.message),
                }
            }
            _ => Heal::NoPin,
        };
    }
    let (facts, after_proof) = match (&healed, &pin) {
        (Heal::Done, Some(pin)) => {
            let facts = read_facts(&reader).await?;
            let proof = prove_key(&reader, pin, certificate_of(&facts.certificate)).await?;
            (facts, proof)
        }
        _ => (first.clone(), proof.clone()),
    };
    let still_journaled = first
        .serial
        .as_deref()
        .and_then(|s| ctx.operations.journal.get(s));

    let findings = Findings {
        first: &first,
        now: &facts,
        journaled: journaled.as_ref(),
        still_journaled: still_journaled.as_ref(),
        proof_before: &proof,
        proof: &after_proof,
        healed: &healed,
    };
    let checks = findings.checks(&ctx);

    let mut shown = card;
    shown.piv = facts.piv;
    if let Some(serial) = facts.serial.as_deref().and_then(|s| s.parse().ok()) {
        shown.serial = Some(serial);
    }
    shown.certificate =
        certificate_of(&facts.certificate).and_then(CardCertificate::from_certificate);
    Ok(DoctorOutcome {
        report: DoctorReport {
            card: shown.status(crate::time::now()),
            checks,
        },
        finished,
        wrong_pin,
    })
}

/// Everything the checks are judged from.
struct Findings<'a> {
    /// The card before healing.
    first: &'a Facts,
    /// The card now (after healing, if it healed).
    now: &'a Facts,
    journaled: Option<&'a Entry>,
    still_journaled: Option<&'a Entry>,
    proof_before: &'a KeyProof,
    proof: &'a KeyProof,
    healed: &'a Heal,
}

fn check(name: &str, outcome: &str, message: impl Into<String>) -> DoctorCheck {
    DoctorCheck {
        name: name.into(),
        outcome: outcome.into(),
        message: message.into(),
    }
}

const OK: &str = "ok";
const HEALED: &str = "healed";
const WARNING: &str = "warning";
const NEEDS_RA: &str = "needs_ra";

/// Appended to what only the Registration Authority can put right.
const SEE_RA: &str = "— contact your Registration Authority";

impl Findings<'_> {
    fn checks(&self, ctx: &DoctorContext) -> Vec<DoctorCheck> {
        if !self.now.piv {
            let mut checks = vec![check(
                "applet",
                NEEDS_RA,
                format!("The card does not answer as a smartcard this agent can use {SEE_RA}."),
            )];
            for name in [
                "chuid",
                "certificate",
                "certificate_chain",
                "expiry",
                "pin",
                "key_matches_certificate",
                "unfinished_operation",
            ] {
                checks.push(check(
                    name,
                    WARNING,
                    "Not checked: the card does not answer as a smartcard.",
                ));
            }
            return checks;
        }
        vec![
            check("applet", OK, "The card answers as a PIV smartcard."),
            self.chuid(),
            self.certificate(),
            self.chain(ctx),
            self.expiry(ctx),
            self.pin(),
            self.key(),
            self.unfinished(),
        ]
    }

    fn renewal(&self) -> bool {
        self.journaled
            .is_some_and(|e| e.kind == OperationKind::Renew)
    }

    fn heal_failure(&self) -> Option<&str> {
        match self.healed {
            Heal::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    fn chuid(&self) -> DoctorCheck {
        match &self.now.serial {
            Some(serial) => check(
                "chuid",
                OK,
                format!("The card's identity reads correctly (serial {serial})."),
            ),
            None => check(
                "chuid",
                NEEDS_RA,
                format!("The card's identity (its serial number) cannot be read {SEE_RA}."),
            ),
        }
    }

    fn certificate(&self) -> DoctorCheck {
        let problem = match &self.now.certificate {
            CertState::Present(_) => {
                return match (&self.first.certificate, self.healed) {
                    (CertState::Present(_), _) => check(
                        "certificate",
                        OK,
                        "The card's certificate is present and readable.",
                    ),
                    (_, Heal::Done) => check(
                        "certificate",
                        HEALED,
                        "The card's certificate was missing; finishing its interrupted renewal \
                         put a new one on the card.",
                    ),
                    _ => check(
                        "certificate",
                        OK,
                        "The card's certificate is present and readable.",
                    ),
                };
            }
            CertState::Missing => "The card's certificate is missing".to_owned(),
            CertState::Unreadable(e) => format!("The card's certificate cannot be read ({e})"),
        };
        if !self.renewal() {
            return check("certificate", NEEDS_RA, format!("{problem} {SEE_RA}."));
        }
        let message = match (self.healed, self.heal_failure()) {
            (_, Some(reason)) => format!(
                "{problem}. Finishing the card's interrupted renewal, which puts a new one on, \
                 failed: {reason}"
            ),
            (Heal::NoPin, _) => format!(
                "{problem}. The card's interrupted renewal puts a new one on; it needs the \
                 passcode to finish: run the doctor again with healing."
            ),
            _ => format!(
                "{problem}. The card's interrupted renewal puts a new one on: run the doctor \
                 with healing to finish it."
            ),
        };
        match self.still_journaled {
            Some(_) => check("certificate", WARNING, message),
            None => check("certificate", NEEDS_RA, format!("{message} {SEE_RA}.")),
        }
    }

    fn chain(&self, ctx: &DoctorContext) -> DoctorCheck {
        let Some(certificate) = certificate_of(&self.now.certificate) else {
            return check(
                "certificate_chain",
                WARNING,
                "Not checked: the card holds no readable certificate.",
            );
        };
        let Some(ca_file) = &ctx.ca_file else {
            return check(
                "certificate_chain",
                WARNING,
                "Not checked: no Card Management Service authority is configured (cms.ca_file).",
            );
        };
        let ca = match std::fs::read_to_string(ca_file)
            .map_err(|e| e.to_string())
            .and_then(|pem| {
                x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| e.to_string())
            }) {
            Ok(ca) => ca,
            Err(e) => {
                return check(
                    "certificate_chain",
                    WARNING,
                    format!(
                        "Not checked: the Card Management Service authority's certificate {} \
                         cannot be read: {e}",
                        ca_file.display()
                    ),
                )
            }
        };
        if issued_by(certificate, &ca) {
            check(
                "certificate_chain",
                OK,
                "The certificate was issued by the Card Management Service.",
            )
        } else {
            check(
                "certificate_chain",
                NEEDS_RA,
                format!(
                    "The certificate was not issued by the Card Management Service, so the card \
                     cannot sign in {SEE_RA}."
                ),
            )
        }
    }

    fn expiry(&self, ctx: &DoctorContext) -> DoctorCheck {
        let Some(certificate) =
            certificate_of(&self.now.certificate).and_then(CardCertificate::from_certificate)
        else {
            return check(
                "expiry",
                WARNING,
                "Not checked: the card holds no readable certificate.",
            );
        };
        let expiry = certificate.expiry(crate::time::now());
        if expiry.expired {
            return check("expiry", NEEDS_RA, crate::cms::EXPIRED_MESSAGE);
        }
        let days = match expiry.days_left {
            0 => "today".to_owned(),
            1 => "in 1 day".to_owned(),
            n => format!("in {n} days"),
        };
        if expiry.days_left <= i64::from(ctx.warning_days) {
            check(
                "expiry",
                WARNING,
                format!(
                    "The card expires {days} ({}): renew it while signed in.",
                    expiry.expires_on
                ),
            )
        } else {
            check(
                "expiry",
                OK,
                format!("The card is valid until {}.", expiry.expires_on),
            )
        }
    }

    fn pin(&self) -> DoctorCheck {
        let reset = if self.proof_before.pin_verified() {
            " The correct passcode just entered set the count back."
        } else {
            ""
        };
        match self.first.pin {
            Some(PinStatus::Blocked) => {
                check("pin", NEEDS_RA, format!("The passcode is locked {SEE_RA}."))
            }
            Some(PinStatus::Verified) => check("pin", OK, "The passcode is verified on the card."),
            Some(PinStatus::NotVerified { tries_left }) if tries_left >= PIN_MAX_TRIES => check(
                "pin",
                OK,
                format!("The passcode has all its {PIN_MAX_TRIES} tries left."),
            ),
            Some(PinStatus::NotVerified { tries_left }) => check(
                "pin",
                WARNING,
                format!(
                    "A wrong passcode was entered: {tries_left} of {PIN_MAX_TRIES} tries are \
                     left before the card locks.{reset}"
                ),
            ),
            None => check(
                "pin",
                WARNING,
                "Not checked: the card does not say how many passcode tries are left.",
            ),
        }
    }

    fn key(&self) -> DoctorCheck {
        const NAME: &str = "key_matches_certificate";
        let mismatch_before = *self.proof_before == KeyProof::Mismatch;
        match self.proof {
            KeyProof::Matches if mismatch_before && matches!(self.healed, Heal::Done) => check(
                NAME,
                HEALED,
                "The card's key did not match its certificate; finishing its interrupted \
                 renewal put a matching key and certificate on the card.",
            ),
            KeyProof::Matches => check(NAME, OK, "The card's key matches its certificate."),
            KeyProof::PinOnly => check(
                NAME,
                WARNING,
                "Not checked: the card holds no certificate to check its key against.",
            ),
            KeyProof::NotChecked(reason) => check(NAME, WARNING, format!("Not checked: {reason}.")),
            KeyProof::WrongPin(left) => check(
                NAME,
                WARNING,
                format!(
                    "Not checked: the passcode was wrong ({left} {} left before the card locks).",
                    if *left == 1 { "try" } else { "tries" }
                ),
            ),
            KeyProof::Blocked => check(NAME, WARNING, "Not checked: the passcode is locked."),
            KeyProof::Mismatch => {
                let problem = "The card's key does not match its certificate, so the card cannot \
                               sign in";
                match (self.still_journaled, self.heal_failure()) {
                    (Some(e), Some(reason)) if e.kind == OperationKind::Renew => check(
                        NAME,
                        WARNING,
                        format!(
                            "{problem} until its interrupted renewal finishes; finishing it \
                             failed: {reason}. It is tried again at the next sign-in."
                        ),
                    ),
                    (Some(e), None) if e.kind == OperationKind::Renew => check(
                        NAME,
                        WARNING,
                        format!(
                            "{problem} until its interrupted renewal finishes; it finishes at \
                             the next sign-in."
                        ),
                    ),
                    _ => check(NAME, NEEDS_RA, format!("{problem} {SEE_RA}.")),
                }
            }
        }
    }

    fn unfinished(&self) -> DoctorCheck {
        const NAME: &str = "unfinished_operation";
        let Some(entry) = self.journaled else {
            return match &self.first.serial {
                Some(_) => check(NAME, OK, "No renewal or repair is left unfinished."),
                None => check(
                    NAME,
                    WARNING,
                    "Not checked: the card's serial number cannot be read.",
                ),
            };
        };
        if entry.kind == OperationKind::Repair {
            return check(
                NAME,
                NEEDS_RA,
                "An interrupted repair: the Registration Authority finishes it, with the card in \
                 a second reader.",
            );
        }
        match (self.healed, self.still_journaled) {
            (Heal::Done, _) => check(NAME, HEALED, "The interrupted renewal is finished."),
            (Heal::Failed(reason), Some(_)) => check(
                NAME,
                WARNING,
                format!(
                    "An interrupted renewal; finishing it failed: {reason}. It is tried again at \
                     the next sign-in."
                ),
            ),
            (Heal::Failed(reason), None) => check(
                NAME,
                NEEDS_RA,
                format!("An interrupted renewal could not be finished: {reason}"),
            ),
            (Heal::NoPin, _) => check(
                NAME,
                WARNING,
                "An interrupted renewal; it was not finished because the passcode was not \
                 given.",
            ),
            (Heal::NotTried, _) if !matches!(self.now.certificate, CertState::Present(_)) => check(
                NAME,
                WARNING,
                "An interrupted renewal; the card cannot sign in without its certificate, \
                     so run the doctor with healing to finish it.",
            ),
            (Heal::NotTried, _) => check(
                NAME,
                WARNING,
                "An interrupted renewal; it finishes at the next sign-in.",
            ),
        }
    }
}

fn certificate_of(state: &CertState) -> Option<&Certificate> {
    match state {
        CertState::Present(certificate) => Some(certificate),
        _ => None,
    }
}

/// Whether `certificate` names `ca` as its issuer and carries a signature by the CA's key.
fn issued_by(certificate: &Certificate, ca: &x509_cert::Certificate) -> bool {
    let x509 = certificate.x509();
    if x509.tbs_certificate.issuer != ca.tbs_certificate.subject {
        return false;
    }
    let Ok(tbs) = x509.tbs_certificate.to_der() else {
        return false;
    };
    let Some(signature) = x509.signature.as_bytes() else {
        return false;
    };
    let Ok(spki) = ca.tbs_certificate.subject_public_key_info.to_der() else {
        return false;
    };
    piv::PublicKey::from_spki_der(&spki).is_ok_and(|key| key.verify(&tbs, signature).is_ok())
}

/// Whether `e` makes the whole card unreadable (gone, or PC/SC gone), rather than one object.
fn card_gone(e: &piv::Error) -> bool {
    matches!(
        e,
        piv::Error::CardRemoved
            | piv::Error::NoReader
            | piv::Error::ServiceUnavailable
            | piv::Error::Pcsc(_)
    )
}

/// One read of the card, in one transaction: SELECT, the CHUID, the 9A certificate and the
/// passcode's tries (an empty VERIFY, which spends none).
async fn read_facts(reader: &str) -> Result<Facts, ErrorObject> {
    let reader = reader.to_owned();
    let read = blocking(move || {
        let result = with_card(&reader, |tx| {
            let serial = match tx.card_serial() {
                Ok(serial) => Some(serial.to_string()),
                Err(e) if card_gone(&e) => return Err(e),
                Err(_) => None,
            };
            let certificate = match tx.read_certificate(key::AUTHENTICATION) {
                Ok(certificate) => CertState::Present(Box::new(certificate)),
                Err(piv::Error::NotFound) => CertState::Missing,
                Err(e) if card_gone(&e) => return Err(e),
                Err(e) => CertState::Unreadable(e.to_string()),
            };
            let pin = match tx.pin_status() {
                Ok(status) => Some(status),
                Err(e) if card_gone(&e) => return Err(e),
                Err(_) => None,
            };
            Ok(Facts {
                piv: true,
                serial,
                certificate,
                pin,
            })
        });
        match result {
            Err(piv::Error::NotPiv) => Ok(Facts {
                piv: false,
                serial: None,
                certificate: CertState::Missing,
                pin: None,
            }),
            other => other,
        }
    })
    .await?;
    Ok(read)
}

/// Verifies `pin`, has the card sign 32 random bytes with its 9A key, checks the signature
/// with `certificate`'s key, and logs the passcode out again.
async fn prove_key(
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

/// 32 bytes from the kernel's random source.
fn random_challenge() -> Result<[u8; 32], piv::Error> {
    let mut challenge = [0u8; 32];
    let mut filled = 0;
    while filled < challenge.len() {
        let rest = &mut challenge[filled..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if got < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(piv::Error::Malformed(format!("no random bytes: {e}")));
        }
        filled += got as usize;
    }
    Ok(challenge)
}

/// Asks the holder for the passcode, naming the card and why; `Err` says why there is none.
async fn ask_pin(
    config: &PinentryConfig,
    serial: &str,
    tries_left: Option<u8>,
    finishing: bool,
) -> Result<Pin, String> {
    let tries = match tries_left {
        Some(1) => "\nThis is the last try before the card locks.".to_owned(),
        Some(n) if n < PIN_MAX_TRIES => format!("\n{n} tries left before the card locks."),
        _ => String::new(),
    };
    let finish = if finishing {
        "\nIts interrupted renewal then finishes."
    } else {
        ""
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

/// Runs a blocking card step off the async workers.
async fn blocking<T: Send + 'static>(
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
