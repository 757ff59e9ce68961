//! The agent's performance targets (`docs/ARCHITECTURE.md`), measured on the real stack and printed:
//!
//! - card pulled → `session_ended` at a subscriber, after a bare PC/SC watcher sees the removal;
//! - insertion → card identified with expiry, after a bare watcher sees the insertion;
//! - insertion + PIN → signed in (local CMS), after a bare watcher sees the insertion;
//! - `status` with 100 concurrent clients (p50, p99, throughput), each beside the same load on a
//!   floor: a minimal Unix-socket server answering the agent's own bytes, in the same run;
//! - the idle agent over 30 s (RSS, its file-backed part by file, PSS; wake-ups per second);
//! - start to socket ready (systemd readiness, `READY=1`);
//! - the web bridge, on an agent of its own with it on: `status` round trips over HTTP
//!   keep-alive and the WebSocket beside the socket's, and card pulled → `session_ended` over
//!   the WebSocket;
//! - with `--busy N`, card pulled → `session_ended` again while N CPU-bound programs run;
//! - with `--peers`, card pulled → the reaction of other programs that watch cards
//!   (`opensc-notify`, `card_eventmgr`), and their idle RSS and wake-ups.
//!
//! Each run starts a new agent and takes every measure; the figures are then summarised over
//! the runs (`--runs`, default 3) as min / median / max, ratios to the floor taken per run.
//!
//! pcscd polls the virtual reader about every 400 ms, so card timings start when a bare
//! `SCardGetStatusChange` watcher in this process sees the event: what is left is the agent's
//! own share. Run: `cargo run --release -p tests --bin agent-bench`.

#[path = "agent-bench/bridge.rs"]
mod bridge;
#[path = "agent-bench/busy.rs"]
mod busy;
#[path = "agent-bench/cards.rs"]
mod cards;
#[path = "agent-bench/floor.rs"]
mod floor;
#[path = "agent-bench/peers.rs"]
mod peers;
#[path = "agent-bench/process.rs"]
mod process;
#[path = "agent-bench/runs.rs"]
mod runs;
#[path = "agent-bench/windows.rs"]
mod windows;

use agent_ipc::Client;
use anyhow::{bail, Context as _, Result};
use cards::{bare_watcher, Cycles};
use cardsim::AtrProfile;
use clap::Parser;
use cms::issuance::InitialValidity;
use peers::{Peer, PeerKind};
use process::{Resident, Switches};
use runs::{RunFigures, Stat, Unit};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbed::stack::{workspace_binary, AgentOptions, PinentrySetup, Stack};
use testbed::wine::WindowsAgent;

#[derive(Parser)]
#[command(about = "Measures the identity agent against its targets")]
struct Args {
    /// Runs; each figure is summarised over them as min / median / max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also time the card watchers of other programs (opensc-notify, card_eventmgr) where
    /// installed, in cycles of their own with the agent running.
    #[arg(long)]
    peers: bool,
    /// Also time removals while this many CPU-bound programs (`yes`) keep the machine busy, in
    /// cycles of their own (0: not measured).
    #[arg(long, default_value_t = 0)]
    busy: usize,
    /// Insert/remove cycles for the card timings, per run.
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
    /// Agent starts for the start-up measure, per run.
    #[arg(long, default_value_t = 10)]
    starts: usize,
    /// `status` round trips per transport for the web bridge's figures, per run.
    #[arg(long, default_value_t = 2000)]
    bridge_requests: usize,
    /// Instead of the measures above: the Windows agent (release build) under Wine beside the
    /// Linux agent on the same pcscd — card cycles, `status` one after another (as many as
    /// `--bridge-requests`), RSS at rest after `--idle-seconds`.
    #[arg(long)]
    windows: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
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
    let (peers, absent): (Vec<PeerKind>, Vec<PeerKind>) = match args.peers {
        true => PeerKind::ALL.iter().partition(|kind| kind.installed()),
        false => (Vec::new(), Vec::new()),
    };
    println!("identity agent benchmark (targets from docs/ARCHITECTURE.md)");
    for kind in &absent {
        println!("  {}: not installed, skipped", kind.program());
    }

    let reader = stack.bed.reader_name(0);
    let (bare_tx, bare) = mpsc::channel();
    std::thread::spawn(move || bare_watcher(&reader, bare_tx));
    // Let the bare watcher settle on the empty reader.
    let _ = bare.recv_timeout(Duration::from_secs(2));

    let mut runs = Vec::new();
    if args.windows {
        let windows_runs = windows::WindowsRuns {
            build: WindowsAgent::build("release")?,
            options: options.clone(),
            pinentry_args: vec!["--pin".to_owned(), card.pin.clone()],
            cycles: args.cycles,
            requests: args.bridge_requests,
            rest_seconds: args.idle_seconds,
        };
        for n in 1..=args.runs {
            let mut figures = RunFigures::new();
            println!("run {n}/{} — load before: {}", args.runs, figures.load);
            windows_runs.measure(&mut stack, &card.file, &bare, &mut figures)?;
            println!("  {}", figures.brief());
            runs.push(figures);
        }
        runs::summarise(&runs, &[], &runs::load_average());
        return Ok(());
    }
    for n in 1..=args.runs {
        let mut figures = RunFigures::new();
        println!("run {n}/{} — load before: {}", args.runs, figures.load);
        startup(&stack, &options, args.starts, &mut figures)?;
        stack.start_agent(&options)?;
        let cycles = Cycles::of(&stack, &card.file, &bare, args.cycles, &[])?;
        cycles.record(&mut figures);
        if args.busy > 0 {
            let busy = busy::Busy::start(args.busy)?;
            let cycles = Cycles::of(&stack, &card.file, &bare, args.cycles, &[])?;
            drop(busy);
            cycles.record_busy(args.busy, &mut figures);
        }
        let running = peers
            .iter()
            .map(|&kind| Peer::start(kind, &stack.bed.client_env()))
            .collect::<Result<Vec<_>>>()?;
        if !running.is_empty() {
            Cycles::of(&stack, &card.file, &bare, args.cycles, &running)?
                .record_peers(&running, &mut figures);
        }
        status_load(&stack, args.clients, args.status_seconds, &mut figures)?;
        idle(&stack, &running, args.idle_seconds, &mut figures)?;
        drop(running);
        stack.stop_agent()?;
        bridge::measure(
            &mut stack,
            &options,
            &card.file,
            &bare,
            args.bridge_requests,
            args.cycles,
            &mut figures,
        )?;
        println!("  {}", figures.brief());
        runs.push(figures);
    }
    let absent: Vec<(&str, &str)> = absent
        .iter()
        .map(|kind| (kind.program(), kind.install_hint()))
        .collect();
    runs::summarise(&runs, &absent, &runs::load_average());
    Ok(())
}

/// Start to socket ready, as systemd sees it: spawn → `READY=1` on `NOTIFY_SOCKET`.
fn startup(
    stack: &Stack,
    options: &AgentOptions,
    starts: usize,
    figures: &mut RunFigures,
) -> Result<()> {
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
    figures.add_times(
        "start → socket ready (`READY=1`)",
        "≤ 100 ms",
        &times,
        &[Stat::P50, Stat::Max],
    );
    Ok(())
}

/// `status` from `clients` concurrent connections for `seconds`: first each client asks every
/// `pace` (the latency a client sees while the others are busy too), then as fast as each
/// can (the throughput); each against the agent, then against the floor, so the agent's cost
/// is read as a ratio to what any Unix-socket server costs on this machine right now.
fn status_load(
    stack: &Stack,
    clients: usize,
    seconds: u64,
    figures: &mut RunFigures,
) -> Result<()> {
    let socket = stack.socket()?;
    let floor = floor::Floor::start(floor::Replies::capture(&socket)?)?;
    let pace = Duration::from_millis(20);
    for (load, pace, target) in [
        (
            format!("every {} ms", pace.as_millis()),
            Some(pace),
            "p99 ≤ 1 ms",
        ),
        ("flat out".to_owned(), None, ""),
    ] {
        let what = format!("`status`, {clients} clients {load}");
        let agent = status_clients(stack, &socket, clients, seconds, pace)?;
        let bare = status_clients(stack, &floor.socket, clients, seconds, pace)?;
        let mut ratios = Vec::new();
        for (stat, target) in [(Stat::P99, target), (Stat::P50, "")] {
            let (a, b) = (
                runs::percentile(&agent, stat),
                runs::percentile(&bare, stat),
            );
            figures.add(
                format!("{what}, agent {}", stat.name()),
                target,
                a,
                Unit::Ms,
            );
            figures.add(format!("{what}, floor {}", stat.name()), "", b, Unit::Ms);
            ratios.push((stat.name(), a / b));
        }
        if pace.is_none() {
            let per_second = |n: usize| n as f64 / seconds as f64;
            let (a, b) = (per_second(agent.len()), per_second(bare.len()));
            figures.add(format!("{what}, agent"), "(throughput)", a, Unit::PerSecond);
            figures.add(format!("{what}, floor"), "", b, Unit::PerSecond);
            ratios.push(("throughput", a / b));
        }
        for (name, ratio) in ratios {
            figures.add(
                format!("{what}, agent/floor {name}"),
                "",
                ratio,
                Unit::Ratio,
            );
        }
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

/// RSS and wake-ups (every thread's context switches) of the idle agent and of the running
/// peers, watched over the same `seconds`.
fn idle(stack: &Stack, peers: &[Peer], seconds: u64, figures: &mut RunFigures) -> Result<()> {
    let mut watched = vec![("idle agent".to_owned(), stack.agent()?.pid())];
    for peer in peers {
        watched.push((format!("idle {}", peer.kind.program()), peer.pid()));
    }
    let before = watched
        .iter()
        .map(|(_, pid)| Switches::read(*pid))
        .collect::<Result<Vec<_>>>()?;
    std::thread::sleep(Duration::from_secs(seconds));
    for (i, ((what, pid), before)) in watched.iter().zip(&before).enumerate() {
        let wake_ups = Switches::read(*pid)?.since(before) as f64 / seconds as f64;
        let resident = Resident::read(*pid)?;
        // The targets are the agent's, the first watched.
        let [rss_target, wake_target] = match i {
            0 => ["≤ 10 MiB", "≤ 1/s"],
            _ => [""; 2],
        };
        figures.add(
            format!("{what}, RSS"),
            rss_target,
            resident.total,
            Unit::MiB,
        );
        figures.add(
            format!("{what}, RSS anonymous"),
            "",
            resident.anonymous,
            Unit::MiB,
        );
        figures.add(
            format!("{what}, wake-ups"),
            wake_target,
            wake_ups,
            Unit::WakeUps,
        );
        if i == 0 {
            add_agent_files(&resident, figures);
        }
    }
    Ok(())
}

/// What the idle agent's file-backed pages are: its own program's, libc's, and every other
/// file's together (shared libraries, locale data); the whole list goes to standard error.
fn add_agent_files(resident: &Resident, figures: &mut RunFigures) {
    eprintln!("idle agent's resident files:");
    for (path, mib) in &resident.files {
        eprintln!("  {mib:6.2} MiB  {path}");
    }
    let own = resident.of_file("identity-agent");
    let libc = resident.of_file("libc.so.6");
    let all: f64 = resident.files.iter().map(|(_, mib)| mib).sum();
    figures.add(
        "idle agent, PSS (shared pages divided among their processes)",
        "",
        resident.proportional,
        Unit::MiB,
    );
    for (part, mib) in [
        ("its program", own),
        ("libc", libc),
        ("other files", all - own - libc),
    ] {
        figures.add(
            format!("idle agent, RSS file-backed, {part}"),
            "",
            mib,
            Unit::MiB,
        );
    }
}
