//! The operations journal: one small JSON file per card with an unfinished renewal or repair,
//! written atomically (temporary file, fsync, rename, directory fsync) in a 0700 directory as
//! 0600 files. What it holds is what finishing needs and the card cannot give back: the
//! operation's id, the renewal's own service session, and how far the PUK rotation got.

use agent_ipc::OperationKind;
use piv::KeyAlgorithm;
use serde::{Deserialize, Serialize};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
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
    /// A renewal's own service session: it outlives the holder's session, so the operation
    /// finishes even while the card cannot sign in (new key, no certificate yet).
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
}

impl Journal {
    /// The journal in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, serial: &str) -> PathBuf {
        self.dir.join(format!("{serial}.json"))
    }

    /// The unfinished operation on card `serial`, if any. An unreadable entry is reported and
    /// treated as none (the service still has the operation: a renewal resumes from there).
    pub fn get(&self, serial: &str) -> Option<Entry> {
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
        match serde_json::from_slice(&text) {
            Ok(entry) => Some(entry),
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

    /// Records `entry`, replacing the card's previous one atomically.
    pub fn save(&self, entry: &Entry) -> std::io::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let path = self.path(&entry.serial);
        let temporary = self.dir.join(format!(".{}.tmp", entry.serial));
        let text = Zeroizing::new(serde_json::to_vec(entry).map_err(std::io::Error::other)?);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        sync_dir(&self.dir)
    }

    /// Forgets the card's entry (the operation finished or was given up).
    pub fn remove(&self, serial: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(serial)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn is_serial(serial: &str) -> bool {
    serial.len() == 16 && serial.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(dir.path().join("operations"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(journal.all().len(), 1);
        journal.remove("4082A001132F2817").unwrap();
        journal.remove("4082A001132F2817").unwrap();
        assert!(journal.all().is_empty());
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
