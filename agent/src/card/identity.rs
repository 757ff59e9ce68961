//! Who a card is: type, serial, authentication certificate and its expiry.

use piv::consts::key;
use piv::{CardSerial, Certificate, PivCard};
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::time::UNIX_EPOCH;

/// A card as read at insertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    /// The reader it is in.
    pub reader: String,
    /// Its ATR.
    pub atr: Vec<u8>,
    /// Its type, from the ATR table.
    pub card_type: &'static str,
    /// Its serial, from the CHUID, when readable.
    pub serial: Option<CardSerial>,
    /// Whether the PIV applet answered.
    pub piv: bool,
    /// The 9A authentication certificate, when present and parsable.
    pub certificate: Option<CardCertificate>,
}

/// The card's 9A authentication certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCertificate {
    /// DER.
    pub der: Vec<u8>,
    /// The holder's name, for people: the subject's common name unless it is a user id (as
    /// in certificates from before the service named holders), else the whole subject of a
    /// certificate with neither common name nor `UID`; `None` when only the id is known.
    pub holder: Option<String>,
    /// The holder's user id, for programs: the subject's `UID`, else a common name that is
    /// a user id.
    pub holder_id: Option<String>,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, to notice a changed certificate.
    pub fingerprint: [u8; 32],
}

/// Reads the identity of the card in `reader` (connect, one transaction, LeaveCard).
/// A card without the PIV applet is an identity with `piv: false`, not an error.
///
/// An unreadable CHUID gives `serial: None`; an empty 9A slot or a certificate that cannot be
/// parsed gives `certificate: None`. Errors are left for what makes the card unreadable as a
/// whole: it left the reader, the reader or pcscd went away, or PC/SC refused the connection.
pub fn identify(ctx: &pcsc::Context, reader: &str) -> Result<CardIdentity, piv::Error> {
    let name = CString::new(reader).map_err(|_| piv::Error::NoReader)?;
    let mut card = PivCard::connect(ctx, &name)?;
    let atr = card.atr().to_vec();
    let mut identity = CardIdentity {
        reader: reader.to_owned(),
        card_type: piv::card_type::card_type(&atr, false),
        atr,
        serial: None,
        piv: false,
        certificate: None,
    };
    let read = read_piv(&mut card, &mut identity);
    identity.card_type = piv::card_type::card_type(&identity.atr, identity.piv);
    // Leave the card as it is: a reset would wipe the PIN state of every application on it.
    let left = card.disconnect();
    read?;
    if let Err(e) = left {
        tracing::debug!(reader, error = %e, "disconnecting after identification");
    }
    Ok(identity)
}

/// Whether `e` makes the whole card unreadable (gone, or PC/SC gone), rather than one object.
fn card_unreadable(e: &piv::Error) -> bool {
    matches!(
        e,
        piv::Error::CardRemoved
            | piv::Error::NoReader
            | piv::Error::ServiceUnavailable
            | piv::Error::Pcsc(_)
    )
}

/// One transaction: SELECT (a card without the applet is not PIV), the CHUID, the 9A
/// certificate.
fn read_piv(card: &mut PivCard, identity: &mut CardIdentity) -> Result<(), piv::Error> {
    let tx = match card.transaction() {
        Ok(tx) => tx,
        Err(piv::Error::NotPiv) => return Ok(()),
        Err(e) => return Err(e),
    };
    identity.piv = true;
    identity.serial = match tx.card_serial() {
        Ok(serial) => Some(serial),
        Err(e) if card_unreadable(&e) => return Err(e),
        Err(e) => {
            tracing::info!(reader = %identity.reader, error = %e, "the card's CHUID gives no serial");
            None
        }
    };
    identity.certificate = match tx.read_certificate(key::AUTHENTICATION) {
        Ok(cert) => CardCertificate::from_certificate(&cert),
        Err(piv::Error::NotFound) => None,
        Err(e) if card_unreadable(&e) => return Err(e),
        Err(e) => {
            tracing::warn!(
                reader = %identity.reader,
                serial = ?identity.serial.map(|s| s.to_string()),
                error = %e,
                "the card's authentication certificate cannot be read"
            );
            None
        }
    };
    Ok(())
}

impl CardCertificate {
    /// The fields the agent shows and compares, from a parsed certificate (`None` when its
    /// expiry cannot be represented).
    pub fn from_certificate(cert: &Certificate) -> Option<Self> {
        let not_after = match cert.not_after().duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).ok()?,
            Err(before) => i64::try_from(before.duration().as_secs())
                .ok()?
                .checked_neg()?,
        };
        let der = cert.der().to_vec();
        let (holder, holder_id) = holder(cert);
        Some(Self {
            holder,
            holder_id,
            not_after,
            fingerprint: Sha256::digest(&der).into(),
            der,
        })
    }

    /// The certificate's expiry as of `now` (Unix seconds).
    pub fn expiry(&self, now: i64) -> Expiry {
        expiry(self.not_after, now)
    }
}

/// The holder's name and user id as the certificate's subject gives them (see
/// [`CardCertificate::holder`] and [`CardCertificate::holder_id`]).
fn holder(cert: &Certificate) -> (Option<String>, Option<String>) {
    const COMMON_NAME: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    const USER_ID: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");
    let subject = &cert.x509().tbs_certificate.subject;
    let attribute = |oid| {
        subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == oid)
            .and_then(|atv| directory_string(&atv.value))
    };
    let common_name = attribute(COMMON_NAME);
    let user_id = attribute(USER_ID);
    match common_name {
        Some(cn) if is_user_id(&cn) => (None, user_id.or(Some(cn))),
        Some(cn) => (Some(cn), user_id),
        None if user_id.is_some() => (None, user_id),
        None => (Some(cert.subject()), None),
    }
}

/// How prompts name a card: `Jane Doe's smartcard 4082…`, or `smartcard 4082…` when the
/// holder's name is not known (a certificate from before the service named holders gives their
/// user id only; the serial is printed on the card).
pub fn whose_card(holder: Option<&str>, serial: &str) -> String {
    match holder {
        Some(name) => format!("{name}'s smartcard {serial}"),
        None => format!("smartcard {serial}"),
    }
}

/// Whether `text` is a user id (a UUID, `8-4-4-4-12` hex digits) rather than a name.
pub fn is_user_id(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The text of a DirectoryString-like value (UTF8String, PrintableString, IA5String or
/// TeletexString); `None` for other encodings.
fn directory_string(value: &der::Any) -> Option<String> {
    use der::{Tag, Tagged};
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            std::str::from_utf8(value.value()).ok().map(str::to_owned)
        }
        _ => None,
    }
}

/// A certificate's expiry as the agent shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// The expiry date, `YYYY-MM-DD` (UTC).
    pub expires_on: String,
    /// Whole days remaining, rounded down: 0 on the last day, -1 within the day after expiry.
    pub days_left: i64,
    /// Whether the certificate has expired (`now >= not_after`).
    pub expired: bool,
}

/// The expiry of a certificate valid until `not_after`, as of `now` (both Unix seconds).
pub fn expiry(not_after: i64, now: i64) -> Expiry {
    const DAY: i64 = 86_400;

    Expiry {
        expires_on: crate::time::utc_date(not_after),
        days_left: not_after.saturating_sub(now).div_euclid(DAY),
        expired: now >= not_after,
    }
}

impl CardIdentity {
    /// The card as the socket API shows it, with its expiry as of `now_unix`.
    pub fn status(&self, now_unix: i64) -> agent_ipc::CardStatus {
        let expiry = self.certificate.as_ref().map(|c| c.expiry(now_unix));
        agent_ipc::CardStatus {
            serial: self.serial.map(|s| s.to_string()),
            card_type: self.card_type.to_owned(),
            atr: hex::encode_upper(&self.atr),
            piv: self.piv,
            holder: self.certificate.as_ref().and_then(|c| c.holder.clone()),
            holder_id: self.certificate.as_ref().and_then(|c| c.holder_id.clone()),
            expires_on: expiry.as_ref().map(|e| e.expires_on.clone()),
            days_left: expiry.as_ref().map(|e| e.days_left),
            expired: expiry.is_some_and(|e| e.expired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    /// 2024-02-29T00:00:00Z.
    const LEAP_DAY_2024: i64 = 1_709_164_800;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(expiry(0, 0).expires_on, "1970-01-01");
        assert_eq!(expiry(DAY - 1, 0).expires_on, "1970-01-01");
        assert_eq!(expiry(DAY, 0).expires_on, "1970-01-02");
        assert_eq!(expiry(-1, 0).expires_on, "1969-12-31");
        assert_eq!(expiry(LEAP_DAY_2024, 0).expires_on, "2024-02-29");
        assert_eq!(expiry(LEAP_DAY_2024 - 1, 0).expires_on, "2024-02-28");
        assert_eq!(expiry(LEAP_DAY_2024 + DAY, 0).expires_on, "2024-03-01");
        // 2000 is a leap year (divisible by 400); 1900 and 2100 are not.
        assert_eq!(expiry(951_782_400, 0).expires_on, "2000-02-29");
        assert_eq!(expiry(951_782_400 + DAY, 0).expires_on, "2000-03-01");
        assert_eq!(expiry(-2_203_891_200, 0).expires_on, "1900-03-01");
        assert_eq!(expiry(-2_203_891_200 - DAY, 0).expires_on, "1900-02-28");
        assert_eq!(expiry(4_107_542_400, 0).expires_on, "2100-03-01");
        assert_eq!(expiry(4_107_542_400 - DAY, 0).expires_on, "2100-02-28");
        assert_eq!(expiry(1_735_689_599, 0).expires_on, "2024-12-31");
        assert_eq!(expiry(1_735_689_600, 0).expires_on, "2025-01-01");
        // A whole leap year has 366 days.
        assert_eq!(expiry(1_735_689_600, 1_704_067_200).days_left, 366);
    }

    #[test]
    fn days_left_round_down_and_go_negative_after_expiry() {
        let t = LEAP_DAY_2024 + 12 * 3600;
        let one_second_before = expiry(t, t - 1);
        assert_eq!(
            one_second_before,
            Expiry {
                expires_on: "2024-02-29".into(),
                days_left: 0,
                expired: false
            }
        );
        let at_expiry = expiry(t, t);
        assert!(at_expiry.expired);
        assert_eq!(at_expiry.days_left, 0);
        let one_second_after = expiry(t, t + 1);
        assert!(one_second_after.expired);
        assert_eq!(one_second_after.days_left, -1);
        assert_eq!(expiry(t, t + DAY).days_left, -1);
        assert_eq!(expiry(t, t + DAY + 1).days_left, -2);
        assert_eq!(expiry(t, t - DAY).days_left, 1);
        assert_eq!(expiry(t, t - DAY + 1).days_left, 0);
        assert_eq!(expiry(t, t - 30 * DAY - 5).days_left, 30);
        // Across the leap day: from 2024-02-28 12:00 to 2024-03-01 12:00 is two days.
        assert_eq!(expiry(t + DAY, t - DAY).days_left, 2);
        assert!(!expiry(t, t - 90 * DAY).expired);
    }

    fn identity(certificate: Option<CardCertificate>) -> CardIdentity {
        CardIdentity {
            reader: "Virtual PCD 00 00".into(),
            atr: cardsim::AtrProfile::NhsCis.atr().to_vec(),
            card_type: "NHS CIS",
            serial: Some(CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x28, 0x17])),
            piv: true,
            certificate,
        }
    }

    /// A self-signed P-256 certificate for `subject`, valid until `not_after`.
    fn certificate(subject: &str, not_after: std::time::Duration) -> Certificate {
        use der::Encode;
        use std::str::FromStr;
        use x509_cert::builder::{Builder, CertificateBuilder, Profile};
        use x509_cert::time::{Time, Validity};
        let key = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let spki =
            x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
        let name = x509_cert::name::Name::from_str(subject).unwrap();
        let validity = Validity {
            not_before: Time::UtcTime(der::asn1::UtcTime::from_unix_duration(DAY_SECS).unwrap()),
            not_after: Time::UtcTime(der::asn1::UtcTime::from_unix_duration(not_after).unwrap()),
        };
        let builder = CertificateBuilder::new(
            Profile::Root,
            x509_cert::serial_number::SerialNumber::from(7u32),
            validity,
            name,
            spki,
            &key,
        )
        .unwrap();
        let cert = builder.build::<p256::ecdsa::DerSignature>().unwrap();
        Certificate::from_der(&cert.to_der().unwrap()).unwrap()
    }

    const DAY_SECS: std::time::Duration = std::time::Duration::from_secs(86_400);

    #[test]
    fn certificates_give_holder_expiry_and_fingerprint() {
        let until = std::time::Duration::from_secs(LEAP_DAY_2024 as u64);
        let cert = certificate("CN=Jane Doe,O=NHS Trust", until);
        let card = CardCertificate::from_certificate(&cert).unwrap();
        assert_eq!(card.holder.as_deref(), Some("Jane Doe"));
        assert_eq!(card.holder_id, None);
        assert_eq!(card.not_after, LEAP_DAY_2024);
        assert_eq!(card.der, cert.der());
        assert_eq!(
            card.fingerprint,
            <[u8; 32]>::from(Sha256::digest(cert.der()))
        );
        assert_eq!(card.expiry(LEAP_DAY_2024 - DAY).days_left, 1);

        // No common name: the whole subject names the holder.
        let cert = certificate("O=NHS Trust,OU=Porters", until);
        let card = CardCertificate::from_certificate(&cert).unwrap();
        assert_eq!(card.holder.as_deref(), Some(cert.subject().as_str()));
        assert!(cert.subject().contains("Porters"), "{}", cert.subject());
    }

    const JANE_ID: &str = "4e81ac01-7ea1-4665-94f5-5c035a583b79";

    #[test]
    fn service_certificates_give_the_name_for_people_and_the_id_for_programs() {
        let until = std::time::Duration::from_secs(LEAP_DAY_2024 as u64);
        // As the service issues them now.
        let cert = certificate(
            &format!("CN=Jane Doe,UID={JANE_ID},O=Identity Agent CMS"),
            until,
        );
        let card = CardCertificate::from_certificate(&cert).unwrap();
        assert_eq!(card.holder.as_deref(), Some("Jane Doe"));
        assert_eq!(card.holder_id.as_deref(), Some(JANE_ID));
        let status = identity(Some(card)).status(0);
        assert_eq!(status.holder.as_deref(), Some("Jane Doe"));
        assert_eq!(status.holder_id.as_deref(), Some(JANE_ID));

        // As it issued them before: the user id only, which is no name for people.
        let cert = certificate(&format!("CN={JANE_ID},O=Identity Agent CMS"), until);
        let card = CardCertificate::from_certificate(&cert).unwrap();
        assert_eq!(card.holder, None);
        assert_eq!(card.holder_id.as_deref(), Some(JANE_ID));

        // A user id alone, without a common name.
        let cert = certificate(&format!("UID={JANE_ID},O=Identity Agent CMS"), until);
        let card = CardCertificate::from_certificate(&cert).unwrap();
        assert_eq!(
            (card.holder, card.holder_id.as_deref()),
            (None, Some(JANE_ID))
        );
    }

    #[test]
    fn user_ids_are_uuids_and_names_are_not() {
        assert!(is_user_id(JANE_ID));
        assert!(is_user_id(&JANE_ID.to_uppercase()));
        for name in [
            "Jane Doe",
            "",
            "4e81ac01-7ea1-4665-94f5-5c035a583b7",
            "4e81ac01-7ea1-4665-94f5-5c035a583b79-",
            "4e81ac017ea1-4665-94f5-5c035a583b79-",
            "4e81ac01-7ea1-4665-94f5-5c035a583b7g",
            "------------------------------------",
        ] {
            assert!(!is_user_id(name), "{name:?}");
        }
    }

    #[test]
    fn status_shows_serial_type_holder_and_expiry() {
        let cert = CardCertificate {
            der: vec![0x30, 0x00],
            holder: Some("Jane Doe".into()),
            holder_id: Some(JANE_ID.into()),
            not_after: LEAP_DAY_2024,
            fingerprint: [0; 32],
        };
        let status = identity(Some(cert)).status(LEAP_DAY_2024 - 10 * DAY);
        assert_eq!(
            status,
            agent_ipc::CardStatus {
                serial: Some("4082A001132F2817".into()),
                card_type: "NHS CIS".into(),
                atr: "3BF91800008131FE454A434F503431563232AF".into(),
                piv: true,
                holder: Some("Jane Doe".into()),
                holder_id: Some(JANE_ID.into()),
                expires_on: Some("2024-02-29".into()),
                days_left: Some(10),
                expired: false,
            }
        );
        let mut card = identity(None);
        card.certificate = Some(CardCertificate {
            der: vec![],
            holder: Some("Jane Doe".into()),
            holder_id: None,
            not_after: LEAP_DAY_2024,
            fingerprint: [0; 32],
        });
        let expired = card.status(LEAP_DAY_2024);
        assert!(expired.expired);
        assert_eq!(expired.days_left, Some(0));

        let bare = identity(None).status(0);
        assert_eq!(
            (bare.holder, bare.expires_on, bare.days_left, bare.expired),
            (None, None, None, false)
        );
    }
}
