//! Users, organisations and role profiles.

use super::audit::AuditEvent;
use super::{record_from_row, Database};
use crate::error::CmsResult;
use rusqlite::{params, OptionalExtension, Row};

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

fn user_from(row: &Row<'_>) -> rusqlite::Result<User> {
    record_from_row!(row, User { id, name })
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

impl Database {
    /// Adds a user.
    pub fn add_user(&self, user: &User, at: i64, audit: &AuditEvent<'_>) -> CmsResult<()> {
        self.audited_statement(
            at,
            audit,
            "INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3)",
            params![user.id, user.name, at],
        )
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
        self.audited(at, audit, |tx| {
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
            Ok(tx.last_insert_rowid())
        })
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
}
