//! The tray's link to the agent, through the `agent-ipc` client only: connect, subscribe, read
//! `status` (and the roles once signed in) after each burst of events, and when the agent stops
//! or restarts, say so and connect again with backoff (0.5 s doubling to 30 s; no busy loop).
//! Menu commands run each on a connection of their own, so a sign-in waiting on the PIN prompt
//! holds nothing up.

use agent_ipc::{
    CardDetails, Client, ClientError, DoctorReport, Event, HelloResult, OperationStatus, Roles,
    SessionState, SessionStatus, Status,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// The first pause before connecting again.
pub const BACKOFF_START: Duration = Duration::from_millis(500);
/// The longest pause between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The name the tray gives itself in `hello`.
pub const CLIENT_NAME: &str = concat!("identity-agent-tray ", env!("CARGO_PKG_VERSION"));

/// What the link tells the app.
#[derive(Debug, Clone)]
pub enum LinkUpdate {
    /// Connected and subscribed: `hello` and the status.
    Connected(HelloResult, Box<Status>),
    /// An event from the agent.
    Event(Box<Event>),
    /// The status, read after events.
    Status(Box<Status>),
    /// The signed-in user's roles (`None` when not signed in).
    Roles(Option<Roles>),
    /// The connection is gone or could not be made; the link tries again by itself.
    Disconnected(String),
}

/// The pause after `previous` failed attempts in a row: 0.5 s, 1 s, 2 s … at most 30 s.
pub fn backoff(previous: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1u32 << previous.min(16))
        .min(BACKOFF_MAX)
}

/// Keeps the link until `updates` is closed.
pub async fn run(socket: PathBuf, updates: UnboundedSender<LinkUpdate>) {
    let mut failures = 0;
    loop {
        let outcome = connected(&socket, &updates, &mut failures).await;
        if updates.is_closed() {
            return;
        }
        let why = match outcome {
            Ok(()) => "the agent closed the connection".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::info!("agent link down: {why}");
        if updates.send(LinkUpdate::Disconnected(why)).is_err() {
            return;
        }
        tokio::time::sleep(backoff(failures)).await;
        failures = failures.saturating_add(1);
    }
}

/// One connection's life: returns when it ends.
async fn connected(
    socket: &Path,
    updates: &UnboundedSender<LinkUpdate>,
    failures: &mut u32,
) -> Result<(), ClientError> {
    let mut requests = Client::connect_as(socket, CLIENT_NAME).await?;
    let mut events = Client::connect_as(socket, CLIENT_NAME)
        .await?
        .subscribe()
        .await?;
    let status = requests.status().await?;
    let hello = requests.hello().clone();
    let signed_in = status.session.state == SessionState::SignedIn;
    *failures = 0;
    tracing::info!(agent = %hello.agent_version, "connected to the agent");
    if updates
        .send(LinkUpdate::Connected(hello, Box::new(status)))
        .is_err()
    {
        return Ok(());
    }
    if signed_in {
        send_roles(&mut requests, updates).await?;
    }
    loop {
        let first = events.next_event().await?;
        let mut roles_changed = wants_roles(&first);
        let _ = updates.send(LinkUpdate::Event(Box::new(first)));
        // Take in the rest of a burst before reading the status once.
        while let Ok(next) = tokio::time::timeout(Duration::ZERO, events.next_event()).await {
            let event = next?;
            roles_changed |= wants_roles(&event);
            let _ = updates.send(LinkUpdate::Event(Box::new(event)));
        }
        let status = requests.status().await?;
        let signed_in = status.session.state == SessionState::SignedIn;
        if updates.send(LinkUpdate::Status(Box::new(status))).is_err() {
            return Ok(());
        }
        if roles_changed && signed_in {
            send_roles(&mut requests, updates).await?;
        }
    }
}

fn wants_roles(event: &Event) -> bool {
    matches!(
        event,
        Event::SessionStarted { .. } | Event::RoleChanged { .. }
    )
}

async fn send_roles(
    client: &mut Client,
    updates: &UnboundedSender<LinkUpdate>,
) -> Result<(), ClientError> {
    let roles = match client.roles().await {
        Ok(roles) => Some(roles),
        Err(ClientError::Agent(e)) => {
            tracing::debug!("no roles: {e}");
            None
        }
        Err(e) => return Err(e),
    };
    let _ = updates.send(LinkUpdate::Roles(roles));
    Ok(())
}

/// A request the menu makes of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Sign in with the card in (the agent asks for the PIN).
    SignIn,
    /// Sign out.
    SignOut,
    /// Select a role and remember it.
    SelectRole(String),
    /// Renew the signed-in card's certificates.
    Renew,
    /// The card's Smartcard Details at the service.
    CardDetails,
    /// Diagnose the card (no healing from the tray).
    CheckCard,
}

/// What a command came to.
#[derive(Debug, Clone)]
pub enum CommandOutcome {
    /// A sign-in, sign-out or role change: the session.
    Session(Box<SessionStatus>),
    /// A renewal.
    Operation(OperationStatus),
    /// Card details.
    Details(Box<CardDetails>),
    /// The doctor's report.
    Report(Box<DoctorReport>),
}

/// Runs `command` on a connection of its own.
pub async fn run_command(socket: &Path, command: &Command) -> Result<CommandOutcome, ClientError> {
    let mut client = Client::connect_as(socket, CLIENT_NAME).await?;
    Ok(match command {
        Command::SignIn => CommandOutcome::Session(Box::new(client.login(None).await?)),
        Command::SignOut => CommandOutcome::Session(Box::new(client.logout().await?)),
        Command::SelectRole(role) => {
            CommandOutcome::Session(Box::new(client.select_role(role.clone(), true).await?))
        }
        Command::Renew => CommandOutcome::Operation(client.renew().await?),
        Command::CardDetails => {
            let status = client.status().await?;
            let reader = status.session.reader.clone();
            CommandOutcome::Details(Box::new(client.card_details(reader).await?))
        }
        Command::CheckCard => {
            let status = client.status().await?;
            let reader = status.session.reader.clone().or_else(|| {
                status
                    .readers
                    .iter()
                    .find(|r| r.card.is_some())
                    .map(|r| r.name.clone())
            });
            CommandOutcome::Report(Box::new(client.doctor(reader, false).await?))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty() {
        let pauses: Vec<u64> = (0..9).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(
            pauses,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[tokio::test]
    async fn no_agent_is_reported_and_retried_without_spinning() {
        let name = format!("tray-link-{}", std::process::id());
        #[cfg(unix)]
        let endpoint = std::env::temp_dir().join(name).join("agent.sock");
        #[cfg(windows)]
        let endpoint = PathBuf::from(format!(r"\\.\pipe\{name}"));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let link = tokio::spawn(run(endpoint, tx));
        let started = tokio::time::Instant::now();
        let mut reports = 0;
        while let Ok(Some(update)) =
            tokio::time::timeout(Duration::from_millis(1700), rx.recv()).await
        {
            assert!(
                matches!(update, LinkUpdate::Disconnected(ref why) if why.contains("not running")),
                "{update:?}"
            );
            reports += 1;
        }
        // Attempts at 0, 0.5 s and 1.5 s (then 3.5 s): three in the first 1.7 s.
        assert_eq!(reports, 3, "after {:?}", started.elapsed());
        link.abort();
    }
}
