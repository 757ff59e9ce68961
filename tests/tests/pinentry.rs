//! `agent::pinentry::ask_pin` against the scripted pinentry `ia-pinentry`, a real Assuan server
//! in its own process; and a sign-in prompt abandoned when its card is pulled, over the real
//! stack (one pcscd per test process: run with `cargo nextest run -p tests`).

use agent::config::PinentryConfig;
use agent::pinentry::{ask_pin, ask_pin_entry, PinPrompt, PinentryError};
use agent::pinentry::{FAREWELL, HARD_LIMIT_GRACE};
use agent_ipc::{Event, SessionState};
use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use piv::CardSerial;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testbed::stack::{workspace_binary, AgentOptions, PinentrySetup, Stack};

/// The scripted pinentry (its own package, built first if missing).
fn pinentry() -> PathBuf {
    workspace_binary("ia-pinentry").unwrap()
}

fn config(args: &[&str], timeout_secs: u64) -> PinentryConfig {
    PinentryConfig {
        program: pinentry(),
        args: args.iter().map(|a| a.to_string()).collect(),
        timeout_secs,
        tty: None,
    }
}

fn prompt() -> PinPrompt {
    PinPrompt {
        title: "Smartcard sign-in".into(),
        description: "Card 4082A001132F2817, 3 tries left".into(),
        prompt: "PIN:".into(),
        error: None,
        repeat: None,
    }
}

/// The JSON lines of a `--log` file.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn process_exists(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits up to `limit` for `ready`, checking every 20 ms; whether it came.
async fn eventually(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A directory with the script `lines` for `--script`, and the paths of a `--log` and an
/// `--end-log` in it.
struct Scripted {
    dir: tempfile::TempDir,
}

impl Scripted {
    fn new(lines: &str) -> Scripted {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script"), lines).unwrap();
        Scripted { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The pinentry `pid` was the one run, and it ended by itself when told `BYE` (a killed
    /// one records nothing).
    fn assert_left_when_asked(&self, pid: u64) {
        let ends = self.ends();
        assert_eq!(ends.len(), 1, "{ends:?}");
        assert_eq!(ends[0]["pid"], pid);
        assert_eq!(ends[0]["end"], "bye");
    }

    /// `--script`, `--log` and `--end-log` in this directory, then `extra`.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--script".to_owned(),
            self.path("script"),
            "--log".to_owned(),
            self.path("log.jsonl"),
            "--end-log".to_owned(),
            self.path("end.jsonl"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    fn config(&self, extra: &[&str], timeout_secs: u64) -> PinentryConfig {
        PinentryConfig {
            program: pinentry(),
            args: self.args(extra),
            timeout_secs,
            tty: None,
        }
    }

    /// The `GETPIN`s asked.
    fn asked(&self) -> Vec<Value> {
        log_lines(&self.dir.path().join("log.jsonl"))
    }

    /// How the programs left by themselves.
    fn ends(&self) -> Vec<Value> {
        log_lines(&self.dir.path().join("end.jsonl"))
    }

    /// The pid of the program that was asked the first `GETPIN`.
    fn first_pid(&self) -> u64 {
        self.asked()[0]["pid"].as_u64().expect("the pid in the log")
    }
}

fn new_pin_prompt() -> PinPrompt {
    PinPrompt {
        title: "New passcode".into(),
        description: "Choose a new passcode".into(),
        prompt: "New passcode:".into(),
        error: None,
        repeat: Some("Repeat the passcode:".into()),
    }
}

#[tokio::test]
async fn the_pin_entered_is_returned() {
    let pin = ask_pin(&config(&["--pin", "123456"], 10), &prompt())
        .await
        .unwrap();
    assert_eq!(pin.as_str(), "123456");
}

#[tokio::test]
async fn prompt_texts_arrive_intact_and_the_pin_is_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let log_arg = log.to_str().unwrap();
    let shown = PinPrompt {
        title: "100% Identität".into(),
        description: "Dr. Zoë O'Brien\nCard 4082A001132F2817 – 2 tries left\r\nsee %41".into(),
        prompt: "PIN (6–8 digits):".into(),
        error: Some("Wrong PIN.\nNot 50%".into()),
        repeat: Some("Again:".into()),
    };
    let pin = ask_pin(
        &config(&["--pin", "97531864", "--log", log_arg], 10),
        &shown,
    )
    .await
    .unwrap();
    assert_eq!(pin.as_str(), "97531864");
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["title"], shown.title.as_str());
    assert_eq!(line["description"], shown.description.as_str());
    assert_eq!(line["prompt"], shown.prompt.as_str());
    assert_eq!(line["error"], shown.error.as_deref().unwrap());
    assert_eq!(line["repeat"], "Again:");
    assert_eq!(line["repeat_error"], "PINs do not match");
    assert_eq!(line["timeout"], "10");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("97531864"), "the PIN is in the log: {text}");
}

#[tokio::test]
async fn the_tty_is_passed_as_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let mut config = config(&["--pin", "1234", "--log", log.to_str().unwrap()], 10);
    config.tty = Some("/dev/pts/7".into());
    ask_pin(&config, &prompt()).await.unwrap();
    let lines = log_lines(&log);
    let options: Vec<&str> = lines[0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(options.contains(&"ttyname=/dev/pts/7"), "{options:?}");
}

#[tokio::test]
async fn a_pin_with_percent_signs_round_trips() {
    for pin in ["12%34", "%25", "100%", "ä%0A"] {
        let got = ask_pin(&config(&["--pin", pin], 10), &prompt())
            .await
            .unwrap();
        assert_eq!(got.as_str(), pin);
    }
}

#[tokio::test]
async fn a_script_answers_in_order_across_runs_then_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    std::fs::write(&script, "111111\n!cancel\n222%22\n").unwrap();
    let config = config(&["--script", script.to_str().unwrap()], 10);
    let first = ask_pin(&config, &prompt()).await.unwrap();
    assert_eq!(first.as_str(), "111111");
    let second = ask_pin(&config, &prompt()).await;
    assert!(
        matches!(second, Err(PinentryError::Cancelled)),
        "{second:?}"
    );
    let third = ask_pin(&config, &prompt()).await.unwrap();
    assert_eq!(third.as_str(), "222%22");
    let exhausted = ask_pin(&config, &prompt()).await;
    assert!(
        matches!(exhausted, Err(PinentryError::Cancelled)),
        "{exhausted:?}"
    );
}

#[tokio::test]
async fn cancel_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    std::fs::write(&script, "!cancel\n").unwrap();
    let result = ask_pin(
        &config(&["--script", script.to_str().unwrap()], 10),
        &prompt(),
    )
    .await;
    assert!(
        matches!(result, Err(PinentryError::Cancelled)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_pinentry_confirming_the_repeat_is_asked_once() {
    let scripted = Scripted::new("918273\n");
    let entry = ask_pin_entry(&scripted.config(&[], 10), &new_pin_prompt())
        .await
        .unwrap();
    assert_eq!(entry.pin.as_str(), "918273");
    assert!(entry.repeated, "S PIN_REPEATED came before the PIN");
    let asked = scripted.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["repeat"], "Repeat the passcode:");
    assert_eq!(asked[0]["repeated"], true);
}

#[tokio::test]
async fn a_pinentry_ignoring_the_repeat_is_not_taken_as_confirming_it() {
    let scripted = Scripted::new("918273\n");
    let entry = ask_pin_entry(
        &scripted.config(&["--ignore-repeat"], 10),
        &new_pin_prompt(),
    )
    .await
    .unwrap();
    assert_eq!(entry.pin.as_str(), "918273");
    assert!(!entry.repeated);
    let asked = scripted.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    // SETREPEAT was accepted, and nothing was confirmed.
    assert_eq!(asked[0]["repeat"], "Repeat the passcode:");
    assert_eq!(asked[0]["repeated"], false);
}

#[tokio::test]
async fn without_a_repeat_asked_nothing_is_confirmed() {
    let scripted = Scripted::new("918273\n");
    let entry = ask_pin_entry(&scripted.config(&[], 10), &prompt())
        .await
        .unwrap();
    assert!(!entry.repeated);
    assert!(scripted.asked()[0]["repeat"].is_null());
}

#[tokio::test]
async fn an_answered_pinentry_leaves_when_asked() {
    let scripted = Scripted::new("246810\n");
    ask_pin(&scripted.config(&[], 10), &prompt()).await.unwrap();
    let pid = scripted.first_pid();
    scripted.assert_left_when_asked(pid);
    assert!(!process_exists(pid), "pinentry {pid} is still there");
}

/// Asks for a PIN through a pinentry scripted with `script` and a 1 s timeout, asserts that
/// the prompt timed out, and returns the pinentry and how long the prompt took.
async fn timed_out_prompt(script: &str) -> (Scripted, Duration) {
    let scripted = Scripted::new(script);
    let started = Instant::now();
    let result = ask_pin(&scripted.config(&[], 1), &prompt()).await;
    let took = started.elapsed();
    assert!(matches!(result, Err(PinentryError::TimedOut)), "{result:?}");
    (scripted, took)
}

#[tokio::test]
async fn a_hanging_pinentry_times_out_by_itself_and_leaves_when_asked() {
    let (scripted, took) = timed_out_prompt("!hang\n").await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // Pinentry's own timeout ended the prompt, well before the agent's hard limit.
    assert!(took < Duration::from_secs(1) + HARD_LIMIT_GRACE, "{took:?}");
    let pid = scripted.first_pid();
    assert_eq!(scripted.asked()[0]["timeout"], "1");
    // It left by itself when asked, and was reaped: not even a zombie is left.
    scripted.assert_left_when_asked(pid);
    assert!(!process_exists(pid), "pinentry {pid} is still there");
}

#[tokio::test]
async fn a_pinentry_ignoring_its_timeout_meets_the_hard_limit_and_is_killed() {
    let (scripted, took) = timed_out_prompt("!deaf\n").await;
    assert!(
        took >= Duration::from_secs(1) + HARD_LIMIT_GRACE,
        "{took:?}"
    );
    assert!(took < Duration::from_secs(12), "{took:?}");
    let pid = scripted.first_pid();
    assert!(scripted.ends().is_empty(), "{:?}", scripted.ends());
    assert!(!process_exists(pid), "pinentry {pid} is still there");
}

/// Asks for a PIN through `scripted` and drops the asking task once the prompt is up, as a
/// pulled card does; the pid of the pinentry.
async fn abandon_prompt(scripted: &Scripted) -> u64 {
    let config = scripted.config(&[], 60);
    let asking = tokio::spawn(async move { ask_pin(&config, &prompt()).await });
    assert!(
        eventually(Duration::from_secs(10), || !scripted.asked().is_empty()).await,
        "the PIN was never asked"
    );
    let pid = scripted.first_pid();
    asking.abort();
    assert!(asking.await.unwrap_err().is_cancelled());
    pid
}

#[tokio::test]
async fn an_abandoned_prompt_asks_the_pinentry_to_leave() {
    let scripted = Scripted::new("!hang\n");
    let pid = abandon_prompt(&scripted).await;
    assert!(
        eventually(Duration::from_secs(5), || !process_exists(pid)).await,
        "pinentry {pid} is still there"
    );
    // It left by itself: a killed program records nothing.
    scripted.assert_left_when_asked(pid);
}

#[tokio::test]
async fn an_abandoned_prompt_whose_pinentry_will_not_leave_is_killed() {
    let scripted = Scripted::new("!deaf\n");
    let pid = abandon_prompt(&scripted).await;
    let abandoned = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || !process_exists(pid)).await,
        "pinentry {pid} is still there"
    );
    // Given its farewell first.
    assert!(abandoned.elapsed() >= FAREWELL, "{:?}", abandoned.elapsed());
    assert!(scripted.ends().is_empty(), "{:?}", scripted.ends());
}

#[tokio::test]
async fn a_missing_program_fails_with_its_name() {
    let config = PinentryConfig {
        program: PathBuf::from("/nonexistent/pinentry-nowhere"),
        ..PinentryConfig::default()
    };
    match ask_pin(&config, &prompt()).await {
        Err(PinentryError::Failed(why)) => {
            assert!(
                why.contains("cannot run pinentry program /nonexistent/pinentry-nowhere"),
                "{why}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_program_that_is_not_a_pinentry_fails() {
    let config = PinentryConfig {
        program: PathBuf::from("/bin/true"),
        ..PinentryConfig::default()
    };
    let result = ask_pin(&config, &prompt()).await;
    assert!(
        matches!(result, Err(PinentryError::Failed(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn only_allow_listed_environment_variables_reach_the_program() {
    // SAFETY: this test binary runs under nextest, one process per test; nothing else reads
    // the environment concurrently.
    std::env::set_var("SECRET_X", "do-not-pass");
    std::env::set_var("LANG", "C.UTF-8");
    std::env::set_var("DISPLAY", ":7");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    ask_pin(
        &config(&["--pin", "1234", "--log", log.to_str().unwrap()], 10),
        &prompt(),
    )
    .await
    .unwrap();
    let lines = log_lines(&log);
    let env: Vec<&str> = lines[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!env.contains(&"SECRET_X"), "{env:?}");
    assert!(env.contains(&"LANG") && env.contains(&"DISPLAY"), "{env:?}");
    for name in &env {
        assert!(
            agent::pinentry::ENV_ALLOW_LIST.contains(name),
            "{name} is not on the allow-list"
        );
    }
}

#[test]
fn a_card_pulled_while_its_prompt_is_open_has_the_pinentry_leave_by_itself() {
    let (mut stack, card) = Stack::with_nurse_card(
        CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x5E, 1]),
        InitialValidity::Days(400),
        AtrProfile::NhsCis,
    )
    .unwrap();
    // The sign-in's prompt nobody answers.
    stack.pin_answers(&["!hang"]).unwrap();
    let dir = stack.bed.dir().to_path_buf();
    let end_log = dir.join("pinentry-end.log");
    let args = [
        ("--script", "pinentry-script"),
        ("--log", "pinentry.log"),
        ("--end-log", "pinentry-end.log"),
    ]
    .iter()
    .flat_map(|(flag, file)| [flag.to_string(), dir.join(file).display().to_string()])
    .collect();
    let options = AgentOptions {
        pinentry: Some(PinentrySetup {
            program: workspace_binary("ia-pinentry").unwrap(),
            args,
            tty: None,
        }),
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    let mut events = stack.subscribe();
    let inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(
        &mut events,
        |e| matches!(e, Event::SessionState { state } if *state == SessionState::WaitingForPin),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack.pin_prompts().is_empty() {
        assert!(Instant::now() < deadline, "the PIN was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = stack.pin_prompts()[0]["pid"].as_u64().unwrap();
    assert!(process_exists(pid));

    stack.bed.remove(0, inserted).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::CardRemoved { .. }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_exists(pid) {
        assert!(Instant::now() < deadline, "pinentry {pid} is still there");
        std::thread::sleep(Duration::from_millis(20));
    }
    // It left when asked to, rather than being killed (which records nothing).
    let ends = log_lines(&end_log);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["pid"], pid);
    assert_eq!(ends[0]["end"], "bye");
    assert_ne!(stack.status().session.state, SessionState::SignedIn);
}

#[test]
fn an_agent_started_before_the_desktop_gives_pinentry_the_display_from_the_user_manager() {
    let (mut stack, card) = Stack::with_nurse_card(
        CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x5E, 2]),
        InitialValidity::Days(400),
        AtrProfile::NhsCis,
    )
    .unwrap();
    stack.pin_answers(&[&card.pin]).unwrap();
    // A systemctl whose user manager has the display the desktop imported after the agent
    // started, and a variable pinentry must not see; it notes each time it is asked.
    let dir = stack.bed.dir().to_path_buf();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = dir.join("systemctl-asked");
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        format!(
            "#!/bin/sh\n\
             [ \"$*\" = \"--user show-environment\" ] || exit 1\n\
             echo asked >>'{asked}'\n\
             printf '%s\\n' HOME=/home/jane LANG=en_GB.UTF-8 DISPLAY=:42 \
             XAUTHORITY=/run/user/1000/.mutter-Xwaylandauth.Q1 \"SECRET_FROM_MANAGER=\\$'x y'\"\n",
            asked = asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &systemctl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let options = AgentOptions {
        env: vec![
            ("PATH".into(), path),
            ("DISPLAY".into(), String::new()),
            ("WAYLAND_DISPLAY".into(), String::new()),
            ("XAUTHORITY".into(), String::new()),
        ],
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    let mut events = stack.subscribe();
    let _inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));

    let prompts = stack.pin_prompts();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    let env: Vec<&str> = prompts[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"DISPLAY"), "{env:?}\n{}", stack.agent_logs());
    assert!(env.contains(&"XAUTHORITY"), "{env:?}");
    assert!(!env.contains(&"SECRET_FROM_MANAGER"), "{env:?}");
    let asked = std::fs::read_to_string(&asked).unwrap_or_default();
    assert_eq!(
        asked.lines().count(),
        1,
        "systemctl was asked once per prompt"
    );
}
