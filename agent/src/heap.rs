//! The allocator's tuning for a small resident daemon: two malloc arenas for all threads, and
//! the heap a busy spell grew given back once the agent is quiet again.

/// One malloc arena per thread is glibc's default: for a small resident daemon whose threads
/// mostly sleep that is megabytes of RSS for nothing, so two arenas serve all threads. Called
/// before any thread exists.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the free pages of the heap back to the system. Called when a client leaves and few
/// are left (the tray and a clinical application stay connected all day), so the buffers of a
/// hundred clients do not stay resident in an agent that then sits idle for hours.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
