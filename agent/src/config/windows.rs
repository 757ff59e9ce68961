//! Where the configuration and the state are on Windows, under the known folders:
//! `%ProgramData%\Identity Agent\config.toml` for the machine, `%APPDATA%\Identity
//! Agent\config.toml` for the user (roaming with the profile), and the state in
//! `%LOCALAPPDATA%\Identity Agent` (this machine's only: a journal belongs to the card reader it
//! was written beside).

use std::path::PathBuf;
use widestring::U16CStr;
use windows_sys::core::GUID;
use windows_sys::Win32::System::Com::CoTaskMemFree;
use windows_sys::Win32::UI::Shell::{
    FOLDERID_LocalAppData, FOLDERID_ProgramData, FOLDERID_RoamingAppData, SHGetKnownFolderPath,
    KF_FLAG_DEFAULT,
};

/// The folder under each known folder.
const PRODUCT: &str = "Identity Agent";

/// `%ProgramData%\Identity Agent\config.toml`.
pub(super) fn system_config_path() -> PathBuf {
    known_folder(&FOLDERID_ProgramData)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join(PRODUCT)
        .join("config.toml")
}

/// `%APPDATA%\Identity Agent\config.toml`.
pub(super) fn user_config_path() -> Option<PathBuf> {
    known_folder(&FOLDERID_RoamingAppData).map(|dir| dir.join(PRODUCT).join("config.toml"))
}

/// `%LOCALAPPDATA%\Identity Agent`, else (no profile at all) a directory per user under the
/// temporary directory.
pub(super) fn default_state_dir() -> PathBuf {
    known_folder(&FOLDERID_LocalAppData)
        .map(|dir| dir.join(PRODUCT))
        .unwrap_or_else(|| {
            let user = std::env::var("USERNAME").unwrap_or_else(|_| "user".to_owned());
            std::env::temp_dir().join(format!("identity-agent-state-{user}"))
        })
}

/// A known folder's path, from the shell (not the environment, which a parent may have changed).
fn known_folder(id: &GUID) -> Option<PathBuf> {
    let mut path = std::ptr::null_mut();
    // SAFETY: on success `path` is a CoTaskMemAlloc'd NUL-terminated wide string; it is freed
    // below on success and failure alike, as the documentation asks.
    let hr = unsafe {
        SHGetKnownFolderPath(id, KF_FLAG_DEFAULT as u32, std::ptr::null_mut(), &mut path)
    };
    let folder = (hr >= 0 && !path.is_null()).then(|| {
        // SAFETY: a NUL-terminated wide string from the shell.
        PathBuf::from(unsafe { U16CStr::from_ptr_str(path) }.to_os_string())
    });
    // SAFETY: freeing what SHGetKnownFolderPath allocated (null is allowed).
    unsafe { CoTaskMemFree(path.cast()) };
    folder.filter(|dir| dir.is_absolute())
}
