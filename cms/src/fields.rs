//! The fields of a request that every part of the service reads the same way: a card serial
//! and a binary field in base64, refused as `invalid_field` when unusable.

use crate::error::{CmsError, CmsResult};
use cms_api::protocol::b64;
use piv::CardSerial;

/// Parses a card serial (16 hex digits) from a request.
pub fn parse_serial(text: &str) -> CmsResult<CardSerial> {
    text.trim().parse().map_err(|_| {
        CmsError::InvalidField(format!("{text:?} is not a card serial (16 hex digits)"))
    })
}

/// Decodes field `field` of a request from standard base64.
pub fn decode_base64(field: &str, text: &str) -> CmsResult<Vec<u8>> {
    b64::decode(text).ok_or_else(|| CmsError::InvalidField(format!("{field} is not base64")))
}
