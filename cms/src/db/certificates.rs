//! The certificates the CA issued for card keys, and where each is in its life.

use super::audit::AuditEvent;
use super::{record_from_row, stored, Database};
use crate::error::CmsResult;
use rusqlite::{params, Connection, Row};

cms_api::wire_enum! {
    /// The life of a certificate this CA issued; stored by name ([`CertificateStatus::as_str`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CertificateStatus {
        /// The card's current certificate.
        Active = "active",
        /// Issued in an open operation, not yet confirmed by the card.
        Pending = "pending",
        /// Was active; a confirmed renewal or repair replaced it.
        Replaced = "replaced",
        /// Was pending; its operation issued another or ended without it.
        Superseded = "superseded",
    }
    /// A stored certificate status this service does not know.
    pub struct UnknownCertificateStatus("is not a certificate status");
}

/// A certificate this CA issued for a card key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// The certificate serial number, upper-case hex.
    pub serial: String,
    /// The card it was issued for.
    pub card_serial: String,
    /// The operation that asked for it, if any.
    pub operation_id: Option<String>,
    /// The certified key, DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// Where it is in its life.
    pub status: CertificateStatus,
}

const CERT_COLUMNS: &str =
    "serial, card_serial, operation_id, spki, der, not_before, not_after, status";

fn cert_from(row: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    record_from_row!(row, CertificateRecord {
        serial, card_serial, operation_id, spki, der, not_before, not_after, status via stored,
    })
}

impl Database {
    /// Records a certificate issued for a card at issue time (no operation): it becomes the
    /// card's active certificate and sets the card's expiry.
    pub fn add_issued_certificate(
        &self,
        cert: &CertificateRecord,
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<()> {
        self.audited(at, audit, |tx| {
            tx.execute(
                "UPDATE certificates SET status = 'replaced' WHERE card_serial = ?1 AND status = 'active'",
                [&cert.card_serial],
            )?;
            insert_certificate(tx, cert, at)?;
            tx.execute(
                "UPDATE cards SET certs_expire = ?2 WHERE serial = ?1",
                params![cert.card_serial, cert.not_after],
            )?;
            Ok(())
        })
    }

    /// The certificate with serial number `serial` (upper-case hex).
    pub fn certificate(&self, serial: &str) -> CmsResult<Option<CertificateRecord>> {
        self.find_one(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"),
            serial,
            cert_from,
        )
    }

    /// The active certificate of a card.
    pub fn active_certificate(&self, card_serial: &str) -> CmsResult<Option<CertificateRecord>> {
        self.find_one(
            &format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE card_serial = ?1 AND status = 'active'"
            ),
            card_serial,
            cert_from,
        )
    }

    /// Whether a certificate serial number is taken.
    pub fn certificate_serial_taken(&self, serial: &str) -> CmsResult<bool> {
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM certificates WHERE serial = ?1)",
            [serial],
            |r| r.get(0),
        )?)
    }
}

pub(super) fn insert_certificate(
    conn: &Connection,
    cert: &CertificateRecord,
    at: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO certificates ({CERT_COLUMNS}, issued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            cert.serial,
            cert.card_serial,
            cert.operation_id,
            cert.spki,
            cert.der,
            cert.not_before,
            cert.not_after,
            cert.status.as_str(),
            at
        ],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{event, with_card};
    use super::*;
    use piv::ManagementAlgorithm;

    #[test]
    fn an_unknown_stored_status_is_an_error_not_superseded() {
        let (db, card) = with_card(ManagementAlgorithm::Aes128);
        let cert = CertificateRecord {
            serial: "0A".into(),
            card_serial: card.serial.clone(),
            operation_id: None,
            spki: vec![1],
            der: vec![2],
            not_before: 0,
            not_after: 100,
            status: CertificateStatus::Active,
        };
        db.add_issued_certificate(&cert, 0, &event("card.certificate"))
            .unwrap();
        assert_eq!(db.certificate("0A").unwrap(), Some(cert));
        db.lock()
            .execute("UPDATE certificates SET status = 'revoked'", [])
            .unwrap();
        assert!(db.certificate("0A").is_err());
        assert!(db.active_certificate(&card.serial).unwrap().is_none());
    }
}
