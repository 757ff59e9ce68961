//! The tray's figures on a real desktop (Xvfb, session bus, dunst, xfce4-panel) over the real
//! stack: idle resident memory and wake-ups per second (context switches of all its threads,
//! from /proc) over `--seconds`, and the time from an agent event reaching a subscriber to the
//! item's icon changing, read over D-Bus as the panel reads it.
//!
//! `cargo run --release -p tests --bin tray-bench` (builds the tray in the same profile).

use agent_ipc::{Client, Event};
use anyhow::{bail, Context as _, Result};
use cardsim::AtrProfile;
use clap::Parser;
use cms::issuance::InitialValidity;
use std::time::{Duration, Instant};
use testbed::desktop::{Desktop, DesktopProcess};
use testbed::sni;
use testbed::stack::{workspace_binary, AgentOptions, Stack};
use tray::icons::IconKind;

#[derive(Parser)]
#[command(about = "The tray's idle footprint and event-to-icon latency")]
struct Args {
    /// How long to watch the idle tray.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Card insertions and removals timed.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
}

/// Resident memory (KiB) and context switches of all threads of `pid`.
fn footprint(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let text = std::fs::read_to_string(task?.path().join("status")).unwrap_or_default();
        for line in text.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += n.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok((rss, switches))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (mut stack, card) = Stack::with_nurse_card(
        "4082A001132F2817".parse()?,
        InitialValidity::Days(400),
        AtrProfile::NhsCis,
    )?;
    stack.start_agent(&AgentOptions {
        login_on_insert: false,
        log_filter: "info".into(),
        ..AgentOptions::default()
    })?;
    let desktop = Desktop::start()?;
    let mut command = desktop.command(workspace_binary("identity-agent-tray")?);
    command
        .arg("--socket")
        .arg(stack.socket()?)
        .env(
            "RUST_LOG",
            std::env::var("TRAY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(desktop.log_file("tray.log")?);
    let mut tray = DesktopProcess::spawn(command, "identity-agent-tray")?;
    let bus = desktop.bus()?;
    let item = sni::wait_for_item(&bus, "identity-agent", Duration::from_secs(10))?;
    // The icons decoded once, so a poll costs one D-Bus call and a comparison.
    let pixels: Vec<(IconKind, Vec<u8>)> = IconKind::ALL
        .into_iter()
        .map(|k| Ok((k, k.pixels(tray::front::ICON_SIZE)?.rgba)))
        .collect::<Result<_>>()?;
    let wait_icon = |kind: IconKind| -> Result<Instant> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = sni::icon_pixmap(&bus, &item).ok().and_then(|icons| {
                let (_, _, rgba) = icons.first()?;
                pixels.iter().find(|(_, p)| p == rgba).map(|(k, _)| *k)
            });
            if shown == Some(kind) {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("the icon did not become {kind:?}");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    };
    wait_icon(IconKind::NoCard)?;

    println!(
        "tray-bench: identity-agent-tray pid {} on an idle desktop",
        tray.pid()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (_, before) = footprint(tray.pid())?;
    let watched = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let (rss, after) = footprint(tray.pid())?;
    let per_second = (after - before) as f64 / watched.elapsed().as_secs_f64();
    println!("  idle RSS         {:.1} MiB", rss as f64 / 1024.0);
    println!(
        "  idle wake-ups    {per_second:.2}/s ({} context switches in {} s, all threads)",
        after - before,
        args.seconds
    );

    let socket = stack.socket()?;
    let mut events = stack
        .runtime
        .block_on(async { Client::connect(&socket).await?.subscribe().await })?;
    let mut next = |wanted: fn(&Event) -> bool| -> Result<Instant> {
        stack.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let event = events.next_event().await?;
                    if wanted(&event) {
                        return Ok::<_, anyhow::Error>(Instant::now());
                    }
                }
            })
            .await
            .context("the agent did not report the event")?
        })
    };
    let mut latencies = Vec::new();
    for _ in 0..args.rounds {
        let inserted = stack.insert(0, &card)?;
        let seen = next(|e| matches!(e, Event::CardInserted { .. }))?;
        let shown = wait_icon(IconKind::CardInserted)?;
        latencies.push(shown.saturating_duration_since(seen).as_secs_f64() * 1000.0);
        if std::env::var_os("TRAY_LOG").is_some() {
            println!("  event seen {seen:?}, icon shown {shown:?}");
        }
        stack.bed.remove(0, inserted)?;
        let seen = next(|e| matches!(e, Event::CardRemoved { .. }))?;
        let shown = wait_icon(IconKind::NoCard)?;
        latencies.push(shown.saturating_duration_since(seen).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "  event → icon     p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} card events, icon read over D-Bus)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    let (rss, _) = footprint(tray.pid())?;
    if std::env::var_os("TRAY_LOG").is_some() {
        print!(
            "{}",
            std::fs::read_to_string(desktop.dir().join("tray.log"))?
        );
    }
    println!("  RSS afterwards   {:.1} MiB", rss as f64 / 1024.0);
    if !tray.running() {
        bail!("the tray stopped");
    }
    Ok(())
}
