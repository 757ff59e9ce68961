//! Authenticated sessions, found by the hash of their token or of their ticket.

use super::audit::AuditEvent;
use super::{record_from_row, Database};
use crate::error::CmsResult;
use rusqlite::{params, Row};

/// An authenticated session, found by the hash of its token or of its ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the bearer token, hex.
    pub token_hash: String,
    /// SHA-256 of the ticket for relying applications, hex.
    pub ticket_hash: String,
    /// The authenticated user.
    pub user_id: String,
    /// The card the session was authenticated with.
    pub card_serial: String,
    /// The selected role profile.
    pub selected_role: Option<i64>,
    /// Start (Unix seconds).
    pub created_at: i64,
    /// End of life (Unix seconds).
    pub expires_at: i64,
    /// When it was logged out, if it was.
    pub ended_at: Option<i64>,
    /// The one operation it may work on: set for a renewal's own token, `None` for a sign-in.
    pub operation_id: Option<String>,
}

const SESSION_COLUMNS: &str =
    "token_hash, ticket_hash, user_id, card_serial, selected_role, created_at, expires_at, ended_at, \
     operation_id";

fn session_from(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    record_from_row!(
        row,
        SessionRecord {
            token_hash,
            ticket_hash,
            user_id,
            card_serial,
            selected_role,
            created_at,
            expires_at,
            ended_at,
            operation_id,
        }
    )
}

impl Database {
    /// Starts a session.
    pub fn add_session(&self, session: &SessionRecord, audit: &AuditEvent<'_>) -> CmsResult<()> {
        self.audited(session.created_at, audit, |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                session.token_hash,
                session.ticket_hash,
                session.user_id,
                session.card_serial,
                session.selected_role,
                session.created_at,
                session.expires_at,
                session.ended_at,
                session.operation_id
            ])?;
            Ok(())
        })
    }

    /// The session whose token hashes to `token_hash`.
    pub fn session_by_token(&self, token_hash: &str) -> CmsResult<Option<SessionRecord>> {
        self.find_one(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1"),
            token_hash,
            session_from,
        )
    }

    /// The session whose ticket hashes to `ticket_hash`.
    pub fn session_by_ticket(&self, ticket_hash: &str) -> CmsResult<Option<SessionRecord>> {
        self.find_one(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE ticket_hash = ?1"),
            ticket_hash,
            session_from,
        )
    }

    /// Selects a role profile for a session.
    pub fn select_role(
        &self,
        token_hash: &str,
        role: i64,
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<()> {
        self.audited_statement(
            at,
            audit,
            "UPDATE sessions SET selected_role = ?2 WHERE token_hash = ?1",
            params![token_hash, role],
        )
    }

    /// Ends a session.
    pub fn end_session(&self, token_hash: &str, at: i64, audit: &AuditEvent<'_>) -> CmsResult<()> {
        self.audited_statement(
            at,
            audit,
            "UPDATE sessions SET ended_at = ?2 WHERE token_hash = ?1 AND ended_at IS NULL",
            params![token_hash, at],
        )
    }

    /// Deletes sessions that ended or expired before `before`; returns how many.
    pub fn prune_sessions(&self, before: i64) -> CmsResult<usize> {
        Ok(self.lock().execute(
            "DELETE FROM sessions WHERE expires_at < ?1 OR ended_at < ?1",
            [before],
        )?)
    }
}
