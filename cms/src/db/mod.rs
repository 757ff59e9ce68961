//! The service's storage: one SQLite file, migrated by `PRAGMA user_version`, behind one
//! connection. Every method is one short transaction; none is held across an `.await`. One file
//! per concern, following the tables: users and role profiles, cards, certificates, sessions,
//! operations and the audit log. A stored value that names no known status, kind or state is
//! an error when read, never a default.

mod audit;
mod cards;
mod certificates;
mod operations;
mod schema;
mod sessions;
mod users;

pub use audit::{AuditEntry, AuditEvent};
pub use cards::CardRecord;
pub use certificates::{CertificateRecord, CertificateStatus, UnknownCertificateStatus};
pub use operations::OperationRecord;
pub use sessions::SessionRecord;
pub use users::{RoleProfile, User};

use crate::error::{CmsError, CmsResult};
use audit::insert_audit;
use rusqlite::{Connection, OptionalExtension, Row};
use schema::MIGRATIONS;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The database: one SQLite connection behind a mutex.
#[derive(Debug)]
pub struct Database {
    conn: Mutex<Connection>,
}

/// The value stored in column `idx` as a `T`: a value `T` does not name is an error, never a
/// default.
fn stored<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Builds a record from a row whose columns are the record's fields, in the same order. A field
/// written `field via reader` is read by `reader(row, column)` (such as [`stored`]), every other
/// field by `Row::get`.
macro_rules! record_from_row {
    ($row:expr, $record:ident { $($field:ident $(via $read:path)?),+ $(,)? }) => {{
        let row: &rusqlite::Row<'_> = $row;
        let mut columns = 0usize..;
        Ok($record {
            $($field: record_from_row!(@read row, columns.next().unwrap_or_default() $(, $read)?)?,)+
        })
    }};
    (@read $row:ident, $column:expr) => { $row.get($column) };
    (@read $row:ident, $column:expr, $read:path) => { $read($row, $column) };
}
use record_from_row;

/// What a change made in [`Database::audited`] returns: whether it went ahead. A change that
/// did not is rolled back and writes no audit line.
trait ChangeOutcome {
    fn went_ahead(&self) -> bool;
}

impl ChangeOutcome for () {
    fn went_ahead(&self) -> bool {
        true
    }
}

impl ChangeOutcome for i64 {
    fn went_ahead(&self) -> bool {
        true
    }
}

impl ChangeOutcome for bool {
    fn went_ahead(&self) -> bool {
        *self
    }
}

impl Database {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    /// A new file is made 0600 whatever the umask; SQLite gives its `-wal` and `-shm` files the
    /// database file's mode.
    pub fn open(path: &Path) -> CmsResult<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(path)
            .map_err(|e| CmsError::Internal(format!("creating {}: {e}", path.display())))?;
        Self::migrate(Connection::open(path)?)
    }

    /// A database in memory, for tests.
    pub fn in_memory() -> CmsResult<Self> {
        Self::migrate(Connection::open_in_memory()?)
    }

    fn migrate(mut conn: Connection) -> CmsResult<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(CmsError::Internal(format!(
                "the database has schema version {version}, newer than this service ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// The one row `sql` finds for `key`, mapped by `map`, if there is one.
    fn find_one<T>(
        &self,
        sql: &str,
        key: &str,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> CmsResult<Option<T>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(sql)?;
        Ok(stmt.query_row([key], map).optional()?)
    }

    /// Makes `change` and writes `audit` at `at` in one transaction: both or, when `change`
    /// fails or does not go ahead, neither.
    fn audited<T: ChangeOutcome>(
        &self,
        at: i64,
        audit: &AuditEvent<'_>,
        change: impl FnOnce(&Connection) -> CmsResult<T>,
    ) -> CmsResult<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let outcome = change(&tx)?;
        if outcome.went_ahead() {
            insert_audit(&tx, at, audit)?;
            tx.commit()?;
        }
        Ok(outcome)
    }

    /// Runs one statement as an audited change ([`Database::audited`]).
    fn audited_statement(
        &self,
        at: i64,
        audit: &AuditEvent<'_>,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> CmsResult<()> {
        self.audited(at, audit, |tx| {
            tx.execute(sql, params).map(drop).map_err(Into::into)
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version.
    pub fn schema_version(&self) -> CmsResult<u32> {
        Ok(self
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

#[cfg(test)]
mod testing {
    use super::{AuditEvent, CardRecord, Database, User};
    use piv::ManagementAlgorithm;

    /// A temporary directory for a database file, and the file's path in it (the file is
    /// removed with the directory).
    pub fn database_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cms.sqlite");
        (dir, path)
    }

    /// A database in memory with user `u1` (Jane) and her card `4082A001132F2817`, whose
    /// management key is of `algorithm`; and that card's record.
    pub fn with_card(algorithm: ManagementAlgorithm) -> (Database, CardRecord) {
        let db = Database::in_memory().unwrap();
        let user = User {
            id: "u1".into(),
            name: "Jane".into(),
        };
        db.add_user(&user, 0, &event("user.add")).unwrap();
        let card = CardRecord {
            serial: "4082A001132F2817".into(),
            card_type: "PIV".into(),
            holder_id: "u1".into(),
            issued_on: 0,
            certs_expire: None,
            cancelled_on: None,
            cancel_reason: None,
            capacity: 10,
            renewals_used: 0,
            puk_generation: 0,
            management_algorithm: algorithm,
        };
        db.add_card(&card, 0, &event("card.add")).unwrap();
        (db, card)
    }

    /// An audit event by the admin, for tests.
    pub fn event(action: &str) -> AuditEvent<'_> {
        AuditEvent {
            actor: "admin",
            action,
            card_serial: None,
            detail: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{database_file, event};
    use super::*;

    #[test]
    fn migrations_run_once_and_data_survives_reopening() {
        let (_dir, path) = database_file();
        {
            let db = Database::open(&path).unwrap();
            assert_eq!(db.schema_version().unwrap() as usize, MIGRATIONS.len());
            let user = User {
                id: "u1".into(),
                name: "Jane Doe".into(),
            };
            db.add_user(&user, 10, &event("user.add")).unwrap();
            db.add_role_profile(
                "u1",
                "Leeds",
                "RA ID Checker",
                &["B0267".into()],
                11,
                &event("role.add"),
            )
            .unwrap();
        }
        let db = Database::open(&path).unwrap();
        assert_eq!(db.user("u1").unwrap().unwrap().name, "Jane Doe");
        let roles = db.role_profiles("u1").unwrap();
        assert_eq!(roles.len(), 1);
        assert!(roles[0].grants("B0267"));
        assert!(!roles[0].grants("B0268"));
        assert_eq!(db.audit_log(None, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (_dir, path) = database_file();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(Database::open(&path), Err(CmsError::Internal(_))));
    }
}
