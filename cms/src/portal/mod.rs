//! The web portal: server-rendered pages under `/portal` where a card holder sees their
//! Smartcard Details and renews their card, and a Registration Authority officer (B0267) repairs
//! another's, the card work driven in the browser through the identity agent's loopback bridge.
//! Documented in `cms/API.md` ("Portal").

mod assets;
mod config;
mod html;
mod pages;
mod routes;
mod security;
mod session;

pub use config::{PortalConfig, PortalConfigError};
pub use routes::router;
