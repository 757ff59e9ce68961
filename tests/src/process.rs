//! A running process as `/proc` shows it: the context switches of each of its threads.

use anyhow::{Context as _, Result};
use std::collections::BTreeMap;

/// One thread of a process at one moment: its name and its context switches so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadSwitches {
    /// The thread's name (`Name:`, as `comm` holds it).
    pub name: String,
    /// Its voluntary and nonvoluntary context switches together.
    pub switches: u64,
}

/// The context switches of each thread of process `pid` now, by thread id, read from
/// `/proc/<pid>/task/*/status`; a thread that ends while they are read is left out.
pub fn context_switches(pid: u32) -> Result<BTreeMap<u32, ThreadSwitches>> {
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let tid = task
            .file_name()
            .to_string_lossy()
            .parse()
            .with_context(|| format!("a thread id in /proc/{pid}/task"))?;
        let name = status
            .lines()
            .find_map(|line| line.strip_prefix("Name:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let switches = status
            .lines()
            .filter_map(|line| {
                line.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum();
        threads.insert(tid, ThreadSwitches { name, switches });
    }
    Ok(threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_is_read_with_its_name() {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ia-switches".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
                let _ = stop_rx.recv();
            })
            .unwrap();
        let tid = tid_rx.recv().unwrap();
        let threads = context_switches(std::process::id()).unwrap();
        drop(stop_tx);
        thread.join().unwrap();
        assert_eq!(threads[&tid].name, "ia-switches");
        assert!(threads[&tid].switches > 0, "it waited, so it switched");
    }
}
