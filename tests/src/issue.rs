//! Issuing a virtual card the way an issuing tool does it: over PC/SC, with the key generated
//! on the card and its certificate from the test CA.

use crate::pki::TestCa;
use crate::TestBed;
use anyhow::{Context as _, Result};
use cardsim::{AtrProfile, CardFile, CardSpec, Faults, InsertedCard};
use piv::consts::key;
use piv::{CardSerial, Certificate, KeyAlgorithm, LocalResponder, ManagementKey, PivCard};
use std::ffi::CString;
use std::path::PathBuf;

/// What to put on a card issued for a test or the demo.
#[derive(Debug, Clone)]
pub struct Issuance {
    /// The card serial.
    pub serial: CardSerial,
    /// The ATR profile the card answers with.
    pub profile: AtrProfile,
    /// The algorithm of the 9A key.
    pub algorithm: KeyAlgorithm,
    /// The holder named in the certificate.
    pub holder: String,
    /// Days until the certificate expires (negative: expired that many days ago).
    pub days_valid: i64,
}

impl Issuance {
    /// An `nhs-cis` card with an RSA-2048 key valid for two years.
    pub fn new(serial: CardSerial, holder: &str) -> Self {
        Self {
            serial,
            profile: AtrProfile::NhsCis,
            algorithm: KeyAlgorithm::Rsa2048,
            holder: holder.to_owned(),
            days_valid: 730,
        }
    }
}

/// A card issued on a test bed and left inserted.
pub struct IssuedCard {
    /// The card's state file.
    pub file: PathBuf,
    /// The card in its reader; dropping it removes the card.
    pub inserted: InsertedCard,
    /// The certificate written to slot 9A.
    pub certificate: Certificate,
}

/// Creates a blank card with the factory management key, inserts it into reader `slot` and
/// personalises it over PC/SC: key pair generated in 9A, certificate from `ca` written beside it.
pub fn issue_card(
    bed: &TestBed,
    slot: usize,
    ca: &mut TestCa,
    issuance: &Issuance,
) -> Result<IssuedCard> {
    let file = bed.dir().join(format!("card-{}.json", issuance.serial));
    let spec = CardSpec {
        profile: issuance.profile,
        ..CardSpec::new(issuance.serial)
    };
    CardFile::create(&file, &spec).context("creating the card file")?;
    let inserted = bed.insert(slot, &file, Faults::default())?;

    let ctx = bed.context()?;
    let mut card = PivCard::connect(&ctx, &CString::new(bed.reader_name(slot))?)?;
    let certificate = personalise(
        &mut card,
        ca,
        key::AUTHENTICATION,
        issuance.algorithm,
        &issuance.holder,
        issuance.days_valid,
    )?;
    card.disconnect()?;
    Ok(IssuedCard {
        file,
        inserted,
        certificate,
    })
}

/// Personalises `slot` of a card that still has the factory management key: a key pair
/// generated on the card and a certificate from `ca` for it, valid for `days_valid` days.
pub fn personalise(
    card: &mut PivCard,
    ca: &mut TestCa,
    slot: u8,
    algorithm: KeyAlgorithm,
    holder: &str,
    days_valid: i64,
) -> Result<Certificate> {
    let tx = card.transaction()?;
    tx.authenticate_management_key(&mut LocalResponder::new(ManagementKey::factory()))
        .context("authenticating with the factory management key")?;
    let public = tx.generate_key(slot, algorithm)?;
    let der = ca.issue(holder, &public.to_spki_der()?, days_valid)?;
    let certificate = Certificate::from_der(&der)?;
    tx.write_certificate(slot, &certificate)?;
    Ok(certificate)
}
