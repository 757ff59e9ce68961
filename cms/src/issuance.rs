//! Issuing a card: certifying a card key with the CA and recording it, and personalising a
//! blank PIV card over PC/SC (key generated on the card, certificate, CHUID serial, the
//! holder's PIN, the diversified PUK and management key), the same on a virtual card and on a
//! real blank one.

use crate::ca::IssuedCertificate;
use crate::dates;
use crate::db::{CertificateRecord, CertificateStatus};
use crate::error::CmsError;
use crate::fields::parse_serial;
use crate::registry::admin_event;
use crate::service::Cms;
use cms_api::pin_policy::{check_pin, PinPolicyError};
use piv::consts::{key, object};
use piv::{
    CardSerial, Certificate, KeyAlgorithm, LocalResponder, ManagementAlgorithm, ManagementKey, Pin,
    PivCard, Puk, Transaction,
};
use thiserror::Error;
use zeroize::Zeroizing;

/// Why issuing failed.
#[derive(Debug, Error)]
pub enum IssuanceError {
    /// The service refused (unknown user, card already registered …).
    #[error(transparent)]
    Cms(#[from] CmsError),
    /// The card failed or refused.
    #[error("the card: {0}")]
    Card(#[from] piv::Error),
    /// The holder's PIN breaks the passcode policy.
    #[error("the holder's passcode: {0}")]
    Pin(#[from] PinPolicyError),
    /// The card has no CHUID and no serial was given to write one.
    #[error("the card has no CHUID (serial number): give one to write")]
    NoSerial,
    /// The card takes a management key in none of the algorithms the service gives. Nothing
    /// was written to the card.
    #[error(
        "this card's management key uses {card}, and the card takes none of the algorithms \
         this service gives cards ({}): nothing was written to the card and it is not \
         registered",
        names(offered)
    )]
    NoCommonAlgorithm {
        /// The algorithm of the card's key now.
        card: ManagementAlgorithm,
        /// What the service offered, in its order of preference.
        offered: Vec<ManagementAlgorithm>,
    },
    /// The card refused the management key it was said to hold (and it does not hold the
    /// service's own key for it either). Nothing was written to the card.
    #[error(
        "the card refused the {0} management key given as its current (transport) key: give \
         the key the card's supplier set with --management-key; nothing was written to the card"
    )]
    WrongCurrentKey(ManagementAlgorithm),
    /// The card's CHUID names another serial than the one given.
    #[error("the card's serial is {on_card}, not {given}")]
    SerialMismatch {
        /// The serial in the card's CHUID.
        on_card: String,
        /// The serial given.
        given: String,
    },
}

/// How long the first certificate of a card is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialValidity {
    /// Until this many days from now (the policy's two years by default).
    Days(i64),
    /// Already expired: issued two years and a day ago, expired yesterday (for RA repair tests
    /// and demos).
    Expired,
}

impl InitialValidity {
    /// `(not_before, not_after)` in Unix seconds.
    pub fn bounds(self, now: i64, default_days: i64) -> (i64, i64) {
        match self {
            InitialValidity::Days(days) => {
                let not_after = now + days * dates::DAY;
                (not_after.min(now) - dates::DAY, not_after)
            }
            InitialValidity::Expired => {
                let not_after = now - dates::DAY;
                (not_after - default_days * dates::DAY, not_after)
            }
        }
    }
}

/// What to put on a blank card.
#[derive(Clone)]
pub struct CardIssuance {
    /// The holder.
    pub user_id: String,
    /// The holder's PIN, checked against the passcode policy.
    pub pin: Zeroizing<String>,
    /// The algorithm of the 9A key generated on the card.
    pub algorithm: KeyAlgorithm,
    /// How long the first certificate is valid.
    pub validity: InitialValidity,
    /// The card's management key now, its bytes (a transport key from the card's supplier);
    /// none for the factory key (`01 02 … 08` repeated). Its algorithm is the card's: read
    /// from the card's metadata, else found by asking.
    pub current_management_key: Option<Zeroizing<Vec<u8>>>,
    /// The algorithms the service may give the card's new management key, in order of
    /// preference: the first the card takes is given.
    pub management_algorithms: Vec<ManagementAlgorithm>,
    /// The card's PIN now.
    pub current_pin: Zeroizing<String>,
    /// The card's PUK now.
    pub current_puk: Zeroizing<String>,
    /// The serial to write to a card without a CHUID (a card with one keeps its own).
    pub serial: Option<CardSerial>,
}

/// The factory PIN of PIV cards.
pub const FACTORY_PIN: &str = "123456";
/// The factory PUK of PIV cards.
pub const FACTORY_PUK: &str = "12345678";

impl CardIssuance {
    /// Issuing a factory-fresh card (factory management key, PIN and PUK; a CHUID of its own)
    /// to `user_id` with `pin`, a 9A key of `algorithm` and a certificate valid as `validity`
    /// says; the management key in the strongest algorithm the card takes.
    pub fn for_blank_card(
        user_id: &str,
        pin: &str,
        algorithm: KeyAlgorithm,
        validity: InitialValidity,
    ) -> Self {
        Self {
            user_id: user_id.to_owned(),
            pin: Zeroizing::new(pin.to_owned()),
            algorithm,
            validity,
            current_management_key: None,
            management_algorithms: MANAGEMENT_ALGORITHMS.to_vec(),
            current_pin: Zeroizing::new(FACTORY_PIN.to_owned()),
            current_puk: Zeroizing::new(FACTORY_PUK.to_owned()),
            serial: None,
        }
    }
}

impl std::fmt::Debug for CardIssuance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardIssuance")
            .field("user_id", &self.user_id)
            .field("algorithm", &self.algorithm)
            .field("validity", &self.validity)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// A card just issued.
#[derive(Debug, Clone)]
pub struct IssuedCard {
    /// Its serial.
    pub serial: String,
    /// Its type, from the ATR.
    pub card_type: String,
    /// The certificate in slot 9A.
    pub certificate: CertificateRecord,
    /// The algorithm of the management key the service gave the card.
    pub management_algorithm: ManagementAlgorithm,
}

/// The algorithms a service gives cards by default, strongest first.
pub const MANAGEMENT_ALGORITHMS: [ManagementAlgorithm; 4] = [
    ManagementAlgorithm::Aes256,
    ManagementAlgorithm::Aes192,
    ManagementAlgorithm::Aes128,
    ManagementAlgorithm::Tdes,
];

fn names(algorithms: &[ManagementAlgorithm]) -> String {
    let names: Vec<&str> = algorithms.iter().map(|a| a.name()).collect();
    names.join(", ")
}

/// Default CHUID expiry written to a card that has none.
const CHUID_EXPIRY: &[u8; 8] = b"20391231";

impl Cms {
    /// Certifies a card key outside any operation (admin): the certificate becomes the card's
    /// active one and sets its expiry.
    pub fn certify_card(
        &self,
        serial: &str,
        spki_der: &[u8],
        not_before: i64,
        not_after: i64,
    ) -> Result<CertificateRecord, CmsError> {
        let serial = parse_serial(serial)?.to_string();
        let card = self.active_card(&serial)?;
        let issued = self.sign_card_key(&card.holder_id, spki_der, not_before, not_after)?;
        self.record_admin_certificate(&serial, issued, spki_der.to_vec(), not_before, not_after)
    }

    /// Has the CA certify a card key of `holder_id` for the given validity: the certificate
    /// names the holder by name, with their user id beside it.
    pub(crate) fn sign_card_key(
        &self,
        holder_id: &str,
        spki_der: &[u8],
        not_before: i64,
        not_after: i64,
    ) -> Result<IssuedCertificate, CmsError> {
        let user = self
            .db
            .user(holder_id)?
            .ok_or_else(|| CmsError::UnknownUser(holder_id.to_owned()))?;
        let holder = crate::ca::CertificateHolder {
            user_id: &user.id,
            name: &user.name,
        };
        self.ca
            .issue_card_certificate(holder, spki_der, not_before, not_after, |s| {
                self.db.certificate_serial_taken(s).unwrap_or(true)
            })
            .map_err(|e| CmsError::Internal(e.to_string()))
    }

    /// Records a certificate issued outside any operation as the card's active one.
    fn record_admin_certificate(
        &self,
        card_serial: &str,
        issued: IssuedCertificate,
        spki: Vec<u8>,
        not_before: i64,
        not_after: i64,
    ) -> Result<CertificateRecord, CmsError> {
        let record = CertificateRecord {
            serial: issued.serial,
            card_serial: card_serial.to_owned(),
            operation_id: None,
            spki,
            der: issued.der,
            not_before,
            not_after,
            status: CertificateStatus::Active,
        };
        let summary = format!(
            "certificate {} until {}",
            record.serial,
            dates::iso_date(not_after)
        );
        self.db.add_issued_certificate(
            &record,
            dates::now(),
            &admin_event("card.certify", Some(card_serial), summary),
        )?;
        Ok(record)
    }

    /// The management key the service gave card `serial`.
    pub fn card_management_key(&self, serial: &str) -> Result<ManagementKey, CmsError> {
        let serial = parse_serial(serial)?;
        let card = self
            .db
            .card(&serial.to_string())?
            .ok_or_else(|| CmsError::UnknownCard(serial.to_string()))?;
        Ok(self
            .custody
            .management_key(serial, card.management_algorithm))
    }

    /// Gives the card in `tx` (serial `serial`) the service's management key, before anything
    /// else is written: authenticates with its current key (or with the service's own, left by
    /// an issuing that stopped after this step), then sets the service's key in the first
    /// algorithm of `issuance` the card takes. A card that takes none is left as it was.
    fn take_custody(
        &self,
        tx: &Transaction<'_>,
        serial: CardSerial,
        issuance: &CardIssuance,
    ) -> Result<ManagementAlgorithm, IssuanceError> {
        let current = tx.management_algorithm()?;
        let given = match &issuance.current_management_key {
            Some(bytes) => ManagementKey::with_algorithm(current, bytes)
                .map_err(|e| IssuanceError::Card(e.into()))?,
            None => ManagementKey::factory_for(current),
        };
        match tx.authenticate_management_key(&mut LocalResponder::new(given)) {
            Ok(()) => {}
            Err(piv::Error::ManagementKeyRejected) => {
                let own = self.custody.management_key(serial, current);
                return match tx.authenticate_management_key(&mut LocalResponder::new(own)) {
                    // An earlier issuing of this card set the service's key and stopped.
                    Ok(()) => {
                        tracing::info!(%serial, algorithm = %current, "the card already holds the service's management key");
                        Ok(current)
                    }
                    Err(piv::Error::ManagementKeyRejected) => {
                        Err(IssuanceError::WrongCurrentKey(current))
                    }
                    Err(e) => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
        for &algorithm in &issuance.management_algorithms {
            match tx.set_management_key(&self.custody.management_key(serial, algorithm)) {
                Ok(()) => return Ok(algorithm),
                Err(piv::Error::ManagementAlgorithmNotAccepted(_)) => {
                    tracing::info!(%serial, %algorithm, "the card does not take this management key algorithm");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(IssuanceError::NoCommonAlgorithm {
            card: current,
            offered: issuance.management_algorithms.clone(),
        })
    }

    /// Personalises the blank card in `card` for a holder and registers it. The card takes
    /// the service's management key first: a card that refuses it is left as it was, and
    /// nothing is certified or registered.
    pub fn issue_card(
        &self,
        card: &mut PivCard,
        issuance: &CardIssuance,
    ) -> Result<IssuedCard, IssuanceError> {
        check_pin(&issuance.pin)?;
        let new_pin = Pin::new(&issuance.pin)?;
        let user = self
            .db
            .user(&issuance.user_id)?
            .ok_or_else(|| CmsError::UnknownUser(issuance.user_id.clone()))?;
        let card_type = piv::card_type::card_type(card.atr(), true).to_owned();
        let tx = card.transaction()?;
        let (serial, write_chuid) = match (tx.card_serial(), issuance.serial) {
            (Ok(on_card), Some(given)) if on_card != given => {
                return Err(IssuanceError::SerialMismatch {
                    on_card: on_card.to_string(),
                    given: given.to_string(),
                })
            }
            (Ok(on_card), _) => (on_card, false),
            (Err(piv::Error::NotFound), Some(given)) => (given, true),
            (Err(piv::Error::NotFound), None) => return Err(IssuanceError::NoSerial),
            (Err(e), _) => return Err(e.into()),
        };
        let serial_text = serial.to_string();
        if self.db.card(&serial_text)?.is_some() {
            return Err(CmsError::CardExists(serial_text).into());
        }
        let management_algorithm = self.take_custody(&tx, serial, issuance)?;
        if write_chuid {
            tx.put_data(object::CHUID, &piv::chuid::build(serial, CHUID_EXPIRY))?;
        }
        let public = tx.generate_key(key::AUTHENTICATION, issuance.algorithm)?;
        let spki = public.to_spki_der()?;

        let now = dates::now();
        let (not_before, not_after) = issuance.validity.bounds(now, self.policy.certificate_days);
        let issued = self.sign_card_key(&user.id, &spki, not_before, not_after)?;
        let certificate = Certificate::from_der(&issued.der)?;
        tx.write_certificate(key::AUTHENTICATION, &certificate)?;
        tx.change_pin(&Pin::new(&issuance.current_pin)?, &new_pin)?;
        let puk = self.custody.puk(serial, 0);
        tx.change_puk(&Puk::new(&issuance.current_puk)?, &Puk::new(&puk)?)?;

        // The card is personalised: now it enters the registry, with its certificate.
        let issued_on = match issuance.validity {
            InitialValidity::Expired => not_before,
            InitialValidity::Days(_) => now,
        };
        self.register_card(
            &serial_text,
            &card_type,
            &user.id,
            issued_on,
            management_algorithm,
            &admin_event(
                "card.issue",
                Some(&serial_text),
                format!("for {}, {management_algorithm} management key", user.id),
            ),
        )?;
        let record =
            self.record_admin_certificate(&serial_text, issued, spki, not_before, not_after)?;
        Ok(IssuedCard {
            serial: serial_text,
            card_type,
            certificate: record,
            management_algorithm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_validity_bounds() {
        let now = 1_000 * dates::DAY;
        assert_eq!(
            InitialValidity::Days(30).bounds(now, 730),
            (now - dates::DAY, now + 30 * dates::DAY)
        );
        let (nb, na) = InitialValidity::Expired.bounds(now, 730);
        assert!(na < now && nb < na);
        assert_eq!(na - nb, 730 * dates::DAY);
    }
}
