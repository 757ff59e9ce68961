//! The Windows build under Wine (`docs/WINDOWS.md`): a Windows program of this workspace reads
//! the virtual card through Wine's winscard and the test bed's private pcscd — the same
//! readers, card and serial a Linux client sees; and the Windows agent, with the Windows
//! scripted pinentry, signs a holder in against the reference CMS, serves its named pipe with
//! a security descriptor for the user alone, renews the card, and ends the session when the
//! card is pulled; and
//! the Windows installer puts the agent and the tray where their Run entries start them at
//! logon; and the Windows tray shows the agent's state in the notification area of Wine's
//! desktop (on Xvfb), tells of a pulled card in its balloon, and signs out from its menu.
//!
//! Skipped, saying why, only when the Windows toolchain is not installed (`scripts/setup`
//! installs it). One pcscd per test process: run with `cargo nextest run -p tests --test windows`.

use agent_ipc::{
    Event, OperationStatus, OperationStep, SessionEndReason, SessionState, Status, Ticket,
};
use cardsim::{AtrProfile, CardFile, CardSpec, Faults};
use cms::issuance::InitialValidity;
use cms_api::client::CmsClient;
use piv::CardSerial;
use std::time::Duration;
use testbed::desktop::Desktop;
use testbed::stack::{AgentOptions, Stack, StackCard};
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

/// The stack with a nurse's card of `serial` expiring in `days`, whose PIN the scripted
/// pinentry answers twice, and the Windows pinentry's arguments (its script and its log).
fn stack_with_nurse(serial: &str, days: i64) -> (Stack, StackCard, Vec<String>) {
    let stack = Stack::start().unwrap();
    let serial: CardSerial = serial.parse().unwrap();
    let card = stack
        .nurse_card(serial, InitialValidity::Days(days), AtrProfile::NhsCis)
        .unwrap();
    stack.pin_answers(&[&card.pin, &card.pin]).unwrap();
    let dir = stack.bed.dir();
    let pinentry_args = vec![
        "--script".into(),
        dir.join("pinentry-script").display().to_string(),
        "--log".into(),
        dir.join("pinentry.log").display().to_string(),
    ];
    (stack, card, pinentry_args)
}

#[test]
fn the_windows_agent_signs_in_serves_its_pipe_to_the_user_alone_renews_and_ends_on_removal() {
    if let Some(why) = wine::missing_toolchain() {
        eprintln!("skipped: {why}");
        return;
    }
    let windows = WindowsAgent::build("dev").unwrap();
    // Expiring in 30 days, so the holder may renew.
    let (stack, card, pinentry_args) = stack_with_nurse("4082A001132F2901", 30);
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

    // Renewed through the Windows agent (its journal's token in the Credential Manager): the
    // PIN asked once more, the session kept, the card's certificates good for two more years.
    let renewed: OperationStatus = call(&mut session, r#"{"method":"renew"}"#);
    assert!(renewed.done, "{renewed:?}");
    assert_eq!(renewed.step, OperationStep::Confirmed);
    assert!(
        renewed.message.starts_with("Renewed until "),
        "{}",
        renewed.message
    );
    assert_eq!(stack.pin_prompts().len(), 2, "{:?}", stack.pin_prompts());
    let status: Status = call(&mut session, r#"{"method":"status"}"#);
    assert_eq!(status.session.state, SessionState::SignedIn);
    let days = status.readers[0].card.as_ref().unwrap().days_left.unwrap();
    assert!(days > 700, "{days}");
    assert_eq!(stack.card_record(&card).unwrap().renewals_used, 1);

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
/// The tray, started from its own Run entry, is ended before that: under Wine the session's end
/// with the tray running stalls `wineboot` now and then (on Windows the system ends a program
/// once its windows have answered `WM_ENDSESSION`). Then a newer version is installed over
/// the first, an older one refused, and the newer removed.
const INSTALLER_CHECK: &str = r#"@echo off
reg add "HKCU\Software\Wine\Drivers" /v Graphics /d null /f >nul
start /wait msiexec /i "%MSI%" /qn /l*v "%~dp0install.log"
echo install %errorlevel%
set logon=
for /f "tokens=3,*" %%a in ('reg query "HKLM\Software\Microsoft\Windows\CurrentVersion\Run" /v "Identity Agent" ^| find "REG_SZ"') do set logon=%%b
echo logon %logon%
set tray=
for /f "tokens=4,*" %%a in ('reg query "HKLM\Software\Microsoft\Windows\CurrentVersion\Run" /v "Identity Agent Tray" ^| find "REG_SZ"') do set tray=%%b
echo tray-logon %tray%
if exist "C:\ProgramData\Identity Agent\config.toml" echo configuration installed
%logon%
echo agent-start %errorlevel%
"C:\Program Files\Identity Agent\iactl.exe" status
echo iactl-status %errorlevel%
start "" %tray%
set waited=0
:wait_for_tray
findstr /c:"connected to the agent" "%LOCALAPPDATA%\Identity Agent\tray.log" >nul 2>nul && goto tray_up
set /a waited+=1
if %waited% geq 20 goto tray_up
ping -n 2 127.0.0.1 >nul
goto wait_for_tray
:tray_up
copy "%LOCALAPPDATA%\Identity Agent\tray.log" "%~dp0tray.log" >nul
taskkill /f /im identity-agent-tray.exe >nul
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
start /wait msiexec /i "%MSI_NEXT%" /qn /l*v "%~dp0upgrade.log"
echo upgrade %errorlevel%
if exist "C:\Program Files\Identity Agent\identity-agent.exe" echo upgraded program in place
start /wait msiexec /i "%MSI%" /qn
echo downgrade %errorlevel%
start /wait msiexec /x "%MSI_NEXT%" /qn
echo uninstall %errorlevel%
reg query "HKLM\Software\Microsoft\Windows\CurrentVersion\Run" /v "Identity Agent" >nul 2>nul
echo run-entry-after %errorlevel%
reg query "HKLM\Software\Microsoft\Windows\CurrentVersion\Run" /v "Identity Agent Tray" >nul 2>nul
echo tray-run-entry-after %errorlevel%
if exist "C:\Program Files\Identity Agent\identity-agent.exe" echo program left behind
if exist "C:\Program Files\Identity Agent\identity-agent-tray.exe" echo program left behind
"#;

/// Builds the Windows installer of the debug build (`scripts/package-windows`), as `version`
/// when one is given, and returns its path.
fn package_windows(version: Option<&str>) -> std::path::PathBuf {
    let _lock = wine::build_lock().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut command = std::process::Command::new(repo.join("scripts/package-windows"));
    command.args(["--profile", "dev"]);
    if let Some(version) = version {
        command.args(["--version", version]);
    }
    let package = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(package.status.success(), "scripts/package-windows failed");
    let msi = String::from_utf8(package.stdout).unwrap();
    repo.join(msi.lines().last().unwrap().trim())
        .canonicalize()
        .unwrap()
}

#[test]
fn the_installer_puts_agent_and_tray_where_logon_starts_them_and_upgrades_and_removes_them() {
    if let Some(why) = wine::missing_toolchain() {
        eprintln!("skipped: {why}");
        return;
    }
    let msi = package_windows(None);
    // The same programs as a newer version: the upgrade.
    let version: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    let next = format!("{}.{}.{}", version[0], version[1], version[2] + 1);
    let msi_next = package_windows(Some(&next));
    let bed = TestBed::start().unwrap();
    let script = bed.dir().join("installer-check.bat");
    std::fs::write(
        &script,
        INSTALLER_CHECK
            .replace("%MSI_NEXT%", &wine::windows_path(&msi_next))
            .replace("%MSI%", &wine::windows_path(&msi))
            .replace('\n', "\r\n"),
    )
    .unwrap();

    let run = wine::run(
        &bed,
        std::path::Path::new("cmd"),
        &["/c", &wine::windows_path(&script)],
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
    // And the tray's Run entry names the installed tray.
    assert!(
        has(r#"tray-logon "C:\Program Files\Identity Agent\identity-agent-tray.exe""#),
        "{}",
        run.stdout
    );
    assert!(has("configuration installed"), "{}", run.stdout);
    // Started as a logon starts it, with no standard error, the tray logs beside the agent
    // and finds it.
    let tray_log = std::fs::read_to_string(bed.dir().join("tray.log")).unwrap_or_default();
    assert!(tray_log.contains("connected to the agent"), "{tray_log}");
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
    // A newer version replaces it; an older one does not replace the newer; and removing the
    // newer leaves nothing of either (had the upgrade kept the first product, its components
    // would stay installed).
    assert!(has("upgrade 0"), "{}", run.stdout);
    assert!(has("upgraded program in place"), "{}", run.stdout);
    assert!(!has("downgrade 0"), "{}", run.stdout);
    assert!(has("uninstall 0"), "{}", run.stdout);
    assert!(
        has("run-entry-after 1") && has("tray-run-entry-after 1"),
        "a Run entry outlived the uninstall: {}",
        run.stdout
    );
    assert!(!has("program left behind"), "{}", run.stdout);
}

/// The size of Wine's desktop: the Xvfb screen's, so its taskbar is on the screen's bottom.
const WINE_DESKTOP: (u32, u32) = (1024, 600);

/// Where the tray's icon is in the taskbar's notification area: the box of what is not the
/// taskbar's white in its bottom right corner, once something is there.
fn find_tray_icon(desktop: &Desktop) -> (u32, u32, u32, u32) {
    let (width, height) = WINE_DESKTOP;
    let area = (width - 64, height - 18, 64, 18);
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let pixels = desktop.pixels(area).unwrap();
        let marked: Vec<(u32, u32)> = pixels
            .chunks(3)
            .enumerate()
            .filter(|(_, rgb)| *rgb != [0xff, 0xff, 0xff])
            .map(|(i, _)| (i as u32 % area.2, i as u32 / area.2))
            .collect();
        if let (Some(left), Some(right), Some(top), Some(bottom)) = (
            marked.iter().map(|p| p.0).min(),
            marked.iter().map(|p| p.0).max(),
            marked.iter().map(|p| p.1).min(),
            marked.iter().map(|p| p.1).max(),
        ) {
            return (
                area.0 + left,
                area.1 + top,
                right - left + 1,
                bottom - top + 1,
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no icon in Wine's notification area"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the tray's log has a line with each of `words`.
fn wait_for_tray_log(log: &std::path::Path, words: &[&str]) -> String {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|line| words.iter().all(|w| line.contains(w)))
        {
            return line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tray never logged {words:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the pixels of `area` differ from `before`, and returns them once they hold still.
fn wait_for_change(desktop: &Desktop, area: (u32, u32, u32, u32), before: &[u8]) -> Vec<u8> {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let now = desktop.pixels(area).unwrap();
        if now != before {
            std::thread::sleep(Duration::from_millis(300));
            let after = desktop.pixels(area).unwrap();
            if after == now {
                return now;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the screen did not change at {area:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens the icon's menu with a right click and clicks the entry below its first separator,
/// Sign in or Sign out. Wine's menus take no keys here (the hidden window that owns the menu
/// does not become the foreground), so the entry is found on the screen: the menu's top edge
/// and its separators are rows with a long run of one dark colour that is not the desktop's,
/// the separators inset from the edge.
fn click_sign_entry(
    desktop: &Desktop,
    (x, y, width, height): (u32, u32, u32, u32),
    out: &std::path::Path,
) {
    desktop.click(x + width / 2, y + height / 2, 3).unwrap();
    // Off the icon, so that its tooltip goes.
    desktop.point(x / 2, y / 2).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    desktop.screenshot(&out.join("menu.png")).unwrap();
    let area = (WINE_DESKTOP.0 - 512, 0, 512, y);
    let pixels = desktop.pixels(area).unwrap();
    let row = |r: u32| &pixels[(r * area.2 * 3) as usize..((r + 1) * area.2 * 3) as usize];
    // The longest run of one dark colour in a row, other than the desktop's: (start, length).
    let separator = |r: u32| -> Option<(u32, u32)> {
        let mut best = None;
        let mut start = 0;
        let colours: Vec<&[u8]> = row(r).chunks(3).collect();
        for i in 1..=colours.len() {
            if i == colours.len() || colours[i] != colours[start] {
                let c = colours[start];
                let dark = (c[0] as u32 * 3 + c[1] as u32 * 6 + c[2] as u32) / 10 < 200;
                let desktop_blue = u32::from(c[2]) > u32::from(c[0]) + 60;
                let length = (i - start) as u32;
                if dark && !desktop_blue && length > 150 && best.is_none_or(|(_, l)| length > l) {
                    best = Some((start as u32, length));
                }
                start = i;
            }
        }
        best
    };
    let lines: Vec<(u32, (u32, u32))> = (0..area.3)
        .filter_map(|r| separator(r).map(|run| (r, run)))
        .collect();
    // The first is the menu's top edge; the first line inset from it, the first separator.
    let (_, (edge, _)) = lines.first().copied().expect("no menu on the screen");
    let (first, (left, length)) = lines
        .iter()
        .copied()
        .find(|(_, (start, _))| *start > edge)
        .expect("no separator in the menu");
    // The separator's line is in the middle of its few pixels; the entry follows it.
    let entry = first + 12;
    desktop.click(area.0 + left + length / 3, entry, 1).unwrap();
}

/// What the test runs under Wine: the tray on Wine's desktop (with a taskbar and its
/// notification area), its log going to a file, then `line-client` with the agent.
const TRAY_SESSION: &str = r#"@echo off
set RUST_LOG=tray=debug
start "" explorer /desktop=shell,%SIZE% "%TRAY%" --socket %PIPE% --log-file "%LOG%"
%CLIENT%
"#;

#[test]
fn the_windows_tray_follows_the_agent_tells_of_a_pulled_card_and_signs_out_from_its_menu() {
    if let Some(why) = wine::missing_toolchain() {
        eprintln!("skipped: {why}");
        return;
    }
    let windows = WindowsAgent::build("dev").unwrap();
    let tray = wine::build("tray", Program::Bin("identity-agent-tray")).unwrap();
    let (stack, card, pinentry_args) = stack_with_nurse("4082A001132F2902", 400);
    let dir = stack.bed.dir();
    let client = windows
        .command_line(&stack, &AgentOptions::default(), pinentry_args)
        .unwrap();
    let tray_log = dir.join("tray.log");
    let session_script = dir.join("tray-session.bat");
    let client_line = std::iter::once(wine::windows_path(std::path::Path::new(&client[0])))
        .chain(client[1..].iter().map(|a| format!("\"{a}\"")))
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        &session_script,
        TRAY_SESSION
            .replace("%SIZE%", &format!("{}x{}", WINE_DESKTOP.0, WINE_DESKTOP.1))
            .replace("%TRAY%", &wine::windows_path(&tray))
            .replace("%PIPE%", &WindowsAgent::pipe())
            .replace("%LOG%", &wine::windows_path(&tray_log))
            .replace("%CLIENT%", &client_line),
    )
    .unwrap();
    let desktop = Desktop::start().unwrap();
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("windows-tray");
    std::fs::create_dir_all(&out).unwrap();
    // Wine's log and the tray's, kept beside the screenshots however the test ends.
    struct KeepLogs(Vec<(std::path::PathBuf, std::path::PathBuf)>);
    impl Drop for KeepLogs {
        fn drop(&mut self) {
            for (from, to) in &self.0 {
                let _ = std::fs::copy(from, to);
            }
        }
    }
    let _logs = KeepLogs(vec![
        (dir.join("wine-session.err"), out.join("wine.err")),
        (tray_log.clone(), out.join("tray.log")),
    ]);
    let mut session = WineSession::start_on(
        &stack.bed,
        Some(desktop.display()),
        std::path::Path::new("cmd"),
        &["/c", &wine::windows_path(&session_script)],
    )
    .unwrap();
    session.expect(STEP, |line| line == "ready").unwrap();

    // The tray finds the agent; its icon is in the notification area, saying no card.
    wait_for_tray_log(&tray_log, &["connected to the agent"]);
    let icon = find_tray_icon(&desktop);
    std::thread::sleep(Duration::from_millis(500));
    let no_card = desktop.pixels(icon).unwrap();
    desktop.screenshot(&out.join("no-card.png")).unwrap();

    // Inserted and signed in: the icon changes.
    let inserted = stack.insert(0, &card).unwrap();
    wait_for_event(&mut session, |e| matches!(e, Event::SessionStarted { .. }));
    wait_for_tray_log(&tray_log, &["agent event", "session_started"]);
    let signed_in = wait_for_change(&desktop, icon, &no_card);
    desktop.screenshot(&out.join("signed-in.png")).unwrap();

    // Pulled: signed out, and the icon's balloon says why. The notification area takes the
    // balloon; Wine 10's taskbar does not draw balloons, so what it looks like is for Windows.
    stack.bed.remove(0, inserted).unwrap();
    wait_for_event(&mut session, |e| {
        matches!(
            e,
            Event::SessionEnded {
                reason: SessionEndReason::CardRemoved,
                ..
            }
        )
    });
    wait_for_tray_log(
        &tray_log,
        &["notification shown", "You have been signed out"],
    );
    wait_for_tray_log(&tray_log, &["balloon", "shown=true"]);
    wait_for_change(&desktop, icon, &signed_in);
    desktop.screenshot(&out.join("signed-out.png")).unwrap();

    // In again and signed in; then Sign out from the icon's menu.
    let _inserted = stack.insert(0, &card).unwrap();
    wait_for_event(&mut session, |e| matches!(e, Event::SessionStarted { .. }));
    wait_for_change(&desktop, icon, &no_card);
    click_sign_entry(&desktop, icon, &out);
    wait_for_event(&mut session, |e| {
        matches!(
            e,
            Event::SessionEnded {
                reason: SessionEndReason::Logout,
                ..
            }
        )
    });
    wait_for_tray_log(&tray_log, &["menu", "SignInOut"]);
    let problems = std::fs::read_to_string(&tray_log).unwrap();
    assert!(!problems.contains("WARN"), "the tray warned:\n{problems}");
    eprintln!("screenshots in {}", out.display());
}
