//! The operations journal: one small JSON file per card with an unfinished renewal or repair,
//! written atomically (temporary file, fsync, rename, directory fsync) in a 0700 directory as
//! 0600 files. What it holds is what finishing needs and the card cannot give back: the
//! operation's id, the renewal's own token, and how far the PUK rotation got.
//!
//! The session token is the one secret among them: with a [`SecretStore`] the journal keeps it
//! in the OS keyring and the file only names it (`session_token_ref`); without one, or when the
//! keyring cannot take it, the file holds it. An entry written before the keyring was used
//! holds it too, and is read as it always was.

use super::secrets::{SecretError, SecretStore};
use crate::private_files;
use agent_ipc::OperationKind;
use cms_api::protocol::OperationView;
use piv::KeyAlgorithm;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// How far a repair's PUK rotation got (the card holds the old PUK until the change lands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PukRotation {
    /// The card holds the PUK the service released as `puk`.
    Old,
    /// The change to `next_puk` was sent; whether it landed is unknown.
    Sent,
    /// The card holds `next_puk`.
    Done,
}

/// An unfinished operation on one card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The service's operation id.
    pub operation: String,
    /// Renew or repair.
    pub kind: OperationKind,
    /// The card.
    pub serial: String,
    /// The key algorithm of the card's new 9A key.
    pub algorithm: Algorithm,
    /// A renewal's own token (the service's `operation_token`; a whole service session in
    /// entries written before there was one): it outlives the holder's session, so the
    /// operation finishes even while the card cannot sign in (new key, no certificate yet), and
    /// a restore's session. `None` read back when the keyring that keeps it cannot give it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Zeroizing<String>>,
    /// A repair's PUK rotation.
    pub puk: PukRotation,
    /// Whether a walk may have changed the card (set before the first command that changes
    /// it). An operation that has not is given up on failure rather than finished later. An
    /// entry written before this was recorded counts as changed.
    #[serde(default = "may_have_changed")]
    pub card_changed: bool,
    /// When it started (Unix seconds).
    pub started_at: i64,
}

fn may_have_changed() -> bool {
    true
}

impl Entry {
    /// The entry of `operation`, of `kind`, just started at the service: the card not changed,
    /// its new key of `algorithm`, walked with `token` (none: the officer's session).
    pub fn started(
        kind: OperationKind,
        operation: &OperationView,
        algorithm: Algorithm,
        token: Option<Zeroizing<String>>,
    ) -> Entry {
        Entry {
            operation: operation.id.clone(),
            kind,
            serial: operation.serial.clone(),
            algorithm,
            session_token: token,
            puk: PukRotation::Old,
            card_changed: false,
            started_at: crate::time::now(),
        }
    }
}

/// An entry as its file holds it: the token either inline or named in the keyring.
#[derive(Deserialize)]
struct Stored {
    #[serde(flatten)]
    entry: Entry,
    /// Where the keyring keeps the session token ([`SecretStore::reference`]).
    #[serde(default)]
    session_token_ref: Option<String>,
}

/// [`Stored`] as it is written, borrowing its parts.
#[derive(Serialize)]
struct StoredRef<'a> {
    #[serde(flatten)]
    entry: &'a Entry,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token_ref: Option<&'a str>,
}

/// Reads the text of a journal file: the entry, and where the keyring keeps its session token
/// when the file only names it (`session_token_ref`).
pub fn decode_file(text: &[u8]) -> serde_json::Result<(Entry, Option<String>)> {
    let stored: Stored = serde_json::from_slice(text)?;
    Ok((stored.entry, stored.session_token_ref))
}

/// The text of a journal file for `entry`, naming `session_token_ref` when the keyring keeps
/// the token. [`decode_file`] reads it back.
pub fn encode_file(entry: &Entry, session_token_ref: Option<&str>) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&StoredRef {
        entry,
        session_token_ref,
    })
}

/// [`KeyAlgorithm`] as the journal stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// RSA-2048.
    Rsa2048,
    /// ECDSA P-256.
    P256,
}

impl From<KeyAlgorithm> for Algorithm {
    fn from(a: KeyAlgorithm) -> Self {
        match a {
            KeyAlgorithm::Rsa2048 => Algorithm::Rsa2048,
            _ => Algorithm::P256,
        }
    }
}

impl From<Algorithm> for KeyAlgorithm {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Rsa2048 => KeyAlgorithm::Rsa2048,
            Algorithm::P256 => KeyAlgorithm::P256,
        }
    }
}

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    secrets: Option<SecretStore>,
}

impl Journal {
    /// The journal in `dir` (created on first write), session tokens in its files.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            secrets: None,
        }
    }

    /// The journal in `dir`, session tokens in `secrets` whenever it can take them.
    pub fn with_secrets(dir: impl Into<PathBuf>, secrets: SecretStore) -> Self {
        Self {
            dir: dir.into(),
            secrets: Some(secrets),
        }
    }

    fn path(&self, serial: &str) -> PathBuf {
        self.dir.join(format!("{serial}.json"))
    }

    /// The unfinished operation on card `serial`, if any, its session token fetched from the
    /// keyring when the file names it there. An unreadable entry is reported and treated as
    /// none (the service still has the operation: a renewal resumes from there).
    pub fn get(&self, serial: &str) -> Option<Entry> {
        let Stored {
            mut entry,
            session_token_ref,
        } = self.read(serial)?;
        if let (None, Some(reference)) = (&entry.session_token, session_token_ref) {
            match self.secrets.as_ref().map(|secrets| secrets.get(&reference)) {
                Some(Ok(token)) => entry.session_token = Some(token),
                Some(Err(e)) => tracing::warn!(
                    operation = %entry.operation,
                    "the unfinished operation on card {serial} keeps its service session in the \
                     keyring, which cannot give it now ({e}): unlock the keyring and insert the \
                     card again"
                ),
                None => tracing::warn!(
                    operation = %entry.operation,
                    "the unfinished operation on card {serial} keeps its service session in the \
                     keyring, which this agent does not use"
                ),
            }
        }
        Some(entry)
    }

    /// The file of card `serial` as it is, the token not fetched.
    fn read(&self, serial: &str) -> Option<Stored> {
        if !is_serial(serial) {
            return None;
        }
        let path = self.path(serial);
        let text = match std::fs::read(&path) {
            Ok(text) => Zeroizing::new(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read the journal entry {}: {e}", path.display());
                return None;
            }
        };
        match decode_file(&text) {
            Ok((entry, session_token_ref)) => Some(Stored {
                entry,
                session_token_ref,
            }),
            Err(e) => {
                tracing::warn!("ignoring the damaged journal entry {}: {e}", path.display());
                None
            }
        }
    }

    /// Every unfinished operation.
    pub fn all(&self) -> Vec<Entry> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                self.get(name.strip_suffix(".json")?)
            })
            .collect()
    }

    /// Records `entry`, replacing the card's previous one atomically. Its session token goes
    /// to the keyring first, so the file never names a token the keyring lacks; when the
    /// keyring cannot take it, the file holds it (and the agent says so once).
    pub fn save(&self, entry: &Entry) -> std::io::Result<()> {
        private_files::create_dir(&self.dir)?;
        let previous = self
            .read(&entry.serial)
            .and_then(|stored| stored.session_token_ref);
        let mut stored = Stored {
            entry: entry.clone(),
            session_token_ref: None,
        };
        if let (Some(secrets), Some(token)) = (&self.secrets, &entry.session_token) {
            let reference = SecretStore::reference(&entry.operation);
            match secrets.put(&reference, token) {
                Ok(()) => {
                    stored.entry.session_token = None;
                    stored.session_token_ref = Some(reference);
                }
                Err(e) => secrets.say_falling_back_once(&e),
            }
        }
        let path = self.path(&entry.serial);
        let temporary = self.dir.join(format!(".{}.tmp", entry.serial));
        let text = Zeroizing::new(
            encode_file(&stored.entry, stored.session_token_ref.as_deref())
                .map_err(std::io::Error::other)?,
        );
        let mut file = private_files::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        private_files::narrow(&file, &temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        drop(file);
        private_files::replace(&temporary, &path)?;
        if let Some(previous) = previous.filter(|p| Some(p) != stored.session_token_ref.as_ref()) {
            self.forget_secret(&previous);
        }
        Ok(())
    }

    /// Forgets the card's entry (the operation finished or was given up), and the token the
    /// keyring kept for it.
    pub fn remove(&self, serial: &str) -> std::io::Result<()> {
        let reference = self
            .read(serial)
            .and_then(|stored| stored.session_token_ref);
        match private_files::remove(&self.path(serial)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Some(reference) = reference {
            self.forget_secret(&reference);
        }
        Ok(())
    }

    /// Forgets the card's entry if it is of operation `operation`.
    pub fn remove_operation(&self, serial: &str, operation: &str) -> std::io::Result<()> {
        match self.read(serial) {
            Some(stored) if stored.entry.operation == operation => self.remove(serial),
            _ => Ok(()),
        }
    }

    /// Deletes a token the journal no longer names (the file went first: a token left behind
    /// by a failure here expires with its session).
    fn forget_secret(&self, reference: &str) {
        let Some(secrets) = &self.secrets else {
            return;
        };
        match secrets.delete(reference) {
            Ok(()) => {}
            Err(SecretError::Unavailable(why)) => {
                tracing::info!("cannot delete {reference} from the keyring now: {why}")
            }
            Err(e) => tracing::warn!("cannot delete {reference} from the keyring: {e}"),
        }
    }
}

fn is_serial(serial: &str) -> bool {
    serial.len() == 16 && serial.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private_files::assert_private;

    fn entry(serial: &str) -> Entry {
        Entry {
            operation: "op-1".into(),
            kind: OperationKind::Renew,
            serial: serial.into(),
            algorithm: Algorithm::P256,
            session_token: Some(Zeroizing::new("token".into())),
            puk: PukRotation::Old,
            card_changed: false,
            started_at: 1,
        }
    }

    #[test]
    fn an_entry_from_before_card_changed_was_recorded_counts_as_changed() {
        let old = r#"{"operation":"op-1","kind":"renew","serial":"4082A001132F2817",
            "algorithm":"p256","session_token":"t","puk":"old","started_at":1}"#;
        let entry: Entry = serde_json::from_str(old).unwrap();
        assert!(entry.card_changed);
        let text = serde_json::to_string(&super::tests::entry("4082A001132F2817")).unwrap();
        assert!(!serde_json::from_str::<Entry>(&text).unwrap().card_changed);
    }

    #[test]
    fn entries_are_private_replaced_atomically_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("operations"));
        assert!(journal.get("4082A001132F2817").is_none());
        journal.save(&entry("4082A001132F2817")).unwrap();
        let mut changed = entry("4082A001132F2817");
        changed.puk = PukRotation::Sent;
        journal.save(&changed).unwrap();
        let got = journal.get("4082A001132F2817").unwrap();
        assert_eq!(got.puk, PukRotation::Sent);
        assert_eq!(
            got.session_token.as_deref().map(String::as_str),
            Some("token")
        );
        let path = dir.path().join("operations/4082A001132F2817.json");
        assert_private(&path);
        assert_private(&dir.path().join("operations"));
        assert_eq!(journal.all().len(), 1);
        journal.remove("4082A001132F2817").unwrap();
        journal.remove("4082A001132F2817").unwrap();
        assert!(journal.all().is_empty());
    }

    #[test]
    fn a_token_kept_in_the_keyring_is_only_named_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path());
        let named = r#"{"operation":"op-1","kind":"renew","serial":"4082A001132F2817",
            "algorithm":"p256","puk":"old","card_changed":true,"started_at":1,
            "session_token_ref":"identity-agent/operation/op-1"}"#;
        std::fs::write(dir.path().join("4082A001132F2817.json"), named).unwrap();
        // A journal without the keyring reads the entry, but not its token.
        let entry = journal.get("4082A001132F2817").unwrap();
        assert_eq!(entry.operation, "op-1");
        assert!(entry.session_token.is_none());
        // Saved without the keyring, the token is inline and nothing names the keyring.
        journal
            .save(&super::tests::entry("4082A001132F2817"))
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("4082A001132F2817.json")).unwrap();
        assert!(text.contains(r#""session_token":"token""#), "{text}");
        assert!(!text.contains("session_token_ref"), "{text}");
        // Cleared only for its own operation.
        journal
            .remove_operation("4082A001132F2817", "op-2")
            .unwrap();
        assert!(journal.get("4082A001132F2817").is_some());
        journal
            .remove_operation("4082A001132F2817", "op-1")
            .unwrap();
        assert!(journal.get("4082A001132F2817").is_none());
    }

    /// Windows's Credential Manager (Wine's, under the tests' Wine) keeps the token; the file
    /// only names it, and removing the entry forgets it.
    #[cfg(windows)]
    #[test]
    fn the_credential_manager_keeps_the_token_and_the_file_only_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretStore::os_keyring();
        let journal = Journal::with_secrets(dir.path(), secrets.clone());
        let mut saved = entry("4082A001132F2817");
        saved.operation = format!("op-windows-{}", std::process::id());
        journal.save(&saved).unwrap();
        let text = std::fs::read_to_string(dir.path().join("4082A001132F2817.json")).unwrap();
        let reference = SecretStore::reference(&saved.operation);
        assert!(text.contains(&reference), "{text}");
        assert!(!text.contains(r#""session_token":"token""#), "{text}");
        assert_eq!(secrets.get(&reference).unwrap().as_str(), "token");
        let read = journal.get("4082A001132F2817").unwrap();
        assert_eq!(
            read.session_token.as_deref().map(String::as_str),
            Some("token")
        );
        journal.remove("4082A001132F2817").unwrap();
        assert!(matches!(
            secrets.get(&reference),
            Err(SecretError::Missing(_))
        ));
    }

    #[test]
    fn a_file_decodes_to_what_encoded_it() {
        let mut entry = entry("4082A001132F2817");
        let text = encode_file(&entry, None).unwrap();
        let (back, reference) = decode_file(&text).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&entry).unwrap()
        );
        assert_eq!(reference, None);
        entry.session_token = None;
        let text = encode_file(&entry, Some("identity-agent/operation/op-1")).unwrap();
        let (back, reference) = decode_file(&text).unwrap();
        assert!(back.session_token.is_none());
        assert_eq!(reference.as_deref(), Some("identity-agent/operation/op-1"));
        assert!(decode_file(b"{not json").is_err());
    }

    #[test]
    fn damaged_or_foreign_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path());
        std::fs::write(dir.path().join("4082A001132F2817.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join("notes.json"), b"{}").unwrap();
        assert!(journal.get("4082A001132F2817").is_none());
        assert!(journal.get("../etc/passwd").is_none());
        assert!(journal.all().is_empty());
    }
}
