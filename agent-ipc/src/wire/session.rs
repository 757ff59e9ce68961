//! The session as clients see it: its state, why it ended, the signed-in user, roles and the
//! ticket.

use serde::{Deserialize, Serialize};

wire_enum::wire_enum! {
    /// Where the session is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum SessionState {
        /// No card to sign in with.
        NoCard = "no_card",
        /// A card is present; not signed in.
        CardPresent = "card_present",
        /// The agent is asking for the PIN.
        WaitingForPin = "waiting_for_pin",
        /// The agent is proving the card to the Card Management Service.
        Authenticating = "authenticating",
        /// Signed in.
        SignedIn = "signed_in",
        /// The session ended while the card stayed in; `login` starts a new one.
        Ended = "ended",
    }
}

wire_enum::wire_enum! {
    /// Why a session ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum SessionEndReason {
        /// The card was removed.
        CardRemoved = "card_removed",
        /// Another card appeared in the session's reader.
        CardChanged = "card_changed",
        /// The certificate on the card was changed by someone other than this agent.
        CertificateChanged = "certificate_changed",
        /// The reader was unplugged.
        ReaderRemoved = "reader_removed",
        /// The user logged out.
        Logout = "logout",
        /// The Card Management Service's session expired.
        CmsSessionExpired = "cms_session_expired",
        /// The agent stopped.
        AgentShutdown = "agent_shutdown",
    }
}

/// The session: state, card and who is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// Where the session is.
    pub state: SessionState,
    /// The reader of the session's card.
    pub reader: Option<String>,
    /// The session's card.
    pub serial: Option<String>,
    /// The signed-in user.
    pub user: Option<User>,
    /// The selected role.
    pub role: Option<Role>,
    /// When the session started (Unix seconds).
    pub signed_in_at: Option<i64>,
    /// When the Card Management Service ends it (Unix seconds).
    pub expires_at: Option<i64>,
}

impl SessionStatus {
    /// No session, in `state`.
    pub fn idle(state: SessionState) -> Self {
        Self {
            state,
            reader: None,
            serial: None,
            user: None,
            role: None,
            signed_in_at: None,
            expires_at: None,
        }
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id (UUID).
    pub id: String,
    /// The user's name.
    pub name: String,
}

/// A role profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its id, for `select_role`.
    pub id: String,
    /// The organisation.
    pub organisation: String,
    /// The job role.
    pub job_role: String,
    /// Activity codes (`B0267` …).
    pub activities: Vec<String>,
}

/// Result of `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// The signed-in user's roles.
    pub roles: Vec<Role>,
    /// The selected one's id.
    pub selected: Option<String>,
    /// The remembered default's id.
    pub default: Option<String>,
}

/// Result of `ticket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The ticket relying applications present to the Card Management Service.
    pub ticket: String,
    /// When it stops being valid (Unix seconds).
    pub expires_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_is_the_wire_name() {
        for state in SessionState::ALL {
            assert_eq!(serde_json::json!(state.as_str()), serde_json::json!(state));
        }
        for reason in SessionEndReason::ALL {
            assert_eq!(
                serde_json::json!(reason.as_str()),
                serde_json::json!(reason)
            );
        }
    }
}
