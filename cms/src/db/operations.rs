//! Renewals, repairs and restores: one open at most per card, each step one transaction with
//! the certificate and card changes it implies.

use super::audit::AuditEvent;
use super::certificates::{insert_certificate, CertificateRecord};
use super::{record_from_row, stored, Database};
use crate::error::{CmsError, CmsResult};
use cms_api::{OperationKind, OperationState};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// A renewal or repair and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRecord {
    /// The operation's id (a UUID).
    pub id: String,
    /// Renew or repair.
    pub kind: OperationKind,
    /// The card it renews or repairs.
    pub card_serial: String,
    /// Who started it (the holder, or the RA officer).
    pub actor_id: String,
    /// Where it is.
    pub state: OperationState,
    /// The agent version that started it.
    pub agent_version: Option<String>,
    /// Start (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
    /// The certificate issued and not yet confirmed.
    pub pending_certificate: Option<String>,
    /// What the card signs with its new key to confirm.
    pub confirm_challenge: Option<Vec<u8>>,
    /// Management-key exchanges relayed so far.
    pub relay_count: u32,
    /// Whether the card's PUK was released in this operation.
    pub puk_released: bool,
}

const OPERATION_COLUMNS: &str = "id, kind, card_serial, actor_id, state, agent_version, \
     created_at, updated_at, pending_certificate, confirm_challenge, relay_count, puk_released";

fn operation_from(row: &Row<'_>) -> rusqlite::Result<OperationRecord> {
    record_from_row!(row, OperationRecord {
        id, kind via stored, card_serial, actor_id, state via stored, agent_version, created_at,
        updated_at, pending_certificate, confirm_challenge, relay_count, puk_released,
    })
}

impl Database {
    /// Adds an operation; `abort` names an open operation of the card it replaces.
    pub fn add_operation(
        &self,
        op: &OperationRecord,
        abort: Option<&str>,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<()> {
        self.audited(op.created_at, audit, |tx| {
            if let Some(old) = abort {
                abort_operation(tx, old, op.created_at)?;
            }
            tx.execute(
                &format!(
                    "INSERT INTO operations ({OPERATION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    op.id,
                    op.kind.as_str(),
                    op.card_serial,
                    op.actor_id,
                    op.state.as_str(),
                    op.agent_version,
                    op.created_at,
                    op.updated_at,
                    op.pending_certificate,
                    op.confirm_challenge,
                    op.relay_count,
                    op.puk_released
                ],
            )?;
            Ok(())
        })
    }

    /// Whether `error` is the database refusing a second open operation for a card.
    pub fn is_open_operation_conflict(error: &CmsError) -> bool {
        matches!(
            error,
            CmsError::Database(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation
        )
    }

    /// The operation with `id`.
    pub fn operation(&self, id: &str) -> CmsResult<Option<OperationRecord>> {
        self.find_one(
            &format!("SELECT {OPERATION_COLUMNS} FROM operations WHERE id = ?1"),
            id,
            operation_from,
        )
    }

    /// The open operation of a card, if there is one.
    pub fn open_operation(&self, card_serial: &str) -> CmsResult<Option<OperationRecord>> {
        self.find_one(
            &format!(
                "SELECT {OPERATION_COLUMNS} FROM operations
             WHERE card_serial = ?1 AND state IN ('started', 'certificate_issued')
             ORDER BY created_at DESC LIMIT 1"
            ),
            card_serial,
            operation_from,
        )
    }

    /// Counts one management-key exchange of an operation; returns the new count.
    pub fn count_relay(&self, id: &str) -> CmsResult<u32> {
        Ok(self.lock().query_row(
            "UPDATE operations SET relay_count = relay_count + 1 WHERE id = ?1 RETURNING relay_count",
            [id],
            |r| r.get(0),
        )?)
    }

    /// Records a certificate issued in an operation: any earlier pending one of the operation
    /// is superseded, and the operation waits for the card's proof. False if the operation
    /// is no longer open (nothing is written then).
    pub fn issue_in_operation(
        &self,
        op_id: &str,
        cert: &CertificateRecord,
        confirm_challenge: &[u8],
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<bool> {
        self.audited(at, audit, |tx| {
            tx.execute(
                "UPDATE certificates SET status = 'superseded' WHERE operation_id = ?1 AND status = 'pending'",
                [op_id],
            )?;
            insert_certificate(tx, cert, at)?;
            let changed = tx.execute(
                "UPDATE operations SET state = 'certificate_issued', pending_certificate = ?2,
                     confirm_challenge = ?3, updated_at = ?4
                 WHERE id = ?1 AND state IN ('started', 'certificate_issued')",
                params![op_id, cert.serial, confirm_challenge, at],
            )?;
            if changed == 0 {
                // The operation ended meanwhile: drop the certificate with the transaction.
                return Ok(false);
            }
            Ok(true)
        })
    }

    /// Aborts an operation that is still `started` (it has changed nothing on the card);
    /// false, with nothing written, when it is not.
    pub fn abort_started_operation(
        &self,
        id: &str,
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<bool> {
        self.audited(at, audit, |tx| {
            let state: Option<String> = tx
                .query_row("SELECT state FROM operations WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            if state.as_deref() != Some(OperationState::Started.as_str()) {
                return Ok(false);
            }
            abort_operation(tx, id, at)?;
            Ok(true)
        })
    }

    /// Completes an operation: its pending certificate becomes the card's active one, the
    /// previous one is replaced, and the card's expiry and capacity follow. False if the
    /// operation was not waiting for its confirmation (nothing is written then).
    pub fn complete_operation(
        &self,
        op: &OperationRecord,
        cert: &CertificateRecord,
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<bool> {
        self.audited(at, audit, |tx| {
            let changed = tx.execute(
                "UPDATE operations SET state = 'completed', updated_at = ?2
                 WHERE id = ?1 AND state = 'certificate_issued' AND pending_certificate = ?3",
                params![op.id, at, cert.serial],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            tx.execute(
                "UPDATE certificates SET status = 'replaced' WHERE card_serial = ?1 AND status = 'active'",
                [&op.card_serial],
            )?;
            tx.execute(
                "UPDATE certificates SET status = 'active' WHERE serial = ?1",
                [&cert.serial],
            )?;
            let renewals = match op.kind {
                OperationKind::Renew => "renewals_used + 1",
                OperationKind::Repair => "0",
                OperationKind::Restore => "renewals_used",
            };
            let puk = if op.puk_released {
                "puk_generation + 1"
            } else {
                "puk_generation"
            };
            tx.execute(
                &format!(
                    "UPDATE cards SET certs_expire = ?2, renewals_used = {renewals},
                         puk_generation = {puk} WHERE serial = ?1"
                ),
                params![op.card_serial, cert.not_after],
            )?;
            Ok(true)
        })
    }

    /// Marks the PUK released in an operation.
    pub fn release_puk(&self, op_id: &str, at: i64, audit: &AuditEvent<'_>) -> CmsResult<()> {
        self.audited_statement(
            at,
            audit,
            "UPDATE operations SET puk_released = 1, updated_at = ?2 WHERE id = ?1",
            params![op_id, at],
        )
    }
}

fn abort_operation(conn: &Connection, id: &str, at: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE certificates SET status = 'superseded' WHERE operation_id = ?1 AND status = 'pending'",
        [id],
    )?;
    conn.execute(
        "UPDATE operations SET state = 'aborted', updated_at = ?2 WHERE id = ?1",
        params![id, at],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{event, with_card};
    use super::*;
    use piv::ManagementAlgorithm;

    #[test]
    fn a_card_has_one_open_operation_at_most() {
        let (db, card) = with_card(ManagementAlgorithm::Aes192);
        assert_eq!(db.card(&card.serial).unwrap(), Some(card.clone()));
        let op = |id: &str| OperationRecord {
            id: id.into(),
            kind: OperationKind::Renew,
            card_serial: card.serial.clone(),
            actor_id: "u1".into(),
            state: OperationState::Started,
            agent_version: None,
            created_at: 1,
            updated_at: 1,
            pending_certificate: None,
            confirm_challenge: None,
            relay_count: 0,
            puk_released: false,
        };
        db.add_operation(&op("a"), None, &event("renew.start"))
            .unwrap();
        let second = db
            .add_operation(&op("b"), None, &event("renew.start"))
            .unwrap_err();
        assert!(Database::is_open_operation_conflict(&second));
        // Replacing the open one is allowed.
        db.add_operation(&op("c"), Some("a"), &event("repair.start"))
            .unwrap();
        assert_eq!(db.open_operation(&card.serial).unwrap().unwrap().id, "c");
        assert_eq!(
            db.operation("a").unwrap().unwrap().state,
            OperationState::Aborted
        );
        // A kind or state the API does not name is an error, not a guess.
        db.lock()
            .execute("UPDATE operations SET state = 'paused' WHERE id = 'a'", [])
            .unwrap();
        assert!(db.operation("a").is_err());
        db.lock()
            .execute("UPDATE operations SET kind = 'reissue' WHERE id = 'c'", [])
            .unwrap();
        assert!(db.operation("c").is_err());
    }
}
