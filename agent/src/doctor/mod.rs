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

//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the examination, step by step |
//! | `facts.rs` | one read of the card |
//! | `key_proof.rs` | the passcode prompt and the proof that the key matches |
//! | `healing.rs` | what may be healed, and healing it |
//! | `checks/` | the report's checks, one file per check |

mod checks;
mod facts;
mod healing;
mod key_proof;

use self::checks::Findings;
use self::facts::{certificate_of, read_facts, CertState, Facts};
use self::healing::{service_certificate, Heal, Remedy};
use self::key_proof::{prove_key, KeyProof};
use crate::card::{CardCertificate, CardIdentity};
use crate::config::PinentryConfig;
use crate::operation::{self, journal::Entry, Finished, OperationEngine};
use agent_ipc::{DoctorReport, ErrorObject, OperationKind};
use piv::Certificate;
use std::path::PathBuf;

/// The passcode tries a card has when none were spent (the PIV default the service keeps).
pub const PIN_MAX_TRIES: u8 = 3;

/// What the doctor needs besides the card.
#[derive(Debug, Clone)]
pub(crate) struct DoctorContext {
    /// The operation engine (journal and service) that finishes an interrupted renewal.
    pub engine: OperationEngine,
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

/// Examines the card in `card.reader` and heals what is safe to heal when `heal` is set.
/// Steps of a renewal it finishes go to `progress`.
pub(crate) async fn examine(
    ctx: DoctorContext,
    card: CardIdentity,
    heal: bool,
    progress: operation::Report,
) -> Result<DoctorOutcome, ErrorObject> {
    let visit = Visit::begin(&ctx, &card.reader).await?;
    let healing = if heal { visit.remedy } else { Remedy::Nothing };
    // The passcode, once: to prove the key (against the card's certificate, else the
    // service's copy), and to heal.
    let (proof, pin) = if visit.wants_pin(heal) {
        visit.prove(healing).await?
    } else {
        let none = "the card holds no certificate to check its key against";
        (KeyProof::NotChecked(none.into()), None)
    };
    let (healed, finished) = visit.heal(healing, pin.as_ref(), &proof, progress).await;
    let (now, after_proof) = match (&healed, &pin) {
        (Heal::Done, Some(pin)) => {
            let now = read_facts(&visit.reader).await?;
            let proof = prove_key(&visit.reader, pin, certificate_of(&now.certificate)).await?;
            (now, proof)
        }
        _ => (visit.first.clone(), proof.clone()),
    };
    let still_journaled = visit.journal_entry();
    let checks = Findings {
        remedy: visit.remedy,
        service_copy: visit.service_copy.as_ref(),
        first: &visit.first,
        now: &now,
        journaled: visit.journaled.as_ref(),
        still_journaled: still_journaled.as_ref(),
        proof_before: &proof,
        proof: &after_proof,
        healed: &healed,
    }
    .checks(&ctx);
    let wrong_pin = match proof {
        KeyProof::WrongPin(left) => Some(left),
        _ => None,
    };
    Ok(DoctorOutcome {
        report: DoctorReport {
            card: shown(card, &now).status(crate::time::now()),
            checks,
        },
        finished,
        wrong_pin,
    })
}

/// One examination of one card: what the first read found, and what healing could mend.
struct Visit<'a> {
    ctx: &'a DoctorContext,
    reader: String,
    /// The card before healing.
    first: Facts,
    /// The journal's entry for the card before healing.
    journaled: Option<Entry>,
    /// A card that lost its certificate, with nothing journaled: the service's copy.
    service_copy: Option<Result<Certificate, ErrorObject>>,
    remedy: Remedy,
}

impl<'a> Visit<'a> {
    /// Reads the card in `reader`, its journal entry and, for a card that lost its certificate
    /// with nothing journaled, the service's copy; then what healing could mend.
    async fn begin(ctx: &'a DoctorContext, reader: &str) -> Result<Visit<'a>, ErrorObject> {
        let first = read_facts(reader).await?;
        let mut visit = Visit {
            ctx,
            reader: reader.to_owned(),
            first,
            journaled: None,
            service_copy: None,
            remedy: Remedy::Nothing,
        };
        visit.journaled = visit.journal_entry();
        let has_certificate = matches!(visit.first.certificate, CertState::Present(_));
        visit.service_copy = match (&visit.journaled, visit.first.serial) {
            (None, Some(serial)) if visit.first.piv && !has_certificate => {
                Some(service_certificate(&ctx.engine, &serial.to_string()).await)
            }
            _ => None,
        };
        visit.remedy = match (visit.renewal(), visit.copy()) {
            (true, _) => Remedy::FinishRenewal,
            (false, Some(_)) => Remedy::Restore,
            (false, None) => Remedy::Nothing,
        };
        Ok(visit)
    }

    /// The journal's entry for the card now.
    fn journal_entry(&self) -> Option<Entry> {
        let serial = self.first.serial?;
        self.ctx.engine.journal.get(&serial.to_string())
    }

    /// Whether a renewal of the card is journaled.
    fn renewal(&self) -> bool {
        self.journaled
            .as_ref()
            .is_some_and(|e| e.kind == OperationKind::Renew)
    }

    /// The service's copy of the certificate the card lost, when it gave one.
    fn copy(&self) -> Option<&Certificate> {
        self.service_copy.as_ref().and_then(|c| c.as_ref().ok())
    }

    /// Whether the passcode is worth asking: to prove the key against a certificate (the card's
    /// or the service's copy), or to finish a journaled renewal when healing.
    fn wants_pin(&self, heal: bool) -> bool {
        let has_certificate = matches!(self.first.certificate, CertState::Present(_));
        self.first.piv && (has_certificate || self.copy().is_some() || (heal && self.renewal()))
    }
}

/// The card as the report shows it: as read now.
fn shown(mut card: CardIdentity, now: &Facts) -> CardIdentity {
    card.piv = now.piv;
    if let Some(serial) = now.serial {
        card.serial = Some(serial);
    }
    card.certificate = certificate_of(&now.certificate).and_then(CardCertificate::from_certificate);
    card
}
