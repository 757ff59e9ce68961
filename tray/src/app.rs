//! The tray app's one loop: what the agent link reports, what the user chooses in the menu and
//! in notifications, and what commands came to, each turned into a new view of the item and
//! the notifications it deserves. Everything here runs on one thread (a tokio `LocalSet`):
//! the menu's objects are not `Send`; the item itself is served by a thread of its own (ksni's
//! on D-Bus, or on Windows the one that pumps the notification icon's messages).

use crate::dates::display_date;
use crate::front::{forward_menu_events, Front, MenuChoice};
use crate::link::{self, Command, CommandOutcome, LinkUpdate};
use crate::model::AgentView;
use crate::notices::{
    self, Condition, Notice, NoticeAction, Notices, Urgency, ACTION_LATER, ACTION_RENEW,
};
use crate::notifier::Notifier;
use crate::portal;
use crate::stop::StopRequests;
use agent_ipc::{CheckOutcome, ClientError, ErrorCode, SessionState};
use anyhow::Result;
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// How the tray is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The agent's socket.
    pub socket: PathBuf,
    /// The portal the menu opens (`None`: the entry says none is configured).
    pub portal_url: Option<String>,
    /// Days before expiry that count as "expiring soon".
    pub warning_days: i64,
}

type CommandDone = (Command, Result<CommandOutcome, ClientError>);

/// Runs the tray until Quit or a stop request ([`StopRequests`]). Call inside a
/// `tokio::task::LocalSet`.
pub async fn run(options: Options) -> Result<()> {
    let (link_tx, mut link_rx) = unbounded_channel();
    tokio::task::spawn_local(link::run(options.socket.clone(), link_tx));
    let (menu_tx, mut menu_rx) = unbounded_channel();
    forward_menu_events(menu_tx);
    let (done_tx, mut done_rx) = unbounded_channel::<CommandDone>();
    let mut stop = StopRequests::new()?;

    let mut agent = AgentView {
        unreachable: Some("Connecting to the agent…".into()),
        ..AgentView::default()
    };
    let mut notices = Notices::default();
    let view = |agent: &AgentView| agent.view(options.warning_days, options.portal_url.as_deref());
    let mut front = Front::new(&view(&agent))?;
    let (action_tx, mut action_rx) = unbounded_channel();
    let mut notifier = Notifier::connect(action_tx, &front).await;
    tracing::info!(socket = %options.socket.display(), "tray started");

    loop {
        let mut todo: Vec<NoticeAction> = Vec::new();
        tokio::select! {
            Some(update) = link_rx.recv() => {
                let actions = notifier.actions_supported().await;
                let now = Instant::now();
                match update {
                    LinkUpdate::Connected(hello, status) => {
                        agent.connected(hello, *status);
                        todo = notices.on_connected(&agent, options.warning_days, actions, now);
                    }
                    LinkUpdate::Event(event) => {
                        tracing::debug!(event = event.name(), "agent event");
                        agent.apply(&event);
                        todo = notices.on_event(&agent, &event, actions, now);
                    }
                    LinkUpdate::Status(status) => agent.status = Some(*status),
                    LinkUpdate::Roles(roles) => agent.roles = roles,
                    LinkUpdate::Disconnected(why) => {
                        if agent.hello.is_some() || agent.unreachable.as_deref() != Some(why.as_str()) {
                            agent.disconnected(why);
                        }
                    }
                }
            }
            Some(choice) = menu_rx.recv() => {
                tracing::info!(?choice, "menu");
                let command = match choice {
                    MenuChoice::SignInOut => Some(if agent.session_state() == Some(SessionState::SignedIn) {
                        Command::SignOut
                    } else {
                        Command::SignIn
                    }),
                    MenuChoice::Role(id) => Some(Command::SelectRole(id)),
                    MenuChoice::Renew => Some(Command::Renew),
                    MenuChoice::CardDetails => Some(Command::CardDetails),
                    MenuChoice::CheckCard => Some(Command::CheckCard),
                    MenuChoice::OpenPortal => {
                        if let Some(url) = &options.portal_url {
                            portal::open(url);
                        }
                        None
                    }
                    MenuChoice::About => {
                        todo.push(info("About Identity Agent", about(&agent, &options)));
                        None
                    }
                    MenuChoice::Quit => break,
                };
                if let Some(command) = command {
                    start(&options, command, &done_tx);
                }
            }
            Some((id, key)) = action_rx.recv() => {
                match notifier.invoked(id, key) {
                    Some(invoked) if invoked.condition == Condition::ExpiryWarning => {
                        tracing::info!(action = %invoked.key, "expiry warning answered");
                        match invoked.key.as_str() {
                            ACTION_RENEW => start(&options, Command::Renew, &done_tx),
                            ACTION_LATER => todo = notices.snooze(Instant::now()),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            Some((command, outcome)) = done_rx.recv() => {
                if let (Command::SignIn, Err(ClientError::Agent(error))) = (&command, &outcome) {
                    // What the card or the service said stays on the icon; a card pulled
                    // during the prompt is not a failure.
                    if matches!(
                        error.code,
                        ErrorCode::CertificateExpired
                            | ErrorCode::CardCancelled
                            | ErrorCode::PinBlocked
                            | ErrorCode::WrongPin
                            | ErrorCode::CmsUnreachable
                    ) {
                        agent.failure = Some(error.clone());
                    }
                    todo = notices.on_login_refused(&agent, error);
                }
                todo.extend(finished(&command, outcome));
            }
            _ = stop.recv() => break,
        }
        let now = Instant::now();
        for action in todo {
            notifier.apply(action, now).await;
        }
        let shown = view(&agent);
        match front.show(&shown) {
            Ok(()) => tracing::trace!(icon = shown.icon.name(), "tray item up to date"),
            Err(e) => tracing::warn!("updating the tray item: {e:#}"),
        }
    }
    tracing::info!("tray stopped");
    Ok(())
}

fn start(options: &Options, command: Command, done: &UnboundedSender<CommandDone>) {
    let socket = options.socket.clone();
    let done = done.clone();
    tokio::task::spawn_local(async move {
        let outcome = link::run_command(&socket, &command).await;
        let _ = done.send((command, outcome));
    });
}

/// The notifications a finished command deserves (events bring the rest).
fn finished(command: &Command, outcome: Result<CommandOutcome, ClientError>) -> Vec<NoticeAction> {
    match (command, outcome) {
        (_, Ok(CommandOutcome::Details(d))) => {
            let body = [
                format!("Serial {} ({})", d.serial, d.card_type),
                format!("Holder {}", d.holder_name.as_deref().unwrap_or("not named")),
                format!("Issued {}", display_date(&d.issued_on)),
                format!(
                    "Certificates expire {}",
                    d.certs_expire.as_deref().map_or("—".into(), display_date)
                ),
                format!(
                    "Status {}{}",
                    d.status,
                    if d.expired { ", expired" } else { "" }
                ),
                format!("Renewals used {} of {}", d.renewals_used, d.capacity),
            ]
            .join("\n");
            vec![info("Smartcard details", body)]
        }
        (_, Ok(CommandOutcome::Report(report))) => {
            let worst = report.checks.iter().map(|c| c.outcome).max();
            let body = report
                .checks
                .iter()
                .map(|c| format!("{}: {}", c.outcome, c.message))
                .collect::<Vec<_>>()
                .join("\n");
            let summary = match worst {
                Some(CheckOutcome::NeedsRa) => "Card check: contact your Registration Authority",
                Some(CheckOutcome::Warning) => "Card check: warnings",
                _ => "Card check: all is well",
            };
            vec![info(summary, body)]
        }
        (Command::Renew, Err(ClientError::Agent(e))) if e.code != ErrorCode::PinCancelled => {
            vec![notices::renewal_failed(&e.message)]
        }
        (Command::CardDetails | Command::CheckCard | Command::SelectRole(_), Err(e)) => {
            vec![info("Identity Agent", e.to_string())]
        }
        (_, Err(e)) => {
            tracing::info!(?command, "command failed: {e}");
            Vec::new()
        }
        (_, Ok(_)) => Vec::new(),
    }
}

fn info(summary: &str, body: String) -> NoticeAction {
    NoticeAction::Show(Notice {
        condition: Condition::Info,
        summary: summary.into(),
        body,
        urgency: Urgency::Low,
        category: "x-identity-agent.info",
        icon: "dialog-information",
        actions: Vec::new(),
        progress: None,
        resident: false,
    })
}

fn about(agent: &AgentView, options: &Options) -> String {
    let agent_line = match &agent.hello {
        Some(hello) => format!(
            "Agent {} (protocol {})",
            hello.agent_version, hello.protocol
        ),
        None => "The agent is not running".into(),
    };
    format!(
        "Tray {}\n{agent_line}\nSocket {}",
        env!("CARGO_PKG_VERSION"),
        options.socket.display()
    )
}
