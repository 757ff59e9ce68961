//! Data objects: GET DATA, PUT DATA and the card serial read from the CHUID.

use crate::apdu::Command;
use crate::card::Transaction;
use crate::chuid::{self, CardSerial};
use crate::consts::{ins, object};
use crate::error::Error;
use crate::tlv;
use zeroize::Zeroizing;

/// The tag list `5C` naming `object`.
fn tag_list(object: u32) -> Vec<u8> {
    let mut tag = Vec::with_capacity(3);
    tlv::push_tag(&mut tag, object);
    tlv::encode(0x5C, &tag)
}

/// The tag that wraps the content of `object` in GET/PUT DATA: `7E` for the discovery object,
/// `53` for every other.
fn wrapper_tag(object: u32) -> u32 {
    if object == object::DISCOVERY {
        0x7E
    } else {
        0x53
    }
}

/// GET DATA for `object`.
pub(crate) fn get_data_command(object: u32) -> Command {
    Command::new(ins::GET_DATA, 0x3F, 0xFF, tag_list(object))
}

/// PUT DATA of `content` into `object`.
pub(crate) fn put_data_command(object: u32, content: &[u8]) -> Command {
    let mut data = tag_list(object);
    tlv::push(&mut data, wrapper_tag(object), content);
    Command::new(ins::PUT_DATA, 0x3F, 0xFF, data).without_le()
}

/// The content of `object` from a GET DATA response: the value of its wrapper tag (`53`, or
/// `7E` for the discovery object).
pub fn parse_get_data(object: u32, response: &[u8]) -> Result<Vec<u8>, Error> {
    let (outer, _) =
        tlv::parse(response).map_err(|e| Error::Malformed(format!("GET DATA response: {e}")))?;
    let expected = wrapper_tag(object);
    if outer.tag != expected {
        return Err(Error::Malformed(format!(
            "GET DATA response starts with tag {:X}, not {expected:X}",
            outer.tag
        )));
    }
    Ok(outer.value.to_vec())
}

impl Transaction<'_> {
    /// Reads data object `object` (an `object::*` tag) and returns its content: the value
    /// inside tag `53` (`7E` for the discovery object). A missing object is [`Error::NotFound`].
    pub fn get_data(&self, object: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        let resp = self.transmit_ok(&get_data_command(object), None)?;
        parse_get_data(object, &resp.data).map(Zeroizing::new)
    }

    /// Writes `content` into data object `object` (needs the management key for most objects).
    pub fn put_data(&self, object: u32, content: &[u8]) -> Result<(), Error> {
        self.transmit_ok(&put_data_command(object, content), None)
            .map(drop)
    }

    /// The card serial, read from the GUID of the CHUID.
    pub fn card_serial(&self) -> Result<CardSerial, Error> {
        let content = self.get_data(object::CHUID)?;
        chuid::serial(&content).map_err(|e| Error::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_put_data_requests() {
        assert_eq!(
            get_data_command(object::CHUID).to_bytes(),
            [0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00]
        );
        assert_eq!(
            get_data_command(object::DISCOVERY).to_bytes(),
            [0x00, 0xCB, 0x3F, 0xFF, 0x03, 0x5C, 0x01, 0x7E, 0x00]
        );
        assert_eq!(
            put_data_command(object::PRINTED_INFORMATION, &[1, 2]).to_bytes(),
            [0x00, 0xDB, 0x3F, 0xFF, 0x09, 0x5C, 0x03, 0x5F, 0xC1, 0x09, 0x53, 0x02, 1, 2]
        );
        assert_eq!(
            put_data_command(object::DISCOVERY, &[9]).data,
            [0x5C, 0x01, 0x7E, 0x7E, 0x01, 9]
        );
    }

    #[test]
    fn get_data_responses_are_unwrapped_or_rejected() {
        assert_eq!(
            parse_get_data(object::CHUID, &[0x53, 0x02, 0xAA, 0xBB]).unwrap(),
            [0xAA, 0xBB]
        );
        assert_eq!(
            parse_get_data(object::DISCOVERY, &[0x7E, 0x01, 0x4F]).unwrap(),
            [0x4F]
        );
        for bad in [&[][..], &[0x53, 0x05, 1][..], &[0x70, 0x00][..]] {
            assert!(matches!(
                parse_get_data(object::CHUID, bad),
                Err(Error::Malformed(_))
            ));
        }
    }
}
