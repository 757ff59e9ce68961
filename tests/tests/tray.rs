//! The tray on a real desktop over the real stack: Xvfb, a private session bus, dunst and
//! xfce4-panel (its systray plugin hosts StatusNotifierItems), with pcscd, virtual cards, the
//! CMS and the agent. What the tray shows is read back over D-Bus as the panel reads it — the
//! item's properties and its dbusmenu layout — and notifications from dunst; menu entries are
//! clicked with the host's `Event` call and notification actions chosen through dunst.
//! Screenshots are saved under `target/tmp/tray/`.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testbed::desktop::{Desktop, DesktopProcess, HistoryEntry};
use testbed::sni::{self, ItemAddress, ItemProperties, MenuNode};
use testbed::stack::{workspace_binary, AgentOptions, Stack, NURSE, WARD_MANAGER};
use tray::icons::IconKind;

const WAIT: Duration = Duration::from_secs(10);

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tray");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Which of the tray's icons a pixmap is (exact pixels), if any.
fn icon_of(props: &ItemProperties) -> Option<IconKind> {
    let (width, _, rgba) = props.icon.first()?;
    IconKind::ALL.into_iter().find(|kind| {
        kind.pixels(*width)
            .is_ok_and(|p| p.size == *width && p.rgba == *rgba)
    })
}

/// Polls the item over D-Bus every 20 ms, keeping every icon it showed, in order.
struct IconWatch {
    seen: Arc<Mutex<Vec<IconKind>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl IconWatch {
    fn start(desktop: &Desktop, item: &ItemAddress) -> Self {
        let bus = desktop.bus().unwrap();
        let item = item.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, halt) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kind) = sni::properties(&bus, &item).ok().as_ref().and_then(icon_of) {
                    let mut seen = s.lock().unwrap();
                    if seen.last() != Some(&kind) {
                        seen.push(kind);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { seen, stop }
    }

    fn seen(&self) -> Vec<IconKind> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for IconWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Tray<'a> {
    desktop: &'a Desktop,
    bus: zbus::blocking::Connection,
    item: ItemAddress,
}

impl Tray<'_> {
    fn props(&self) -> ItemProperties {
        sni::properties(&self.bus, &self.item).expect("the item's properties")
    }

    fn menu(&self) -> MenuNode {
        let path = self.props().menu;
        sni::menu_layout(&self.bus, &self.item, &path).expect("the item's menu")
    }

    /// Waits until the icon is `kind`; returns the properties then.
    fn wait_icon(&self, kind: IconKind) -> ItemProperties {
        let deadline = Instant::now() + WAIT;
        loop {
            let props = self.props();
            if icon_of(&props) == Some(kind) {
                return props;
            }
            assert!(
                Instant::now() < deadline,
                "the icon stayed {:?}, not {kind:?}; title {:?}, tooltip {:?}; tray log:\n{}",
                icon_of(&props),
                props.title,
                props.tooltip_text,
                std::fs::read_to_string(self.desktop.dir().join("tray.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the menu has an entry starting `label` that `ready` accepts; returns it.
    fn wait_entry(&self, label: &str, ready: impl Fn(&MenuNode) -> bool + Copy) -> MenuNode {
        let deadline = Instant::now() + WAIT;
        loop {
            let menu = self.menu();
            if let Some(entry) = menu.find_where(label, ready) {
                return entry.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no menu entry {label:?} as wanted in {menu:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Clicks the enabled menu entry starting `label`.
    fn click(&self, label: &str) {
        let entry = self.wait_entry(label, |e| e.enabled);
        sni::click(&self.bus, &self.item, &self.props().menu, entry.id).expect("clicking");
    }
}

/// The notification in `history` whose summary starts with `prefix`.
fn notification_starting<'a>(history: &'a [HistoryEntry], prefix: &str) -> &'a HistoryEntry {
    history
        .iter()
        .find(|n| n.summary.starts_with(prefix))
        .unwrap_or_else(|| panic!("{history:#?}"))
}

fn wait_until(desktop: &Desktop, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; tray log:\n{}",
            std::fs::read_to_string(desktop.dir().join("tray.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_tray_follows_the_agent_and_renews_from_the_expiry_notification() {
    let started = Instant::now();
    let out = artifacts();
    let mut stack = Stack::start().unwrap();
    let (jane, _) = stack.user("Jane Doe", &[NURSE, WARD_MANAGER]).unwrap();
    let card = stack
        .issue(
            &jane,
            "4082A001132F2817".parse().unwrap(),
            "246810",
            InitialValidity::Days(30),
            AtrProfile::NhsCis,
        )
        .unwrap();
    let expired = stack
        .nurse_card_of(
            "Harry Holder",
            "4082A001132F2819".parse().unwrap(),
            "975310",
            InitialValidity::Expired,
            AtrProfile::Oberthur,
        )
        .unwrap();
    // The first sign-in's prompt stays open (to see "signing in"); then Jane's PIN for the
    // sign-in and for the renewal.
    stack
        .pin_answers(&["!hang", &card.pin, &card.pin, &card.pin])
        .unwrap();

    let desktop = Desktop::start().unwrap();
    let socket = stack.bed.dir().join("run").join("agent.sock");
    let mut command = desktop.command(workspace_binary("identity-agent-tray").unwrap());
    command
        .arg("--socket")
        .arg(&socket)
        .args(["--portal-url", "https://portal.example.nhs.uk/"])
        .env("RUST_LOG", "info,tray=debug")
        .stderr(desktop.log_file("tray.log").unwrap());
    let mut process = DesktopProcess::spawn(command, "identity-agent-tray").unwrap();
    let bus = desktop.bus().unwrap();
    let item = sni::wait_for_item(&bus, "identity-agent", WAIT).unwrap();
    let tray = Tray {
        desktop: &desktop,
        bus,
        item: item.clone(),
    };
    let watch = IconWatch::start(&desktop, &item);

    // No agent yet.
    let props = tray.wait_icon(IconKind::AgentNotRunning);
    assert_eq!(props.status, "Active");
    assert_eq!(props.title, "Identity Agent — Agent not running");
    assert_eq!(tray.menu().labels()[0], "Agent not running");
    assert!(!tray.wait_entry("Sign in", |_| true).enabled);

    // The agent starts: no card.
    let options = AgentOptions {
        login_on_insert: false,
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    tray.wait_icon(IconKind::NoCard);
    assert_eq!(tray.menu().labels()[0], "No smartcard");

    // A card: inserted, then "Sign in" from the menu; the PIN prompt stays open.
    let inserted = stack.insert(0, &card).unwrap();
    let props = tray.wait_icon(IconKind::CardInserted);
    assert!(
        props
            .tooltip_text
            .contains("Card 4082A001132F2817 (NHS CIS)"),
        "{props:?}"
    );
    tray.click("Sign in");
    tray.wait_icon(IconKind::SigningIn);
    assert!(!tray.wait_entry("Signing in", |_| true).enabled);
    // Pulled during the prompt, put back, signed in from the menu.
    stack.bed.remove(0, inserted).unwrap();
    tray.wait_icon(IconKind::NoCard);
    let inserted = stack.insert(0, &card).unwrap();
    tray.wait_icon(IconKind::CardInserted);
    tray.click("Sign in");
    let props = tray.wait_icon(IconKind::ExpiringSoon);
    assert_eq!(
        props.title,
        "Identity Agent — Signed in — certificate expires soon"
    );
    let tooltip = &props.tooltip_text;
    assert!(tooltip.starts_with("Jane Doe\n"), "{tooltip}");
    assert!(tooltip.contains("Card 4082A001132F2817"), "{tooltip}");
    assert!(
        tooltip.contains("Certificate expires ") && tooltip.contains(" days left)"),
        "{tooltip}"
    );
    assert!(tray.wait_entry("Sign out", |e| e.enabled).enabled);
    assert_eq!(
        tray.wait_entry("Renew certificates", |e| e.enabled).label,
        "Renew certificates"
    );

    // Roles: both of Jane's, the one chosen checked, and the tooltip names it.
    let roles = tray.wait_entry("Select role", |e| e.children.len() == 2);
    assert!(roles.submenu && roles.enabled);
    tray.click("Ward Manager — Leeds Teaching Hospitals");
    tray.wait_entry("Ward Manager — Leeds Teaching Hospitals", |e| {
        e.toggle_state == 1
    });
    tray.wait_entry("Staff Nurse — Leeds Teaching Hospitals", |e| {
        e.toggle_state == 0
    });
    wait_until(&desktop, "the tooltip names the role", || {
        tray.props()
            .tooltip_text
            .contains("Ward Manager — Leeds Teaching Hospitals")
    });

    // The expiry warning the agent gave at sign-in is on screen, with its actions.
    wait_until(&desktop, "the expiry notification", || {
        desktop.notifications_displayed().unwrap_or(0) >= 1
    });
    std::thread::sleep(Duration::from_millis(300));
    desktop.screenshot(&out.join("notification.png")).unwrap();
    desktop
        .screenshot_area(&out.join("panel.png"), (0, 0, 360, 36))
        .unwrap();
    // The menu as the panel draws it, opened with a right click on the icon.
    desktop.click(14, 16, 3).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    desktop
        .screenshot_area(&out.join("menu.png"), (0, 0, 520, 380))
        .unwrap();
    desktop.key("Escape").unwrap();

    let offered = desktop.choose_notification_action("Renew now").unwrap();
    assert!(
        offered.contains("Renew now") && offered.contains("Later"),
        "dunst offered {offered:?}"
    );
    // Renew now ran a real renewal: the icon showed it, and the card and the CMS agree.
    let props = tray.wait_icon(IconKind::SignedIn);
    assert!(
        watch.seen().contains(&IconKind::InProgress),
        "{:?}",
        watch.seen()
    );
    assert!(
        props.tooltip_text.contains("Ward Manager"),
        "still signed in: {props:?}"
    );
    stack.card_agrees_with_cms(0, &card).unwrap();
    assert_eq!(stack.card_record(&card).unwrap().renewals_used, 1);
    wait_until(&desktop, "the renewal's result notification", || {
        std::fs::read_to_string(desktop.dir().join("tray.log"))
            .unwrap_or_default()
            .contains("Your smartcard has been renewed — valid until")
    });
    std::thread::sleep(Duration::from_millis(300));
    desktop.screenshot(&out.join("renewed.png")).unwrap();
    desktop.dunstctl(&["close-all"]).unwrap();
    let history = desktop.notification_history().unwrap();
    let warning = notification_starting(
        &history,
        "The security certificate for your smartcard expires on ",
    );
    assert!(warning.summary.ends_with(". Renew now?"), "{warning:?}");
    assert_eq!(warning.category, "x-identity-agent.expiry");
    assert_eq!(warning.appname, "Identity Agent");
    let renewed = notification_starting(&history, "Your smartcard has been renewed — valid until ");
    assert_eq!(renewed.category, "transfer.complete");
    // One notification per condition: progress and result replaced one another.
    assert_eq!(
        history
            .iter()
            .filter(|n| n.category.starts_with("transfer"))
            .count(),
        1,
        "{history:#?}"
    );

    // Card details and About answer in a notification each.
    for (entry, summary) in [
        ("Card details", "Smartcard details"),
        ("About Identity Agent", "About Identity Agent"),
    ] {
        tray.click(entry);
        wait_until(&desktop, summary, || {
            desktop.notifications_displayed().unwrap_or(0) >= 1
        });
        desktop.dunstctl(&["close-all"]).unwrap();
        let history = desktop.notification_history().unwrap();
        assert_eq!(history[0].summary, summary, "{history:#?}");
        if entry == "Card details" {
            let serial = card.serial.to_string();
            assert!(history[0].body.contains(&serial), "{history:#?}");
        }
    }

    // The card pulled: signed out, told so.
    stack.bed.remove(0, inserted).unwrap();
    tray.wait_icon(IconKind::NoCard);
    wait_until(&desktop, "the signed-out notification", || {
        desktop.notifications_displayed().unwrap_or(0) >= 1
    });
    desktop.dunstctl(&["close-all"]).unwrap();
    let history = desktop.notification_history().unwrap();
    assert_eq!(
        history[0].summary, "You have been signed out",
        "{history:#?}"
    );
    assert_eq!(history[0].category, "device.removed");

    // An expired card: the RA is needed, renewing is not offered, signing in is refused.
    let _expired_in = stack.insert(0, &expired).unwrap();
    tray.wait_icon(IconKind::NeedsRa);
    assert_eq!(
        tray.wait_entry("Renew certificates", |_| true).label,
        "Renew certificates (expired: contact your RA)"
    );
    tray.click("Sign in");
    wait_until(&desktop, "the expired-card notification", || {
        desktop.notifications_displayed().unwrap_or(0) >= 1
    });
    desktop.dunstctl(&["close-all"]).unwrap();
    let history = desktop.notification_history().unwrap();
    assert_eq!(
        history[0].summary,
        "Your smartcard has expired — contact your Registration Authority"
    );
    assert_eq!(history[0].urgency, "CRITICAL");
    assert_eq!(history[0].category, "device.error");

    // The agent killed: "not running"; restarted: back, with one item and one menu.
    // The entries below the status lines, which must come back once each.
    let entries = |menu: MenuNode| -> Vec<String> {
        let labels = menu.labels();
        let first = labels.iter().position(|l| l == "---").unwrap_or(0);
        labels[first..].to_vec()
    };
    let labels_before = entries(tray.menu());
    stack.kill_agent().unwrap();
    tray.wait_icon(IconKind::AgentNotRunning);
    assert_eq!(tray.menu().labels()[0], "Agent not running");
    stack.start_agent(&options).unwrap();
    tray.wait_icon(IconKind::NeedsRa);
    assert_eq!(entries(tray.menu()), labels_before);
    assert_eq!(
        sni::wait_for_item(&tray.bus, "identity-agent", WAIT).unwrap(),
        item
    );
    assert!(process.running(), "the tray is still running");

    // pcscd stopped under the agent: the error icon, and the first line says what is wrong;
    // started again: the tray follows the agent back.
    stack.bed.stop_pcscd();
    tray.wait_icon(IconKind::Error);
    let headline = tray.menu().labels()[0].clone();
    assert!(
        headline.contains("pcscd") || headline.contains("smartcard service"),
        "{headline}"
    );
    stack.bed.restart_pcscd().unwrap();
    wait_until(&desktop, "the tray to leave the error icon", || {
        icon_of(&tray.props()).is_some_and(|kind| kind != IconKind::Error)
    });
    eprintln!(
        "icons shown: {:?}; took {:?}",
        watch.seen(),
        started.elapsed()
    );
}
