//! Data objects: GET DATA and PUT DATA.

use super::{elements, Applet, Outcome};
use piv::apdu::{Command, StatusWord};
use piv::consts::{self, object};
use piv::tlv;

/// The largest object the card stores.
const MAX_OBJECT: usize = 12 * 1024;
/// Biometric and printed-information objects, which only a verified PIN may read.
const PIN_PROTECTED: [u32; 4] = [0x5FC103, 0x5FC108, 0x5FC109, 0x5FC121];

/// Whether `tag` names a data object this card has room for: the PIV objects 5FC101..5FC123,
/// the discovery object, the biometric group template and the Yubico objects 5FFF00..5FFF15.
fn is_object_tag(tag: u32) -> bool {
    matches!(tag, 0x5FC101..=0x5FC123 | 0x7E | 0x7F61 | 0x5FFF00..=0x5FFF15)
}

/// The object tag of a `5C` tag list, else 6A80.
fn requested_tag(value: &[u8]) -> Result<u32, StatusWord> {
    if value.is_empty() || value.len() > 3 {
        return Err(StatusWord::WRONG_DATA);
    }
    let tag = value.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    if is_object_tag(tag) {
        Ok(tag)
    } else {
        Err(StatusWord::WRONG_DATA)
    }
}

/// The discovery object a card has when none was written: the PIV AID and a PIN usage
/// policy of "application PIN only".
fn default_discovery() -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x4F, &consts::AID);
    tlv::push(&mut out, 0x5F2F, &[0x40, 0x00]);
    out
}

impl Applet {
    /// GET DATA (`00 CB 3F FF`, data `5C` tag): `53 content`, or `7E …` for discovery.
    pub(super) fn get_data(&mut self, cmd: &Command) -> Outcome {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return Err(StatusWord::WRONG_P1P2);
        }
        let tag = requested_tag(super::single_template(&cmd.data, 0x5C)?)?;
        if tag == object::DISCOVERY {
            let content = self.state.object(tag).unwrap_or_else(default_discovery);
            return Ok(tlv::encode(0x7E, &content));
        }
        if PIN_PROTECTED.contains(&tag) && !self.pin_verified {
            return Err(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        let content = self.state.object(tag).ok_or(StatusWord::NOT_FOUND)?;
        Ok(tlv::encode(0x53, &content))
    }

    /// PUT DATA (`00 DB 3F FF`, data `5C` tag then `53 content`, or `7E …` for discovery);
    /// needs the management key. Empty content deletes the object.
    pub(super) fn put_data(&mut self, cmd: &Command) -> Outcome {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return Err(StatusWord::WRONG_P1P2);
        }
        self.require_management()?;
        let parts = elements(&cmd.data)?;
        let [(0x5C, tag), (content_tag, content)] = parts[..] else {
            return Err(StatusWord::WRONG_DATA);
        };
        let tag = requested_tag(tag)?;
        let expected = if tag == object::DISCOVERY { 0x7E } else { 0x53 };
        if content_tag != expected {
            return Err(StatusWord::WRONG_DATA);
        }
        if content.len() > MAX_OBJECT {
            return Err(StatusWord::NOT_ENOUGH_MEMORY);
        }
        self.state.set_object(tag, content);
        self.changed = true;
        Ok(Vec::new())
    }
}
