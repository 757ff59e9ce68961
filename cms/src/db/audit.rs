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
    /// The address of the client behind an anonymous request (failed sign-ins).
    pub client: Option<String>,
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
    insert_audit_from(conn, at, event, None)
}

fn insert_audit_from(
    conn: &Connection,
    at: i64,
    event: &AuditEvent<'_>,
    client: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, card_serial, detail, client)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        at,
        event.actor,
        event.action,
        event.card_serial,
        event.detail,
        client
    ])
    .map(drop)
}

impl Database {
    /// Appends to the audit log on its own.
    pub fn audit(&self, at: i64, event: &AuditEvent<'_>) -> CmsResult<()> {
        Ok(insert_audit(&self.lock(), at, event)?)
    }

    /// Appends to the audit log on its own what a client at `client` did without a session.
    pub fn audit_client(&self, at: i64, event: &AuditEvent<'_>, client: &str) -> CmsResult<()> {
        Ok(insert_audit_from(&self.lock(), at, event, Some(client))?)
    }

    /// The last `limit` audit entries, oldest first; only those about `card_serial` if given.
    pub fn audit_log(&self, card_serial: Option<&str>, limit: u32) -> CmsResult<Vec<AuditEntry>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, actor, action, card_serial, detail, client FROM (
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
                    detail,
                    client
                }
            )
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::MIGRATIONS;
    use super::super::testing::{database_file, event};
    use super::*;

    #[test]
    fn a_database_of_schema_3_gains_the_client_column_and_keeps_its_lines() {
        let (_dir, path) = database_file();
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute(
                "INSERT INTO audit (at, actor, action, card_serial, detail)
                 VALUES (1, 'admin', 'user.add', NULL, '')",
                [],
            )
            .unwrap();
        }
        let db = Database::open(&path).unwrap();
        let failed = AuditEvent {
            actor: "anonymous",
            ..event("authenticate.failed")
        };
        db.audit_client(2, &failed, "127.0.0.2").unwrap();
        let log = db.audit_log(None, 10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].client, None);
        assert_eq!(log[1].client.as_deref(), Some("127.0.0.2"));
        assert_eq!(log[1].action, "authenticate.failed");
    }
}
