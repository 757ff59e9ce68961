//! The session: one owner task holds the readers' view and the session's state machine
//! (no card → card present → waiting for PIN → authenticating → signed in → ended), fed by
//! card events and socket calls; signing in runs in a task of its own.

mod login;
mod owner;
mod roles;

pub use owner::{capabilities, SessionOwner};
pub use roles::RoleMemory;

pub(crate) use crate::time::now;
