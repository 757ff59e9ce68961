//! Process hardening at start: no dump of the agent's memory reaches a disk, and no other
//! process of the user may read it.
//!
//! The platform's part is in the file beside this one: `unix.rs` (core dumps and ptrace). A
//! Windows build gets a `windows.rs` with the same function (excluded from crash dumps, the
//! process's handles denied to others; `docs/WINDOWS.md`).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;

/// Hardens this process, before any secret is in its memory.
pub fn harden_process() -> std::io::Result<()> {
    platform::harden_process()
}
