//! The identity agent's tray app: icon, menu and notifications over the agent's socket API.
//!
//! One concern a module: [`model`] derives what to show from what the agent said (pure, tested
//! without a desktop), [`notices`] decides which notification a change deserves, [`link`] keeps
//! the connection to the agent (reconnecting with backoff), [`notifier`] shows notifications
//! (D-Bus, or the icon's balloon on Windows), [`front`] is the tray item and its menu,
//! [`portal`] opens the portal page, [`stop`] is what asks the tray to stop, and [`app`] wires
//! them.

pub mod app;
pub mod cli;
pub mod dates;
pub mod front;
pub mod icons;
pub mod link;
pub mod model;
pub mod notices;
pub mod notifier;
pub mod portal;
pub mod stop;
