//! Private files on Windows: the directory's DACL is replaced by a protected one (no ACEs
//! inherited from above) that gives full control to the user and to SYSTEM, and that files and
//! directories created in it inherit — the Unix 0700/0600 promise.

use crate::windows_acl::{check, Dacl};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use windows_sys::Win32::Security::Authorization::{SetNamedSecurityInfoW, SE_FILE_OBJECT};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
};

/// P: protected; OICI: inherited by the files and directories below; FA: full access.
const PRIVATE_DIRECTORY: &str = "D:P(A;OICI;FA;;;{user})(A;OICI;FA;;;SY)";

pub(super) fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let dacl = Dacl::for_user(PRIVATE_DIRECTORY)?;
    let path: Vec<u16> = dir.as_os_str().encode_wide().chain([0]).collect();
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

pub(super) fn options() -> OpenOptions {
    OpenOptions::new()
}

pub(super) fn narrow(_file: &File) -> io::Result<()> {
    Ok(())
}
