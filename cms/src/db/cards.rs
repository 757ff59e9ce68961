//! The card registry: a card's record, and its cancellation (which ends its sessions and its
//! open operations with it).

use super::audit::AuditEvent;
use super::{record_from_row, Database};
use crate::error::{CmsError, CmsResult};
use piv::ManagementAlgorithm;
use rusqlite::{params, Row};

/// A card in the registry: a row of the Smartcard Details table and its custody state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    /// 16 hex digits.
    pub serial: String,
    /// The card type (`Gemplus`, `Oberthur`, `PIV` …).
    pub card_type: String,
    /// The holder's user id.
    pub holder_id: String,
    /// When the card was issued (Unix seconds).
    pub issued_on: i64,
    /// When its current certificates expire; none before the first certificate.
    pub certs_expire: Option<i64>,
    /// When it was cancelled; none while active.
    pub cancelled_on: Option<i64>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// How many self-renewals the card can take before it is full.
    pub capacity: u32,
    /// Self-renewals since issue or the last repair.
    pub renewals_used: u32,
    /// Which PUK of the card's diversification sequence the card holds.
    pub puk_generation: u32,
    /// The algorithm of the management key the service gave the card.
    pub management_algorithm: ManagementAlgorithm,
}

impl CardRecord {
    /// Whether the card can take no more self-renewals.
    pub fn is_full(&self) -> bool {
        self.renewals_used >= self.capacity
    }

    /// Whether the card's certificates have expired at `now` (a card with none counts as
    /// expired).
    pub fn is_expired(&self, now: i64) -> bool {
        match self.certs_expire {
            Some(expiry) => expiry <= now,
            None => true,
        }
    }
}

pub(super) const CARD_COLUMNS: &str =
    "serial, card_type, holder_id, issued_on, certs_expire, cancelled_on, \
     cancel_reason, capacity, renewals_used, puk_generation, management_algorithm";

fn card_from(row: &Row<'_>) -> rusqlite::Result<CardRecord> {
    record_from_row!(row, CardRecord {
        serial, card_type, holder_id, issued_on, certs_expire, cancelled_on, cancel_reason,
        capacity, renewals_used, puk_generation, management_algorithm via management_algorithm,
    })
}

/// The management key algorithm stored in column `idx` by its id: an id no algorithm has is an
/// error, never a guess.
fn management_algorithm(row: &Row<'_>, idx: usize) -> rusqlite::Result<ManagementAlgorithm> {
    let id: u8 = row.get(idx)?;
    ManagementAlgorithm::from_id(id).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Integer,
            format!("{id} is not a management key algorithm").into(),
        )
    })
}

impl Database {
    /// Adds a card record.
    pub fn add_card(&self, card: &CardRecord, at: i64, audit: &AuditEvent<'_>) -> CmsResult<()> {
        self.audited(at, audit, |tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM cards WHERE serial = ?1)",
                [&card.serial],
                |r| r.get(0),
            )?;
            if exists {
                return Err(CmsError::CardExists(card.serial.clone()));
            }
            tx.execute(
                &format!(
                    "INSERT INTO cards ({CARD_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    card.serial,
                    card.card_type,
                    card.holder_id,
                    card.issued_on,
                    card.certs_expire,
                    card.cancelled_on,
                    card.cancel_reason,
                    card.capacity,
                    card.renewals_used,
                    card.puk_generation,
                    card.management_algorithm.id()
                ],
            )?;
            Ok(())
        })
    }

    /// The card with `serial`.
    pub fn card(&self, serial: &str) -> CmsResult<Option<CardRecord>> {
        self.find_one(
            &format!("SELECT {CARD_COLUMNS} FROM cards WHERE serial = ?1"),
            serial,
            card_from,
        )
    }

    /// The cards of `holder_id`, oldest first; every card when `holder_id` is `None`.
    pub fn cards(&self, holder_id: Option<&str>) -> CmsResult<Vec<CardRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE ?1 IS NULL OR holder_id = ?1
             ORDER BY issued_on, serial"
        ))?;
        let rows = stmt.query_map([holder_id], card_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Cancels a card: ends its sessions and aborts its open operations, at once.
    pub fn cancel_card(
        &self,
        serial: &str,
        reason: &str,
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<()> {
        self.audited(at, audit, |tx| {
            tx.execute(
                "UPDATE cards SET cancelled_on = ?2, cancel_reason = ?3 WHERE serial = ?1",
                params![serial, at, reason],
            )?;
            tx.execute(
                "UPDATE sessions SET ended_at = ?2 WHERE card_serial = ?1 AND ended_at IS NULL",
                params![serial, at],
            )?;
            tx.execute(
                "UPDATE certificates SET status = 'superseded' WHERE card_serial = ?1 AND status = 'pending'",
                [serial],
            )?;
            tx.execute(
                "UPDATE operations SET state = 'aborted', updated_at = ?2
                 WHERE card_serial = ?1 AND state IN ('started', 'certificate_issued')",
                params![serial, at],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::database_file;
    use super::*;

    #[test]
    fn a_database_from_before_management_algorithms_keeps_its_cards_as_aes128() {
        let (_dir, path) = database_file();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            for step in &super::super::schema::MIGRATIONS[..2] {
                conn.execute_batch(step).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute_batch(
                "INSERT INTO users (id, name, created_at) VALUES ('u1', 'Jane', 0);
                 INSERT INTO cards (serial, card_type, holder_id, issued_on, capacity)
                 VALUES ('4082A001132F2817', 'PIV', 'u1', 0, 10);",
            )
            .unwrap();
        }
        let db = Database::open(&path).unwrap();
        let card = db.card("4082A001132F2817").unwrap().unwrap();
        assert_eq!(card.management_algorithm, ManagementAlgorithm::Aes128);
        // A value no algorithm has is an error, not a guess.
        db.lock()
            .execute("UPDATE cards SET management_algorithm = 7", [])
            .unwrap();
        assert!(db.card("4082A001132F2817").is_err());
    }
}
