//! Hardening on Windows: no crash dump of the agent (Windows Error Reporting excludes it, and
//! no fault dialog waits on a crash), and its process object's DACL admits the user only to
//! see, wait on and end it — not to read or write its memory, nor to duplicate its handles —
//! with full access for SYSTEM alone.
//!
//! The user owns the process and could grant itself more again; the DACL stops another
//! program of the user from simply opening the agent's memory, as `PR_SET_DUMPABLE` does on
//! Linux.

use crate::windows_acl::{check, wide, Dacl};
use std::io;
use std::ptr;
use windows_sys::Win32::Security::Authorization::{SetSecurityInfo, SE_KERNEL_OBJECT};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
};
use windows_sys::Win32::System::Diagnostics::Debug::{
    SetErrorMode, SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX, SEM_NOOPENFILEERRORBOX,
};
use windows_sys::Win32::System::ErrorReporting::WerAddExcludedApplication;
use windows_sys::Win32::System::Threading::GetCurrentProcess;

/// The user: terminate (0x1), query limited information (0x1000), synchronize (0x100000).
/// SYSTEM: everything.
const PROCESS_DACL: &str = "D:P(A;;0x101001;;;{user})(A;;GA;;;SY)";

/// Excludes the agent from crash reports and narrows its process DACL.
pub(super) fn harden_process() -> io::Result<()> {
    // SAFETY: SetErrorMode takes flags and returns the previous ones.
    unsafe {
        SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX | SEM_NOOPENFILEERRORBOX)
    };
    let exe = wide(std::env::current_exe()?.as_os_str())?;
    // SAFETY: a NUL-terminated path; FALSE: for this user only (no administrator needed).
    let hr = unsafe { WerAddExcludedApplication(exe.as_ptr(), 0) };
    if hr < 0 {
        return Err(io::Error::other(format!(
            "cannot exclude the agent from Windows Error Reporting (HRESULT {hr:#010x})"
        )));
    }
    let dacl = Dacl::for_user(PROCESS_DACL)?;
    // SAFETY: the pseudo-handle of this process and a DACL that outlives the call.
    check(unsafe {
        SetSecurityInfo(
            GetCurrentProcess(),
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            dacl.as_ptr(),
            ptr::null(),
        )
    })
}
