//! Asymmetric keys: GENERATE ASYMMETRIC KEY PAIR and the signing, decryption and key
//! agreement forms of GENERAL AUTHENTICATE.

use super::{elements, single_template, Applet, MgmtChallenge, Outcome};
use crate::slot_key::{KeyError, SlotKey};
use piv::apdu::{Command, StatusWord};
use piv::consts::{self, key};
use piv::tlv;

impl Applet {
    /// GENERATE ASYMMETRIC KEY PAIR (`00 47 00 slot`, data `AC { 80 alg }`); needs the
    /// management key; answers with the public key template `7F49`.
    pub(super) fn generate(&mut self, cmd: &Command) -> Outcome {
        if cmd.p1 != 0 || !consts::is_asymmetric_slot(cmd.p2) {
            return Err(StatusWord::WRONG_P1P2);
        }
        self.require_management()?;
        let control = single_template(&cmd.data, 0xAC)?;
        let algorithm = match tlv::find(control, 0x80) {
            Ok(Some([a])) => *a,
            _ => return Err(StatusWord::WRONG_DATA),
        };
        let key = SlotKey::generate(algorithm).map_err(|e| match e {
            KeyError::UnsupportedAlgorithm(_) => StatusWord::WRONG_DATA,
            _ => StatusWord::UNKNOWN,
        })?;
        self.state
            .set_key(cmd.p2, &key)
            .map_err(|_| StatusWord::UNKNOWN)?;
        self.changed = true;
        Ok(key.public_key_template())
    }

    /// GENERAL AUTHENTICATE (`00 87 alg key`, data `7C { … }`).
    pub(super) fn general_authenticate(
        &mut self,
        cmd: &Command,
        mgmt_challenge: Option<MgmtChallenge>,
    ) -> Outcome {
        let template = single_template(&cmd.data, 0x7C)?;
        let parts = elements(template)?;
        match cmd.p2 {
            key::MANAGEMENT => self.authenticate_management(cmd.p1, &parts, mgmt_challenge),
            slot if consts::is_asymmetric_slot(slot) => {
                self.private_key_operation(cmd.p1, slot, &parts)
            }
            _ => Err(StatusWord::REFERENCE_NOT_FOUND),
        }
    }

    /// Signature or decryption (`82` empty, `81` input) and ECDH (`82` empty, `85` point).
    fn private_key_operation(
        &mut self,
        algorithm: u8,
        slot: u8,
        parts: &[(u32, &[u8])],
    ) -> Outcome {
        let stored = self
            .state
            .key_algorithm(slot)
            .ok_or(StatusWord::REFERENCE_NOT_FOUND)?;
        if stored != algorithm {
            return Err(StatusWord::WRONG_P1P2);
        }
        if slot != key::CARD_AUTHENTICATION && !self.pin_verified {
            return Err(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        let key = self
            .state
            .key(slot)
            .ok_or(StatusWord::REFERENCE_NOT_FOUND)?
            .map_err(|_| StatusWord::UNKNOWN)?;
        let find = |tag: u32| parts.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
        let result = match (find(0x82), find(0x81), find(0x85)) {
            (Some([]), Some(input), None) if !input.is_empty() => {
                key.sign(input).map(|v| v.to_vec())
            }
            (Some([]), None, Some(point)) => key.key_agreement(point).map(|v| v.to_vec()),
            _ => return Err(StatusWord::WRONG_DATA),
        };
        let result = result.map_err(|_| StatusWord::WRONG_DATA)?;
        Ok(tlv::encode(0x7C, &tlv::encode(0x82, &result)))
    }
}
