//! Issuing a card: certifying a card key with the CA and recording it, and personalising a
//! blank PIV card over PC/SC (key generated on the card, certificate, CHUID serial, the
//! holder's PIN, the diversified PUK and management key), the same on a virtual card and on a
//! real blank one.

use crate::auth::parse_serial;
use crate::ca::IssuedCertificate;
use crate::card_type;
use crate::dates;
use crate::db::{CertificateRecord, CertificateStatus};
use crate::error::CmsError;
use crate::pin_policy::{check_pin, PinPolicyError};
use crate::registry::admin_event;
use crate::service::Cms;
use piv::consts::{key, object};
use piv::{
    CardSerial, Certificate, KeyAlgorithm, LocalResponder, ManagementKey, Pin, PivCard, Puk,
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
    /// The card's management key now (the factory key of a blank card).
    pub current_management_key: ManagementKey,
    /// The card's PIN now.
    pub current_pin: Zeroizing<String>,
    /// The card's PUK now.
    pub current_puk: Zeroizing<String>,
    /// The serial to write to a card without a CHUID (a card with one keeps its own).
    pub serial: Option<CardSerial>,
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

    /// Personalises the blank card in `card` for a holder and registers it.
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
        let card_type = card_type::from_atr(card.atr()).to_owned();
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
        tx.authenticate_management_key(&mut LocalResponder::new(
            issuance.current_management_key.clone(),
        ))?;
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
        tx.set_management_key(&self.custody.management_key(serial))?;

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
            &admin_event("card.issue", Some(&serial_text), format!("for {}", user.id)),
        )?;
        let record =
            self.record_admin_certificate(&serial_text, issued, spki, not_before, not_after)?;
        Ok(IssuedCard {
            serial: serial_text,
            card_type,
            certificate: record,
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
