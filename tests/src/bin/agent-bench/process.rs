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

/// The resident memory of a process now, in MiB: all of it, its anonymous part, and the
/// file-backed part by file.
pub struct Resident {
    /// `VmRSS`.
    pub total: f64,
    /// `RssAnon`.
    pub anonymous: f64,
    /// `Pss` (`/proc/PID/smaps_rollup`): each resident page divided by the processes that map
    /// it, so libc's pages, shared by every process, count for almost nothing — the memory the
    /// process costs the machine.
    pub proportional: f64,
    /// The resident pages of each mapped file (the program, each shared library), from
    /// `/proc/PID/smaps`, largest first.
    pub files: Vec<(String, f64)>,
}

impl Resident {
    /// Reads it for `pid`.
    pub fn read(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
        Ok(Self {
            total: mib(&status, "VmRSS:"),
            anonymous: mib(&status, "RssAnon:"),
            proportional: mib(&rollup, "Pss:"),
            files: files(&std::fs::read_to_string(format!("/proc/{pid}/smaps"))?),
        })
    }

    /// The resident pages of the file named `name` (its last path component), in MiB.
    pub fn of_file(&self, name: &str) -> f64 {
        self.files
            .iter()
            .filter(|(path, _)| path.rsplit('/').next() == Some(name))
            .map(|(_, mib)| mib)
            .sum()
    }
}

/// The field `name` (`VmRSS:`, a size in kB) of a `/proc` file's `text`, in MiB (0 if absent).
fn mib(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The file-backed `Rss` of each file in `smaps`, in MiB, largest first. A mapping's header
/// line is `start-end perms offset dev inode path`; the lines after it, up to the next header,
/// are its fields.
fn files(smaps: &str) -> Vec<(String, f64)> {
    let mut by_file: BTreeMap<String, f64> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            current = fields
                .get(5)
                .filter(|path| path.starts_with('/'))
                .map(|path| (*path).to_owned());
        } else if let (Some(path), ["Rss:", kib, "kB"]) = (&current, fields.as_slice()) {
            *by_file.entry(path.clone()).or_default() += kib.parse::<f64>().unwrap_or(0.0) / 1024.0;
        }
    }
    let mut files: Vec<(String, f64)> = by_file.into_iter().filter(|(_, mib)| *mib > 0.0).collect();
    files.sort_by(|a, b| b.1.total_cmp(&a.1));
    files
}

#[cfg(test)]
mod tests {
    #[test]
    fn smaps_is_summed_by_file() {
        let smaps = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 123 /usr/bin/identity-agent
Size:               1024 kB
Rss:                 512 kB
55d0c0100000-55d0c0300000 r-xp 00100000 08:01 123 /usr/bin/identity-agent
Rss:                1536 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Rss:                 900 kB
7f1000000000-7f1000200000 r-xp 00000000 08:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1024 kB
";
        let files = super::files(smaps);
        assert_eq!(
            files,
            [
                ("/usr/bin/identity-agent".to_owned(), 2.0),
                ("/usr/lib/x86_64-linux-gnu/libc.so.6".to_owned(), 1.0)
            ]
        );
    }
}
