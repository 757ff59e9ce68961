//! Who a process runs as, from its access token: the user's SID in string form
//! (`S-1-5-21-…`). The client names its pipe after its own; the agent compares a connecting
//! process's with its own.

use std::io;
use std::ptr;
use widestring::U16CStr;
use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{GetTokenInformation, TokenUser, TOKEN_QUERY, TOKEN_USER};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// The SID of the user this process runs as.
pub fn current_user_sid() -> io::Result<String> {
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing.
    Token::of_process(unsafe { GetCurrentProcess() })?.user_sid()
}

/// The SID of the user the process `pid` runs as (a pipe client's, say); an error when the
/// process is gone or its token cannot be read.
pub fn process_user_sid(pid: u32) -> io::Result<String> {
    // SAFETY: OpenProcess returns an owned handle or null.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    let process = Handle(process);
    Token::of_process(process.0)?.user_sid()
}

/// A handle this module owns, closed on drop.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// A process's token, opened for queries.
struct Token(Handle);

impl Token {
    fn of_process(process: HANDLE) -> io::Result<Self> {
        let mut token = ptr::null_mut();
        // SAFETY: `process` is a valid process handle; `token` receives an owned handle.
        if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(Handle(token)))
    }

    /// The token's user, as a string SID.
    fn user_sid(&self) -> io::Result<String> {
        let token = self.0 .0;
        // TOKEN_USER is followed by the SID it points to; ask for the size first.
        let mut len = 0u32;
        // SAFETY: a size query (null buffer, length 0) on a token opened with TOKEN_QUERY.
        unsafe { GetTokenInformation(token, TokenUser, ptr::null_mut(), 0, &mut len) };
        if len == 0 {
            return Err(io::Error::last_os_error());
        }
        // u64 words keep the buffer aligned for TOKEN_USER.
        let mut buffer = vec![0u64; (len as usize).div_ceil(8)];
        // SAFETY: the buffer holds `len` bytes, as the query above asked for.
        if unsafe {
            GetTokenInformation(token, TokenUser, buffer.as_mut_ptr().cast(), len, &mut len)
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: GetTokenInformation filled the buffer with a TOKEN_USER (aligned, see above).
        let user = unsafe { &*buffer.as_ptr().cast::<TOKEN_USER>() };
        let mut text = ptr::null_mut();
        // SAFETY: the SID lives in `buffer`; on success `text` is a LocalAlloc'd wide string.
        if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `text` is a NUL-terminated wide string, freed with LocalFree once copied.
        let sid = unsafe {
            let sid = U16CStr::from_ptr_str(text).to_string_lossy();
            LocalFree(text.cast());
            sid
        };
        Ok(sid)
    }
}
