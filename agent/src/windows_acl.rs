//! Windows access control lists written in SDDL (and the wide strings Windows calls take), for
//! the places that narrow who may touch the agent's objects: its state directory
//! (`private_files`) and its process (`hardening`).

use agent_ipc::endpoint::current_user_sid;
use std::io;
use std::ptr;
use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{GetSecurityDescriptorDacl, ACL, PSECURITY_DESCRIPTOR};

/// A DACL, parsed from SDDL and freed on drop.
pub struct Dacl {
    descriptor: PSECURITY_DESCRIPTOR,
    acl: *mut ACL,
}

impl Dacl {
    /// The DACL `D:P(…)` of `sddl` with `{user}` replaced by this process's user SID.
    pub fn for_user(sddl: &str) -> io::Result<Dacl> {
        Dacl::parse(&sddl.replace("{user}", &current_user_sid()?))
    }

    /// The DACL of the security descriptor `sddl`.
    pub fn parse(sddl: &str) -> io::Result<Dacl> {
        let wide: Vec<u16> = sddl.encode_utf16().chain([0]).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: a NUL-terminated string in; on success `descriptor` is LocalAlloc'd and owned
        // by the returned value.
        if unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                ptr::null_mut(),
            )
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut dacl = Dacl {
            descriptor,
            acl: ptr::null_mut(),
        };
        let (mut present, mut defaulted) = (0, 0);
        // SAFETY: `descriptor` is valid; the ACL pointer points into it and lives as long.
        if unsafe {
            GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl.acl, &mut defaulted)
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        if present == 0 || dacl.acl.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the security descriptor {sddl} has no DACL"),
            ));
        }
        Ok(dacl)
    }

    /// The ACL, valid while `self` lives.
    pub fn as_ptr(&self) -> *const ACL {
        self.acl
    }
}

impl Drop for Dacl {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW, freed once.
        unsafe { LocalFree(self.descriptor.cast()) };
    }
}

/// `text` (a path, a pipe's name) as the NUL-terminated wide string Windows calls take; an
/// error for one with a NUL inside.
pub fn wide(text: &std::ffi::OsStr) -> io::Result<widestring::U16CString> {
    widestring::U16CString::from_os_str(text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// `status` (a Win32 error code) as an `io::Result`.
pub fn check(status: u32) -> io::Result<()> {
    match status {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code as i32)),
    }
}
