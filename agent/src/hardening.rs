//! Process hardening at start: no core dumps, no ptrace by other processes of the user.

/// Disables core dumps and makes the process non-dumpable (which also refuses ptrace).
pub fn harden_process() -> std::io::Result<()> {
    unimplemented!("hygiene helper")
}
