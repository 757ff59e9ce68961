//! A virtual PIV smartcard (NIST SP 800-73-4) for the vsmartcard `vpcd` reader driver.
//!
//! A card is a JSON file ([`CardFile`]) holding its keys, objects, PIN/PUK counters,
//! management key and ATR profile. [`insert`] connects it to vpcd, where real `pcscd` sees it
//! as a card in "Virtual PCD 00 0x"; [`Faults`] make it misbehave on purpose. The card logic
//! itself is [`Applet`], which has no I/O and is driven APDU by APDU in tests.
#![warn(missing_docs)]

pub mod applet;
pub mod error;
pub mod faults;
pub mod profile;
pub mod slot_key;
pub mod state;
pub mod vpcd;

pub use applet::Applet;
pub use error::CardError;
pub use faults::Faults;
pub use profile::AtrProfile;
pub use state::{CardFile, CardSpec, CardState};
pub use vpcd::{insert, InsertedCard};
