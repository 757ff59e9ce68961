//! The audit log of security events: one JSON line each, in a 0600 file in the state
//! directory, and at `info` under the `audit` tracing target. Past a size the file is renamed
//! `audit.log.1` (replacing an older one) and a new one started.

use crate::private_files;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// A security event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A session started.
    SignIn {
        /// The card.
        serial: String,
        /// The user's id.
        user: String,
    },
    /// A session ended.
    SignOut {
        /// The card.
        serial: String,
        /// Why (`card_removed`, `logout` …).
        reason: String,
    },
    /// A sign-in failed.
    SignInFailed {
        /// The card.
        serial: String,
        /// The error code.
        code: String,
    },
    /// A wrong PIN was entered.
    WrongPin {
        /// The card.
        serial: String,
        /// Tries left.
        tries_left: u8,
    },
    /// The PIN is blocked.
    PinBlocked {
        /// The card.
        serial: String,
    },
    /// The selected role changed.
    RoleChanged {
        /// The card.
        serial: String,
        /// The role's id.
        role: String,
    },
    /// A renewal step or result.
    Renew {
        /// The card.
        serial: String,
        /// What happened.
        outcome: String,
    },
    /// A repair step or result.
    Repair {
        /// The card.
        serial: String,
        /// What happened.
        outcome: String,
    },
    /// A certificate object written back from the service's record, or the failure to.
    Restore {
        /// The card.
        serial: String,
        /// What happened.
        outcome: String,
    },
}

impl AuditEvent {
    /// The event of an operation of `kind` on card `serial`.
    pub fn operation(kind: agent_ipc::OperationKind, serial: String, outcome: String) -> Self {
        use agent_ipc::OperationKind::*;
        match kind {
            Renew => AuditEvent::Renew { serial, outcome },
            Repair => AuditEvent::Repair { serial, outcome },
            Restore => AuditEvent::Restore { serial, outcome },
        }
    }
}

/// The audit log.
#[derive(Debug)]
pub struct AuditLog {
    /// The file written now; swapped for a new one on rotation.
    file: Mutex<File>,
    path: PathBuf,
    /// Rotate once the file holds this many bytes (0: never).
    max_bytes: u64,
}

impl AuditLog {
    /// Opens (creates 0600) `path` for appending; it is rotated once it holds `max_bytes`
    /// (0: never).
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<AuditLog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            private_files::create_dir(parent)?;
        }
        Ok(AuditLog {
            file: Mutex::new(private_files::open_append(path)?),
            path: path.to_owned(),
            max_bytes,
        })
    }

    /// `audit.log.1` next to the log.
    fn rotated_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Renames the full log to `.1` (replacing an older one) and starts a new file.
    fn rotate(&self, file: &mut File) -> std::io::Result<()> {
        std::fs::rename(&self.path, self.rotated_path())?;
        *file = private_files::open_append(&self.path)?;
        Ok(())
    }

    /// Appends `event` with a timestamp; a write failure is logged, never fatal.
    pub fn record(&self, event: AuditEvent) {
        let line = AuditLine {
            time: crate::time::rfc3339(crate::time::now()),
            event: &event,
        };
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an audit event");
                return;
            }
        };
        tracing::info!(
            target: "audit",
            event = %String::from_utf8_lossy(&bytes),
            "audit event"
        );
        bytes.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        // One write() per line: with O_APPEND, lines of concurrent writers never interleave.
        match file.write(&bytes) {
            Ok(n) if n == bytes.len() => {}
            Ok(n) => tracing::error!(
                path = %self.path.display(),
                written = n,
                len = bytes.len(),
                "the audit log took a partial line"
            ),
            Err(e) => tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot write to the audit log"
            ),
        }
        if self.max_bytes == 0 {
            return;
        }
        let full = match file.metadata() {
            Ok(metadata) => metadata.len() >= self.max_bytes,
            Err(_) => false,
        };
        if full {
            if let Err(e) = self.rotate(&mut file) {
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "cannot rotate the audit log; it goes on growing"
                );
            }
        }
    }
}

/// One line of the log: the time, then the event's fields.
#[derive(serde::Serialize)]
struct AuditLine<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private_files::assert_private;

    #[test]
    fn events_are_appended_as_json_lines_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit/audit.log");
        let log = AuditLog::open(&path, 0).unwrap();
        log.record(AuditEvent::SignIn {
            serial: "4082A001132F2817".into(),
            user: "u-100".into(),
        });
        log.record(AuditEvent::SignOut {
            serial: "4082A001132F2817".into(),
            reason: "card_removed".into(),
        });
        drop(log);
        // Reopening appends.
        AuditLog::open(&path, 0)
            .unwrap()
            .record(AuditEvent::WrongPin {
                serial: "4082A001132F2817".into(),
                tries_left: 2,
            });

        assert_private(&path);
        assert_private(path.parent().unwrap());
        assert_private(&dir.path().join("state"));

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["event"], "sign_in");
        assert_eq!(lines[0]["user"], "u-100");
        assert_eq!(lines[1]["event"], "sign_out");
        assert_eq!(lines[1]["reason"], "card_removed");
        assert_eq!(lines[2]["event"], "wrong_pin");
        assert_eq!(lines[2]["tries_left"], 2);
        let time = lines[0]["time"].as_str().unwrap();
        assert_eq!(time.len(), 20, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    }

    #[test]
    fn the_log_rotates_at_its_size_keeping_one_older_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let rotated = dir.path().join("audit.log.1");
        let event = |n: u8| AuditEvent::WrongPin {
            serial: "4082A001132F2817".into(),
            tries_left: n,
        };
        let log = AuditLog::open(&path, 300).unwrap();
        let mut written = Vec::new();
        for n in 0..20 {
            log.record(event(n));
            written.push(n);
            if rotated.exists() {
                break;
            }
        }
        assert!(rotated.exists(), "no rotation after {written:?}");
        let first = std::fs::read_to_string(&rotated).unwrap();
        assert!(first.len() as u64 >= 300, "{}", first.len());
        assert_eq!(first.lines().count(), written.len());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        assert_private(&path);
        assert_private(&rotated);

        // The next event goes to the new file; the next rotation replaces the older one.
        log.record(event(99));
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"tries_left\":99"));
        for _ in 0..20 {
            if std::fs::read_to_string(&path).unwrap().is_empty() {
                break;
            }
            log.record(event(98));
        }
        let second = std::fs::read_to_string(&rotated).unwrap();
        assert!(second.contains("\"tries_left\":99"), "{second}");
        assert!(!second.contains("\"tries_left\":0,"), "{second}");
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 2, "only the log and one older file");
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_file_is_narrowed_to_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AuditLog::open(&path, 0).unwrap();
        assert_private(&path);
    }
}
