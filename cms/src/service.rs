//! The service itself: the registry, the CA, card custody, the challenge store and the policy,
//! opened from a data directory. The API calls into it; the admin CLI too.

use crate::ca::{create_private_dir, CaFiles, CertificateAuthority, VerifiedCertificates};
use crate::challenges::ChallengeStore;
use crate::custody::{Custody, RelayExchanges};
use crate::db::{AuditEvent, Database, RoleProfile, SessionRecord, User};
use crate::error::{CmsError, CmsResult};
use crate::policy::Policy;
use crate::throttle::{ChallengeRate, SignInFailures};
use std::path::{Path, PathBuf};

/// How long ended and expired sessions are kept before the service deletes them.
const SESSION_RETENTION_DAYS: i64 = 30;

/// The name of the CA an `init` creates.
pub const CA_NAME: &str = "Identity Agent CMS CA";

/// The files of a service under its data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("cms.sqlite")
    }

    /// The master secret of card custody (mode 0600).
    pub fn master_secret(&self) -> PathBuf {
        self.root.join("master.key")
    }

    /// The CA and TLS files.
    pub fn ca_files(&self) -> CaFiles {
        CaFiles::in_dir(&self.root)
    }

    /// Makes an empty data directory (one just made for the service, say by `mktemp -d` or
    /// under another umask) 0700: with nothing in it yet, nothing has been exposed.
    fn take_if_empty(&self) -> CmsResult<()> {
        let io_err =
            |e: std::io::Error| CmsError::Internal(format!("{}: {e}", self.root.display()));
        if std::fs::read_dir(&self.root)
            .map_err(io_err)?
            .next()
            .is_none()
        {
            #[cfg(unix)]
            std::fs::set_permissions(
                &self.root,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .map_err(io_err)?;
        }
        Ok(())
    }

    /// Refuses a data directory that another local user could read or write: the directory
    /// and every directory under it must be 0700 (or stricter), every file 0600 (or
    /// stricter). The error names the first path found otherwise and its mode.
    pub fn check_private(&self) -> CmsResult<()> {
        if !self.root.exists() {
            // Nothing to expose; opening says the service is not initialised.
            return Ok(());
        }
        check_private_tree(&self.root)
    }
}

/// Checks `path` and, for a directory, everything under it: nothing readable, writable or
/// searchable by group or others. Symbolic links are not followed (their own mode means
/// nothing); what they point to is not the data directory's.
#[cfg(unix)]
fn check_private_tree(path: &Path) -> CmsResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let io_err = |e: std::io::Error| CmsError::Internal(format!("{}: {e}", path.display()));
    let metadata = std::fs::symlink_metadata(path).map_err(io_err)?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let (kind, wanted) = if metadata.is_dir() {
            ("directory", "0700")
        } else {
            ("file", "0600")
        };
        return Err(CmsError::Internal(format!(
            "{} is a {kind} of the data directory with mode {mode:04o}, open to other users: \
             it holds the service's keys, users, sessions and audit trail, so the service \
             refuses to start until it is {wanted} (chmod go-rwx {})",
            path.display(),
            path.display()
        )));
    }
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_err)? {
            check_private_tree(&entry.map_err(io_err)?.path())?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_tree(_path: &Path) -> CmsResult<()> {
    Ok(())
}

/// Who is calling: a live session, its user and their role profiles.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The session.
    pub session: SessionRecord,
    /// Its user.
    pub user: User,
    /// The user's role profiles.
    pub roles: Vec<RoleProfile>,
}

impl Caller {
    /// Refuses a token that works on one operation only ([`Cms::operation_token`]) where a
    /// sign-in is needed.
    pub fn require_sign_in(&self) -> CmsResult<()> {
        match &self.session.operation_id {
            Some(operation) => Err(CmsError::Forbidden(format!(
                "this token works only on operation {operation}"
            ))),
            None => Ok(()),
        }
    }

    /// Refuses a token for another operation than `operation`.
    pub fn require_operation(&self, operation: &str) -> CmsResult<()> {
        match &self.session.operation_id {
            Some(own) if own != operation => self.require_sign_in(),
            _ => Ok(()),
        }
    }

    /// The selected role profile.
    pub fn selected_role(&self) -> Option<&RoleProfile> {
        let id = self.session.selected_role?;
        self.roles.iter().find(|r| r.id == id)
    }

    /// Whether the selected role grants `activity`.
    pub fn acts_as(&self, activity: &str) -> bool {
        self.selected_role().is_some_and(|r| r.grants(activity))
    }

    /// Refuses unless the selected role grants `activity`, with a hint when another of the
    /// user's roles would.
    pub fn require_activity(&self, activity: &'static str) -> CmsResult<()> {
        if self.acts_as(activity) {
            return Ok(());
        }
        let hint = match self.roles.iter().find(|r| r.grants(activity)) {
            Some(r) => format!(
                ": select role profile {} ({}, {}) first",
                r.id, r.job_role, r.organisation
            ),
            None => String::new(),
        };
        Err(CmsError::ActivityRequired { activity, hint })
    }

    /// An audit event by this caller.
    pub fn audit<'a>(
        &'a self,
        action: &'a str,
        card: Option<&'a str>,
        detail: String,
    ) -> AuditEvent<'a> {
        AuditEvent {
            actor: &self.user.id,
            action,
            card_serial: card,
            detail,
        }
    }
}

/// The Card Management Service.
#[derive(Debug)]
pub struct Cms {
    pub(crate) db: Database,
    pub(crate) ca: CertificateAuthority,
    pub(crate) custody: Custody,
    pub(crate) challenges: ChallengeStore,
    pub(crate) challenge_rate: ChallengeRate,
    pub(crate) sign_in_failures: SignInFailures,
    pub(crate) verified: VerifiedCertificates,
    pub(crate) relays: RelayExchanges,
    pub(crate) policy: Policy,
    data_dir: DataDir,
}

impl Cms {
    /// Creates what is missing in `data_dir` (CA, TLS certificate for `hostnames`, master
    /// secret, database) and opens the service.
    pub fn init(data_dir: &DataDir, hostnames: &[String], policy: Policy) -> CmsResult<Self> {
        create_private_dir(data_dir.root()).map_err(|e| {
            CmsError::Internal(format!("creating {}: {e}", data_dir.root().display()))
        })?;
        data_dir.take_if_empty()?;
        data_dir.check_private()?;
        let ca = CertificateAuthority::init(&data_dir.ca_files(), CA_NAME, hostnames)
            .map_err(|e| CmsError::Internal(e.to_string()))?;
        Self::assemble(data_dir, ca, policy)
    }

    /// Opens an initialised service.
    pub fn open(data_dir: &DataDir, policy: Policy) -> CmsResult<Self> {
        data_dir.take_if_empty()?;
        data_dir.check_private()?;
        let ca = CertificateAuthority::load(&data_dir.ca_files())
            .map_err(|e| CmsError::Internal(e.to_string()))?;
        Self::assemble(data_dir, ca, policy)
    }

    fn assemble(data_dir: &DataDir, ca: CertificateAuthority, policy: Policy) -> CmsResult<Self> {
        let custody = Custody::load_or_create(&data_dir.master_secret())
            .map_err(|e| CmsError::Internal(e.to_string()))?;
        let db = Database::open(&data_dir.database())?;
        // Sessions long over are of no use to anyone; the audit log keeps what happened.
        db.prune_sessions(crate::dates::now() - SESSION_RETENTION_DAYS * crate::dates::DAY)?;
        Ok(Self {
            db,
            ca,
            custody,
            challenges: ChallengeStore::new(
                policy.challenge_ttl,
                policy.throttling.challenges_per_card,
            ),
            challenge_rate: ChallengeRate::new(policy.throttling.challenge_rate),
            sign_in_failures: SignInFailures::new(policy.throttling.clone()),
            verified: VerifiedCertificates::default(),
            relays: RelayExchanges::default(),
            policy,
            data_dir: data_dir.clone(),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The database (for the admin CLI).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The CA.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// Card custody (for the admin CLI's issuing).
    pub fn custody(&self) -> &Custody {
        &self.custody
    }
}
