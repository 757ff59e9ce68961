//! Private files on Windows: the directory's DACL is replaced by a protected one (no ACEs
//! inherited from above) that gives full control to the user and to SYSTEM, and that files and
//! directories created in it inherit; each file is given the same, its own, before anything is
//! written to it — the Unix 0700/0600 promise.

use crate::windows_acl::{check, wide, Dacl};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::ptr;
use windows_sys::Win32::Security::Authorization::{SetNamedSecurityInfoW, SE_FILE_OBJECT};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
};
use windows_sys::Win32::Storage::FileSystem::{
    MoveFileExW, MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH,
};

/// P: protected; OICI: inherited by the files and directories below; FA: full access.
const PRIVATE_DIRECTORY: &str = "D:P(A;OICI;FA;;;{user})(A;OICI;FA;;;SY)";
/// A file's own: protected, full access for the user and SYSTEM.
const PRIVATE_FILE: &str = "D:P(A;;FA;;;{user})(A;;FA;;;SY)";

pub(super) fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_dacl(dir, PRIVATE_DIRECTORY)
}

pub(super) fn options() -> OpenOptions {
    OpenOptions::new()
}

pub(super) fn narrow(_file: &File, path: &Path) -> io::Result<()> {
    set_dacl(path, PRIVATE_FILE)
}

pub(super) fn replace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (wide(from.as_os_str())?, wide(to.as_os_str())?);
    // SAFETY: two NUL-terminated paths.
    match unsafe {
        MoveFileExW(
            from.as_ptr(),
            to.as_ptr(),
            MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
        )
    } {
        0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// NTFS journals the removal itself; there is no directory to sync on Windows.
pub(super) fn remove(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)
}

/// Replaces `path`'s DACL with `sddl`'s (see [`Dacl::for_user`]), protected from inheritance.
fn set_dacl(path: &Path, sddl: &str) -> io::Result<()> {
    let dacl = Dacl::for_user(sddl)?;
    let path = wide(path.as_os_str())?;
    // SAFETY: a NUL-terminated path and a DACL that outlives the call.
    check(unsafe {
        SetNamedSecurityInfoW(
            path.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            dacl.as_ptr(),
            ptr::null(),
        )
    })
}

/// Wine keeps no ACL set on a file (it answers with one made from the Unix mode): there the
/// check is skipped, saying so; on Windows it holds.
#[cfg(test)]
pub(super) fn assert_private(path: &Path) {
    if running_under_wine() {
        eprintln!(
            "not checked under Wine, which keeps no file ACLs: {}",
            path.display()
        );
        return;
    }
    let user = agent_ipc::endpoint::current_user_sid().unwrap();
    let sddl = agent_ipc::endpoint::dacl_sddl(path).unwrap();
    let aces: Vec<&str> = sddl
        .split_once('(')
        .map(|(_, aces)| aces.trim_end_matches(')').split(")(").collect())
        .unwrap_or_default();
    let trustees: Vec<&str> = aces
        .iter()
        .filter_map(|ace| ace.rsplit(';').next())
        .collect();
    assert!(
        trustees.contains(&user.as_str()),
        "{}: {sddl}",
        path.display()
    );
    assert!(
        trustees.iter().all(|t| *t == user || *t == "SY"),
        "{} lets others in: {sddl}",
        path.display()
    );
    assert!(aces.iter().all(|ace| ace.starts_with("A;")), "{sddl}");
}

/// Whether this is Wine (its ntdll exports `wine_get_version`), not Windows.
#[cfg(test)]
fn running_under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
    // SAFETY: NUL-terminated names; ntdll is loaded in every process and never unloaded.
    unsafe {
        let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
        !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
    }
}
