//! The contract between the identity agent and a Card Management Service: every type of the
//! JSON API (`cms/API.md`), its error codes and the kinds and states of an operation as enums,
//! the typed client, and the passcode policy of the Registration Authority procedure. It knows
//! no implementation: the reference service (`cms`) and the agent both depend on it.
#![warn(missing_docs, missing_debug_implementations)]

pub mod client;
pub mod error_code;
pub mod operation;
pub mod pin_policy;
pub mod protocol;

pub use error_code::ErrorCode;
pub use wire_enum::wire_enum;

/// The activity code of Registration Authority card work: "re-issue certificates / repair
/// smartcard" (B0267). A role must hold it to repair or cancel a card, register a new card or
/// read another user's cards; the agent offers repair only to a role that holds it.
pub const RA_ACTIVITY: &str = "B0267";
pub use operation::{OperationKind, OperationState};
