//! The asymmetric keys in the card's slots: generation, storage form and the private-key
//! operations GENERAL AUTHENTICATE performs.

use piv::consts::alg;
use piv::tlv;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey};
use thiserror::Error;
use zeroize::Zeroizing;

/// A key operation that failed.
#[derive(Debug, Error)]
pub enum KeyError {
    /// An algorithm the card does not implement (it does RSA-2048 and P-256).
    #[error("key algorithm {0:02X} is not supported (RSA-2048 07, P-256 11)")]
    UnsupportedAlgorithm(u8),
    /// The stored key could not be decoded.
    #[error("stored key does not decode")]
    BadStoredKey,
    /// Generation or encoding failed inside the crypto library.
    #[error("key generation failed")]
    Generation,
    /// The input block has the wrong size or value for the key.
    #[error("input does not fit the key")]
    BadInput,
}

/// A private key in a slot.
pub enum SlotKey {
    /// RSA-2048.
    Rsa(Box<RsaPrivateKey>),
    /// ECC P-256.
    P256(p256::SecretKey),
}

impl SlotKey {
    /// Generates a key for PIV algorithm `algorithm`.
    pub fn generate(algorithm: u8) -> Result<Self, KeyError> {
        let mut rng = rand::rngs::OsRng;
        match algorithm {
            alg::RSA_2048 => RsaPrivateKey::new(&mut rng, 2048)
                .map(|k| SlotKey::Rsa(Box::new(k)))
                .map_err(|_| KeyError::Generation),
            alg::ECC_P256 => Ok(SlotKey::P256(p256::SecretKey::random(&mut rng))),
            other => Err(KeyError::UnsupportedAlgorithm(other)),
        }
    }

    /// Decodes a key stored as PKCS#8 DER for `algorithm`.
    pub fn from_pkcs8(algorithm: u8, der: &[u8]) -> Result<Self, KeyError> {
        match algorithm {
            alg::RSA_2048 => RsaPrivateKey::from_pkcs8_der(der)
                .map(|k| SlotKey::Rsa(Box::new(k)))
                .map_err(|_| KeyError::BadStoredKey),
            alg::ECC_P256 => p256::SecretKey::from_pkcs8_der(der)
                .map(SlotKey::P256)
                .map_err(|_| KeyError::BadStoredKey),
            other => Err(KeyError::UnsupportedAlgorithm(other)),
        }
    }

    /// The PIV algorithm identifier.
    pub fn algorithm(&self) -> u8 {
        match self {
            SlotKey::Rsa(_) => alg::RSA_2048,
            SlotKey::P256(_) => alg::ECC_P256,
        }
    }

    /// The private key as PKCS#8 DER, for the card file.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let doc = match self {
            SlotKey::Rsa(k) => k.to_pkcs8_der(),
            SlotKey::P256(k) => k.to_pkcs8_der(),
        }
        .map_err(|_| KeyError::Generation)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        let doc = match self {
            SlotKey::Rsa(k) => k.to_public_key().to_public_key_der(),
            SlotKey::P256(k) => k.public_key().to_public_key_der(),
        }
        .map_err(|_| KeyError::Generation)?;
        Ok(doc.as_bytes().to_vec())
    }

    /// The public key as the PIV `7F49` template GENERATE ASYMMETRIC KEY PAIR answers with:
    /// `81` modulus and `82` exponent for RSA, `86` uncompressed point for ECC.
    pub fn public_key_template(&self) -> Vec<u8> {
        let mut inner = Vec::new();
        match self {
            SlotKey::Rsa(k) => {
                tlv::push(&mut inner, 0x81, &k.n().to_bytes_be());
                tlv::push(&mut inner, 0x82, &k.e().to_bytes_be());
            }
            SlotKey::P256(k) => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let point = k.public_key().to_encoded_point(false);
                tlv::push(&mut inner, 0x86, point.as_bytes());
            }
        }
        tlv::encode(0x7F49, &inner)
    }

    /// The private-key operation of GENERAL AUTHENTICATE on `input` (tag `81`): a raw RSA
    /// operation on a block of the modulus size, or ECDSA over a hash (DER signature).
    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            SlotKey::Rsa(k) => {
                let size = k.size();
                if input.len() != size {
                    return Err(KeyError::BadInput);
                }
                let c = BigUint::from_bytes_be(input);
                if &c >= k.n() {
                    return Err(KeyError::BadInput);
                }
                let m = rsa::hazmat::rsa_decrypt_and_check(
                    k.as_ref(),
                    Some(&mut rand::rngs::OsRng),
                    &c,
                )
                .map_err(|_| KeyError::BadInput)?;
                let bytes = m.to_bytes_be();
                let mut out = vec![0u8; size - bytes.len()];
                out.extend_from_slice(&bytes);
                Ok(out)
            }
            SlotKey::P256(k) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                if input.is_empty() {
                    return Err(KeyError::BadInput);
                }
                // The hash is fitted to the field size: left-padded when shorter, truncated
                // to its leftmost bytes when longer.
                let mut digest = [0u8; 32];
                let take = input.len().min(32);
                digest[32 - take..].copy_from_slice(&input[..take]);
                let signer = p256::ecdsa::SigningKey::from(k);
                let sig: p256::ecdsa::Signature = signer
                    .sign_prehash(&digest)
                    .map_err(|_| KeyError::BadInput)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }

    /// ECDH with the peer's uncompressed point (tag `85`): the shared secret's x coordinate.
    pub fn key_agreement(&self, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        match self {
            SlotKey::Rsa(_) => Err(KeyError::BadInput),
            SlotKey::P256(k) => {
                let peer =
                    p256::PublicKey::from_sec1_bytes(peer_point).map_err(|_| KeyError::BadInput)?;
                let shared = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
        }
    }
}

/// A short name for a PIV algorithm identifier.
pub fn algorithm_name(algorithm: u8) -> &'static str {
    match algorithm {
        alg::RSA_1024 => "RSA-1024",
        alg::RSA_2048 => "RSA-2048",
        alg::ECC_P256 => "P-256",
        alg::ECC_P384 => "P-384",
        other => piv::ManagementAlgorithm::from_id(other)
            .map(piv::ManagementAlgorithm::name)
            .unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;

    #[test]
    fn p256_signature_verifies_and_key_round_trips() {
        let key = SlotKey::generate(alg::ECC_P256).unwrap();
        let again = SlotKey::from_pkcs8(alg::ECC_P256, &key.to_pkcs8().unwrap()).unwrap();
        assert_eq!(
            key.public_key_der().unwrap(),
            again.public_key_der().unwrap()
        );
        let hash = [0x42u8; 32];
        let der = again.sign(&hash).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
        let SlotKey::P256(secret) = &key else {
            panic!("not P-256")
        };
        let vk = p256::ecdsa::VerifyingKey::from(secret.public_key());
        vk.verify_prehash(&hash, &sig).unwrap();
        assert!(key.sign(&[]).is_err());
        assert!(matches!(
            SlotKey::generate(0x14),
            Err(KeyError::UnsupportedAlgorithm(0x14))
        ));
    }
}
