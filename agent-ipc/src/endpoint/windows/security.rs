//! Reading back who may open an object: its DACL in SDDL, for the checks that the agent's pipe
//! and files admit the user alone.

use std::io;
use std::path::Path;
use std::ptr;
use widestring::{U16CStr, U16CString};
use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, GetNamedSecurityInfoW, SDDL_REVISION_1,
    SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR};

/// The DACL of the object named `path` (a file, a directory, a pipe — which it opens as a
/// client), in SDDL (`D:PAI(A;OICI;FA;;;S-1-5-…)…`), as Windows reports it.
pub fn dacl_sddl(path: &Path) -> io::Result<String> {
    let wide = U16CString::from_os_str(path).map_err(io::Error::other)?;
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: a NUL-terminated path; on success `descriptor` is LocalAlloc'd, freed below.
    let status = unsafe {
        GetNamedSecurityInfoW(
            wide.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    let mut text = ptr::null_mut();
    // SAFETY: a valid descriptor; on success `text` is a LocalAlloc'd wide string.
    let converted = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            ptr::null_mut(),
        )
    };
    let result = match converted {
        0 => Err(io::Error::last_os_error()),
        // SAFETY: a NUL-terminated wide string from Windows.
        _ => Ok(unsafe { U16CStr::from_ptr_str(text) }.to_string_lossy()),
    };
    // SAFETY: both were LocalAlloc'd by the calls above (null is allowed).
    unsafe {
        LocalFree(text.cast());
        LocalFree(descriptor);
    }
    result
}
