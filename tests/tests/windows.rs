//! The Windows build under Wine (`docs/WINDOWS.md`): a Windows program of this workspace reads
//! the virtual card through Wine's winscard and the test bed's private pcscd — the same
//! readers, card and serial a Linux client sees; and the Windows agent, with the Windows
//! scripted pinentry, signs a holder in against the reference CMS, serves its named pipe with
//! a security descriptor for the user alone, and ends the session when the card is pulled; and
//! the Windows installer puts the agent where its Run entry starts it at logon.
//!
//! Skipped, saying why, only when the Windows toolchain is not installed (`scripts/setup`
//! installs it). One pcscd per test process: run with `cargo nextest run -p tests --test windows`.

use agent_ipc::{Event, SessionEndReason, SessionState, Status, Ticket};
use cardsim::{AtrProfile, CardFile, CardSpec, Faults};
use cms::issuance::InitialValidity;
use cms_api::client::CmsClient;
use piv::CardSerial;
use std::time::Duration;
use testbed::stack::{AgentOptions, Stack};
use testbed::wine::{self, Program};
use testbed::wine::{WindowsAgent, WineSession};
use testbed::TestBed;

#[test]
fn a_windows_program_reads_the_card_serial_through_wine_and_the_test_beds_pcscd() {
    if let Some(why) = wine::missing_toolchain() {
        eprintln!("skipped: {why}");
        return;
    }
    let exe = wine::build("piv", Program::Example("read-cards")).unwrap();
    let bed = TestBed::start().unwrap();
    let serial: CardSerial = "4082A001132F2817".parse().unwrap();
    let card_file = bed.dir().join("card.json");
    CardFile::create(&card_file, &CardSpec::new(serial)).unwrap();
    let _card = bed.insert(0, &card_file, Faults::default()).unwrap();
    // What a Linux client of the same pcscd reads.
    let atr = bed.connect(0).unwrap().atr().to_vec();
    let kind = piv::card_type::card_type(&atr, true);
    let atr = hex::encode_upper(atr);

    let run = wine::run(&bed, &exe, &[]).unwrap();

    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{}: card {serial}, {kind}, ATR {atr}", bed.reader_name(0)),
            format!("{}: no card", bed.reader_name(1)),
        ],
        "the Windows program sees the readers and the card the test bed made"
    );
}

/// How long a step of the Windows agent may take under Wine (a debug build, on 2 cores).
const STEP: Duration = Duration::from_secs(60);

/// The next event `wanted` accepts from a `line-client` session.
fn wait_for_event(session: &mut WineSession, wanted: impl Fn(&Event) -> bool) -> Event {
    let line = session
        .expect(STEP, |line| {
            line.strip_prefix("event ")
                .and_then(|json| serde_json::from_str::<Event>(json).ok())
                .is_some_and(|event| wanted(&event))
        })
        .unwrap();
    serde_json::from_str(line.strip_prefix("event ").unwrap()).unwrap()
}

/// Sends `call` (JSON) and returns its reply's result, deserialised.
fn call<T: serde::de::DeserializeOwned>(session: &mut WineSession, call: &str) -> T {
    session.send(call).unwrap();
    let line = session
        .expect(STEP, |line| {
            line.starts_with("reply ") || line.starts_with("error ")
        })
        .unwrap();
    let result = line
        .strip_prefix("reply ")
        .unwrap_or_else(|| panic!("{call} failed: {line}"));
    serde_json::from_str(result).unwrap()
}

#[test]
fn the_windows_agent_signs_in_serves_its_pipe_to_the_user_alone_and_ends_the_session_on_removal() {
    if let Some(why) = wine::missing_toolchain() {
        eprintln!("skipped: {why}");
        return;
    }
    let windows = WindowsAgent::build("dev").unwrap();
    let stack = Stack::start().unwrap();
    let serial: CardSerial = "4082A001132F2901".parse().unwrap();
    let card = stack
        .nurse_card(serial, InitialValidity::Days(400), AtrProfile::NhsCis)
        .unwrap();
    stack.pin_answers(&[&card.pin]).unwrap();
    let dir = stack.bed.dir();
    let pinentry_args = vec![
        "--script".into(),
        dir.join("pinentry-script").display().to_string(),
        "--log".into(),
        dir.join("pinentry.log").display().to_string(),
    ];
    let mut session = windows
        .start(&stack, &AgentOptions::default(), pinentry_args)
        .unwrap();

    // The pipe admits the user and SYSTEM, nobody else, and inherits nothing.
    let security = session
        .expect(STEP, |line| line.starts_with("security "))
        .unwrap();
    let aces: Vec<&str> = security
        .trim_start_matches("security D:P(")
        .trim_end_matches(')')
        .split(")(")
        .collect();
    assert!(security.starts_with("security D:P("), "{security}");
    assert_eq!(aces.len(), 2, "{security}");
    assert!(aces[0].starts_with("A;;GA;;;S-1-5-"), "{security}");
    assert_eq!(aces[1], "A;;GA;;;SY", "{security}");
    session.expect(STEP, |line| line == "ready").unwrap();

    // Inserted: identified, the PIN asked once through the Windows pinentry, signed in.
    let inserted = stack.insert(0, &card).unwrap();
    let Event::SessionStarted { session: signed_in } =
        wait_for_event(&mut session, |e| matches!(e, Event::SessionStarted { .. }))
    else {
        unreachable!()
    };
    assert_eq!(signed_in.state, SessionState::SignedIn);
    assert_eq!(signed_in.user.as_ref().unwrap().name, "Jane Doe");
    assert_eq!(stack.pin_prompts().len(), 1, "{:?}", stack.pin_prompts());
    let status: Status = call(&mut session, r#"{"method":"status"}"#);
    assert_eq!(status.readers[0].name, stack.bed.reader_name(0));
    assert_eq!(
        status.readers[0].card.as_ref().unwrap().serial.as_deref(),
        Some(card.serial.to_string().as_str())
    );

    // The ticket is the service's, for this holder.
    let ticket: Ticket = call(&mut session, r#"{"method":"ticket"}"#);
    let cms = CmsClient::new(stack.cms_url(), stack.cms.ca().certificate_pem()).unwrap();
    let valid = stack.block_on(cms.validate_ticket(&ticket.ticket)).unwrap();
    assert_eq!(valid.user.id, card.user_id);

    // Pulled: the session ends, and the service no longer takes the ticket.
    stack.bed.remove(0, inserted).unwrap();
    let ended = wait_for_event(&mut session, |e| {
        matches!(
            e,
            Event::SessionEnded {
                reason: SessionEndReason::CardRemoved,
                ..
            }
        )
    });
    assert!(
        matches!(ended, Event::SessionEnded { serial: Some(s), .. } if s == card.serial.to_string())
    );
    let refused = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(50));
        stack.block_on(cms.validate_ticket(&ticket.ticket)).err()
    });
    assert!(refused.is_some(), "the ticket outlived the session");
    let status: Status = call(&mut session, r#"{"method":"status"}"#);
    assert_eq!(status.session.state, SessionState::NoCard);
}

/// What `cmd` runs to check the installer: each step echoes a word and its exit status, for the
/// test to read. Wine's null display driver lets windows exist without a display, so the
/// session's end reaches the agent's hidden window: `wineboot --end-session --shutdown` sends
/// what a logoff or shutdown sends, without running the Run entries again as a fresh boot would.
const INSTALLER_CHECK: &str = r#"@echo off
reg add "HKCU\Software\Wine\Drivers" /v Graphics /d null /f >nul
start /wait msiexec /i "%MSI%" /qn /l*v "%~dp0install.log"
echo install %errorlevel%
set logon=
for /f "tokens=3,*" %%a in ('reg query "HKLM\Software\Microsoft\Windows\CurrentVersion\Run" /v "Identity Agent" ^| find "REG_SZ"') do set logon=%%b
echo logon %logon%
if exist "C:\ProgramData\Identity Agent\config.toml" echo configuration installed
%logon%
echo agent-start %errorlevel%
"C:\Program Files\Identity Agent\iactl.exe" status
echo iactl-status %errorlevel%
wineboot --end-session --shutdown
echo session-end %errorlevel%
set waited=0
:wait_for_exit
tasklist | find "identity-agent.exe" >nul || goto exited
set /a waited+=1
if %waited% geq 10 goto exited
ping -n 2 127.0.0.1 >nul
goto wait_for_exit
:exited
tasklist | find "identity-agent.exe" >nul && echo agent still running
copy "%LOCALAPPDATA%\Identity Agent\agent.log" "%~dp0agent.log" >nul
start /wait msiexec /x "%MSI%" /qn
echo uninstall %errorlevel%
reg query "HKLM\Software\Microsoft\Windows\CurrentVersion\Run" /v "Identity Agent" >nul 2>nul
echo run-entry-after %errorlevel%
if exist "C:\Program Files\Identity Agent\identity-agent.exe" echo program left behind
"#;

/// `path` as Windows under Wine names it (the host's root is drive Z:).
fn windows_path(path: &std::path::Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

#[test]
fn the_installer_puts_the_agent_where_its_logon_entry_starts_it_and_the_session_end_stops_it() {
    if let Some(why) = wine::missing_toolchain() {
        eprintln!("skipped: {why}");
        return;
    }
    let package = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package-windows"),
    )
    .args(["--profile", "dev"])
    .stderr(std::process::Stdio::inherit())
    .output()
    .unwrap();
    assert!(package.status.success(), "scripts/package-windows failed");
    let msi = String::from_utf8(package.stdout).unwrap();
    let msi = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(msi.lines().last().unwrap().trim())
        .canonicalize()
        .unwrap();
    let bed = TestBed::start().unwrap();
    let script = bed.dir().join("installer-check.bat");
    std::fs::write(
        &script,
        INSTALLER_CHECK
            .replace("%MSI%", &windows_path(&msi))
            .replace('\n', "\r\n"),
    )
    .unwrap();

    let run = wine::run(
        &bed,
        std::path::Path::new("cmd"),
        &["/c", &windows_path(&script)],
    )
    .unwrap();

    let lines: Vec<&str> = run.stdout.lines().map(str::trim_end).collect();
    let has = |line: &str| lines.contains(&line);
    assert!(has("install 0"), "{}", run.stdout);
    // The Run entry names the installed agent, and starting it as logon would returns once its
    // pipe exists: iactl reaches it at once, and it sees the test bed's readers.
    assert!(
        has(r#"logon "C:\Program Files\Identity Agent\identity-agent.exe""#),
        "{}",
        run.stdout
    );
    assert!(has("configuration installed"), "{}", run.stdout);
    assert!(has("agent-start 0"), "{}", run.stdout);
    assert!(has("iactl-status 0"), "{}", run.stdout);
    assert!(
        run.stdout.contains(&bed.reader_name(0)),
        "iactl's status names no reader: {}",
        run.stdout
    );
    // The session's end stops the agent a logon started (it has no console, only its hidden
    // window), so the uninstall can remove its program.
    assert!(has("session-end 0"), "{}", run.stdout);
    let log = std::fs::read_to_string(bed.dir().join("agent.log")).unwrap();
    assert!(log.contains("session end: shutting down"), "{log}");
    assert!(!has("agent still running"), "{}\n{log}", run.stdout);
    assert!(has("uninstall 0"), "{}", run.stdout);
    assert!(
        has("run-entry-after 1"),
        "the Run entry outlived the uninstall: {}",
        run.stdout
    );
    assert!(!has("program left behind"), "{}", run.stdout);
}
