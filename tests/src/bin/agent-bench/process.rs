//! What a process costs at rest, read from `/proc`: its resident memory and its wake-ups (the
//! context switches of all its threads between two readings).

use anyhow::Result;
use std::collections::BTreeMap;
use testbed::process::{context_switches, ThreadSwitches};

/// The context switches of each thread of a process at one moment, by thread id.
pub struct Switches(BTreeMap<u32, ThreadSwitches>);

impl Switches {
    /// Reads them for `pid`.
    pub fn read(pid: u32) -> Result<Self> {
        Ok(Self(context_switches(pid)?))
    }

    /// Wake-ups since `before`: growth of the threads seen in both, plus every switch of the
    /// threads that appeared.
    pub fn since(&self, before: &Switches) -> u64 {
        self.0
            .iter()
            .map(|(tid, thread)| {
                let earlier = before.0.get(tid).map_or(0, |t| t.switches);
                thread.switches.saturating_sub(earlier)
            })
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
