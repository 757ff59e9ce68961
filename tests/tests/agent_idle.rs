//! The agent at rest over the real stack: signed in with a subscriber listening (as the tray
//! does), and with no card, it must not wake up on a clock, and it must not touch the card.
//! Wake-ups are the context switches of all its threads (`/proc/<pid>/task/*/status`); the
//! figures and what holds the resident memory are printed for `BENCHMARKS.md`.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests --test agent_idle`.

use agent_ipc::Event;
use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use piv::CardSerial;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use testbed::process::context_switches;
use testbed::stack::{AgentOptions, Stack};

/// How long the agent is watched.
const WATCH: Duration = Duration::from_secs(20);
/// Long enough for the work of the last event to end: the blocking pool's idle threads exit,
/// the pinentry child is reaped.
const SETTLE: Duration = Duration::from_secs(4);

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x2C, n])
}

/// The wake-ups of `pid` over [`WATCH`], by thread name.
fn wake_ups(pid: u32) -> BTreeMap<String, u64> {
    let before = context_switches(pid).unwrap();
    std::thread::sleep(WATCH);
    let after = context_switches(pid).unwrap();
    let mut by_name = BTreeMap::new();
    for (tid, thread) in after {
        let earlier = before.get(&tid).map_or(0, |t| t.switches);
        *by_name.entry(thread.name).or_insert(0) += thread.switches.saturating_sub(earlier);
    }
    by_name
}

/// The resident memory of `pid` in KiB by mapping (file, or the kind of anonymous mapping),
/// largest first, from `/proc/<pid>/smaps`.
fn resident_by_mapping(pid: u32) -> Vec<(String, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut by_mapping: HashMap<String, u64> = HashMap::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            current = match fields.get(5) {
                Some(path) => path.rsplit('/').next().unwrap_or(path).to_string(),
                None => "[anonymous]".into(),
            };
        } else if fields.first() == Some(&"Rss:") {
            let kib: u64 = fields[1].parse().unwrap();
            *by_mapping.entry(current.clone()).or_insert(0) += kib;
        }
    }
    let mut sorted: Vec<_> = by_mapping.into_iter().filter(|(_, k)| *k > 0).collect();
    sorted.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    sorted
}

/// Prints what was measured.
fn report(what: &str, pid: u32, wake_ups: &BTreeMap<String, u64>) {
    let total: u64 = wake_ups.values().sum();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    println!(
        "{what}: {:.2} wake-ups/s over {} s {wake_ups:?}; RSS {} (anonymous {})",
        total as f64 / WATCH.as_secs_f64(),
        WATCH.as_secs(),
        field("Rss:"),
        field("Anonymous:"),
    );
    let mappings: Vec<String> = resident_by_mapping(pid)
        .iter()
        .map(|(name, kib)| format!("{name} {kib} kB"))
        .collect();
    println!("  resident by mapping: {}", mappings.join(", "));
}

#[test]
fn a_signed_in_agent_sleeps_and_leaves_the_card_alone() {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(1), InitialValidity::Days(400), AtrProfile::NhsCis).unwrap();
    stack.pin_answers(&[&card.pin]).unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let mut events = stack.subscribe();
    let _in = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
    std::thread::sleep(SETTLE);

    let pid = stack.agent().unwrap().pid();
    let woke = wake_ups(pid);
    report("signed in", pid, &woke);
    // At most 0.1 per second: a card transaction alone (a blocking task, pcscd's answers)
    // would be several.
    let total: u64 = woke.values().sum();
    assert!(
        total as f64 <= 0.1 * WATCH.as_secs_f64(),
        "the signed-in agent woke {total} times in {WATCH:?}: {woke:?}"
    );
    assert_eq!(
        stack.status().session.state,
        agent_ipc::SessionState::SignedIn
    );
}

#[test]
fn an_agent_with_no_card_does_not_wake() {
    let mut stack = Stack::start().unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let _events = stack.subscribe();
    std::thread::sleep(SETTLE);

    let pid = stack.agent().unwrap().pid();
    let woke = wake_ups(pid);
    report("no card", pid, &woke);
    let total: u64 = woke.values().sum();
    assert_eq!(total, 0, "the agent with no card woke up: {woke:?}");
}
