//! The session: one owner task holds the readers' view and the session's state machine
//! (no card → card present → waiting for PIN → authenticating → signed in → ended), fed by
//! card events and socket calls; signing in runs in a task of its own.

mod login;
mod owner;
mod roles;

pub(crate) use login::{
    blocking, card_error, certificate_lost, pinentry_error, whose_card, with_card,
};
pub use owner::{capabilities, SessionOwner};
pub use roles::RoleMemory;

use sha2::{Digest, Sha256};

pub(crate) use crate::time::now;

/// SHA-256 of a certificate's DER, as the card identity keeps it.
pub(crate) fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}
