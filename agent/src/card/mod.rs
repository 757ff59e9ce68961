//! Cards and readers: the PC/SC watcher thread, the ATR table and card identity, on top of
//! the `piv` crate, and how the agent's tasks reach a card (one transaction per step).

mod access;
pub mod identity;
pub mod watcher;

pub(crate) use access::{blocking, fingerprint, with_card};
pub use identity::{expiry, identify, whose_card, CardCertificate, CardIdentity, Expiry};
pub use watcher::{CardEvent, CardWatcher, ReaderSnapshot};
