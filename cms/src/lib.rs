//! The reference Card Management Service (see `DESIGN.md` §5): HTTPS with rustls, SQLite
//! storage, a real CA, card custody with relayed 9B authentication, authentication sessions,
//! self-renewal and RA repair, the admin CLI's card issuing, and a typed client.
#![warn(missing_docs, missing_debug_implementations)]

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod ca;
#[cfg(feature = "server")]
pub mod cli;
pub mod client;
#[cfg(feature = "server")]
pub mod custody;
#[cfg(feature = "server")]
pub mod dates;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod issuance;
#[cfg(feature = "server")]
pub mod operations;
pub mod pin_policy;
#[cfg(feature = "server")]
pub mod policy;
pub mod protocol;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;

#[cfg(feature = "server")]
pub use error::{CmsError, CmsResult};
#[cfg(feature = "server")]
pub use policy::Policy;
#[cfg(feature = "server")]
pub use service::{Cms, DataDir};
