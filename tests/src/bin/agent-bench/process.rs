//! What a process costs at rest, read from `/proc`: its resident memory and its wake-ups (the
//! context switches of all its threads between two readings).

use anyhow::Result;
use std::collections::HashMap;

/// The context switches of each thread of a process at one moment, by thread id.
pub struct Switches(HashMap<String, u64>);

impl Switches {
    /// Reads them for `pid`.
    pub fn read(pid: u32) -> Result<Self> {
        let mut threads = HashMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?;
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue; // the thread ended meanwhile
            };
            let switches = status
                .lines()
                .filter_map(|line| {
                    line.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .sum();
            threads.insert(task.file_name().to_string_lossy().into_owned(), switches);
        }
        Ok(Self(threads))
    }

    /// Wake-ups since `before`: growth of the threads seen in both, plus every switch of the
    /// threads that appeared.
    pub fn since(&self, before: &Switches) -> u64 {
        self.0
            .iter()
            .map(|(tid, n)| n.saturating_sub(before.0.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

/// The resident memory of a process now, in MiB: all of it, and its anonymous part.
pub struct Resident {
    /// `VmRSS`.
    pub total: f64,
    /// `RssAnon`.
    pub anonymous: f64,
}

impl Resident {
    /// Reads it for `pid`.
    pub fn read(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let mib = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kib| kib / 1024.0)
        };
        Ok(Self {
            total: mib("VmRSS:"),
            anonymous: mib("RssAnon:"),
        })
    }
}
