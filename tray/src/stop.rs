//! What asks the tray to stop besides Quit in its menu: SIGTERM and SIGINT on Unix; Ctrl+C,
//! Ctrl+Break and the console closing on Windows (a logoff ends the process with the session;
//! the tray keeps nothing that needs saving).

use anyhow::Result;

/// The platform's stop requests, read in the app's loop.
pub struct StopRequests {
    #[cfg(unix)]
    signals: [tokio::signal::unix::Signal; 2],
    #[cfg(windows)]
    interrupt: tokio::signal::windows::CtrlC,
    #[cfg(windows)]
    interrupt_break: tokio::signal::windows::CtrlBreak,
    #[cfg(windows)]
    close: tokio::signal::windows::CtrlClose,
}

impl StopRequests {
    /// Starts listening (inside the runtime).
    #[cfg(unix)]
    pub fn new() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            signals: [
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ],
        })
    }

    /// Starts listening (inside the runtime).
    #[cfg(windows)]
    pub fn new() -> Result<Self> {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
        Ok(Self {
            interrupt: ctrl_c()?,
            interrupt_break: ctrl_break()?,
            close: ctrl_close()?,
        })
    }

    /// Waits for the next request.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            let [terminate, interrupt] = &mut self.signals;
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        #[cfg(windows)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.interrupt_break.recv() => {}
            _ = self.close.recv() => {}
        }
    }
}
