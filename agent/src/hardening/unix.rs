//! Hardening on Unix: no core dumps (`RLIMIT_CORE` 0), and not dumpable (`PR_SET_DUMPABLE` 0),
//! which also refuses ptrace by other processes of the user.

/// Disables core dumps and makes the process non-dumpable (which also refuses ptrace).
pub(super) fn harden_process() -> std::io::Result<()> {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the rlimit we pass; prctl(PR_SET_DUMPABLE) takes plain integers.
    // Both are single system calls, safe also between fork and exec.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening is checked in a forked child: the test harness itself stays dumpable.
    #[test]
    fn a_hardened_process_is_not_dumpable_and_has_no_core_limit() {
        // SAFETY: the child only makes system calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = unsafe {
                if harden_process().is_err() {
                    10
                } else if libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 {
                    11
                } else {
                    let mut limit = libc::rlimit {
                        rlim_cur: 1,
                        rlim_max: 1,
                    };
                    if libc::getrlimit(libc::RLIMIT_CORE, &mut limit) != 0 {
                        12
                    } else if limit.rlim_cur != 0 || limit.rlim_max != 0 {
                        13
                    } else {
                        0
                    }
                }
            };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "see the codes in the child");
    }
}
