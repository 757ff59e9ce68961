//! Where the configuration and the state are on Unix: `/etc/identity-agent/config.toml`, then
//! the XDG base directories (`$XDG_CONFIG_HOME`, `$XDG_STATE_HOME`) or their defaults under the
//! home directory.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// `/etc/identity-agent/config.toml`.
pub(super) fn system_config_path() -> PathBuf {
    PathBuf::from("/etc/identity-agent/config.toml")
}

/// The user's configuration file (see [`user_config_path_in`]).
pub(super) fn user_config_path() -> Option<PathBuf> {
    user_config_path_in(std::env::var_os("XDG_CONFIG_HOME"), home_dir())
}

/// The state directory when the configuration names none (see [`default_state_dir_in`]).
pub(super) fn default_state_dir() -> PathBuf {
    default_state_dir_in(std::env::var_os("XDG_STATE_HOME"), home_dir())
}

/// `$XDG_CONFIG_HOME/identity-agent/config.toml`, else `~/.config/identity-agent/config.toml`.
fn user_config_path_in(
    xdg_config_home: Option<OsString>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    xdg_base(xdg_config_home, home, ".config").map(|dir| dir.join("identity-agent/config.toml"))
}

/// `$XDG_STATE_HOME/identity-agent`, else `~/.local/state/identity-agent`, else (no home at
/// all) a directory per user under the temporary directory.
fn default_state_dir_in(xdg_state_home: Option<OsString>, home: Option<PathBuf>) -> PathBuf {
    match xdg_base(xdg_state_home, home, ".local/state") {
        Some(dir) => dir.join("identity-agent"),
        // SAFETY: geteuid has no preconditions and cannot fail.
        None => std::env::temp_dir().join(format!("identity-agent-state-{}", unsafe {
            libc::geteuid()
        })),
    }
}

/// An XDG base directory: the variable when it holds an absolute path (the specification says
/// to ignore relative ones), else `home/fallback`.
fn xdg_base(var: Option<OsString>, home: Option<PathBuf>, fallback: &str) -> Option<PathBuf> {
    match var.map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(dir) => Some(dir),
        None => home.map(|home| home.join(fallback)),
    }
}

/// `$HOME`, else the home directory of the password database.
fn home_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid out-parameter for getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed with it.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_dir points at a NUL-terminated string inside buf.
    let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
    let dir = PathBuf::from(OsStr::from_bytes(dir.to_bytes()));
    (!dir.as_os_str().is_empty()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_paths() {
        let home = Some(PathBuf::from("/home/nurse"));
        assert_eq!(
            user_config_path_in(Some("/cfg".into()), home.clone()),
            Some(PathBuf::from("/cfg/identity-agent/config.toml"))
        );
        assert_eq!(
            user_config_path_in(None, home.clone()),
            Some(PathBuf::from(
                "/home/nurse/.config/identity-agent/config.toml"
            ))
        );
        // Relative and empty values are ignored, as the XDG specification says.
        assert_eq!(
            user_config_path_in(Some("relative".into()), home.clone()),
            Some(PathBuf::from(
                "/home/nurse/.config/identity-agent/config.toml"
            ))
        );
        assert_eq!(
            user_config_path_in(Some("".into()), home.clone()),
            Some(PathBuf::from(
                "/home/nurse/.config/identity-agent/config.toml"
            ))
        );
        assert_eq!(user_config_path_in(None, None), None);
        assert_eq!(
            default_state_dir_in(Some("/state".into()), home.clone()),
            PathBuf::from("/state/identity-agent")
        );
        assert_eq!(
            default_state_dir_in(None, home),
            PathBuf::from("/home/nurse/.local/state/identity-agent")
        );
    }
}
