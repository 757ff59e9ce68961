//! What a client asks: the request envelope, every method (`Call`) and its parameters.

#[cfg(doc)]
use super::{
    CardDetails, DoctorReport, Event, HelloResult, OperationStatus, ReaderStatus, Role, Roles,
    SessionStatus, Status, Subscribed, Ticket, PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};

/// Every method's name on the wire, in the order of [`Call`].
pub const METHODS: [&str; 15] = [
    "hello",
    "status",
    "readers",
    "subscribe",
    "login",
    "logout",
    "roles",
    "select_role",
    "ticket",
    "renew",
    "repair",
    "cancel_operation",
    "doctor",
    "card_details",
    "cancel_card",
];

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client; the reply carries it back.
    pub id: u64,
    /// The method and its parameters.
    #[serde(flatten)]
    pub call: Call,
}

/// A method with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Call {
    /// Must come first on every connection. Result: [`HelloResult`].
    Hello(HelloParams),
    /// The agent, its readers, cards and session. Result: [`Status`].
    Status,
    /// The readers and their cards. Result: `Vec<`[`ReaderStatus`]`>`.
    Readers,
    /// Start receiving [`Event`]s on this connection. Result: [`Subscribed`].
    Subscribe,
    /// Sign in with the card in a reader (the agent asks for the PIN through pinentry).
    /// Result: [`SessionStatus`].
    Login(LoginParams),
    /// End the session. Result: [`SessionStatus`].
    Logout,
    /// The signed-in user's roles. Result: [`Roles`].
    Roles,
    /// Select one of the signed-in user's roles. Result: [`SessionStatus`].
    SelectRole(SelectRoleParams),
    /// The session ticket for relying applications. Result: [`Ticket`].
    Ticket,
    /// Renew the signed-in card's certificates. Result: [`OperationStatus`].
    Renew,
    /// Repair a holder's card in another reader (RA, activity B0267). Result:
    /// [`OperationStatus`].
    Repair(RepairParams),
    /// Cancel a running renew or repair. Result: [`OperationStatus`].
    CancelOperation(CancelOperationParams),
    /// Diagnose (and heal what is safe on) a card. Result: [`DoctorReport`].
    Doctor(DoctorParams),
    /// A card's Smartcard Details at the Card Management Service (the holder's own card, or
    /// any card for an RA). Result: [`CardDetails`].
    CardDetails(CardParams),
    /// Cancel a card at the Card Management Service (RA, activity B0267): it can no longer
    /// sign in. Result: [`CardDetails`].
    CancelCard(CancelCardParams),
}

impl Call {
    /// The method's name on the wire.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Hello(_) => "hello",
            Call::Status => "status",
            Call::Readers => "readers",
            Call::Subscribe => "subscribe",
            Call::Login(_) => "login",
            Call::Logout => "logout",
            Call::Roles => "roles",
            Call::SelectRole(_) => "select_role",
            Call::Ticket => "ticket",
            Call::Renew => "renew",
            Call::Repair(_) => "repair",
            Call::CancelOperation(_) => "cancel_operation",
            Call::Doctor(_) => "doctor",
            Call::CardDetails(_) => "card_details",
            Call::CancelCard(_) => "cancel_card",
        }
    }
}

/// Parameters of `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    /// The protocol version the client speaks ([`PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// The client's name, for the agent's log (`iactl 0.1.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Parameters of `login`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginParams {
    /// The reader whose card signs in; by default the only reader holding a PIV card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
}

/// Parameters of `select_role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectRoleParams {
    /// The role's id, as [`Role::id`] gives it.
    pub role: String,
    /// Remember it as this user's default role on this workstation (default true).
    #[serde(default = "yes")]
    pub remember: bool,
}

fn yes() -> bool {
    true
}

/// Parameters of `repair`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairParams {
    /// The reader holding the card to repair; by default the one reader with a card that is
    /// not the signed-in officer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    /// The serial the officer was shown (`card_details`) and confirmed: the repair is refused
    /// if the card in the reader is another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// Parameters of `card_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardParams {
    /// The reader holding the card; by default the one reader with a card that is not the
    /// signed-in user's, else the signed-in card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
}

/// Parameters of `cancel_card`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelCardParams {
    /// The card's serial.
    pub serial: String,
    /// Why (recorded at the Card Management Service).
    pub reason: String,
}

/// Parameters of `cancel_operation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelOperationParams {
    /// The operation's id.
    pub operation: String,
}

/// Parameters of `doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorParams {
    /// The reader holding the card; by default the only reader with a card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    /// Heal what is safe to heal, not only diagnose.
    #[serde(default)]
    pub heal: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_list_every_call() {
        let calls = [
            Call::Hello(HelloParams {
                protocol: 1,
                client: None,
            }),
            Call::Status,
            Call::Readers,
            Call::Subscribe,
            Call::Login(LoginParams::default()),
            Call::Logout,
            Call::Roles,
            Call::SelectRole(SelectRoleParams {
                role: "r".into(),
                remember: true,
            }),
            Call::Ticket,
            Call::Renew,
            Call::Repair(RepairParams::default()),
            Call::CancelOperation(CancelOperationParams {
                operation: "o".into(),
            }),
            Call::Doctor(DoctorParams::default()),
            Call::CardDetails(CardParams::default()),
            Call::CancelCard(CancelCardParams {
                serial: "s".into(),
                reason: "r".into(),
            }),
        ];
        let names: Vec<_> = calls.iter().map(Call::method).collect();
        assert_eq!(names, METHODS);
    }
}
