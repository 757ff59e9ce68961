//! Self-renewal end to end, measured on the real stack and printed: the holder signed in
//! through the agent asks for `renew` on the socket (the call answers when the renewal is
//! confirmed), N times in a row, for an RSA-2048 card and a P-256 card.
//!
//! For each card it prints the wall time of the `renew` call (p50, max), the APDUs the virtual
//! card answered and the service's API requests per renewal, each beside the least the
//! protocol needs, and where the time goes: the PIN prompt (the scripted pinentry, timed by a
//! wrapper process) and each step the agent reports. A last renewal runs with the agent
//! tracing its APDUs, and the APDUs are listed by step and instruction.
//!
//! Run: `cargo run --release -p tests --bin renewal-bench` (build the workspace's binaries in
//! release first: `cargo build --release --workspace --bins`).

use agent_ipc::{Client, Event};
use anyhow::{bail, Context as _, Result};
use cardsim::{CardSpec, InsertedCard};
use clap::{Parser, Subcommand};
use cms::issuance::InitialValidity;
use cms::Policy;
use piv::KeyAlgorithm;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testbed::stack::{workspace_binary, AgentOptions, PinentrySetup, Stack, StackCard, NURSE};

/// The holders' PIN (both cards).
const PIN: &str = "246810";

/// The service's API calls a renewal needs at the least: start, witness, response, csr,
/// confirm.
const CMS_MINIMUM: u64 = 5;

#[derive(Parser)]
#[command(about = "Measures self-renewal through the identity agent")]
struct Args {
    /// Renewals timed per card.
    #[arg(long, default_value_t = 10)]
    renewals: usize,
    /// Only the RSA-2048 card.
    #[arg(long)]
    rsa_only: bool,
    #[command(subcommand)]
    command: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Runs a pinentry and appends its start and end (Unix nanoseconds) to `log`: the agent
    /// starts this instead of the pinentry, so the PIN prompt is timed from the outside.
    #[command(hide = true)]
    PinentryTimer {
        /// Where the times go, one `start end` line per prompt.
        #[arg(long)]
        log: PathBuf,
        /// The pinentry and its arguments.
        #[arg(last = true, required = true)]
        pinentry: Vec<String>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Mode::PinentryTimer { log, pinentry }) = args.command {
        return pinentry_timer(&log, &pinentry);
    }
    let mut stack = Stack::start_with(Policy {
        card_capacity: 10_000,
        ..Policy::default()
    })?;
    let mut cards = Vec::new();
    let (jane, _) = stack.user("Jane Doe", &[NURSE])?;
    cards.push((
        "RSA-2048",
        issue(&stack, &jane, "4082A001132F2A01", KeyAlgorithm::Rsa2048)?,
    ));
    if !args.rsa_only {
        let (john, _) = stack.user("John Smith", &[NURSE])?;
        cards.push((
            "P-256",
            issue(&stack, &john, "4082A001132F2A02", KeyAlgorithm::P256)?,
        ));
    }
    let pin_log = stack.bed.dir().join("pinentry-times");
    let options = AgentOptions {
        log_filter: "info".into(),
        pinentry: Some(PinentrySetup {
            program: std::env::current_exe()?,
            args: vec![
                "pinentry-timer".into(),
                "--log".into(),
                pin_log.display().to_string(),
                "--".into(),
                workspace_binary("ia-pinentry")?.display().to_string(),
                "--pin".into(),
                PIN.into(),
            ],
            tty: None,
        }),
        // No certificate re-check while measuring.
        certificate_check_secs: 24 * 3600,
        ..AgentOptions::default()
    };
    println!(
        "self-renewal through the agent: {} renewals per card, target ≤ 2 s each",
        args.renewals
    );
    for (name, card) in &cards {
        stack.start_agent(&options)?;
        let events = subscribe(&stack)?;
        let inserted = stack.insert(0, card)?;
        wait_event(&events, |e| matches!(e, Event::SessionStarted { .. }))?;
        measure(&stack, name, &inserted, &events, &pin_log, args.renewals)?;

        stack.stop_agent()?;
        inserted.remove()?;

        // The card and the service agree after all those renewals.
        let again = stack.insert(1, card)?;
        stack.card_agrees_with_cms(1, card)?;
        stack.bed.remove(1, again)?;
    }
    Ok(())
}

/// Issues a card for `user_id` with a key of `algorithm`, valid for 400 days.
fn issue(stack: &Stack, user_id: &str, serial: &str, algorithm: KeyAlgorithm) -> Result<StackCard> {
    let spec = CardSpec::new(serial.parse()?);
    stack.issue_spec(user_id, spec, PIN, InitialValidity::Days(400), algorithm)
}

/// The agent's events as they arrive, each with when it was received.
fn subscribe(stack: &Stack) -> Result<mpsc::Receiver<(Instant, Event)>> {
    let socket = stack.socket()?;
    let mut events = stack
        .runtime
        .block_on(async { Client::connect(&socket).await?.subscribe().await })?;
    let (tx, rx) = mpsc::channel();
    stack.runtime.spawn(async move {
        while let Ok(event) = events.next_event().await {
            if tx.send((Instant::now(), event)).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

fn wait_event(
    events: &mpsc::Receiver<(Instant, Event)>,
    wanted: impl Fn(&Event) -> bool,
) -> Result<(Instant, Event)> {
    loop {
        let (at, event) = events
            .recv_timeout(Duration::from_secs(30))
            .context("the agent reported nothing")?;
        if wanted(&event) {
            return Ok((at, event));
        }
    }
}

/// One `renew` call on a new connection; its wall time.
fn renew(stack: &Stack) -> Result<Duration> {
    let socket = stack.socket()?;
    let started = Instant::now();
    let done = stack
        .runtime
        .block_on(async { Client::connect(&socket).await?.renew().await })?;
    let elapsed = started.elapsed();
    if !done.done || done.step != agent_ipc::OperationStep::Confirmed {
        bail!("the renewal did not finish: {done:?}");
    }
    Ok(elapsed)
}

/// Waits until `count` has not moved for 100 ms (at most 2 s), and returns it: the agent logs
/// the renewal's own token out after answering, and no event says when that is done.
fn settle<T: PartialEq + Copy>(count: impl Fn() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = count();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// `renewals` timed renewals of the signed-in card `inserted`, then the figures.
fn measure(
    stack: &Stack,
    name: &str,
    inserted: &InsertedCard,
    events: &mpsc::Receiver<(Instant, Event)>,
    pin_log: &Path,
    renewals: usize,
) -> Result<()> {
    let mut walls = Vec::new();
    let mut apdus = Vec::new();
    let mut requests = Vec::new();
    let mut pins = Vec::new();
    let mut steps: BTreeMap<usize, (String, Vec<Duration>)> = BTreeMap::new();
    for _ in 0..renewals {
        while events.try_recv().is_ok() {}
        let prompts_before = pin_times(pin_log).len();
        let apdus_before = inserted.apdus_answered();
        let requests_before = stack.cms_requests();
        let started = Instant::now();
        let wall = renew(stack)?;
        walls.push(wall);
        let apdus_after = settle(|| inserted.apdus_answered());
        let requests_after = settle(|| stack.cms_requests());
        apdus.push(u64::from(apdus_after - apdus_before));
        requests.push(requests_after - requests_before);

        // The step timeline: each progress event since the previous one (the first since the
        // call was made).
        let mut previous = started;
        let mut index = 0;
        while let Ok((at, event)) = events.try_recv() {
            if let Event::OperationProgress { operation } = event {
                let entry = steps
                    .entry(index)
                    .or_insert_with(|| (operation.step.to_string(), Vec::new()));
                entry.1.push(at.saturating_duration_since(previous));
                previous = at;
                index += 1;
            }
        }
        let prompts = pin_times(pin_log);
        if let Some((start, end)) = prompts.get(prompts_before) {
            pins.push(Duration::from_nanos(end.saturating_sub(*start)));
        }
    }

    println!("\n{name} card ({renewals} renewals)");
    report("renew call, wall time", &mut walls, "≤ 2 s");
    println!(
        "  APDUs the card answered per renewal: {} — protocol minimum {}",
        spread(&apdus),
        apdu_minimum(stack, name)?
    );
    println!(
        "  service API requests per renewal: {} — protocol minimum {CMS_MINIMUM}",
        spread(&requests)
    );
    println!("  where the time goes (p50 of each part):");
    report(
        "    PIN prompt (pinentry process start → exit)",
        &mut pins,
        "",
    );
    for (step, times) in steps.values_mut() {
        report(&format!("    … → `{step}`"), times, "");
    }
    Ok(())
}

/// The least APDUs a renewal needs with short APDUs (255 data bytes a part, 256 a response):
/// SELECT, VERIFY, the two 9B GENERAL AUTHENTICATEs, GENERATE, the CSR signature, the
/// certificate's PUT DATA, the confirmation signature (see BENCHMARKS.md).
fn apdu_minimum(stack: &Stack, name: &str) -> Result<u64> {
    let serial = name_serial(name);
    let der = stack
        .cms
        .database()
        .active_certificate(serial)?
        .context("no active certificate")?
        .der
        .len() as u64;
    // 5C 03 5FC105, 53 82 len, 70 82 len <certificate>, 71 01 00, FE 00.
    let put_data = (der + 18).div_ceil(255);
    // RSA-2048: GENERATE's 270-byte answer needs a GET RESPONSE; each signature is sent in
    // two chained parts (266 bytes) and answered in two (264 bytes).
    let (generate, sign) = if name == "RSA-2048" { (2, 3) } else { (1, 1) };
    Ok(1 + 1 + 2 + generate + sign + put_data + sign)
}

/// The serial of the card named `name`.
fn name_serial(name: &str) -> &'static str {
    if name == "RSA-2048" {
        "4082A001132F2A01"
    } else {
        "4082A001132F2A02"
    }
}

/// The pinentry prompts timed so far, (start, end) in Unix nanoseconds.
fn pin_times(log: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (start, end) = line.split_once(' ')?;
            Some((start.parse().ok()?, end.parse().ok()?))
        })
        .collect()
}

/// Runs `pinentry` with this process's standard input and output and appends `start end` in
/// Unix nanoseconds to `log`.
fn pinentry_timer(log: &Path, pinentry: &[String]) -> Result<()> {
    let start = unix_nanos();
    let (program, args) = pinentry.split_first().context("no pinentry given")?;
    let status = std::process::Command::new(program).args(args).status()?;
    let end = unix_nanos();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(file, "{start} {end}")?;
    if !status.success() {
        bail!("{program} exited with {status}");
    }
    Ok(())
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn spread(values: &[u64]) -> String {
    let (min, max) = (
        values.iter().min().copied().unwrap_or(0),
        values.iter().max().copied().unwrap_or(0),
    );
    if min == max {
        format!("{min}")
    } else {
        format!("{min}–{max}")
    }
}

fn report(what: &str, times: &mut [Duration], target: &str) {
    times.sort();
    let p50 = times.get(times.len() / 2).copied().unwrap_or_default();
    let target = if target.is_empty() {
        String::new()
    } else {
        format!(" — target {target}")
    };
    println!(
        "  {what}: n={} p50 {:.1} ms, max {:.1} ms{target}",
        times.len(),
        ms(p50),
        ms(times.last().copied().unwrap_or_default()),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
