//! Asymmetric keys on the card: GENERATE ASYMMETRIC KEY PAIR, signing with GENERAL AUTHENTICATE,
//! public keys and signature checks, and SET MANAGEMENT KEY.

use crate::apdu::Command;
use crate::card::Transaction;
use crate::consts::{alg, ins, key};
use crate::error::Error;
use crate::management_key::ManagementKey;
use crate::tlv;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::signature::Verifier;
use sha2::{Digest, Sha256};

/// The asymmetric algorithms this client generates and signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a 2048-bit modulus; signatures are PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// ECDSA on NIST P-256 with SHA-256.
    P256,
}

impl KeyAlgorithm {
    /// The PIV algorithm identifier (07 or 11).
    pub fn id(self) -> u8 {
        match self {
            KeyAlgorithm::Rsa2048 => alg::RSA_2048,
            KeyAlgorithm::P256 => alg::ECC_P256,
        }
    }

    /// The algorithm for a PIV identifier.
    pub fn from_id(id: u8) -> Result<Self, Error> {
        match id {
            alg::RSA_2048 => Ok(KeyAlgorithm::Rsa2048),
            alg::ECC_P256 => Ok(KeyAlgorithm::P256),
            other => Err(Error::UnsupportedAlgorithm(other)),
        }
    }
}

/// A public key of a card slot or a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// An RSA key.
    Rsa(rsa::RsaPublicKey),
    /// A P-256 key.
    P256(p256::PublicKey),
}

impl PublicKey {
    /// Reads a DER SubjectPublicKeyInfo holding an RSA or a P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(der) {
            return Ok(PublicKey::Rsa(k));
        }
        p256::PublicKey::from_public_key_der(der)
            .map(PublicKey::P256)
            .map_err(|_| Error::BadPublicKey("not an RSA or P-256 SubjectPublicKeyInfo".into()))
    }

    /// The key as DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, Error> {
        let doc = match self {
            PublicKey::Rsa(k) => k.to_public_key_der(),
            PublicKey::P256(k) => k.to_public_key_der(),
        };
        doc.map(|d| d.as_bytes().to_vec())
            .map_err(|e| Error::BadPublicKey(e.to_string()))
    }

    /// The algorithm of the key; RSA keys other than 2048 bits are refused.
    pub fn algorithm(&self) -> Result<KeyAlgorithm, Error> {
        match self {
            PublicKey::Rsa(k) if rsa::traits::PublicKeyParts::size(k) == 256 => {
                Ok(KeyAlgorithm::Rsa2048)
            }
            PublicKey::Rsa(_) => Err(Error::UnsupportedAlgorithm(alg::RSA_1024)),
            PublicKey::P256(_) => Ok(KeyAlgorithm::P256),
        }
    }

    /// Checks `signature` over `message` (hashed with SHA-256): PKCS#1 v1.5 for RSA, a DER
    /// ECDSA signature for P-256.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        match self {
            PublicKey::Rsa(k) => {
                let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k.clone());
                let sig = rsa::pkcs1v15::Signature::try_from(signature)
                    .map_err(|_| Error::BadSignature)?;
                vk.verify(message, &sig).map_err(|_| Error::BadSignature)
            }
            PublicKey::P256(k) => {
                let vk = p256::ecdsa::VerifyingKey::from(k);
                let sig =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| Error::BadSignature)?;
                vk.verify(message, &sig).map_err(|_| Error::BadSignature)
            }
        }
    }
}

/// The DER DigestInfo prefix of a SHA-256 hash (RFC 8017, section 9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The EMSA-PKCS1-v1_5 block of a SHA-256 `digest` for a 2048-bit key:
/// `00 01 FF … FF 00 DigestInfo`. The card applies the raw RSA operation to it.
pub fn pkcs1_v15_sha256_block(digest: &[u8; 32]) -> Vec<u8> {
    const LEN: usize = 256;
    let t_len = SHA256_DIGEST_INFO.len() + digest.len();
    let mut block = Vec::with_capacity(LEN);
    block.extend_from_slice(&[0x00, 0x01]);
    block.resize(LEN - t_len - 1, 0xFF);
    block.push(0x00);
    block.extend_from_slice(&SHA256_DIGEST_INFO);
    block.extend_from_slice(digest);
    block
}

/// GENERAL AUTHENTICATE asking the key in `slot` to sign `challenge`.
pub(crate) fn sign_command(slot: u8, algorithm: KeyAlgorithm, challenge: &[u8]) -> Command {
    let mut inner = Vec::with_capacity(challenge.len() + 8);
    tlv::push(&mut inner, 0x82, &[]);
    tlv::push(&mut inner, 0x81, challenge);
    Command::new(
        ins::GENERAL_AUTHENTICATE,
        algorithm.id(),
        slot,
        tlv::encode(0x7C, &inner),
    )
}

/// The signature from a GENERAL AUTHENTICATE response `7C { 82 signature }`, checked for its
/// form (256 bytes for RSA, DER ECDSA for P-256).
pub(crate) fn parse_signature(algorithm: KeyAlgorithm, response: &[u8]) -> Result<Vec<u8>, Error> {
    let sig = dynamic_auth_item(response, 0x82)?;
    match algorithm {
        KeyAlgorithm::Rsa2048 if sig.len() == 256 => Ok(sig.to_vec()),
        KeyAlgorithm::Rsa2048 => Err(Error::Malformed(format!(
            "an RSA-2048 signature is 256 bytes, got {}",
            sig.len()
        ))),
        KeyAlgorithm::P256 => p256::ecdsa::Signature::from_der(sig)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|_| Error::Malformed("the ECDSA signature is not valid DER".into())),
    }
}

/// The value of `tag` inside the dynamic authentication template `7C` of a response.
pub(crate) fn dynamic_auth_item(response: &[u8], tag: u32) -> Result<&[u8], Error> {
    let malformed =
        |what: String| Error::Malformed(format!("GENERAL AUTHENTICATE response: {what}"));
    let (outer, _) = tlv::parse(response).map_err(|e| malformed(e.to_string()))?;
    if outer.tag != 0x7C {
        return Err(malformed(format!("tag {:X} instead of 7C", outer.tag)));
    }
    tlv::find(outer.value, tag)
        .map_err(|e| malformed(e.to_string()))?
        .ok_or_else(|| malformed(format!("no tag {tag:X}")))
}

/// GENERATE ASYMMETRIC KEY PAIR in `slot`.
pub(crate) fn generate_command(slot: u8, algorithm: KeyAlgorithm) -> Command {
    let template = tlv::encode(0xAC, &tlv::encode(0x80, &[algorithm.id()]));
    Command::new(ins::GENERATE_ASYMMETRIC_KEY_PAIR, 0x00, slot, template)
}

/// The public key from a GENERATE response `7F49 { 81 n, 82 e }` or `7F49 { 86 point }`.
pub(crate) fn parse_generated(
    algorithm: KeyAlgorithm,
    response: &[u8],
) -> Result<PublicKey, Error> {
    let malformed = |what: String| Error::Malformed(format!("generated public key: {what}"));
    let (outer, _) = tlv::parse(response).map_err(|e| malformed(e.to_string()))?;
    if outer.tag != 0x7F49 {
        return Err(malformed(format!("tag {:X} instead of 7F49", outer.tag)));
    }
    let item = |tag: u32| {
        tlv::find(outer.value, tag)
            .map_err(|e| malformed(e.to_string()))?
            .ok_or_else(|| malformed(format!("no tag {tag:X}")))
    };
    match algorithm {
        KeyAlgorithm::Rsa2048 => {
            let n = rsa::BigUint::from_bytes_be(item(0x81)?);
            let e = rsa::BigUint::from_bytes_be(item(0x82)?);
            let key = rsa::RsaPublicKey::new(n, e).map_err(|e| malformed(e.to_string()))?;
            if rsa::traits::PublicKeyParts::size(&key) != 256 {
                return Err(malformed("the RSA modulus is not 2048 bits".into()));
            }
            Ok(PublicKey::Rsa(key))
        }
        KeyAlgorithm::P256 => p256::PublicKey::from_sec1_bytes(item(0x86)?)
            .map(PublicKey::P256)
            .map_err(|_| malformed("not a P-256 point".into())),
    }
}

/// SET MANAGEMENT KEY (Yubico): `FF FF FF` with `{alg, 9B, len, key}`.
pub(crate) fn set_management_key_command(new_key: &ManagementKey) -> Command {
    let secret = new_key.secret();
    let mut data = Vec::with_capacity(secret.len() + 3);
    data.extend_from_slice(&[new_key.algorithm(), key::MANAGEMENT, secret.len() as u8]);
    data.extend_from_slice(secret);
    Command::new(ins::SET_MANAGEMENT_KEY, 0xFF, 0xFF, data).without_le()
}

impl Transaction<'_> {
    /// Generates a key pair in `slot` (needs the management key) and returns its public key.
    pub fn generate_key(&self, slot: u8, algorithm: KeyAlgorithm) -> Result<PublicKey, Error> {
        let resp = self.transmit_ok(&generate_command(slot, algorithm), Some(slot))?;
        parse_generated(algorithm, &resp.data)
    }

    /// Signs `message` with the key in `slot` (needs the PIN): SHA-256 on the host, then
    /// PKCS#1 v1.5 for RSA-2048 or DER ECDSA for P-256.
    pub fn sign(
        &self,
        slot: u8,
        algorithm: KeyAlgorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let digest: [u8; 32] = Sha256::digest(message).into();
        self.sign_digest(slot, algorithm, &digest)
    }

    /// Signs a SHA-256 `digest` with the key in `slot` (needs the PIN).
    pub fn sign_digest(
        &self,
        slot: u8,
        algorithm: KeyAlgorithm,
        digest: &[u8; 32],
    ) -> Result<Vec<u8>, Error> {
        let challenge = match algorithm {
            KeyAlgorithm::Rsa2048 => pkcs1_v15_sha256_block(digest),
            KeyAlgorithm::P256 => digest.to_vec(),
        };
        let resp = self.transmit_ok(&sign_command(slot, algorithm, &challenge), Some(slot))?;
        parse_signature(algorithm, &resp.data)
    }

    /// Replaces the 9B management key (Yubico SET MANAGEMENT KEY); needs the current one to
    /// have been authenticated in this transaction.
    /// A card that does not take keys of the new key's algorithm answers
    /// [`Error::ManagementAlgorithmNotAccepted`] and keeps its key.
    pub fn set_management_key(&self, new_key: &ManagementKey) -> Result<(), Error> {
        match self.transmit_ok(&set_management_key_command(new_key), None) {
            Ok(_) => Ok(()),
            Err(Error::Status(sw)) if sw.is_algorithm_refusal() => Err(
                Error::ManagementAlgorithmNotAccepted(new_key.management_algorithm()),
            ),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};

    #[test]
    fn digest_info_block_is_what_the_rsa_crate_signs() {
        // An RSA signature is the raw private operation on the EMSA block; check the block by
        // verifying a raw signature of it with the rsa crate's PKCS#1 v1.5 verifier.
        let mut rng = rand::thread_rng();
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let digest: [u8; 32] = Sha256::digest(b"hello").into();
        let block = pkcs1_v15_sha256_block(&digest);
        assert_eq!(block.len(), 256);
        assert_eq!(&block[..3], &[0, 1, 0xFF]);
        assert_eq!(&block[256 - 52..256 - 51], &[0x00]);
        let raw = rsa::BigUint::from_bytes_be(&block)
            .modpow(private.d(), private.n())
            .to_bytes_be();
        let mut sig = vec![0u8; 256 - raw.len()];
        sig.extend_from_slice(&raw);
        let public = PublicKey::Rsa(private.to_public_key());
        public.verify(b"hello", &sig).unwrap();
        assert!(matches!(
            public.verify(b"hellO", &sig),
            Err(Error::BadSignature)
        ));
        let expected = SigningKey::<Sha256>::new(private).sign(b"hello").to_vec();
        assert_eq!(sig, expected);
    }

    #[test]
    fn generated_keys_are_parsed_from_7f49() {
        let private = p256::SecretKey::random(&mut rand::thread_rng());
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &private.public_key(),
            false,
        );
        let resp = tlv::encode(0x7F49, &tlv::encode(0x86, point.as_bytes()));
        let key = parse_generated(KeyAlgorithm::P256, &resp).unwrap();
        assert_eq!(key, PublicKey::P256(private.public_key()));
        let spki = key.to_spki_der().unwrap();
        assert_eq!(PublicKey::from_spki_der(&spki).unwrap(), key);

        let rsa_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .unwrap()
            .to_public_key();
        let mut inner = tlv::encode(0x81, &rsa_key.n().to_bytes_be());
        tlv::push(&mut inner, 0x82, &rsa_key.e().to_bytes_be());
        let resp = tlv::encode(0x7F49, &inner);
        let key = parse_generated(KeyAlgorithm::Rsa2048, &resp).unwrap();
        assert_eq!(key, PublicKey::Rsa(rsa_key));
        assert_eq!(key.algorithm().unwrap(), KeyAlgorithm::Rsa2048);

        for bad in [
            vec![],
            tlv::encode(0x7F49, &[]),
            tlv::encode(0x7F49, &tlv::encode(0x86, &[4, 1, 2])),
            tlv::encode(0x53, &tlv::encode(0x86, point.as_bytes())),
        ] {
            assert!(matches!(
                parse_generated(KeyAlgorithm::P256, &bad),
                Err(Error::Malformed(_))
            ));
        }
        let short_rsa = tlv::encode(
            0x7F49,
            &[
                tlv::encode(0x81, &[0xC5; 128]),
                tlv::encode(0x82, &[1, 0, 1]),
            ]
            .concat(),
        );
        assert!(matches!(
            parse_generated(KeyAlgorithm::Rsa2048, &short_rsa),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn sign_and_management_requests() {
        let c = sign_command(0x9A, KeyAlgorithm::P256, &[0xAB; 32]);
        assert_eq!(
            &c.to_bytes()[..9],
            &[0x00, 0x87, 0x11, 0x9A, 38, 0x7C, 36, 0x82, 0x00]
        );
        assert_eq!(&c.data[4..6], &[0x81, 32]);
        let c = sign_command(0x9A, KeyAlgorithm::Rsa2048, &[0; 256]);
        assert_eq!(&c.data[..6], &[0x7C, 0x82, 0x01, 0x06, 0x82, 0x00]);
        let c = generate_command(0x9C, KeyAlgorithm::Rsa2048);
        assert_eq!(
            c.to_bytes(),
            [0x00, 0x47, 0x00, 0x9C, 5, 0xAC, 3, 0x80, 1, 0x07, 0x00]
        );
        let key = ManagementKey::new(alg::AES_128, &[0x11; 16]).unwrap();
        let c = set_management_key_command(&key);
        assert_eq!(
            &c.to_bytes()[..8],
            &[0x00, 0xFF, 0xFF, 0xFF, 19, 0x08, 0x9B, 16]
        );
    }

    #[test]
    fn signatures_are_checked_for_form() {
        let sig = tlv::encode(0x7C, &tlv::encode(0x82, &[1; 256]));
        assert_eq!(
            parse_signature(KeyAlgorithm::Rsa2048, &sig).unwrap().len(),
            256
        );
        let short = tlv::encode(0x7C, &tlv::encode(0x82, &[1; 255]));
        assert!(matches!(
            parse_signature(KeyAlgorithm::Rsa2048, &short),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            parse_signature(KeyAlgorithm::P256, &sig),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            parse_signature(KeyAlgorithm::P256, &[0x7C, 0x05]),
            Err(Error::Malformed(_))
        ));
    }
}
