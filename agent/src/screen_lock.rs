//! Locking the screen, for the `lock` removal action: `loginctl lock-session` on Unix (the
//! session's screen locker), `LockWorkStation` on Windows. A failure is logged; the session has
//! ended either way.

/// Asks the desktop to lock the screen; does not wait for it.
#[cfg(unix)]
pub fn lock() {
    match tokio::process::Command::new("loginctl")
        .arg("lock-session")
        .kill_on_drop(false)
        .spawn()
    {
        Ok(mut child) => {
            tokio::spawn(async move {
                if let Ok(status) = child.wait().await {
                    if !status.success() {
                        tracing::warn!("loginctl lock-session failed: {status}");
                    }
                }
            });
        }
        Err(e) => tracing::warn!("cannot lock the screen (loginctl lock-session): {e}"),
    }
}

/// Asks Windows to lock the workstation; it returns at once.
#[cfg(windows)]
pub fn lock() {
    // SAFETY: no arguments; it only asks the interactive desktop to lock.
    if unsafe { windows_sys::Win32::System::Shutdown::LockWorkStation() } == 0 {
        tracing::warn!(
            "cannot lock the screen (LockWorkStation): {}",
            std::io::Error::last_os_error()
        );
    }
}
