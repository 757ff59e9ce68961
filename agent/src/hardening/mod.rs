//! Process hardening at start: no dump of the agent's memory reaches a disk, and no other
//! process of the user may read it.
//!
//! The platform's part is in the file beside this one: `unix.rs` (core dumps and ptrace),
//! `windows.rs` (crash reports and the process's DACL).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

/// Hardens this process, before any secret is in its memory.
pub fn harden_process() -> std::io::Result<()> {
    platform::harden_process()
}
