//! `--windows`: the Windows agent under Wine beside the Linux agent, on the same private pcscd,
//! card and CMS (issue 15's figures). Each run times, for each agent in turn: insert/remove
//! cycles after the bare watcher saw each event; `status` round trips one after another (over
//! the Unix socket from this process; over the named pipe by `line-client` inside Wine, which a
//! Linux process cannot open); and the agent's RSS at rest. Wine's figures are not Windows's:
//! its winscard goes through pcsc-lite, its pipes through wineserver, and the Windows agent's RSS
//! includes Wine's own DLLs.

use crate::cards::{drain, wait_bare, Change, Cycles};
use crate::process::Resident;
use crate::runs::{RunFigures, Stat, Unit};
use agent_ipc::Client;
use anyhow::{bail, Context as _, Result};
use cardsim::Faults;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbed::stack::{AgentOptions, Stack};
use testbed::wine::{WindowsAgent, WineSession};

/// How long one step of the Windows agent may take.
const STEP: Duration = Duration::from_secs(30);
/// What the rows of the Windows agent end with.
const UNDER_WINE: &str = ", Windows agent under Wine";

/// What each run does: the agents, how they are configured, and the self.
pub struct WindowsRuns {
    /// The Windows agent's programs.
    pub build: WindowsAgent,
    /// Both agents' configuration.
    pub options: AgentOptions,
    /// The Windows `ia-pinentry.exe`'s arguments.
    pub pinentry_args: Vec<String>,
    /// Insert/remove cycles per agent.
    pub cycles: usize,
    /// `status` round trips per agent.
    pub requests: usize,
    /// Seconds each agent rests before its RSS is read.
    pub rest_seconds: u64,
}

impl WindowsRuns {
    /// One run: the Linux agent, then the Windows agent, on `stack`'s pcscd with the card in
    /// `file`.
    pub fn measure(
        &self,
        stack: &mut Stack,
        file: &Path,
        bare: &mpsc::Receiver<Change>,
        figures: &mut RunFigures,
    ) -> Result<()> {
        let options = &self.options;
        stack.start_agent(options)?;
        Cycles::of(stack, file, bare, self.cycles, &[])?.record(figures);
        let socket = stack.socket()?;
        let times = stack.runtime.block_on(async {
            let mut client = Client::connect(&socket).await?;
            let mut times = Vec::with_capacity(self.requests);
            for _ in 0..self.requests {
                let started = Instant::now();
                client.status().await?;
                times.push(started.elapsed());
            }
            anyhow::Ok(times)
        })?;
        add_status(figures, "", &times);
        std::thread::sleep(Duration::from_secs(self.rest_seconds));
        add_rest(figures, "", &Resident::read(stack.agent()?.pid())?);
        stack.stop_agent()?;

        let mut session = self
            .build
            .start(stack, options, self.pinentry_args.clone())?;
        session.expect(STEP, |line| line == "ready")?;
        let cycles = windows_cycles(stack, &mut session, file, bare, self.cycles)?;
        for (measure, times) in [
            ("card pulled → `session_ended`", &cycles.removed),
            ("insertion → identified with expiry", &cycles.identified),
            ("insertion + PIN → signed in", &cycles.signed_in),
        ] {
            figures.add_times(
                &format!("{measure}{UNDER_WINE}"),
                "",
                times,
                &[Stat::P50, Stat::Max],
            );
        }
        session.send(&format!("time {} {{\"method\":\"status\"}}", self.requests))?;
        let line = session.expect(STEP, |line| line.starts_with("times "))?;
        let times = line
            .split_whitespace()
            .skip(1)
            .map(|micros| micros.parse().map(Duration::from_micros))
            .collect::<Result<Vec<_>, _>>()
            .context("line-client's times")?;
        add_status(figures, UNDER_WINE, &times);
        std::thread::sleep(Duration::from_secs(self.rest_seconds));
        add_rest(
            figures,
            UNDER_WINE,
            &Resident::read(wine_process("identity-agent.exe")?)?,
        );
        Ok(())
    }
}

/// [`Cycles::of`] for the Windows agent, whose events arrive as `line-client`'s lines.
fn windows_cycles(
    stack: &Stack,
    session: &mut WineSession,
    file: &Path,
    bare: &mpsc::Receiver<Change>,
    cycles: usize,
) -> Result<Cycles> {
    let mut times = Cycles {
        removed: Vec::new(),
        identified: Vec::new(),
        signed_in: Vec::new(),
        peers: Vec::new(),
    };
    let event = |name: &'static str| {
        let prefix = format!("event {{\"event\":\"{name}\"");
        move |line: &str| line.starts_with(&prefix)
    };
    for _ in 0..cycles {
        drain(bare);
        let inserted = cardsim::insert(file, stack.bed.vpcd_addr(0), Faults::default())?;
        let seen = wait_bare(bare, true)?;
        let (at, _) = session.expect_timed(STEP, event("card_inserted"))?;
        times.identified.push(at.saturating_duration_since(seen));
        let (at, _) = session.expect_timed(STEP, event("session_started"))?;
        times.signed_in.push(at.saturating_duration_since(seen));
        inserted.remove()?;
        let gone = wait_bare(bare, false)?;
        let (at, _) = session.expect_timed(STEP, event("session_ended"))?;
        times.removed.push(at.saturating_duration_since(gone));
    }
    Ok(times)
}

/// `status` one after another, p50 and p99.
fn add_status(figures: &mut RunFigures, suffix: &str, times: &[Duration]) {
    figures.add_times(
        &format!("`status` one after another{suffix}"),
        "",
        times,
        &[Stat::P50, Stat::P99],
    );
}

/// RSS at rest after the cycles, all of it and its anonymous part.
fn add_rest(figures: &mut RunFigures, suffix: &str, resident: &Resident) {
    let agent = if suffix.is_empty() {
        ", Linux agent"
    } else {
        suffix
    };
    figures.add(
        format!("agent at rest, RSS{agent}"),
        "",
        resident.total,
        Unit::MiB,
    );
    figures.add(
        format!("agent at rest, RSS anonymous{agent}"),
        "",
        resident.anonymous,
        Unit::MiB,
    );
}

/// The process whose program (its first argument, as Wine sets it) ends with `program`.
fn wine_process(program: &str) -> Result<u32> {
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        if String::from_utf8_lossy(first).ends_with(program) {
            return Ok(pid);
        }
    }
    bail!("no process of {program} under Wine")
}
