//! A busy machine for the card timings: programs that keep every CPU running at the agent's
//! own priority while the cycles run, so each wake-up on the removal path has to take a CPU
//! from one of them.

use anyhow::{Context as _, Result};
use std::process::{Child, Command, Stdio};

/// `count` CPU-bound programs (`yes` into `/dev/null`, at the default priority); stopped when
/// dropped.
pub struct Busy(Vec<Child>);

impl Busy {
    /// Starts them.
    pub fn start(count: usize) -> Result<Self> {
        let mut busy = Self(Vec::with_capacity(count));
        for _ in 0..count {
            let child = Command::new("yes")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start `yes` to keep the machine busy")?;
            busy.0.push(child);
        }
        Ok(busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
