//! The card management key (slot 9B) and the block cipher of its mutual authentication.

use crate::consts::alg;
use aes::Aes128;
use cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::TdesEde3;
use std::fmt;
use thiserror::Error;
use zeroize::Zeroizing;

/// A management key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManagementKeyError {
    /// An algorithm other than 3DES (03) or AES-128 (08).
    #[error("management key algorithm {0:02X} is not supported (3DES 03, AES-128 08)")]
    UnsupportedAlgorithm(u8),
    /// The key length does not fit the algorithm.
    #[error("a {alg} management key is {expected} bytes, got {got}")]
    BadLength {
        /// Algorithm name.
        alg: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// Not hex.
    #[error("management key is not hex")]
    NotHex,
}

/// A 9B management key: algorithm and secret, wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagementKey {
    alg: u8,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ManagementKey {{ alg: {:02X}, key: <redacted> }}",
            self.alg
        )
    }
}

/// The well-known factory management key of PIV test cards (3DES `010203…08` three times).
pub const FACTORY_3DES: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

impl ManagementKey {
    /// A key for `alg` (3DES or AES-128) from its bytes.
    pub fn new(alg: u8, key: &[u8]) -> Result<Self, ManagementKeyError> {
        let (name, expected) = match alg {
            alg::TDES => ("3DES", 24),
            alg::AES_128 => ("AES-128", 16),
            other => return Err(ManagementKeyError::UnsupportedAlgorithm(other)),
        };
        if key.len() != expected {
            return Err(ManagementKeyError::BadLength {
                alg: name,
                expected,
                got: key.len(),
            });
        }
        Ok(Self {
            alg,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// A key from hex digits; 48 digits make a 3DES key, 32 an AES-128 key.
    pub fn from_hex(hex_digits: &str) -> Result<Self, ManagementKeyError> {
        let bytes =
            Zeroizing::new(hex::decode(hex_digits.trim()).map_err(|_| ManagementKeyError::NotHex)?);
        let alg = if bytes.len() == 16 {
            alg::AES_128
        } else {
            alg::TDES
        };
        Self::new(alg, &bytes)
    }

    /// The factory 3DES key.
    pub fn factory() -> Self {
        Self {
            alg: alg::TDES,
            key: Zeroizing::new(FACTORY_3DES.to_vec()),
        }
    }

    /// The algorithm identifier (03 or 08).
    pub fn algorithm(&self) -> u8 {
        self.alg
    }

    /// The secret bytes.
    pub fn secret(&self) -> &[u8] {
        &self.key
    }

    /// The cipher block length: 8 for 3DES, 16 for AES.
    pub fn block_len(&self) -> usize {
        block_len(self.alg).unwrap_or(8)
    }

    /// Encrypts one block (ECB), as the card does for its witness and challenge answers.
    pub fn encrypt_block(&self, block: &[u8]) -> Option<Vec<u8>> {
        self.crypt(block, true)
    }

    /// Decrypts one block (ECB).
    pub fn decrypt_block(&self, block: &[u8]) -> Option<Vec<u8>> {
        self.crypt(block, false)
    }

    fn crypt(&self, block: &[u8], encrypt: bool) -> Option<Vec<u8>> {
        if block.len() != self.block_len() {
            return None;
        }
        let mut buf = block.to_vec();
        match self.alg {
            alg::TDES => {
                let c = TdesEde3::new_from_slice(&self.key).ok()?;
                let b = cipher::generic_array::GenericArray::from_mut_slice(&mut buf);
                if encrypt {
                    c.encrypt_block(b)
                } else {
                    c.decrypt_block(b)
                }
            }
            alg::AES_128 => {
                let c = Aes128::new_from_slice(&self.key).ok()?;
                let b = cipher::generic_array::GenericArray::from_mut_slice(&mut buf);
                if encrypt {
                    c.encrypt_block(b)
                } else {
                    c.decrypt_block(b)
                }
            }
            _ => return None,
        }
        Some(buf)
    }
}

/// The block length of a management-key algorithm, if it is one this crate supports.
pub fn block_len(alg: u8) -> Option<usize> {
    match alg {
        alg::TDES => Some(8),
        alg::AES_128 => Some(16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_for_both_algorithms() {
        for key in [
            ManagementKey::factory(),
            ManagementKey::from_hex(&"11".repeat(16)).unwrap(),
        ] {
            let block = vec![0x5A; key.block_len()];
            let enc = key.encrypt_block(&block).unwrap();
            assert_ne!(enc, block);
            assert_eq!(key.decrypt_block(&enc).unwrap(), block);
            assert!(key.encrypt_block(&[0; 3]).is_none());
        }
    }

    #[test]
    fn rejects_bad_keys_and_hides_secrets() {
        assert!(matches!(
            ManagementKey::new(0x0C, &[0; 32]),
            Err(ManagementKeyError::UnsupportedAlgorithm(0x0C))
        ));
        assert!(ManagementKey::new(alg::TDES, &[0; 16]).is_err());
        assert!(!format!("{:?}", ManagementKey::factory()).contains("01"));
    }
}
