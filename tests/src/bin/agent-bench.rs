//! The agent's performance targets (`docs/ARCHITECTURE.md`), measured on the real stack and printed:
//!
//! - card pulled → `session_ended` at a subscriber, after a bare PC/SC watcher sees the removal;
//! - insertion → card identified with expiry, after a bare watcher sees the insertion;
//! - insertion + PIN → signed in (local CMS), after a bare watcher sees the insertion;
//! - `status` with 100 concurrent clients (p50, p99, throughput), each beside the same load on a
//!   floor: a minimal Unix-socket server answering the agent's own bytes, in the same run;
//! - the idle agent over 30 s (RSS, wake-ups per second);
//! - start to socket ready (systemd readiness, `READY=1`).
//!
//! pcscd polls the virtual reader about every 400 ms, so card timings start when a bare
//! `SCardGetStatusChange` watcher in this process sees the event: what is left is the agent's
//! own share. Run: `cargo run --release -p tests --bin agent-bench`.

#[path = "agent-bench/floor.rs"]
mod floor;

use agent_ipc::{Client, Event};
use anyhow::{bail, Context as _, Result};
use cardsim::{AtrProfile, Faults};
use clap::Parser;
use cms::issuance::InitialValidity;
use pcsc::{Context, ReaderState, Scope, State};
use std::ffi::CString;
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbed::stack::{workspace_binary, AgentOptions, PinentrySetup, Stack};

#[derive(Parser)]
#[command(about = "Measures the identity agent against its targets")]
struct Args {
    /// Insert/remove cycles for the card timings.
    #[arg(long, default_value_t = 10)]
    cycles: usize,
    /// Concurrent clients for the status measure.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds of status load.
    #[arg(long, default_value_t = 5)]
    status_seconds: u64,
    /// Seconds the idle agent is watched.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Agent starts for the start-up measure.
    #[arg(long, default_value_t = 10)]
    starts: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (mut stack, card) = Stack::with_nurse_card(
        "4082A001132F2A01".parse()?,
        InitialValidity::Days(400),
        AtrProfile::NhsCis,
    )?;
    let options = AgentOptions {
        log_filter: "info".into(),
        pinentry: Some(PinentrySetup {
            program: workspace_binary("ia-pinentry")?,
            args: vec!["--pin".into(), card.pin.clone()],
            tty: None,
        }),
        ..AgentOptions::default()
    };
    println!("identity agent benchmark (targets from docs/ARCHITECTURE.md)");
    println!("  machine load before: {}", load_average());

    startup(&stack, &options, args.starts)?;
    stack.start_agent(&options)?;
    cards(&stack, &card.file, args.cycles)?;
    status_load(&stack, args.clients, args.status_seconds)?;
    idle(&stack, args.idle_seconds)?;
    stack.stop_agent()?;
    println!("  machine load after: {}", load_average());
    Ok(())
}

/// The load averages over 1, 5 and 15 minutes, and the CPUs: the figures above are read with it.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let averages: Vec<&str> = load.split_whitespace().take(3).collect();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{} on {cpus} CPUs", averages.join(" "))
}

/// Start to socket ready, as systemd sees it: spawn → `READY=1` on `NOTIFY_SOCKET`.
fn startup(stack: &Stack, options: &AgentOptions, starts: usize) -> Result<()> {
    let mut times = Vec::new();
    for _ in 0..starts {
        let notify_path = stack.bed.dir().join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(Duration::from_secs(10)))?;
        let (mut command, _, _) = stack.agent_command(options)?;
        let started = Instant::now();
        let mut child = command.env("NOTIFY_SOCKET", &notify_path).spawn()?;
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).context("no READY=1 from the agent")?;
        let elapsed = started.elapsed();
        if !String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            bail!(
                "unexpected notification {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
        times.push(elapsed);
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait()?;
    }
    report("start → socket ready (READY=1)", &mut times, "≤ 100 ms");
    Ok(())
}

/// Insert/remove cycles with a bare PC/SC watcher beside the agent.
fn cards(stack: &Stack, file: &std::path::Path, cycles: usize) -> Result<()> {
    let reader = stack.bed.reader_name(0);
    let (bare_tx, bare_rx) = mpsc::channel();
    let watched = reader.clone();
    std::thread::spawn(move || bare_watcher(&watched, bare_tx));
    // Let the bare watcher settle on the empty reader.
    let _ = bare_rx.recv_timeout(Duration::from_secs(2));

    let socket = stack.socket()?;
    let (event_tx, event_rx) = mpsc::channel();
    let mut events = stack
        .runtime
        .block_on(async { Client::connect(&socket).await?.subscribe().await })?;
    stack.runtime.spawn(async move {
        while let Ok(event) = events.next_event().await {
            if event_tx.send((Instant::now(), event)).is_err() {
                break;
            }
        }
    });

    let (mut identified, mut signed_in, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cycles {
        drain(&event_rx);
        let inserted = cardsim::insert(file, stack.bed.vpcd_addr(0), Faults::default())?;
        let seen = wait_bare(&bare_rx, true)?;
        let at = wait_event(&event_rx, |e| matches!(e, Event::CardInserted { .. }))?;
        identified.push(at.saturating_duration_since(seen));
        let at = wait_event(&event_rx, |e| {
            matches!(e, Event::SessionStarted { .. } | Event::LoginFailed { .. })
        })?;
        signed_in.push(at.saturating_duration_since(seen));

        inserted.remove()?;
        let gone = wait_bare(&bare_rx, false)?;
        let at = wait_event(&event_rx, |e| matches!(e, Event::SessionEnded { .. }))?;
        removed.push(at.saturating_duration_since(gone));
    }
    report(
        "card pulled → session_ended (after bare watcher)",
        &mut removed,
        "≤ 5 ms",
    );
    report(
        "insertion → identified with expiry (after bare watcher)",
        &mut identified,
        "≤ 50 ms",
    );
    report(
        "insertion + PIN → signed in (after bare watcher)",
        &mut signed_in,
        "≤ 250 ms",
    );
    Ok(())
}

/// A bare `SCardGetStatusChange` loop on `reader`, sending (when, present) on each change.
fn bare_watcher(reader: &str, changes: mpsc::Sender<(Instant, bool)>) {
    let Ok(ctx) = Context::establish(Scope::User) else {
        return;
    };
    let Ok(name) = CString::new(reader) else {
        return;
    };
    let mut states = vec![ReaderState::new(name, State::UNAWARE)];
    loop {
        if ctx.get_status_change(None, &mut states).is_err() {
            return;
        }
        let now = Instant::now();
        let state = states[0].event_state();
        states[0].sync_current_state();
        let present = state.contains(State::PRESENT);
        if changes.send((now, present)).is_err() {
            return;
        }
    }
}

fn wait_bare(changes: &mpsc::Receiver<(Instant, bool)>, present: bool) -> Result<Instant> {
    loop {
        let (at, now_present) = changes
            .recv_timeout(Duration::from_secs(10))
            .context("the bare watcher saw nothing")?;
        if now_present == present {
            return Ok(at);
        }
    }
}

fn wait_event(
    events: &mpsc::Receiver<(Instant, Event)>,
    wanted: impl Fn(&Event) -> bool,
) -> Result<Instant> {
    loop {
        let (at, event) = events
            .recv_timeout(Duration::from_secs(10))
            .context("the agent reported nothing")?;
        if wanted(&event) {
            return Ok(at);
        }
    }
}

fn drain<T>(rx: &mpsc::Receiver<T>) {
    while rx.try_recv().is_ok() {}
}

/// `status` from `clients` concurrent connections for `seconds`: first each client asks every
/// `pace` (the latency a client sees while the others are busy too), then as fast as each
/// can (the throughput); each against the agent, then against the floor, so the agent's cost
/// is read as a ratio to what any Unix-socket server costs on this machine right now.
fn status_load(stack: &Stack, clients: usize, seconds: u64) -> Result<()> {
    let socket = stack.socket()?;
    let floor = floor::Floor::start(floor::Replies::capture(&socket)?)?;
    let pace = Duration::from_millis(20);
    for (load, pace, target) in [
        (
            format!("every {} ms", pace.as_millis()),
            Some(pace),
            "p99 ≤ 1 ms",
        ),
        ("flat out".to_owned(), None, "(throughput)"),
    ] {
        let what = format!("status, {clients} clients each asking {load}");
        let mut agent = status_clients(stack, &socket, clients, seconds, pace)?;
        let mut bare = status_clients(stack, &floor.socket, clients, seconds, pace)?;
        let (agent_count, bare_count) = (agent.len(), bare.len());
        let agent = report(&what, &mut agent, target);
        let bare = report(&format!("{what}, floor"), &mut bare, "");
        println!(
            "    agent/floor: p50 ×{:.2}, p99 ×{:.2}; throughput {:.0}/s vs {:.0}/s",
            agent.p50 / bare.p50,
            agent.p99 / bare.p99,
            agent_count as f64 / seconds as f64,
            bare_count as f64 / seconds as f64,
        );
    }
    Ok(())
}

fn status_clients(
    stack: &Stack,
    socket: &std::path::Path,
    clients: usize,
    seconds: u64,
    pace: Option<Duration>,
) -> Result<Vec<Duration>> {
    let socket = socket.to_path_buf();
    stack.runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for i in 0..clients {
            let socket = socket.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(&socket).await?;
                let mut times = Vec::new();
                if let Some(pace) = pace {
                    // Spread the clients over the period.
                    tokio::time::sleep(pace * i as u32 / clients as u32).await;
                }
                while tokio::time::Instant::now() < deadline {
                    let started = Instant::now();
                    client.status().await?;
                    times.push(started.elapsed());
                    if let Some(pace) = pace {
                        tokio::time::sleep(pace).await;
                    }
                }
                anyhow::Ok(times)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        Ok(all)
    })
}

/// RSS and wake-ups of the idle agent (every thread's context switches).
fn idle(stack: &Stack, seconds: u64) -> Result<()> {
    let pid = stack.agent()?.pid();
    let before = context_switches(pid)?;
    std::thread::sleep(Duration::from_secs(seconds));
    let after = context_switches(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.trim_start_matches(name).trim().to_owned())
            .unwrap_or_default()
    };
    println!(
        "  idle agent over {seconds} s: RSS {} (peak {}; anonymous {}, file {}), {:.2} wake-ups/s — targets ≤ 10 MiB, ≤ 1/s",
        field("VmRSS:"),
        field("VmHWM:"),
        field("RssAnon:"),
        field("RssFile:"),
        wake_ups(&before, &after) as f64 / seconds as f64
    );
    Ok(())
}

/// Context switches of each thread of `pid`, by thread id.
fn context_switches(pid: u32) -> Result<std::collections::HashMap<String, u64>> {
    let mut threads = std::collections::HashMap::new();
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
    Ok(threads)
}

/// Wake-ups between two snapshots: growth of the threads seen in both, plus every switch of
/// the threads that appeared.
fn wake_ups(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    after
        .iter()
        .map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// A measure's percentiles, in milliseconds.
struct Percentiles {
    p50: f64,
    p99: f64,
}

/// Prints a measure's count, p50, p99 and max (and its target, if any) and returns them.
fn report(what: &str, times: &mut [Duration], target: &str) -> Percentiles {
    times.sort();
    let pick = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let figures = Percentiles {
        p50: ms(pick(0.5)),
        p99: ms(pick(0.99)),
    };
    let target = if target.is_empty() {
        String::new()
    } else {
        format!(" — target {target}")
    };
    println!(
        "  {what}: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{target}",
        times.len(),
        figures.p50,
        figures.p99,
        ms(times.last().copied().unwrap_or_default()),
    );
    figures
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
