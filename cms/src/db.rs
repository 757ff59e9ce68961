//! The service's storage: one SQLite file, migrated by `PRAGMA user_version`, behind one
//! connection. Every method is one short transaction; none is held across an `.await`.

use crate::error::{CmsError, CmsResult};
use cms_api::{OperationKind, OperationState};
use piv::ManagementAlgorithm;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The schema, one step per migration; a database at `user_version` N has had the first N.
const MIGRATIONS: &[&str] = &[
    // 1: the registry, sessions, operations and the audit log.
    "CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE organisations (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE role_profiles (
        id INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        organisation_id INTEGER NOT NULL REFERENCES organisations(id),
        job_role TEXT NOT NULL,
        activities TEXT NOT NULL
    );
    CREATE INDEX role_profiles_user ON role_profiles(user_id);
    CREATE TABLE cards (
        serial TEXT PRIMARY KEY,
        card_type TEXT NOT NULL,
        holder_id TEXT NOT NULL REFERENCES users(id),
        issued_on INTEGER NOT NULL,
        certs_expire INTEGER,
        cancelled_on INTEGER,
        cancel_reason TEXT,
        capacity INTEGER NOT NULL,
        renewals_used INTEGER NOT NULL DEFAULT 0,
        puk_generation INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX cards_holder ON cards(holder_id);
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        card_serial TEXT NOT NULL REFERENCES cards(serial),
        operation_id TEXT,
        spki BLOB NOT NULL,
        der BLOB NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        status TEXT NOT NULL,
        issued_at INTEGER NOT NULL
    );
    CREATE INDEX certificates_card ON certificates(card_serial);
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        ticket_hash TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users(id),
        card_serial TEXT NOT NULL REFERENCES cards(serial),
        selected_role INTEGER REFERENCES role_profiles(id),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        ended_at INTEGER
    );
    CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        card_serial TEXT NOT NULL REFERENCES cards(serial),
        actor_id TEXT NOT NULL REFERENCES users(id),
        state TEXT NOT NULL,
        agent_version TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        pending_certificate TEXT,
        confirm_challenge BLOB,
        relay_count INTEGER NOT NULL DEFAULT 0,
        puk_released INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX operations_card ON operations(card_serial, state);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        card_serial TEXT,
        detail TEXT NOT NULL
    );",
    // 2: at most one open operation per card, whatever two requests race to start one.
    "CREATE UNIQUE INDEX operations_one_open ON operations(card_serial)
        WHERE state IN ('started', 'certificate_issued');",
    // 3: the algorithm of each card's management key (the identifier of GENERAL
    // AUTHENTICATE); the cards issued before it all hold AES-128 keys.
    "ALTER TABLE cards ADD COLUMN management_algorithm INTEGER NOT NULL DEFAULT 8;",
];

/// A person known to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's UUID (the subject of their card certificates).
    pub id: String,
    /// Their name.
    pub name: String,
}

/// A role profile: an organisation, a job role and the activity codes it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleProfile {
    /// The profile's id.
    pub id: i64,
    /// The user it belongs to.
    pub user_id: String,
    /// The organisation's name.
    pub organisation: String,
    /// The job role.
    pub job_role: String,
    /// Activity codes such as `B0267`.
    pub activities: Vec<String>,
}

impl RoleProfile {
    /// Whether this profile grants `activity`.
    pub fn grants(&self, activity: &str) -> bool {
        self.activities.iter().any(|a| a == activity)
    }
}

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

/// The life of a certificate this CA issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    /// The card's current certificate.
    Active,
    /// Issued in an open operation, not yet confirmed by the card.
    Pending,
    /// Was active; a confirmed renewal or repair replaced it.
    Replaced,
    /// Was pending; its operation issued another or ended without it.
    Superseded,
}

impl CertificateStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Replaced => "replaced",
            Self::Superseded => "superseded",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "pending" => Self::Pending,
            "replaced" => Self::Replaced,
            _ => Self::Superseded,
        }
    }
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
}

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

/// The database: one SQLite connection behind a mutex.
#[derive(Debug)]
pub struct Database {
    conn: Mutex<Connection>,
}

fn user_from(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
    })
}

fn role_from(row: &Row<'_>) -> rusqlite::Result<RoleProfile> {
    let activities: String = row.get(4)?;
    Ok(RoleProfile {
        id: row.get(0)?,
        user_id: row.get(1)?,
        organisation: row.get(2)?,
        job_role: row.get(3)?,
        activities: activities
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

const CARD_COLUMNS: &str = "serial, card_type, holder_id, issued_on, certs_expire, cancelled_on, \
     cancel_reason, capacity, renewals_used, puk_generation, management_algorithm";

fn card_from(row: &Row<'_>) -> rusqlite::Result<CardRecord> {
    Ok(CardRecord {
        serial: row.get(0)?,
        card_type: row.get(1)?,
        holder_id: row.get(2)?,
        issued_on: row.get(3)?,
        certs_expire: row.get(4)?,
        cancelled_on: row.get(5)?,
        cancel_reason: row.get(6)?,
        capacity: row.get(7)?,
        renewals_used: row.get(8)?,
        puk_generation: row.get(9)?,
        management_algorithm: {
            let id: u8 = row.get(10)?;
            ManagementAlgorithm::from_id(id).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    10,
                    rusqlite::types::Type::Integer,
                    format!("{id} is not a management key algorithm").into(),
                )
            })?
        },
    })
}

const CERT_COLUMNS: &str =
    "serial, card_serial, operation_id, spki, der, not_before, not_after, status";

fn cert_from(row: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    let status: String = row.get(7)?;
    Ok(CertificateRecord {
        serial: row.get(0)?,
        card_serial: row.get(1)?,
        operation_id: row.get(2)?,
        spki: row.get(3)?,
        der: row.get(4)?,
        not_before: row.get(5)?,
        not_after: row.get(6)?,
        status: CertificateStatus::parse(&status),
    })
}

const SESSION_COLUMNS: &str =
    "token_hash, ticket_hash, user_id, card_serial, selected_role, created_at, expires_at, ended_at";

fn session_from(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        token_hash: row.get(0)?,
        ticket_hash: row.get(1)?,
        user_id: row.get(2)?,
        card_serial: row.get(3)?,
        selected_role: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        ended_at: row.get(7)?,
    })
}

const OPERATION_COLUMNS: &str = "id, kind, card_serial, actor_id, state, agent_version, \
     created_at, updated_at, pending_certificate, confirm_challenge, relay_count, puk_released";

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

fn operation_from(row: &Row<'_>) -> rusqlite::Result<OperationRecord> {
    Ok(OperationRecord {
        id: row.get(0)?,
        kind: stored(row, 1)?,
        card_serial: row.get(2)?,
        actor_id: row.get(3)?,
        state: stored(row, 4)?,
        agent_version: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        pending_certificate: row.get(8)?,
        confirm_challenge: row.get(9)?,
        relay_count: row.get(10)?,
        puk_released: row.get(11)?,
    })
}

fn insert_audit(conn: &Connection, at: i64, event: &AuditEvent<'_>) -> rusqlite::Result<()> {
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
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> CmsResult<Self> {
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

    /// Adds a user.
    pub fn add_user(&self, user: &User, at: i64, audit: &AuditEvent<'_>) -> CmsResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3)",
            params![user.id, user.name, at],
        )?;
        insert_audit(&tx, at, audit)?;
        Ok(tx.commit()?)
    }

    /// The user with `id`.
    pub fn user(&self, id: &str) -> CmsResult<Option<User>> {
        Ok(self
            .lock()
            .query_row("SELECT id, name FROM users WHERE id = ?1", [id], user_from)
            .optional()?)
    }

    /// Adds a role profile (and its organisation, if new) and returns its id.
    pub fn add_role_profile(
        &self,
        user_id: &str,
        organisation: &str,
        job_role: &str,
        activities: &[String],
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<i64> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO organisations (name) VALUES (?1)",
            [organisation],
        )?;
        let org: i64 = tx.query_row(
            "SELECT id FROM organisations WHERE name = ?1",
            [organisation],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO role_profiles (user_id, organisation_id, job_role, activities)
             VALUES (?1, ?2, ?3, ?4)",
            params![user_id, org, job_role, activities.join(",")],
        )?;
        let id = tx.last_insert_rowid();
        insert_audit(&tx, at, audit)?;
        tx.commit()?;
        Ok(id)
    }

    /// The role profiles of `user_id`, in the order they were added.
    pub fn role_profiles(&self, user_id: &str) -> CmsResult<Vec<RoleProfile>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT r.id, r.user_id, o.name, r.job_role, r.activities
             FROM role_profiles r JOIN organisations o ON o.id = r.organisation_id
             WHERE r.user_id = ?1 ORDER BY r.id",
        )?;
        let rows = stmt.query_map([user_id], role_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a card record.
    pub fn add_card(&self, card: &CardRecord, at: i64, audit: &AuditEvent<'_>) -> CmsResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
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
        insert_audit(&tx, at, audit)?;
        Ok(tx.commit()?)
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
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
        insert_audit(&tx, at, audit)?;
        Ok(tx.commit()?)
    }

    /// Records a certificate issued for a card at issue time (no operation): it becomes the
    /// card's active certificate and sets the card's expiry.
    pub fn add_issued_certificate(
        &self,
        cert: &CertificateRecord,
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE certificates SET status = 'replaced' WHERE card_serial = ?1 AND status = 'active'",
            [&cert.card_serial],
        )?;
        insert_certificate(&tx, cert, at)?;
        tx.execute(
            "UPDATE cards SET certs_expire = ?2 WHERE serial = ?1",
            params![cert.card_serial, cert.not_after],
        )?;
        insert_audit(&tx, at, audit)?;
        Ok(tx.commit()?)
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

    /// Starts a session.
    pub fn add_session(&self, session: &SessionRecord, audit: &AuditEvent<'_>) -> CmsResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.prepare_cached(&format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))?
        .execute(params![
            session.token_hash,
            session.ticket_hash,
            session.user_id,
            session.card_serial,
            session.selected_role,
            session.created_at,
            session.expires_at,
            session.ended_at
        ])?;
        insert_audit(&tx, session.created_at, audit)?;
        Ok(tx.commit()?)
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE sessions SET selected_role = ?2 WHERE token_hash = ?1",
            params![token_hash, role],
        )?;
        insert_audit(&tx, at, audit)?;
        Ok(tx.commit()?)
    }

    /// Ends a session.
    pub fn end_session(&self, token_hash: &str, at: i64, audit: &AuditEvent<'_>) -> CmsResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE sessions SET ended_at = ?2 WHERE token_hash = ?1 AND ended_at IS NULL",
            params![token_hash, at],
        )?;
        insert_audit(&tx, at, audit)?;
        Ok(tx.commit()?)
    }

    /// Adds an operation; `abort` names an open operation of the card it replaces.
    pub fn add_operation(
        &self,
        op: &OperationRecord,
        abort: Option<&str>,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if let Some(old) = abort {
            abort_operation(&tx, old, op.created_at)?;
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
        insert_audit(&tx, op.created_at, audit)?;
        Ok(tx.commit()?)
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE certificates SET status = 'superseded' WHERE operation_id = ?1 AND status = 'pending'",
            [op_id],
        )?;
        insert_certificate(&tx, cert, at)?;
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
        insert_audit(&tx, at, audit)?;
        tx.commit()?;
        Ok(true)
    }

    /// Aborts an operation that is still `started` (it has changed nothing on the card);
    /// false, with nothing written, when it is not.
    pub fn abort_started_operation(
        &self,
        id: &str,
        at: i64,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let state: Option<String> = tx
            .query_row("SELECT state FROM operations WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        if state.as_deref() != Some(OperationState::Started.as_str()) {
            return Ok(false);
        }
        abort_operation(&tx, id, at)?;
        insert_audit(&tx, at, audit)?;
        tx.commit()?;
        Ok(true)
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
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
        insert_audit(&tx, at, audit)?;
        tx.commit()?;
        Ok(true)
    }

    /// Marks the PUK released in an operation.
    pub fn release_puk(&self, op_id: &str, at: i64, audit: &AuditEvent<'_>) -> CmsResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE operations SET puk_released = 1, updated_at = ?2 WHERE id = ?1",
            params![op_id, at],
        )?;
        insert_audit(&tx, at, audit)?;
        Ok(tx.commit()?)
    }

    /// Deletes sessions that ended or expired before `before`; returns how many.
    pub fn prune_sessions(&self, before: i64) -> CmsResult<usize> {
        Ok(self.lock().execute(
            "DELETE FROM sessions WHERE expires_at < ?1 OR ended_at < ?1",
            [before],
        )?)
    }

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
            Ok(AuditEntry {
                id: row.get(0)?,
                at: row.get(1)?,
                actor: row.get(2)?,
                action: row.get(3)?,
                card_serial: row.get(4)?,
                detail: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn insert_certificate(
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
    use super::*;

    fn event(action: &str) -> AuditEvent<'_> {
        AuditEvent {
            actor: "admin",
            action,
            card_serial: None,
            detail: String::new(),
        }
    }

    #[test]
    fn migrations_run_once_and_data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cms.sqlite");
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
    fn a_database_from_before_management_algorithms_keeps_its_cards_as_aes128() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cms.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            for step in &MIGRATIONS[..2] {
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

    #[test]
    fn a_card_has_one_open_operation_at_most() {
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
            management_algorithm: ManagementAlgorithm::Aes192,
        };
        db.add_card(&card, 0, &event("card.add")).unwrap();
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
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cms.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(Database::open(&path), Err(CmsError::Internal(_))));
    }
}
