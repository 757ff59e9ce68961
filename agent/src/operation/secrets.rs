//! Where the one secret the agent keeps at rest lives: a renewal's own operation token,
//! kept in the OS keyring through the `keyring` crate (the Secret Service on Linux, the
//! Credential Manager on Windows, the Keychain on macOS) under a reference such as
//! `identity-agent/operation/<id>`, which is all the journal file then holds.
//!
//! A keyring that cannot take the token — no Secret Service on the session bus, its default
//! collection locked — is never made to prompt: the journal keeps the token in its own 0600
//! file instead, and the agent says so once (a warning in its log).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The keyring service every reference starts with.
const SERVICE: &str = "identity-agent";

/// Why the keyring did not keep, give or forget a token.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No keyring to talk to, or it is locked: nothing was asked of the holder.
    #[error("{0}")]
    Unavailable(String),
    /// The keyring holds nothing under the reference.
    #[error("the keyring holds no secret under {0}")]
    Missing(String),
    /// The keyring answered with an error.
    #[error("the keyring failed: {0}")]
    Failed(String),
}

/// The OS keyring, shared by every copy of the journal in one agent.
#[derive(Debug, Clone, Default)]
pub struct SecretStore {
    said_unavailable: Arc<AtomicBool>,
}

impl SecretStore {
    /// The user's keyring.
    pub fn os_keyring() -> Self {
        Self::default()
    }

    /// The reference the token of operation `operation` is kept under.
    pub fn reference(operation: &str) -> String {
        format!("{SERVICE}/operation/{operation}")
    }

    /// Keeps `token` under `reference`, replacing what was there.
    pub fn put(&self, reference: &str, token: &str) -> Result<(), SecretError> {
        let entry = entry(reference)?;
        platform::ready()?;
        entry
            .set_password(token)
            .map_err(|e| classify(e, reference))
    }

    /// The token kept under `reference`.
    pub fn get(&self, reference: &str) -> Result<Zeroizing<String>, SecretError> {
        let entry = entry(reference)?;
        platform::ready()?;
        entry
            .get_password()
            .map(Zeroizing::new)
            .map_err(|e| classify(e, reference))
    }

    /// Forgets the token kept under `reference` (nothing there is not an error).
    pub fn delete(&self, reference: &str) -> Result<(), SecretError> {
        let entry = entry(reference)?;
        platform::ready()?;
        match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(classify(e, reference)),
        }
    }

    /// Says, the first time only, that the keyring could not take a token (`why`) and that
    /// the journal file keeps it instead.
    pub fn say_falling_back_once(&self, why: &SecretError) {
        if !self.said_unavailable.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the keyring cannot keep renewal session tokens ({why}); they are kept in the \
                 operations journal's own private files instead"
            );
        }
    }
}

/// The keyring entry of `reference` (`identity-agent/…`).
fn entry(reference: &str) -> Result<keyring::Entry, SecretError> {
    let user = reference
        .strip_prefix(SERVICE)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|user| !user.is_empty())
        .ok_or_else(|| SecretError::Failed(format!("{reference} is not a reference of ours")))?;
    keyring::Entry::new(SERVICE, user).map_err(|e| classify(e, reference))
}

fn classify(error: keyring::Error, reference: &str) -> SecretError {
    match error {
        keyring::Error::NoEntry => SecretError::Missing(reference.to_owned()),
        keyring::Error::NoStorageAccess(e) => {
            SecretError::Unavailable(format!("the keyring is locked or refused access: {e}"))
        }
        keyring::Error::PlatformFailure(e) => {
            SecretError::Unavailable(format!("the keyring cannot be reached: {e}"))
        }
        other => SecretError::Failed(other.to_string()),
    }
}

#[cfg(target_os = "linux")]
mod platform {
    //! The Secret Service asked, without a prompt, whether it can take a token now.

    use super::SecretError;
    use dbus_secret_service::{EncryptionType, SecretService};

    /// Whether the Secret Service is on the session bus with its default collection unlocked.
    /// The keyring crate unlocks a locked collection with a prompt that waits for the holder
    /// without a limit; the agent falls back instead.
    pub(super) fn ready() -> Result<(), SecretError> {
        let service = SecretService::connect(EncryptionType::Plain).map_err(|e| {
            SecretError::Unavailable(format!("no Secret Service on the session bus: {e}"))
        })?;
        let collection = service.get_default_collection().map_err(|e| {
            SecretError::Unavailable(format!("the Secret Service has no default collection: {e}"))
        })?;
        match collection.is_locked() {
            Ok(false) => Ok(()),
            Ok(true) => Err(SecretError::Unavailable(
                "the Secret Service's default collection is locked".into(),
            )),
            Err(e) => Err(SecretError::Unavailable(format!(
                "the Secret Service's default collection cannot be asked whether it is locked: {e}"
            ))),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    //! The Credential Manager and the Keychain are there whenever the user is signed in.

    use super::SecretError;

    /// Always ready: errors come from the operation itself.
    pub(super) fn ready() -> Result<(), SecretError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_the_operation_under_the_agents_service() {
        let reference = SecretStore::reference("op-7f3a");
        assert_eq!(reference, "identity-agent/operation/op-7f3a");
        assert!(entry(&reference).is_ok());
    }

    #[test]
    fn references_of_others_are_refused() {
        for foreign in ["", "identity-agent", "identity-agent/", "other/operation/1"] {
            assert!(
                matches!(entry(foreign), Err(SecretError::Failed(_))),
                "{foreign:?}"
            );
        }
    }

    #[test]
    fn keyring_errors_say_whether_to_fall_back() {
        let missing = classify(keyring::Error::NoEntry, "identity-agent/operation/1");
        assert!(matches!(missing, SecretError::Missing(_)));
        let locked = classify(
            keyring::Error::NoStorageAccess("locked".into()),
            "identity-agent/operation/1",
        );
        assert!(matches!(locked, SecretError::Unavailable(_)));
        let unreachable = classify(
            keyring::Error::PlatformFailure("no bus".into()),
            "identity-agent/operation/1",
        );
        assert!(matches!(unreachable, SecretError::Unavailable(_)));
    }
}
