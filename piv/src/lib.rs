//! The PIV card protocol (NIST SP 800-73-4).
//!
//! The protocol core — [`tlv`], [`apdu`], [`consts`] — has no dependency on PC/SC and is shared
//! with the virtual card in `cardsim`, so each side of the protocol is written once. The PC/SC
//! client lives behind the `client` feature (on by default).

#![warn(missing_docs, missing_debug_implementations)]

pub mod apdu;
#[cfg(feature = "client")]
pub mod card;
pub mod card_type;
#[cfg(feature = "client")]
pub mod certificate;
pub mod chuid;
pub mod consts;
#[cfg(feature = "client")]
pub mod csr;
#[cfg(feature = "client")]
pub mod error;
#[cfg(feature = "client")]
pub mod keys;
pub mod management_key;
#[cfg(feature = "client")]
pub mod mutual_auth;
#[cfg(feature = "client")]
pub mod objects;
#[cfg(feature = "client")]
pub mod pin;
pub mod tlv;

pub use apdu::{Command, Response, StatusWord};
pub use chuid::CardSerial;
pub use management_key::{ManagementAlgorithm, ManagementKey};

#[cfg(feature = "client")]
pub use card::{PivCard, Transaction};
#[cfg(feature = "client")]
pub use certificate::Certificate;
#[cfg(feature = "client")]
pub use error::Error;
#[cfg(feature = "client")]
pub use keys::{KeyAlgorithm, PublicKey};
#[cfg(feature = "client")]
pub use mutual_auth::{LocalResponder, ManagementKeyResponder, WitnessAnswer};
#[cfg(feature = "client")]
pub use pin::{Pin, PinStatus, Puk};
