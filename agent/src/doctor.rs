//! The card doctor: checks a card in plain words (the PIV applet, its identity, its
//! certificate and who issued it, its expiry, the passcode's tries, whether its key matches
//! its certificate, an unfinished operation) and, when asked to heal, mends what is safe
//! through the operation engine — the only way the agent writes to a card:
//!
//! - an interrupted renewal in the journal is finished (a new key and its certificate);
//! - a missing or unreadable certificate object is written back from the Card Management
//!   Service's record of the card's current certificate, once the card's key is proved to
//!   match that record (a restore operation: no new key, nothing changes at the service).
//!
//! Everything else — an expired card, a locked passcode, a key the service does not know — is
//! the Registration Authority's.

use crate::card::{CardCertificate, CardIdentity};
use crate::config::PinentryConfig;
use crate::operation::{self, journal::Entry, Finished, Operations};
use crate::pinentry::{self, PinPrompt, PinentryError};
use crate::session::{blocking, with_card};
use agent_ipc::{CheckOutcome, DoctorCheck, DoctorReport, ErrorCode, ErrorObject, OperationKind};
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

/// What healing can mend on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remedy {
    /// Nothing the agent may write.
    Nothing,
    /// Finish the journaled renewal.
    FinishRenewal,
    /// Write the service's record of the card's certificate back.
    Restore,
}

/// The healing, if any.
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
    // A card that lost its certificate, with nothing journaled: the service's copy.
    let service_copy = match (&journaled, first.serial.as_deref()) {
        (None, Some(serial)) if first.piv && !has_certificate => {
            Some(service_certificate(&ctx.operations, serial).await)
        }
        _ => None,
    };
    let copy = service_copy.as_ref().and_then(|c| c.as_ref().ok());
    let remedy = match (renewal, copy) {
        (true, _) => Remedy::FinishRenewal,
        (false, Some(_)) => Remedy::Restore,
        (false, None) => Remedy::Nothing,
    };

    // The passcode, once: to prove the key (against the card's certificate, else the
    // service's copy), and to heal.
    let mut proof =
        KeyProof::NotChecked("the card holds no certificate to check its key against".into());
    let mut pin = None;
    let healing = if heal { remedy } else { Remedy::Nothing };
    let wants_pin = first.piv && (has_certificate || copy.is_some() || (heal && renewal));
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
                match ask_pin(&ctx.pinentry, &serial, tries, healing).await {
                    Ok(given) => {
                        let certificate = certificate_of(&first.certificate).or(copy);
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

    // Healing: the only writes the agent may make.
    let mut healed = Heal::NotTried;
    let mut finished = None;
    let serial = first.serial.as_deref();
    let outcome = match (healing, &pin, serial, copy) {
        (Remedy::Nothing, ..) => None,
        (Remedy::FinishRenewal, Some(pin), Some(serial), _) => {
            Some(operation::resume_renewal(&ctx.operations, &reader, serial, pin, progress).await)
        }
        // A copy the card's key does not match is not written: the key check says so.
        (Remedy::Restore, Some(_), _, _) if proof != KeyProof::Matches => None,
        (Remedy::Restore, Some(pin), Some(serial), Some(copy)) => Some(
            operation::restore(&ctx.operations, &reader, serial, copy.der(), pin, progress)
                .await
                .map(Some),
        ),
        _ => {
            healed = Heal::NoPin;
            None
        }
    };
    match outcome {
        Some(Ok(Some(done))) => {
            finished = Some(done);
            healed = Heal::Done;
        }
        Some(Ok(None)) | None => {}
        Some(Err(e)) => healed = Heal::Failed(e.message),
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
        remedy,
        service_copy: service_copy.as_ref(),
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
    /// What healing can mend.
    remedy: Remedy,
    /// The service's copy of a certificate the card lost, or why there is none.
    service_copy: Option<&'a Result<Certificate, ErrorObject>>,
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

fn check(name: &str, outcome: CheckOutcome, message: impl Into<String>) -> DoctorCheck {
    DoctorCheck {
        name: name.into(),
        outcome,
        message: message.into(),
    }
}

const OK: CheckOutcome = CheckOutcome::Ok;
const HEALED: CheckOutcome = CheckOutcome::Healed;
const WARNING: CheckOutcome = CheckOutcome::Warning;
const NEEDS_RA: CheckOutcome = CheckOutcome::NeedsRa;

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
                return match (&self.first.certificate, self.healed, self.remedy) {
                    (CertState::Present(_), ..) => check(
                        "certificate",
                        OK,
                        "The card's certificate is present and readable.",
                    ),
                    (_, Heal::Done, Remedy::Restore) => check(
                        "certificate",
                        HEALED,
                        "The card's certificate was missing; it was written back from the Card \
                         Management Service's record.",
                    ),
                    (_, Heal::Done, _) => check(
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
        match self.remedy {
            Remedy::FinishRenewal => self.certificate_after_renewal(&problem),
            Remedy::Restore => self.certificate_to_restore(&problem),
            Remedy::Nothing => match self.service_copy {
                Some(Err(e)) if e.code == ErrorCode::CmsUnreachable => check(
                    "certificate",
                    WARNING,
                    format!(
                        "{problem}, and the Card Management Service, which holds a copy to write \
                         back, cannot be reached ({}): run the doctor again when it can.",
                        e.message
                    ),
                ),
                Some(Err(e)) => check(
                    "certificate",
                    NEEDS_RA,
                    format!(
                        "{problem}, and the Card Management Service gives no copy to write back \
                         ({}) {SEE_RA}.",
                        e.message
                    ),
                ),
                _ => check("certificate", NEEDS_RA, format!("{problem} {SEE_RA}.")),
            },
        }
    }

    /// A certificate that the service's record can replace.
    fn certificate_to_restore(&self, problem: &str) -> DoctorCheck {
        let message = match (self.heal_failure(), self.proof, self.healed) {
            (Some(reason), ..) => format!(
                "{problem}; writing it back from the Card Management Service's record failed: \
                 {reason}"
            ),
            (None, KeyProof::Mismatch, _) => {
                return check(
                    "certificate",
                    NEEDS_RA,
                    format!(
                        "{problem}, and the Card Management Service's record of it is not for \
                         the key the card holds {SEE_RA}."
                    ),
                )
            }
            (None, _, Heal::NoPin) | (None, KeyProof::NotChecked(_), _) => format!(
                "{problem}. The Card Management Service holds a copy; writing it back needs the \
                 passcode: run the doctor again with healing."
            ),
            _ => format!(
                "{problem}. The Card Management Service holds a copy: run the doctor with \
                 healing to write it back."
            ),
        };
        check("certificate", WARNING, message)
    }

    /// A certificate that finishing the journaled renewal replaces.
    fn certificate_after_renewal(&self, problem: &str) -> DoctorCheck {
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
        // A card without its certificate is proved against the service's copy.
        let against_copy = self.remedy == Remedy::Restore
            && !matches!(self.now.certificate, CertState::Present(_));
        match self.proof {
            KeyProof::Matches if against_copy => check(
                NAME,
                OK,
                "The card's key matches the Card Management Service's record of its certificate.",
            ),
            KeyProof::Mismatch if against_copy => check(
                NAME,
                NEEDS_RA,
                format!(
                    "The card's key does not match the Card Management Service's record of its \
                     certificate, so the card cannot sign in {SEE_RA}."
                ),
            ),
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

/// The service's record of the current certificate of card `serial`, or why there is none.
async fn service_certificate(ops: &Operations, serial: &str) -> Result<Certificate, ErrorObject> {
    let cms = ops.cms.as_ref().ok_or_else(crate::cms::not_configured)?;
    let record = cms
        .card_certificate(serial)
        .await
        .map_err(|e| crate::cms::error_object(&e))?;
    let unusable = |why: String| ErrorObject::new(ErrorCode::CmsRefused, why);
    let der = cms::protocol::b64::decode(&record.certificate)
        .ok_or_else(|| unusable("the service's copy is not base64".into()))?;
    Certificate::from_der(&der).map_err(|e| unusable(format!("the service's copy: {e}")))
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
