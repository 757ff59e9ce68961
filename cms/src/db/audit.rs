//! The audit log: every change writes its line in the change's own transaction.

use super::{record_from_row, Database};
use crate::error::CmsResult;
use rusqlite::{params, Connection};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its sequence number.
    pub id: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// Who: a user id, or `admin` for the CLI.
    pub actor: String,
    /// What, as a short verb (`authenticate`, `renew.confirm` …).
    pub action: String,
    /// The card concerned.
    pub card_serial: Option<String>,
    /// Details for people.
    pub detail: String,
}

/// What to write to the audit log with a change.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// The card concerned.
    pub card_serial: Option<&'a str>,
    /// Details for people.
    pub detail: String,
}

pub(super) fn insert_audit(
    conn: &Connection,
    at: i64,
    event: &AuditEvent<'_>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit (at, actor, action, card_serial, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            at,
            event.actor,
            event.action,
            event.card_serial,
            event.detail
        ],
    )
    .map(drop)
}

impl Database {
    /// Appends to the audit log on its own.
    pub fn audit(&self, at: i64, event: &AuditEvent<'_>) -> CmsResult<()> {
        Ok(insert_audit(&self.lock(), at, event)?)
    }

    /// The last `limit` audit entries, oldest first; only those about `card_serial` if given.
    pub fn audit_log(&self, card_serial: Option<&str>, limit: u32) -> CmsResult<Vec<AuditEntry>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, actor, action, card_serial, detail FROM (
                 SELECT * FROM audit WHERE ?1 IS NULL OR card_serial = ?1
                 ORDER BY id DESC LIMIT ?2
             ) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![card_serial, limit], |row| {
            record_from_row!(
                row,
                AuditEntry {
                    id,
                    at,
                    actor,
                    action,
                    card_serial,
                    detail
                }
            )
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
