//! The Card Holder Unique Identifier object and the card serial it carries.

use crate::tlv;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A card's 8-byte serial number, shown as 16 upper-case hex digits (`4082A001132F2817`).
///
/// It lives in the first 8 bytes of the CHUID's 16-byte GUID (tag `34`); the other 8 are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardSerial(pub [u8; 8]);

/// A string that is not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a card serial is 16 hex digits, got {0:?}")]
pub struct BadSerial(pub String);

impl fmt::Display for CardSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl FromStr for CardSerial {
    type Err = BadSerial;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 8];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| BadSerial(s.to_owned()))?;
        Ok(Self(bytes))
    }
}

/// A CHUID that does not carry a serial.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChuidError {
    /// Not well-formed TLV.
    #[error("CHUID is not well-formed: {0}")]
    Tlv(#[from] tlv::TlvError),
    /// No GUID (tag 34) of 16 bytes.
    #[error("CHUID has no 16-byte GUID")]
    NoGuid,
}

/// FASC-N for a card with no agency code: the SP 800-73-4 "non-federal issuer" pattern.
const FASC_N: [u8; 25] = [
    0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE, 0x73, 0x9D, 0x83, 0x68, 0x58, 0x21, 0x08,
    0x42, 0x10, 0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB,
];

/// Builds the CHUID content (the value inside tag `53`) for `serial`, expiring on `expiry`
/// (`YYYYMMDD`).
pub fn build(serial: CardSerial, expiry: &[u8; 8]) -> Vec<u8> {
    let mut guid = [0u8; 16];
    guid[..8].copy_from_slice(&serial.0);
    let mut out = Vec::with_capacity(64);
    tlv::push(&mut out, 0x30, &FASC_N);
    tlv::push(&mut out, 0x34, &guid);
    tlv::push(&mut out, 0x35, expiry);
    tlv::push(&mut out, 0x3E, &[]);
    tlv::push(&mut out, 0xFE, &[]);
    out
}

/// Reads the card serial from CHUID content (the value inside tag `53`).
pub fn serial(content: &[u8]) -> Result<CardSerial, ChuidError> {
    let guid = tlv::find(content, 0x34)?.ok_or(ChuidError::NoGuid)?;
    let bytes: [u8; 16] = guid.try_into().map_err(|_| ChuidError::NoGuid)?;
    let mut serial = [0u8; 8];
    serial.copy_from_slice(&bytes[..8]);
    Ok(CardSerial(serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_round_trips_through_the_chuid() {
        let s: CardSerial = "4082A001132F2817".parse().unwrap();
        assert_eq!(s.to_string(), "4082A001132F2817");
        assert_eq!(serial(&build(s, b"20301231")).unwrap(), s);
        assert!("4082A0".parse::<CardSerial>().is_err());
        assert_eq!(serial(&[0x30, 0]), Err(ChuidError::NoGuid));
    }
}
