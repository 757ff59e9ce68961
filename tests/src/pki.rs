//! A test certificate authority that issues certificates for card keys with our own code
//! (Debian's yubico-piv-tool 2.2.0 cannot make certificates with OpenSSL 3).

use anyhow::{Context as _, Result};
use der::asn1::UtcTime;
use der::{Decode, Encode, EncodePem};
use p256::ecdsa::{DerSignature, SigningKey};
use std::str::FromStr;
use std::time::{Duration, SystemTime};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

const DAY: Duration = Duration::from_secs(86_400);

/// A P-256 CA with a self-signed root certificate, made fresh for each test.
pub struct TestCa {
    key: SigningKey,
    certificate: Certificate,
    next_serial: u64,
}

impl TestCa {
    /// A new CA named `CN=<name>`, valid from a day ago for ten years.
    pub fn new(name: &str) -> Result<Self> {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let subject = Name::from_str(&format!("CN={name},O=Identity Agent Test"))?;
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key())
            .context("encoding the CA public key")?;
        let builder = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity(SystemTime::now() - DAY, SystemTime::now() + 3650 * DAY)?,
            subject,
            spki,
            &key,
        )?;
        let certificate = builder.build::<DerSignature>()?;
        Ok(Self {
            key,
            certificate,
            next_serial: 2,
        })
    }

    /// The CA of an existing P-256 key (PKCS #8 PEM) and certificate (PEM), such as the
    /// service's, to issue certificates the way that CA itself does not (any more).
    pub fn from_pem(key_pem: &str, certificate_pem: &str) -> Result<Self> {
        use der::DecodePem;
        use p256::pkcs8::DecodePrivateKey;
        let key = SigningKey::from_pkcs8_pem(key_pem).context("the CA key")?;
        let certificate =
            Certificate::from_pem(certificate_pem.as_bytes()).context("the CA certificate")?;
        Ok(Self {
            key,
            certificate,
            // Small serials: the service's own are 16 random bytes, so never one of these.
            next_serial: 2,
        })
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> Result<Vec<u8>> {
        Ok(self.certificate.to_der()?)
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> Result<String> {
        Ok(self.certificate.to_pem(der::pem::LineEnding::LF)?)
    }

    /// Issues a certificate for the key `spki_der` (RSA or P-256), subject `CN=<holder>`, valid
    /// from a day ago until `days` days from now (negative: already expired).
    pub fn issue(&mut self, holder: &str, spki_der: &[u8], days: i64) -> Result<Vec<u8>> {
        let now = SystemTime::now();
        let not_after = if days >= 0 {
            now + DAY * days as u32
        } else {
            now - DAY * days.unsigned_abs() as u32
        };
        let not_before = not_after.min(now) - DAY;
        self.issue_between(holder, spki_der, not_before, not_after)
    }

    /// Issues a certificate for `spki_der` valid from `not_before` to `not_after`.
    pub fn issue_between(
        &mut self,
        holder: &str,
        spki_der: &[u8],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Vec<u8>> {
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der).context("card public key")?;
        let profile = Profile::Leaf {
            issuer: self.certificate.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        };
        let serial = SerialNumber::from(self.next_serial);
        self.next_serial += 1;
        let subject = Name::from_str(&format!("CN={holder},O=Identity Agent Test"))?;
        let builder = CertificateBuilder::new(
            profile,
            serial,
            validity(not_before, not_after)?,
            subject,
            spki,
            &self.key,
        )?;
        Ok(builder.build::<DerSignature>()?.to_der()?)
    }
}

fn validity(not_before: SystemTime, not_after: SystemTime) -> Result<Validity> {
    let time = |t: SystemTime| -> Result<Time> { Ok(Time::UtcTime(UtcTime::from_system_time(t)?)) };
    Ok(Validity {
        not_before: time(not_before)?,
        not_after: time(not_after)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn issues_certificates_that_chain_to_the_ca() {
        let mut ca = TestCa::new("Test CA").unwrap();
        let card_key = SigningKey::random(&mut rand::rngs::OsRng);
        let spki = SubjectPublicKeyInfoOwned::from_key(*card_key.verifying_key()).unwrap();
        let der = ca.issue("holder", &spki.to_der().unwrap(), -3).unwrap();
        let cert = Certificate::from_der(&der).unwrap();
        let tbs = cert.tbs_certificate.to_der().unwrap();
        let sig = p256::ecdsa::DerSignature::from_bytes(cert.signature.raw_bytes()).unwrap();
        ca.key.verifying_key().verify(&tbs, &sig).unwrap();
        let expired = cert.tbs_certificate.validity.not_after.to_system_time();
        assert!(expired < SystemTime::now());
        assert_eq!(
            cert.tbs_certificate.issuer,
            ca.certificate.tbs_certificate.subject
        );
    }
}
