//! Certificate signing requests (PKCS #10) signed by a key on the card: the request is built
//! here and its signature comes from GENERAL AUTHENTICATE, so the private key never leaves the
//! card and the request proves the card holds it.

use crate::card::Transaction;
use crate::error::Error;
use crate::keys::{KeyAlgorithm, PublicKey};
use der::asn1::{BitString, Null};
use der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use std::str::FromStr;
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, Version};

/// `sha256WithRSAEncryption` (RFC 4055).
pub const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// `ecdsa-with-SHA256` (RFC 5758).
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// The signature algorithm identifier of a request signed by a key of `algorithm`.
pub fn signature_algorithm(algorithm: KeyAlgorithm) -> AlgorithmIdentifierOwned {
    match algorithm {
        KeyAlgorithm::Rsa2048 => AlgorithmIdentifierOwned {
            oid: SHA256_WITH_RSA,
            parameters: Some(Any::from(Null)),
        },
        KeyAlgorithm::P256 => AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
    }
}

/// Builds a DER certificate signing request for `public` with subject `subject` (an RFC 4514
/// string such as `CN=4082A001132F2817`), calling `sign` once with the DER of the request
/// information; `sign` returns the signature (PKCS#1 v1.5 SHA-256 for RSA, DER ECDSA SHA-256
/// for P-256), as [`Transaction::sign`] makes it.
pub fn build_request(
    public: &PublicKey,
    subject: &str,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, Error>,
) -> Result<Vec<u8>, Error> {
    let algorithm = public.algorithm()?;
    let bad = |e: String| Error::BadPublicKey(format!("certificate request: {e}"));
    let info = CertReqInfo {
        version: Version::V1,
        subject: Name::from_str(subject).map_err(|e| bad(e.to_string()))?,
        public_key: SubjectPublicKeyInfoOwned::from_der(&public.to_spki_der()?)
            .map_err(|e| bad(e.to_string()))?,
        attributes: Default::default(),
    };
    let info_der = info.to_der().map_err(|e| bad(e.to_string()))?;
    let signature = sign(&info_der)?;
    // A signature that does not verify would make a request no CA accepts: say so here.
    public.verify(&info_der, &signature)?;
    let request = CertReq {
        info,
        algorithm: signature_algorithm(algorithm),
        signature: BitString::from_bytes(&signature).map_err(|e| bad(e.to_string()))?,
    };
    request.to_der().map_err(|e| bad(e.to_string()))
}

/// A parsed certificate signing request whose signature has been checked.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    /// The requested subject as an RFC 4514 string.
    pub subject: String,
    /// The public key, proven held by whoever signed the request.
    pub public_key: PublicKey,
    /// The public key as DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// Parses a DER request and checks its signature with the key it carries (RSA-2048 with
/// SHA-256 or P-256 with SHA-256); anything else is refused.
pub fn verify_request(der: &[u8]) -> Result<VerifiedRequest, Error> {
    let request = CertReq::from_der(der)
        .map_err(|e| Error::BadCertificate(format!("not a certificate request: {e}")))?;
    let spki_der = request
        .info
        .public_key
        .to_der()
        .map_err(|e| Error::BadPublicKey(e.to_string()))?;
    let public_key = PublicKey::from_spki_der(&spki_der)?;
    let expected = match public_key.algorithm()? {
        KeyAlgorithm::Rsa2048 => SHA256_WITH_RSA,
        KeyAlgorithm::P256 => ECDSA_WITH_SHA256,
    };
    if request.algorithm.oid != expected {
        return Err(Error::BadCertificate(format!(
            "the request is signed with {}, not {expected}",
            request.algorithm.oid
        )));
    }
    let info_der = request
        .info
        .to_der()
        .map_err(|e| Error::BadCertificate(e.to_string()))?;
    let signature = request
        .signature
        .as_bytes()
        .ok_or_else(|| Error::BadCertificate("the signature has unused bits".into()))?;
    public_key.verify(&info_der, signature)?;
    Ok(VerifiedRequest {
        subject: request.info.subject.to_string(),
        public_key,
        spki_der,
    })
}

impl Transaction<'_> {
    /// A certificate signing request for the key in `slot` (whose public key is `public`),
    /// signed on the card; needs the PIN.
    pub fn certificate_request(
        &self,
        slot: u8,
        public: &PublicKey,
        subject: &str,
    ) -> Result<Vec<u8>, Error> {
        let algorithm = public.algorithm()?;
        build_request(public, subject, |info| self.sign(slot, algorithm, info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::signature::{SignatureEncoding, Signer};

    #[test]
    fn p256_requests_verify_and_tampering_is_caught() {
        let key = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let public = PublicKey::P256((*key.verifying_key()).into());
        let der = build_request(&public, "CN=4082A001132F2817", |info| {
            let sig: p256::ecdsa::DerSignature = key.sign(info);
            Ok(sig.to_vec())
        })
        .unwrap();
        let verified = verify_request(&der).unwrap();
        assert_eq!(verified.public_key, public);
        assert_eq!(verified.subject, "CN=4082A001132F2817");

        let mut tampered = der.clone();
        let at = tampered
            .windows(16)
            .position(|w| w == b"4082A001132F2817")
            .unwrap();
        tampered[at] = b'5';
        assert!(matches!(
            verify_request(&tampered),
            Err(Error::BadSignature)
        ));
        assert!(verify_request(&der[..der.len() - 3]).is_err());
    }

    #[test]
    fn rsa_requests_verify_and_a_wrong_signer_is_refused_early() {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let public = PublicKey::Rsa(private.to_public_key());
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private);
        let der = build_request(&public, "CN=Jane", |info| Ok(signer.sign(info).to_vec())).unwrap();
        assert_eq!(verify_request(&der).unwrap().public_key, public);

        let other = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let wrong = build_request(&public, "CN=Jane", |info| {
            let sig: p256::ecdsa::DerSignature = other.sign(info);
            Ok(sig.to_vec())
        });
        assert!(matches!(wrong, Err(Error::BadSignature)));
    }
}
