//! Card custody: every card's management key (in the algorithm the card takes: 3DES or
//! AES-128/192/256) and PUK are diversified from one master secret by the card serial
//! (HMAC-SHA256), so the service stores no per-card secret; and the
//! service's half of the card's 9B mutual authentication, relayed by the agent, so the
//! management key never leaves the service.

use crate::ca::{write_private, CaError};
use hmac::{Hmac, Mac};
use piv::{CardSerial, LocalResponder, ManagementAlgorithm, ManagementKey, ManagementKeyResponder};
use rand::RngCore;
use sha2::Sha256;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long the service waits for the card's answer after relaying a witness.
const RELAY_TTL: Duration = Duration::from_secs(60);

/// The master secret and what is derived from it.
pub struct Custody {
    master: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Custody { master: <redacted> }")
    }
}

impl Custody {
    /// Custody with a given master secret.
    pub fn new(master: Zeroizing<[u8; 32]>) -> Self {
        Self { master }
    }

    /// Loads the master secret from `path` (64 hex digits), creating a random one (mode 0600)
    /// if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, CaError> {
        if !path.exists() {
            let mut secret = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(secret.as_mut());
            let hex = Zeroizing::new(hex::encode(secret.as_ref()));
            write_private(path, hex.as_bytes())?;
        }
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| CaError::File {
                    path: path.to_owned(),
                    source,
                })?,
            );
        let mut master = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), master.as_mut()).map_err(|_| CaError::BadFile {
            path: path.to_owned(),
            what: "master secret (64 hex digits)",
        })?;
        Ok(Self { master })
    }

    fn derive(&self, label: &[u8], serial: CardSerial, extra: &[u8]) -> Zeroizing<[u8; 32]> {
        // A key of any length is accepted by HMAC.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(self.master.as_ref()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(label);
        mac.update(&serial.0);
        mac.update(extra);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// The card's management key in `algorithm`, derived at that algorithm's length. Keys of
    /// different algorithms are unrelated (the algorithm is part of the derivation), except
    /// that AES-128 keeps the derivation of the service's first cards, which were all AES-128.
    pub fn management_key(
        &self,
        serial: CardSerial,
        algorithm: ManagementAlgorithm,
    ) -> ManagementKey {
        let label = b"identity-agent cms management key v1";
        let bytes = match algorithm {
            ManagementAlgorithm::Aes128 => self.derive(label, serial, &[]),
            other => self.derive(label, serial, &[other.id()]),
        };
        match ManagementKey::with_algorithm(algorithm, &bytes[..algorithm.key_len()]) {
            Ok(key) => key,
            Err(_) => unreachable!("the derivation gives 32 bytes, enough for every algorithm"),
        }
    }

    /// The card's PUK of `generation`: 8 digits.
    pub fn puk(&self, serial: CardSerial, generation: u32) -> Zeroizing<String> {
        let bytes = self.derive(
            b"identity-agent cms puk v1",
            serial,
            &generation.to_be_bytes(),
        );
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[..8]);
        Zeroizing::new(format!("{:08}", u64::from_be_bytes(n) % 100_000_000))
    }
}

/// The 9B exchanges in flight: the service's challenge per operation, between the relayed
/// witness and the card's answer.
#[derive(Debug, Default)]
pub struct RelayExchanges {
    pending: Mutex<HashMap<String, (LocalResponder, Instant)>>,
}

/// The service's answer to a relayed witness.
pub struct RelayAnswer {
    /// The witness decrypted with the card's management key.
    pub decrypted_witness: Zeroizing<Vec<u8>>,
    /// The service's challenge for the card.
    pub challenge: Vec<u8>,
}

impl std::fmt::Debug for RelayAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayAnswer { <redacted> }")
    }
}

/// Why a relayed exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The witness is not one block of the card's algorithm.
    #[error("{0}")]
    BadWitness(String),
    /// No witness was relayed for this exchange, or it timed out.
    #[error("no management-key exchange is in progress")]
    NothingPending,
    /// The card's answer is wrong: it holds another key.
    #[error("the card's answer does not match its management key")]
    Rejected,
}

impl RelayExchanges {
    /// Answers the card's `witness` for exchange `id` with `key`, remembering the challenge.
    pub fn answer_witness(
        &self,
        id: &str,
        key: ManagementKey,
        algorithm: u8,
        witness: &[u8],
    ) -> Result<RelayAnswer, RelayError> {
        let mut responder = LocalResponder::new(key);
        let answer = responder
            .answer_witness(algorithm, witness)
            .map_err(|e| RelayError::BadWitness(e.to_string()))?;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        pending.retain(|_, (_, since)| now.duration_since(*since) < RELAY_TTL);
        pending.insert(id.to_owned(), (responder, now));
        Ok(RelayAnswer {
            decrypted_witness: answer.decrypted_witness,
            challenge: answer.challenge,
        })
    }

    /// Checks the card's encryption of the challenge for exchange `id`; the exchange ends
    /// either way.
    pub fn check_response(&self, id: &str, response: &[u8]) -> Result<(), RelayError> {
        let entry = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let Some((mut responder, since)) = entry else {
            return Err(RelayError::NothingPending);
        };
        if since.elapsed() >= RELAY_TTL {
            return Err(RelayError::NothingPending);
        }
        responder
            .check_challenge_response(response)
            .map_err(|_| RelayError::Rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(last: u8) -> CardSerial {
        CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x28, last])
    }

    const AES128: ManagementAlgorithm = ManagementAlgorithm::Aes128;

    #[test]
    fn keys_and_puks_are_per_card_and_stable() {
        let custody = Custody::new(Zeroizing::new([7; 32]));
        let a = custody.management_key(serial(1), AES128);
        assert_eq!(a.management_algorithm(), AES128);
        assert_eq!(a, custody.management_key(serial(1), AES128));
        assert_ne!(a, custody.management_key(serial(2), AES128));
        assert_ne!(
            a,
            Custody::new(Zeroizing::new([8; 32])).management_key(serial(1), AES128)
        );
        let mut secrets = Vec::new();
        for algorithm in ManagementAlgorithm::ALL {
            let key = custody.management_key(serial(1), algorithm);
            assert_eq!(key.secret().len(), algorithm.key_len());
            assert_eq!(key, custody.management_key(serial(1), algorithm));
            secrets.push(key.secret()[..16].to_vec());
        }
        secrets.sort();
        secrets.dedup();
        assert_eq!(secrets.len(), 4, "each algorithm has its own key");
        let puk = custody.puk(serial(1), 0);
        assert_eq!(puk.len(), 8);
        assert!(puk.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(*puk, *custody.puk(serial(1), 1));
        assert_ne!(*puk, *custody.puk(serial(2), 0));
        assert!(piv::Puk::new(&puk).is_ok());
    }

    #[test]
    fn master_secret_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let a = Custody::load_or_create(&path).unwrap();
        let b = Custody::load_or_create(&path).unwrap();
        assert_eq!(
            a.management_key(serial(1), AES128),
            b.management_key(serial(1), AES128)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(!format!("{a:?}").contains(&hex::encode([7u8; 4])));
    }

    #[test]
    fn relay_checks_the_card_answer_once() {
        let custody = Custody::new(Zeroizing::new([1; 32]));
        let card_key = custody.management_key(serial(3), ManagementAlgorithm::Aes256);
        let relays = RelayExchanges::default();
        let witness = [0x33u8; 16];
        let encrypted = card_key.encrypt_block(&witness).unwrap();
        let answer = relays
            .answer_witness("op", card_key.clone(), card_key.algorithm(), &encrypted)
            .unwrap();
        assert_eq!(*answer.decrypted_witness, witness);
        let reply = card_key.encrypt_block(&answer.challenge).unwrap();
        relays.check_response("op", &reply).unwrap();
        assert!(matches!(
            relays.check_response("op", &reply),
            Err(RelayError::NothingPending)
        ));

        relays
            .answer_witness("op", card_key.clone(), card_key.algorithm(), &encrypted)
            .unwrap();
        assert!(matches!(
            relays.check_response("op", &[0; 16]),
            Err(RelayError::Rejected)
        ));
        assert!(matches!(
            relays.answer_witness("op", card_key, piv::consts::alg::TDES, &[0; 8]),
            Err(RelayError::BadWitness(_))
        ));
    }
}
