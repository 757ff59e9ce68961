//! Starting in the background: the starting process waits until the socket is ready, so no
//! client races it; under systemd, `READY=1` is sent instead.

/// Tells whoever started the agent that it is ready.
#[derive(Debug)]
pub struct Readiness {}

/// In the background: forks; the parent waits until the child calls [`Readiness::ready`] (or
/// exits) and exits with a matching status. In the foreground: returns at once. Call before
/// any thread is started.
pub fn start(foreground: bool) -> anyhow::Result<Readiness> {
    let _ = foreground;
    unimplemented!("hygiene helper")
}

impl Readiness {
    /// The socket is bound: release the starting process, notify systemd.
    pub fn ready(self) {
        unimplemented!("hygiene helper")
    }
}
