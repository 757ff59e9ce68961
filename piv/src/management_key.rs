//! The card management key (slot 9B) and the block cipher of its mutual authentication.
//!
//! Cards in the field differ here: YubiKeys before firmware 5.7 ship a 3DES key, 5.7 and later
//! an AES-192 one; other PIV cards take AES-128 or AES-256. [`ManagementAlgorithm`] names the
//! four, and [`ManagementKey`] encrypts and decrypts the one-block witnesses and challenges of
//! each.

use crate::consts::alg;
use aes::{Aes128, Aes192, Aes256};
use cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::TdesEde3;
use std::fmt;
use thiserror::Error;
use zeroize::Zeroizing;

/// The block cipher of a 9B management key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManagementAlgorithm {
    /// Three-key triple DES (algorithm 03), the factory key of PIV cards and older YubiKeys.
    Tdes,
    /// AES-128 (algorithm 08).
    Aes128,
    /// AES-192 (algorithm 0A), the factory key of YubiKey 5.7 and later.
    Aes192,
    /// AES-256 (algorithm 0C).
    Aes256,
}

impl ManagementAlgorithm {
    /// Every algorithm, in the order a card of unknown algorithm is probed: the factory
    /// algorithms first.
    pub const ALL: [ManagementAlgorithm; 4] = [
        ManagementAlgorithm::Tdes,
        ManagementAlgorithm::Aes192,
        ManagementAlgorithm::Aes128,
        ManagementAlgorithm::Aes256,
    ];

    /// The algorithm with identifier `id` (P1 of GENERAL AUTHENTICATE).
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            alg::TDES => Some(Self::Tdes),
            alg::AES_128 => Some(Self::Aes128),
            alg::AES_192 => Some(Self::Aes192),
            alg::AES_256 => Some(Self::Aes256),
            _ => None,
        }
    }

    /// Its identifier (P1 of GENERAL AUTHENTICATE, the first byte of SET MANAGEMENT KEY).
    pub fn id(self) -> u8 {
        match self {
            Self::Tdes => alg::TDES,
            Self::Aes128 => alg::AES_128,
            Self::Aes192 => alg::AES_192,
            Self::Aes256 => alg::AES_256,
        }
    }

    /// Its name as people write it (`3DES`, `AES-128` …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Tdes => "3DES",
            Self::Aes128 => "AES-128",
            Self::Aes192 => "AES-192",
            Self::Aes256 => "AES-256",
        }
    }

    /// Its name in configuration and on command lines (`3des`, `aes128` …).
    pub fn config_name(self) -> &'static str {
        match self {
            Self::Tdes => "3des",
            Self::Aes128 => "aes128",
            Self::Aes192 => "aes192",
            Self::Aes256 => "aes256",
        }
    }

    /// The key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Tdes | Self::Aes192 => 24,
            Self::Aes128 => 16,
            Self::Aes256 => 32,
        }
    }

    /// The cipher block length in bytes: 8 for 3DES, 16 for AES.
    pub fn block_len(self) -> usize {
        match self {
            Self::Tdes => 8,
            _ => 16,
        }
    }
}

impl fmt::Display for ManagementAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ManagementAlgorithm {
    type Err = ManagementKeyError;

    /// Reads `3des`, `aes128`, `aes192` or `aes256` (case and a `-` ignored).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim().to_ascii_lowercase().replace('-', "");
        Self::ALL
            .into_iter()
            .find(|a| a.config_name() == wanted)
            .ok_or_else(|| ManagementKeyError::UnknownName(text.trim().to_owned()))
    }
}

/// A management key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManagementKeyError {
    /// An algorithm other than 3DES (03) or AES-128/192/256 (08, 0A, 0C).
    #[error(
        "management key algorithm {0:02X} is not supported (3DES 03, AES-128 08, AES-192 0A, \
         AES-256 0C)"
    )]
    UnsupportedAlgorithm(u8),
    /// An algorithm name that is none of `3des`, `aes128`, `aes192`, `aes256`.
    #[error("`{0}` is not a management key algorithm (3des, aes128, aes192, aes256)")]
    UnknownName(String),
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
    alg: ManagementAlgorithm,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManagementKey {{ alg: {}, key: <redacted> }}", self.alg)
    }
}

/// The well-known factory management key of PIV test cards (`010203…08` three times): a 3DES
/// key on most cards, an AES-192 key on YubiKey 5.7 and later.
pub const FACTORY_3DES: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

impl ManagementKey {
    /// A key for algorithm identifier `alg` from its bytes.
    pub fn new(alg: u8, key: &[u8]) -> Result<Self, ManagementKeyError> {
        let algorithm = ManagementAlgorithm::from_id(alg)
            .ok_or(ManagementKeyError::UnsupportedAlgorithm(alg))?;
        Self::with_algorithm(algorithm, key)
    }

    /// A key for `algorithm` from its bytes.
    pub fn with_algorithm(
        algorithm: ManagementAlgorithm,
        key: &[u8],
    ) -> Result<Self, ManagementKeyError> {
        if key.len() != algorithm.key_len() {
            return Err(ManagementKeyError::BadLength {
                alg: algorithm.name(),
                expected: algorithm.key_len(),
                got: key.len(),
            });
        }
        Ok(Self {
            alg: algorithm,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// A key from hex digits; 48 digits make a 3DES key, 32 an AES-128 key, 64 an AES-256
    /// key (an AES-192 key needs [`ManagementKey::from_hex_with`]).
    pub fn from_hex(hex_digits: &str) -> Result<Self, ManagementKeyError> {
        let algorithm = match hex_digits.trim().len() {
            32 => ManagementAlgorithm::Aes128,
            64 => ManagementAlgorithm::Aes256,
            _ => ManagementAlgorithm::Tdes,
        };
        Self::from_hex_with(algorithm, hex_digits)
    }

    /// A key for `algorithm` from hex digits.
    pub fn from_hex_with(
        algorithm: ManagementAlgorithm,
        hex_digits: &str,
    ) -> Result<Self, ManagementKeyError> {
        let bytes =
            Zeroizing::new(hex::decode(hex_digits.trim()).map_err(|_| ManagementKeyError::NotHex)?);
        Self::with_algorithm(algorithm, &bytes)
    }

    /// The factory 3DES key.
    pub fn factory() -> Self {
        Self::factory_for(ManagementAlgorithm::Tdes)
    }

    /// The factory key of a card whose 9B key uses `algorithm`: the bytes `01 02 … 08`
    /// repeated to the key's length (YubiKey 5.7's AES-192 default is the 3DES default's
    /// bytes).
    pub fn factory_for(algorithm: ManagementAlgorithm) -> Self {
        let bytes: Vec<u8> = (1..=8u8).cycle().take(algorithm.key_len()).collect();
        Self {
            alg: algorithm,
            key: Zeroizing::new(bytes),
        }
    }

    /// The algorithm identifier (03, 08, 0A or 0C).
    pub fn algorithm(&self) -> u8 {
        self.alg.id()
    }

    /// The algorithm.
    pub fn management_algorithm(&self) -> ManagementAlgorithm {
        self.alg
    }

    /// The secret bytes.
    pub fn secret(&self) -> &[u8] {
        &self.key
    }

    /// The cipher block length: 8 for 3DES, 16 for AES.
    pub fn block_len(&self) -> usize {
        self.alg.block_len()
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
            ManagementAlgorithm::Tdes => one_block::<TdesEde3>(&self.key, &mut buf, encrypt)?,
            ManagementAlgorithm::Aes128 => one_block::<Aes128>(&self.key, &mut buf, encrypt)?,
            ManagementAlgorithm::Aes192 => one_block::<Aes192>(&self.key, &mut buf, encrypt)?,
            ManagementAlgorithm::Aes256 => one_block::<Aes256>(&self.key, &mut buf, encrypt)?,
        }
        Some(buf)
    }
}

/// Encrypts or decrypts one block (of `C`'s length) in place with cipher `C` keyed with `key`.
fn one_block<C: KeyInit + BlockEncrypt + BlockDecrypt>(
    key: &[u8],
    block: &mut [u8],
    encrypt: bool,
) -> Option<()> {
    let c = C::new_from_slice(key).ok()?;
    let block = cipher::Block::<C>::from_mut_slice(block);
    if encrypt {
        c.encrypt_block(block)
    } else {
        c.decrypt_block(block)
    }
    Some(())
}

/// The block length of a management-key algorithm, if it is one this crate supports.
pub fn block_len(alg: u8) -> Option<usize> {
    ManagementAlgorithm::from_id(alg).map(ManagementAlgorithm::block_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_for_every_algorithm() {
        for algorithm in ManagementAlgorithm::ALL {
            let key = ManagementKey::factory_for(algorithm);
            assert_eq!(key.secret().len(), algorithm.key_len());
            let block = vec![0x5A; key.block_len()];
            let enc = key.encrypt_block(&block).unwrap();
            assert_ne!(enc, block);
            assert_eq!(key.decrypt_block(&enc).unwrap(), block);
            assert!(key.encrypt_block(&[0; 3]).is_none());
            assert_eq!(
                ManagementAlgorithm::from_id(algorithm.id()),
                Some(algorithm)
            );
            assert_eq!(
                algorithm.config_name().parse::<ManagementAlgorithm>(),
                Ok(algorithm)
            );
        }
        assert_eq!("AES-256".parse(), Ok(ManagementAlgorithm::Aes256));
        assert!("aes512".parse::<ManagementAlgorithm>().is_err());
    }

    #[test]
    fn known_answers() {
        // FIPS-197 appendix C: AES-192 and AES-256 with keys 00 01 02 … .
        let plain = hex::decode("00112233445566778899aabbccddeeff").unwrap();
        let key192: Vec<u8> = (0..24).collect();
        let key256: Vec<u8> = (0..32).collect();
        let aes192 = ManagementKey::new(alg::AES_192, &key192).unwrap();
        let aes256 = ManagementKey::new(alg::AES_256, &key256).unwrap();
        assert_eq!(
            hex::encode(aes192.encrypt_block(&plain).unwrap()),
            "dda97ca4864cdfe06eaf70a0ec0d7191"
        );
        assert_eq!(
            hex::encode(aes256.encrypt_block(&plain).unwrap()),
            "8ea2b7ca516745bfeafc49904b496089"
        );
        // The same 24 bytes as 3DES and as AES-192 are different keys.
        let tdes = ManagementKey::factory();
        let aes = ManagementKey::factory_for(ManagementAlgorithm::Aes192);
        assert_eq!(tdes.secret(), aes.secret());
        assert_ne!(tdes, aes);
    }

    #[test]
    fn rejects_bad_keys_and_hides_secrets() {
        assert!(matches!(
            ManagementKey::new(0x0D, &[0; 32]),
            Err(ManagementKeyError::UnsupportedAlgorithm(0x0D))
        ));
        assert!(ManagementKey::new(alg::TDES, &[0; 16]).is_err());
        assert!(ManagementKey::new(alg::AES_256, &[0; 24]).is_err());
        assert_eq!(
            ManagementKey::from_hex(&"11".repeat(32))
                .unwrap()
                .management_algorithm(),
            ManagementAlgorithm::Aes256
        );
        assert!(!format!("{:?}", ManagementKey::factory()).contains("01"));
    }
}
