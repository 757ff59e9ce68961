//! The schema: one step per migration, applied in order by `PRAGMA user_version`.

/// The schema, one step per migration; a database at `user_version` N has had the first N.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 4: the client address of what was done without a session (failed sign-ins); the lines
    // written before it have none.
    "ALTER TABLE audit ADD COLUMN client TEXT;",
    // 5: the one operation a session may work on: a renewal's own token, opened by the
    // holder's session when the renewal starts (the sessions before it are sign-ins).
    "ALTER TABLE sessions ADD COLUMN operation_id TEXT;",
];
