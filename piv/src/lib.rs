//! The PIV card protocol (NIST SP 800-73-4).
//!
//! The protocol core — [`tlv`], [`apdu`], [`consts`] — has no dependency on PC/SC and is shared
//! with the virtual card in `cardsim`, so each side of the protocol is written once. The PC/SC
//! client lives behind the `client` feature (on by default).

pub mod apdu;
pub mod chuid;
pub mod consts;
pub mod management_key;
pub mod tlv;

pub use apdu::{Command, Response, StatusWord};
pub use chuid::CardSerial;
pub use management_key::ManagementKey;
