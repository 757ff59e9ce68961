//! X.509 certificates of the card's slots: reading and writing the certificate objects
//! (`70` certificate, `71 00` not compressed, `FE` error detection) and a small parsed view.

use crate::card::Transaction;
use crate::consts::cert_object_for_slot;
use crate::error::Error;
use crate::keys::PublicKey;
use crate::tlv;
use der::{Decode, Encode};
use std::time::SystemTime;

/// A parsed X.509 certificate with the fields the agent, the CMS and the tests look at.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    cert: x509_cert::Certificate,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject())
            .field("serial", &self.serial_hex())
            .finish()
    }
}

impl Certificate {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| Error::BadCertificate(e.to_string()))?;
        Ok(Self {
            der: der.to_vec(),
            cert,
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The parsed certificate, for fields this wrapper does not expose.
    pub fn x509(&self) -> &x509_cert::Certificate {
        &self.cert
    }

    /// The subject as an RFC 4514 string (`CN=Jane Doe,O=…`).
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// The issuer as an RFC 4514 string.
    pub fn issuer(&self) -> String {
        self.cert.tbs_certificate.issuer.to_string()
    }

    /// The serial number's bytes (big-endian, as encoded).
    pub fn serial(&self) -> &[u8] {
        self.cert.tbs_certificate.serial_number.as_bytes()
    }

    /// The serial number in upper-case hex.
    pub fn serial_hex(&self) -> String {
        hex::encode_upper(self.serial())
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> SystemTime {
        self.cert
            .tbs_certificate
            .validity
            .not_before
            .to_system_time()
    }

    /// End of the validity period.
    pub fn not_after(&self) -> SystemTime {
        self.cert
            .tbs_certificate
            .validity
            .not_after
            .to_system_time()
    }

    /// The subject public key as DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>, Error> {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| Error::BadCertificate(e.to_string()))
    }

    /// The subject public key (RSA or P-256).
    pub fn public_key(&self) -> Result<PublicKey, Error> {
        PublicKey::from_spki_der(&self.spki_der()?)
    }

    /// Checks that `signature` over `message` was made by the certificate's key (SHA-256;
    /// PKCS#1 v1.5 for RSA, DER ECDSA for P-256).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        self.public_key()?.verify(message, signature)
    }
}

/// The content of a certificate object holding `der` (`70` certificate, `71 00` not
/// compressed, `FE` error detection).
pub fn object_content(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(der.len() + 10);
    tlv::push(&mut out, 0x70, der);
    tlv::push(&mut out, 0x71, &[0x00]);
    tlv::push(&mut out, 0xFE, &[]);
    out
}

/// The certificate in a certificate object's content (the value inside tag `53`), as
/// [`Transaction::read_certificate`] reads it. A compressed certificate is refused.
pub fn from_object_content(content: &[u8]) -> Result<Certificate, Error> {
    let malformed = |what: String| Error::Malformed(format!("certificate object: {what}"));
    let der = tlv::find(content, 0x70)
        .map_err(|e| malformed(e.to_string()))?
        .ok_or_else(|| malformed("no certificate (tag 70)".into()))?;
    let info = tlv::find(content, 0x71).map_err(|e| malformed(e.to_string()))?;
    if info.is_some_and(|i| i.first().is_some_and(|&b| b & 0x01 != 0)) {
        return Err(malformed("the certificate is compressed".into()));
    }
    Certificate::from_der(der).map_err(|e| malformed(e.to_string()))
}

fn cert_object(slot: u8) -> Result<u32, Error> {
    cert_object_for_slot(slot)
        .ok_or_else(|| Error::BadCertificate(format!("slot {slot:02X} has no certificate object")))
}

impl Transaction<'_> {
    /// Reads the certificate of `slot` (9A, 9C, 9D, 9E or a retired slot).
    /// An empty slot gives [`Error::NotFound`].
    pub fn read_certificate(&self, slot: u8) -> Result<Certificate, Error> {
        let content = self.get_data(cert_object(slot)?)?;
        from_object_content(&content)
    }

    /// Writes `certificate` into `slot`'s certificate object (needs the management key).
    pub fn write_certificate(&self, slot: u8, certificate: &Certificate) -> Result<(), Error> {
        self.put_data(cert_object(slot)?, &object_content(certificate.der()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::time::Duration;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::time::Validity;

    fn self_signed() -> (Certificate, p256::ecdsa::SigningKey) {
        let signing = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let spki = spki::SubjectPublicKeyInfoOwned::from_key(*signing.verifying_key()).unwrap();
        let builder = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::new(&[0x01, 0x23]).unwrap(),
            Validity::from_now(Duration::from_secs(86400)).unwrap(),
            Name::from_str("CN=Jane Doe,O=Test Trust").unwrap(),
            spki,
            &signing,
        )
        .unwrap();
        let cert = builder
            .build::<p256::ecdsa::DerSignature>()
            .unwrap()
            .to_der()
            .unwrap();
        (Certificate::from_der(&cert).unwrap(), signing)
    }

    #[test]
    fn certificate_fields_and_verification() {
        let (cert, signing) = self_signed();
        assert_eq!(cert.subject(), "CN=Jane Doe,O=Test Trust");
        assert_eq!(cert.serial_hex(), "0123");
        assert!(cert.not_before() < cert.not_after());
        let sig: p256::ecdsa::DerSignature = rsa::signature::Signer::sign(&signing, b"challenge");
        cert.verify(b"challenge", sig.as_bytes()).unwrap();
        assert!(matches!(
            cert.verify(b"challengE", sig.as_bytes()),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            Certificate::from_der(&[0x30, 0x03, 1, 2, 3]),
            Err(Error::BadCertificate(_))
        ));
    }

    #[test]
    fn certificate_objects_round_trip() {
        let (cert, _) = self_signed();
        let content = object_content(cert.der());
        assert_eq!(
            &content[content.len() - 5..],
            &[0x71, 0x01, 0x00, 0xFE, 0x00]
        );
        assert_eq!(from_object_content(&content).unwrap(), cert);
        let compressed = [tlv::encode(0x70, cert.der()), tlv::encode(0x71, &[0x01])].concat();
        assert!(matches!(
            from_object_content(&compressed),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            from_object_content(&tlv::encode(0x70, &[0x30, 0x00])),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            from_object_content(&[0x71, 0x01, 0x00]),
            Err(Error::Malformed(_))
        ));
    }
}
