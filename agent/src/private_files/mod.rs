//! Files only the user may read: the state directory and what the agent keeps in it (the
//! audit log, the operation journal, the background log). On Unix the directory is 0700 and
//! each file 0600; on Windows the directory gets a protected ACL that admits only the user
//! and SYSTEM and that files created in it inherit.
//!
//! The platform's part is in the file beside this one (`unix.rs`, `windows.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

/// Creates `dir` and its missing parents; `dir` itself is made private to the user (an
/// existing one keeps what it has on Unix, and is narrowed to the user on Windows).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    platform::create_dir(dir)
}

/// Options that create a file private to the user (0600 on Unix; on Windows the file inherits
/// its directory's ACL, see [`create_dir`]).
pub fn options() -> OpenOptions {
    platform::options()
}

/// Narrows an existing file that group or others could read back to the user (Unix; on
/// Windows the directory's inherited ACL already says who may).
pub fn narrow(file: &File) -> io::Result<()> {
    platform::narrow(file)
}
