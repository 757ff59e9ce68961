//! Mutual authentication with the 9B card management key, with the host's side pluggable so
//! that a remote service holding the key (the CMS) can answer for it.
//!
//! The exchange (GENERAL AUTHENTICATE, key reference 9B):
//! 1. host → card `7C { 80 (empty) }`; card → host `7C { 80 encrypted witness }`;
//! 2. host → card `7C { 80 decrypted witness, 81 challenge }`; card → host
//!    `7C { 82 encrypted challenge }`, which the host checks.

use crate::apdu::{Command, Response, StatusWord};
use crate::card::Transaction;
use crate::consts::{ins, key};
use crate::error::Error;
use crate::keys::dynamic_auth_item;
use crate::management_key::{self, ManagementAlgorithm, ManagementKey};
use crate::tlv;
use rand::RngCore;
use zeroize::Zeroizing;

/// The host's answer to the card's witness.
pub struct WitnessAnswer {
    /// The witness decrypted with the management key.
    pub decrypted_witness: Zeroizing<Vec<u8>>,
    /// The host's challenge for the card, one cipher block.
    pub challenge: Vec<u8>,
}

/// The holder of the management key: decrypts the card's witness and checks the card's answer
/// to its challenge. Implemented locally by [`LocalResponder`], or by a client of a remote
/// service that never lets the key leave it.
pub trait ManagementKeyResponder {
    /// The algorithm identifier of the management key (`alg::TDES`, `alg::AES_128` …).
    fn algorithm(&self) -> u8;

    /// Decrypts the card's `encrypted_witness` and picks a challenge for the card.
    fn answer_witness(&mut self, alg: u8, encrypted_witness: &[u8])
        -> Result<WitnessAnswer, Error>;

    /// Checks the card's encryption of the challenge; [`Error::ManagementKeyRejected`] if the
    /// card does not hold the same key.
    fn check_challenge_response(&mut self, response: &[u8]) -> Result<(), Error>;
}

impl std::fmt::Debug for WitnessAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WitnessAnswer { <redacted> }")
    }
}

/// A responder holding the management key in this process.
#[derive(Debug)]
pub struct LocalResponder {
    key: ManagementKey,
    challenge: Option<Zeroizing<Vec<u8>>>,
}

impl LocalResponder {
    /// A responder for `key`.
    pub fn new(key: ManagementKey) -> Self {
        Self {
            key,
            challenge: None,
        }
    }
}

impl ManagementKeyResponder for LocalResponder {
    fn algorithm(&self) -> u8 {
        self.key.algorithm()
    }

    fn answer_witness(
        &mut self,
        alg: u8,
        encrypted_witness: &[u8],
    ) -> Result<WitnessAnswer, Error> {
        if alg != self.key.algorithm() {
            return Err(Error::UnsupportedAlgorithm(alg));
        }
        let decrypted = self.key.decrypt_block(encrypted_witness).ok_or_else(|| {
            Error::Malformed(format!(
                "the witness is {} bytes, not one {}-byte block",
                encrypted_witness.len(),
                self.key.block_len()
            ))
        })?;
        let mut challenge = vec![0u8; self.key.block_len()];
        rand::thread_rng().fill_bytes(&mut challenge);
        self.challenge = Some(Zeroizing::new(challenge.clone()));
        Ok(WitnessAnswer {
            decrypted_witness: Zeroizing::new(decrypted),
            challenge,
        })
    }

    fn check_challenge_response(&mut self, response: &[u8]) -> Result<(), Error> {
        let challenge = self
            .challenge
            .take()
            .ok_or_else(|| Error::Responder("no challenge is outstanding".into()))?;
        let expected = Zeroizing::new(
            self.key
                .encrypt_block(&challenge)
                .ok_or_else(|| Error::Responder("the challenge is not one block".into()))?,
        );
        // Compare without an early exit.
        let same = expected.len() == response.len()
            && expected
                .iter()
                .zip(response)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(Error::ManagementKeyRejected)
        }
    }
}

/// What GET METADATA (Yubico, firmware 5.3 and later) tells of the 9B key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagementKeyMetadata {
    /// The key's algorithm.
    pub algorithm: ManagementAlgorithm,
    /// Whether the key is still the factory default, where the card says.
    pub is_default: Option<bool>,
}

/// Whether `sw` says the card has no GET METADATA.
fn is_not_supported(sw: StatusWord) -> bool {
    matches!(
        sw,
        StatusWord::INS_NOT_SUPPORTED
            | StatusWord::CLA_NOT_SUPPORTED
            | StatusWord::FUNCTION_NOT_SUPPORTED
            | StatusWord::WRONG_P1P2
            | StatusWord::REFERENCE_NOT_FOUND
            | StatusWord::NOT_FOUND
    )
}

/// GET METADATA of the 9B key.
pub(crate) fn metadata_request() -> Command {
    Command::new(ins::GET_METADATA, 0x00, key::MANAGEMENT, Vec::new())
}

/// Reads a GET METADATA answer: `01` algorithm, `05` whether the key is the default.
pub(crate) fn parse_metadata(data: &[u8]) -> Result<ManagementKeyMetadata, Error> {
    let find = |tag: u32| tlv::find(data, tag).map_err(|e| Error::Malformed(e.to_string()));
    let algorithm = match find(0x01)? {
        Some([id]) => ManagementAlgorithm::from_id(*id).ok_or(Error::ManagementAlgorithmUnknown)?,
        _ => {
            return Err(Error::Malformed(
                "the management key's metadata has no algorithm".into(),
            ))
        }
    };
    let is_default = match find(0x05)? {
        Some([flag]) => Some(*flag != 0),
        _ => None,
    };
    Ok(ManagementKeyMetadata {
        algorithm,
        is_default,
    })
}

/// Step 1: ask the card for a witness.
pub(crate) fn witness_request(alg: u8) -> Command {
    Command::new(
        ins::GENERAL_AUTHENTICATE,
        alg,
        key::MANAGEMENT,
        tlv::encode(0x7C, &tlv::encode(0x80, &[])),
    )
}

/// Step 2: the decrypted witness and the host's challenge.
pub(crate) fn challenge_request(alg: u8, answer: &WitnessAnswer) -> Command {
    let mut inner = Vec::with_capacity(answer.challenge.len() * 2 + 4);
    tlv::push(&mut inner, 0x80, &answer.decrypted_witness);
    tlv::push(&mut inner, 0x81, &answer.challenge);
    let cmd = Command::new(
        ins::GENERAL_AUTHENTICATE,
        alg,
        key::MANAGEMENT,
        tlv::encode(0x7C, &inner),
    );
    zeroize::Zeroize::zeroize(&mut inner);
    cmd
}

impl Transaction<'_> {
    /// Authenticates the 9B management key with `responder`, which unlocks key generation and
    /// data-object writes for the rest of this transaction. A card whose key uses another
    /// algorithm answers [`Error::ManagementAlgorithmRefused`].
    pub fn authenticate_management_key(
        &self,
        responder: &mut dyn ManagementKeyResponder,
    ) -> Result<(), Error> {
        let alg = responder.algorithm();
        if management_key::block_len(alg).is_none() {
            return Err(Error::UnsupportedAlgorithm(alg));
        }
        let resp = self.witness(alg)?;
        let witness = dynamic_auth_item(&resp.data, 0x80)?;
        let answer = responder.answer_witness(alg, witness)?;
        let resp = self.transmit_ok(&challenge_request(alg, &answer), Some(key::MANAGEMENT))?;
        let encrypted_challenge = dynamic_auth_item(&resp.data, 0x82)?;
        responder.check_challenge_response(encrypted_challenge)
    }

    /// Asks the card for a witness in algorithm `alg`: the reply, or
    /// [`Error::ManagementAlgorithmRefused`] when its key uses another algorithm.
    fn witness(&self, alg: u8) -> Result<Response, Error> {
        let resp = self.transmit(&witness_request(alg))?;
        if resp.sw.is_ok() {
            return Ok(resp);
        }
        match ManagementAlgorithm::from_id(alg) {
            Some(algorithm) if resp.sw.is_algorithm_refusal() => {
                Err(Error::ManagementAlgorithmRefused(algorithm))
            }
            _ => Err(crate::error::from_status(resp.sw, Some(key::MANAGEMENT))),
        }
    }

    /// Ends a 9B authentication of this transaction: asks for a fresh witness in `alg` and
    /// leaves it unanswered, which clears the card's management-key state (a new
    /// authentication starts over). Nothing else on the card changes.
    pub fn end_management_authentication(&self, alg: u8) -> Result<(), Error> {
        self.transmit(&witness_request(alg)).map(drop)
    }

    /// What the card tells of its 9B key through GET METADATA; `None` for a card without it
    /// (YubiKeys before 5.3 and most other PIV cards).
    pub fn management_key_metadata(&self) -> Result<Option<ManagementKeyMetadata>, Error> {
        let resp = self.transmit(&metadata_request())?;
        if resp.sw.is_ok() {
            return parse_metadata(&resp.data).map(Some);
        }
        if is_not_supported(resp.sw) {
            return Ok(None);
        }
        Err(crate::error::from_status(resp.sw, Some(key::MANAGEMENT)))
    }

    /// The algorithm of the card's 9B key: from GET METADATA where the card answers it, else
    /// by asking for a witness in each algorithm ([`ManagementAlgorithm::ALL`]'s order) until
    /// the card gives one. Changes nothing on the card; a witness asked for is simply never
    /// answered.
    pub fn management_algorithm(&self) -> Result<ManagementAlgorithm, Error> {
        if let Some(metadata) = self.management_key_metadata()? {
            return Ok(metadata.algorithm);
        }
        for algorithm in ManagementAlgorithm::ALL {
            match self.witness(algorithm.id()) {
                Ok(_) => return Ok(algorithm),
                Err(Error::ManagementAlgorithmRefused(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::ManagementAlgorithmUnknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts::alg;

    /// The card's half of the exchange, for checking the responder against it.
    fn card_round(card_key: &ManagementKey, responder: &mut LocalResponder) -> Result<(), Error> {
        let witness = vec![0x42; card_key.block_len()];
        let encrypted = card_key.encrypt_block(&witness).unwrap();
        let answer = responder.answer_witness(card_key.algorithm(), &encrypted)?;
        if *answer.decrypted_witness != witness {
            return Err(Error::ManagementKeyRejected);
        }
        let reply = card_key.encrypt_block(&answer.challenge).unwrap();
        responder.check_challenge_response(&reply)
    }

    #[test]
    fn local_responder_authenticates_the_same_key_only() {
        let factory = ManagementKey::factory();
        card_round(&factory, &mut LocalResponder::new(factory.clone())).unwrap();
        let aes = ManagementKey::new(alg::AES_128, &[7; 16]).unwrap();
        card_round(&aes, &mut LocalResponder::new(aes.clone())).unwrap();

        let other = ManagementKey::new(alg::TDES, &[9; 24]).unwrap();
        assert!(matches!(
            card_round(&factory, &mut LocalResponder::new(other)),
            Err(Error::ManagementKeyRejected)
        ));
        assert!(matches!(
            card_round(&aes, &mut LocalResponder::new(factory.clone())),
            Err(Error::UnsupportedAlgorithm(alg::AES_128))
        ));
    }

    #[test]
    fn responder_rejects_odd_input_and_challenges_change() {
        let mut r = LocalResponder::new(ManagementKey::factory());
        assert!(matches!(
            r.answer_witness(alg::TDES, &[1, 2, 3]),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            r.check_challenge_response(&[0; 8]),
            Err(Error::Responder(_))
        ));
        let a = r.answer_witness(alg::TDES, &[0; 8]).unwrap();
        let b = r.answer_witness(alg::TDES, &[0; 8]).unwrap();
        assert_ne!(a.challenge, b.challenge);
        assert!(matches!(
            r.check_challenge_response(&[0; 7]),
            Err(Error::ManagementKeyRejected)
        ));
    }

    #[test]
    fn metadata_is_read() {
        let m =
            parse_metadata(&[0x01, 0x01, 0x0A, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x01]).unwrap();
        assert_eq!(m.algorithm, ManagementAlgorithm::Aes192);
        assert_eq!(m.is_default, Some(true));
        assert!(matches!(
            parse_metadata(&[0x01, 0x01, 0x07]),
            Err(Error::ManagementAlgorithmUnknown)
        ));
        assert!(matches!(
            parse_metadata(&[0x05, 0x01, 0x00]),
            Err(Error::Malformed(_))
        ));
        assert!(parse_metadata(&[0x01, 0x05]).is_err());
        assert_eq!(metadata_request().to_bytes()[..4], [0x00, 0xF7, 0x00, 0x9B]);
    }

    #[test]
    fn local_responder_works_in_every_algorithm() {
        for algorithm in ManagementAlgorithm::ALL {
            let key = ManagementKey::factory_for(algorithm);
            card_round(&key, &mut LocalResponder::new(key.clone())).unwrap();
        }
    }

    #[test]
    fn requests_follow_the_exchange() {
        assert_eq!(
            witness_request(alg::TDES).to_bytes(),
            [0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00]
        );
        let answer = WitnessAnswer {
            decrypted_witness: Zeroizing::new(vec![1; 8]),
            challenge: vec![2; 8],
        };
        let c = challenge_request(alg::TDES, &answer);
        assert_eq!(&c.data[..4], &[0x7C, 20, 0x80, 8]);
        assert_eq!(&c.data[12..14], &[0x81, 8]);
    }
}
