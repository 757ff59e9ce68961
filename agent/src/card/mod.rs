//! Cards and readers: the PC/SC watcher thread, the ATR table and card identity, on top of
//! the `piv` crate.

pub mod identity;
pub mod watcher;

pub use identity::{expiry, identify, CardCertificate, CardIdentity, Expiry};
pub use watcher::{CardEvent, CardWatcher, ReaderSnapshot};
