//! The audit log of security events: one JSON line each, in a 0600 file in the state
//! directory, and at `info` under the `audit` tracing target.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    file: File,
    path: PathBuf,
}

impl AuditLog {
    /// Opens (creates 0600) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        // An existing file keeps its mode on open: narrow it.
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(AuditLog {
            file,
            path: path.to_owned(),
        })
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
        // One write() per line: with O_APPEND, lines of concurrent writers never interleave.
        match (&self.file).write(&bytes) {
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

    #[test]
    fn events_are_appended_as_json_lines_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit/audit.log");
        let log = AuditLog::open(&path).unwrap();
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
        AuditLog::open(&path).unwrap().record(AuditEvent::WrongPin {
            serial: "4082A001132F2817".into(),
            tries_left: 2,
        });

        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("state")), 0o700);

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
    fn an_existing_file_is_narrowed_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AuditLog::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
