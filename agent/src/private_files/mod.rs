//! Files only the user may read: the state directory and what the agent keeps in it (the
//! audit log, the operation journal, the background log), and replacing one durably. On Unix
//! the directory is 0700 and each file 0600; on Windows each gets a protected ACL that admits
//! only the user and SYSTEM (the directory's inherited by what is created in it, and set on
//! each file besides: Wine, for one, does not apply inheritance).
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

/// Options that create a file private to the user on Unix (0600). On Windows the file
/// inherits its directory's ACL; call [`narrow`] before writing anything to it.
pub fn options() -> OpenOptions {
    platform::options()
}

/// Narrows `file`, open at `path`, to the user: on Unix an existing file that group or others
/// could read (files keep their mode on open); on Windows, any file (its own protected ACL).
pub fn narrow(file: &File, path: &Path) -> io::Result<()> {
    platform::narrow(file, path)
}

/// Opens `path` for appending, created private to the user, and narrowed (see [`narrow`]).
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = options().append(true).create(true).open(path)?;
    narrow(&file, path)?;
    Ok(file)
}

/// Moves `from` over `to` atomically, and durably before returning: on Unix a rename, then the
/// directory synced; on Windows a move written through to the disk.
pub fn replace(from: &Path, to: &Path) -> io::Result<()> {
    platform::replace(from, to)
}

/// Removes the file `path`, durably before returning (on Unix its directory is synced).
pub fn remove(path: &Path) -> io::Result<()> {
    platform::remove(path)
}

/// Panics unless `path` (a file or a directory this module made) is private to the user: for
/// the tests, on each platform.
#[cfg(test)]
pub(crate) fn assert_private(path: &Path) {
    platform::assert_private(path)
}
