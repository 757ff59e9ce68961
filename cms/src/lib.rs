//! The reference Card Management Service (see `DESIGN.md` §5): HTTPS with rustls, SQLite
//! storage, a real CA, card custody with relayed 9B authentication, authentication sessions,
//! self-renewal and RA repair, the admin CLI's card issuing, and a typed client.
#![warn(missing_docs, missing_debug_implementations)]

pub mod api;
pub mod auth;
pub mod ca;
pub mod card_type;
pub mod client;
pub mod custody;
pub mod dates;
pub mod db;
pub mod error;
pub mod issuance;
pub mod operations;
pub mod pin_policy;
pub mod policy;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod service;

pub use error::{CmsError, CmsResult};
pub use policy::Policy;
pub use service::{Cms, DataDir};
