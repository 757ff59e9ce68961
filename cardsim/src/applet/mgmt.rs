//! The card management key (9B): its authentication forms and SET MANAGEMENT KEY.

use super::{Applet, MgmtChallenge, Outcome};
use piv::apdu::{Command, StatusWord};
use piv::consts::key;
use piv::tlv;
use piv::ManagementKey;
use rand::RngCore;
use zeroize::Zeroizing;

fn random_block(len: usize) -> Zeroizing<Vec<u8>> {
    let mut block = Zeroizing::new(vec![0u8; len]);
    rand::rngs::OsRng.fill_bytes(&mut block);
    block
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Applet {
    /// The 9B forms of GENERAL AUTHENTICATE:
    ///
    /// * mutual, step 1: `80` empty → `7C { 80 E(witness) }`;
    /// * mutual, step 2: `80 witness, 81 challenge` → `7C { 82 E(challenge) }`, authenticated;
    /// * external, step 1: `81` empty → `7C { 81 challenge }`;
    /// * external, step 2: `82 E(challenge)` → 9000, authenticated;
    /// * card authentication: `81 challenge, 82` empty → `7C { 82 E(challenge) }`.
    pub(super) fn authenticate_management(
        &mut self,
        algorithm: u8,
        parts: &[(u32, &[u8])],
        pending: Option<MgmtChallenge>,
    ) -> Outcome {
        let mk = self
            .state
            .management_key()
            .map_err(|_| StatusWord::UNKNOWN)?;
        // SP 800-78 keeps 00 as the old identifier of three-key 3DES; OpenSC still sends it.
        let legacy_tdes = algorithm == 0x00 && mk.algorithm() == piv::consts::alg::TDES;
        if algorithm != mk.algorithm() && !legacy_tdes {
            return Err(StatusWord::WRONG_P1P2);
        }
        let block_len = mk.block_len();
        let find = |tag: u32| parts.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
        let encrypt = |b: &[u8]| mk.encrypt_block(b).ok_or(StatusWord::WRONG_DATA);
        match (find(0x80), find(0x81), find(0x82)) {
            (Some([]), None, None) => {
                self.mgmt_authenticated = false;
                let witness = random_block(block_len);
                let encrypted = encrypt(&witness)?;
                self.mgmt_challenge = Some(MgmtChallenge::Witness(witness));
                Ok(tlv::encode(0x7C, &tlv::encode(0x80, &encrypted)))
            }
            (Some(witness), Some(challenge), None) if !witness.is_empty() => {
                let Some(MgmtChallenge::Witness(expected)) = pending else {
                    return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
                };
                if challenge.len() != block_len {
                    return Err(StatusWord::WRONG_DATA);
                }
                if !same(witness, &expected) {
                    return Err(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
                }
                let answer = encrypt(challenge)?;
                self.mgmt_authenticated = true;
                Ok(tlv::encode(0x7C, &tlv::encode(0x82, &answer)))
            }
            (None, Some([]), None) => {
                self.mgmt_authenticated = false;
                let challenge = random_block(block_len);
                let reply = tlv::encode(0x7C, &tlv::encode(0x81, &challenge));
                self.mgmt_challenge = Some(MgmtChallenge::Challenge(challenge));
                Ok(reply)
            }
            (None, None, Some(response)) if !response.is_empty() => {
                let Some(MgmtChallenge::Challenge(challenge)) = pending else {
                    return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
                };
                if !same(response, &encrypt(&challenge)?) {
                    return Err(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
                }
                self.mgmt_authenticated = true;
                Ok(Vec::new())
            }
            (None, Some(challenge), Some([])) if challenge.len() == block_len => {
                let answer = encrypt(challenge)?;
                Ok(tlv::encode(0x7C, &tlv::encode(0x82, &answer)))
            }
            _ => Err(StatusWord::WRONG_DATA),
        }
    }

    /// GET METADATA (Yubico, `00 F7 00 9B`) of the 9B key: `01` algorithm, `02` PIN and
    /// touch policy (never, never), `05` whether the key is the factory default. Other key
    /// references: 6A88.
    pub(super) fn metadata(&mut self, cmd: &Command) -> Outcome {
        if cmd.p1 != 0x00 {
            return Err(StatusWord::WRONG_P1P2);
        }
        if cmd.p2 != key::MANAGEMENT {
            return Err(StatusWord::REFERENCE_NOT_FOUND);
        }
        let mk = self
            .state
            .management_key()
            .map_err(|_| StatusWord::UNKNOWN)?;
        let is_default = mk == ManagementKey::factory_for(mk.management_algorithm());
        let mut reply = tlv::encode(0x01, &[mk.algorithm()]);
        tlv::push(&mut reply, 0x02, &[0x00, 0x01]);
        tlv::push(&mut reply, 0x05, &[u8::from(is_default)]);
        Ok(reply)
    }

    /// SET MANAGEMENT KEY (Yubico: `00 FF FF FF|FE`, data `alg 9B len key`); needs the
    /// current management key. A key of an algorithm the card does not take: 6A80, the card
    /// keeps its key.
    pub(super) fn set_management_key(&mut self, cmd: &Command) -> Outcome {
        if cmd.p1 != 0xFF || !matches!(cmd.p2, 0xFF | 0xFE) {
            return Err(StatusWord::WRONG_P1P2);
        }
        self.require_management()?;
        let [algorithm, key::MANAGEMENT, len, ref secret @ ..] = cmd.data[..] else {
            return Err(StatusWord::WRONG_DATA);
        };
        if usize::from(len) != secret.len() {
            return Err(StatusWord::WRONG_DATA);
        }
        if !self.state.takes_management_algorithm(algorithm) {
            return Err(StatusWord::WRONG_DATA);
        }
        let new = ManagementKey::new(algorithm, secret).map_err(|_| StatusWord::WRONG_DATA)?;
        self.state.set_management_key(&new);
        self.changed = true;
        Ok(Vec::new())
    }
}
