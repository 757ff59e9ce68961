//! Opens the portal in the user's browser, without waiting for it: `xdg-open` on a Unix desktop,
//! the shell's `open` verb on Windows. Only web addresses are opened, never a file or a program.

/// Opens `url` (an `https://` or `http://` address) in the browser; what fails is logged.
pub fn open(url: &str) {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        tracing::warn!(
            url,
            "the portal address is not a web address; not opening it"
        );
        return;
    }
    open_in_browser(url);
}

#[cfg(unix)]
fn open_in_browser(url: &str) {
    match tokio::process::Command::new("xdg-open").arg(url).spawn() {
        Ok(mut child) => {
            tokio::task::spawn_local(async move {
                let _ = child.wait().await;
            });
        }
        Err(e) => tracing::warn!("cannot open the portal with xdg-open: {e}"),
    }
}

#[cfg(windows)]
fn open_in_browser(url: &str) {
    use widestring::{u16cstr, U16CString};
    use windows_sys::Win32::UI::Shell::ShellExecuteW;
    use windows_sys::Win32::UI::WindowsAndMessaging::SW_SHOWNORMAL;
    let Ok(wide) = U16CString::from_str(url) else {
        tracing::warn!("the portal address holds a NUL; not opening it");
        return;
    };
    // SAFETY: both strings are NUL-terminated and live across the call.
    let result = unsafe {
        ShellExecuteW(
            std::ptr::null_mut(),
            u16cstr!("open").as_ptr(),
            wide.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            SW_SHOWNORMAL,
        )
    };
    // ShellExecuteW's result is above 32 when it worked.
    if result as usize <= 32 {
        tracing::warn!(
            code = result as usize,
            "cannot open the portal in the browser"
        );
    }
}
