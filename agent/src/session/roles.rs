//! Each user's default role on this workstation, remembered across sessions in a small JSON
//! file of the state directory (user id → role id), written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// The remembered default roles.
#[derive(Debug)]
pub struct RoleMemory {
    path: PathBuf,
    defaults: Mutex<BTreeMap<String, i64>>,
}

impl RoleMemory {
    /// Loads `path`; a missing or unreadable file is an empty memory (logged), never an error.
    pub fn load(path: PathBuf) -> Self {
        let defaults = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring the default roles in {}: {e}", path.display());
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Self {
            path,
            defaults: Mutex::new(defaults),
        }
    }

    /// The default role of `user`.
    pub fn default_for(&self, user: &str) -> Option<i64> {
        self.lock().get(user).copied()
    }

    /// Remembers `role` as `user`'s default; a write failure is logged, not fatal.
    pub fn remember(&self, user: &str, role: i64) {
        let mut defaults = self.lock();
        defaults.insert(user.to_owned(), role);
        if let Err(e) = self.write(&defaults) {
            tracing::warn!(
                "cannot save the default role in {}: {e}",
                self.path.display()
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.defaults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, defaults: &BTreeMap<String, i64>) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&serde_json::to_vec(defaults)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_roles_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/default-roles.json");
        let memory = RoleMemory::load(path.clone());
        assert_eq!(memory.default_for("u1"), None);
        memory.remember("u1", 7);
        memory.remember("u2", 9);
        let again = RoleMemory::load(path.clone());
        assert_eq!(again.default_for("u1"), Some(7));
        assert_eq!(again.default_for("u2"), Some(9));
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(RoleMemory::load(path).default_for("u1"), None);
    }
}
