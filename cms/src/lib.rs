//! The reference Card Management Service: HTTPS with rustls, SQLite storage, a real CA, card
//! custody with relayed 9B authentication, authentication sessions, self-renewal and RA repair,
//! and the admin CLI's card issuing. The API it serves is the `cms-api` crate's.
#![warn(missing_docs, missing_debug_implementations)]

pub mod api;
pub mod auth;
pub mod ca;
pub mod challenges;
pub mod cli;
pub mod custody;
pub mod dates;
pub mod db;
pub mod error;
pub mod fields;
pub mod issuance;
pub mod operations;
pub mod policy;
pub mod portal;
pub mod registry;
pub mod server;
pub mod service;
pub mod throttle;
pub mod views;

pub use error::{CmsError, CmsResult};
pub use policy::Policy;
pub use service::{Cms, DataDir};
