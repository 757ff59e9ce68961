//! `iactl`: the command line over the agent's socket API.
//!
//! Exit codes: 0 ok, 1 the agent answered an error, 2 usage, 3 the agent is not running,
//! 4 a protocol or unexpected error.

use agent::cli::{IactlArgs as Cli, IactlCommand as Command, RoleAction};
use agent_ipc::{
    default_socket_path, Call, CancelCardParams, CancelOperationParams, CardDetails, CardParams,
    CardStatus, Client, ClientError, DoctorParams, DoctorReport, ErrorObject, Event, LoginParams,
    OperationStatus, ReaderStatus, RepairParams, Roles, SelectRoleParams, SessionState,
    SessionStatus, Status, Ticket,
};
use clap::Parser;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::process::ExitCode;

/// Why iactl failed, and so its exit code.
enum Failure {
    /// The agent answered an error (exit 1).
    Agent(ErrorObject),
    /// The agent is not running (exit 3).
    NotRunning(String),
    /// Anything else (exit 4).
    Unexpected(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Agent(error) => Failure::Agent(error),
            e @ ClientError::NotRunning { .. } => Failure::NotRunning(e.to_string()),
            e => Failure::Unexpected(e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit with 2 (and --help, --version with 0) inside parse.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("iactl: cannot start: {e}");
            return ExitCode::from(4);
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Agent(error)) => {
            if json {
                let _ = out(&pretty(&serde_json::json!({ "error": error })));
            }
            eprintln!("iactl: {} ({})", error.message, code_name(&error));
            ExitCode::from(1)
        }
        Err(Failure::NotRunning(message)) => {
            eprintln!("iactl: {message}");
            ExitCode::from(3)
        }
        Err(Failure::Unexpected(message)) => {
            eprintln!("iactl: {message}");
            ExitCode::from(4)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let path = cli.socket.unwrap_or_else(default_socket_path);
    let client_name = concat!("iactl ", env!("CARGO_PKG_VERSION"));
    let mut client = Client::connect_as(&path, client_name).await?;
    let call = match cli.command {
        Command::Events { follow: _ } => return follow_events(client, cli.json).await,
        Command::Status => Call::Status,
        Command::Readers => Call::Readers,
        Command::Login { reader } => Call::Login(LoginParams { reader }),
        Command::Logout => Call::Logout,
        Command::Roles => Call::Roles,
        Command::Role {
            action: RoleAction::Select { id, no_remember },
        } => Call::SelectRole(SelectRoleParams {
            role: id,
            remember: !no_remember,
        }),
        Command::Ticket => Call::Ticket,
        Command::Renew => Call::Renew,
        Command::Repair { reader, yes } => {
            let details = client.card_details(reader.clone()).await?;
            out(&render_details(&details))?;
            if !yes && !confirm("Repair this card? [y/N] ")? {
                return Err(Failure::Unexpected(
                    "not confirmed: nothing was done".into(),
                ));
            }
            Call::Repair(RepairParams {
                reader,
                serial: Some(details.serial),
            })
        }
        Command::Card { reader } => Call::CardDetails(CardParams { reader }),
        Command::CancelCard { serial, reason } => {
            Call::CancelCard(CancelCardParams { serial, reason })
        }
        Command::Cancel { id } => Call::CancelOperation(CancelOperationParams { operation: id }),
        Command::Doctor { reader, heal } => Call::Doctor(DoctorParams { reader, heal }),
    };
    let kind = call.method();
    let value = client.call_raw(call).await?;
    if cli.json {
        return out(&pretty(&value));
    }
    let text = match kind {
        "status" => render_status(&typed::<Status>(value)?),
        "readers" => render_readers(&typed::<Vec<ReaderStatus>>(value)?),
        "login" | "logout" | "select_role" => render_session(&typed::<SessionStatus>(value)?),
        "roles" => render_roles(&typed::<Roles>(value)?),
        "ticket" => render_ticket(&typed::<Ticket>(value)?),
        "doctor" => render_doctor(&typed::<DoctorReport>(value)?),
        "card_details" | "cancel_card" => render_details(&typed::<CardDetails>(value)?),
        _ => render_operation(&typed::<OperationStatus>(value)?),
    };
    out(&text)
}

async fn follow_events(client: Client, json: bool) -> Result<(), Failure> {
    let mut events = client.subscribe().await?;
    loop {
        let event = events.next_event().await?;
        let line = if json {
            serde_json::to_string(&event).map_err(|e| Failure::Unexpected(e.to_string()))?
        } else {
            render_event(&event)
        };
        out(&line)?;
    }
}

/// Prints `text` and a newline; a closed stdout (`iactl events | head`) ends quietly.
fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Failure::Unexpected(format!("cannot print: {e}"))),
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(value)
        .map_err(|e| Failure::Unexpected(format!("unexpected answer from the agent: {e}")))
}

fn code_name(error: &ErrorObject) -> &'static str {
    error.code.as_str()
}

fn render_status(status: &Status) -> String {
    let mut lines = vec![format!("identity-agent {}", status.agent_version)];
    lines.push(match (&status.pcsc.available, &status.pcsc.message) {
        (true, _) => "pcscd: running".to_owned(),
        (false, Some(why)) => format!("pcscd: not available ({why})"),
        (false, None) => "pcscd: not available".to_owned(),
    });
    lines.push(render_readers(&status.readers));
    lines.push(render_session(&status.session));
    lines.join("\n")
}

fn render_readers(readers: &[ReaderStatus]) -> String {
    if readers.is_empty() {
        return "no readers".to_owned();
    }
    readers
        .iter()
        .map(|r| match &r.card {
            Some(card) => format!("reader {}: {}", r.name, render_card(card)),
            None => format!("reader {}: no card", r.name),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_card(card: &CardStatus) -> String {
    let mut parts = vec![format!("{} card", card.card_type)];
    if let Some(serial) = &card.serial {
        parts[0].push(' ');
        parts[0].push_str(serial);
    }
    if !card.piv {
        parts.push("not a PIV card".to_owned());
    }
    if let Some(holder) = &card.holder {
        parts.push(holder.clone());
    }
    match (&card.expires_on, card.days_left) {
        _ if card.expired => parts.push(match &card.expires_on {
            Some(on) => format!("EXPIRED ({on}): see your Registration Authority"),
            None => "EXPIRED: see your Registration Authority".to_owned(),
        }),
        (Some(on), Some(days)) => parts.push(format!("expires {on} ({})", days_words(days))),
        (Some(on), None) => parts.push(format!("expires {on}")),
        _ => {}
    }
    parts.join(", ")
}

fn days_words(days: i64) -> String {
    match days {
        0 => "today".to_owned(),
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    }
}

fn render_session(session: &SessionStatus) -> String {
    let state = match session.state {
        SessionState::NoCard => "no card",
        SessionState::CardPresent => "card present, not signed in",
        SessionState::WaitingForPin => "waiting for the PIN",
        SessionState::Authenticating => "authenticating",
        SessionState::SignedIn => "signed in",
        SessionState::Ended => "ended (`iactl login` starts a new session)",
    };
    let mut line = format!("session: {state}");
    if let Some(user) = &session.user {
        line.push_str(&format!(" as {}", user.name));
    }
    if let Some(role) = &session.role {
        line.push_str(&format!(
            ", role {} at {}",
            role.job_role, role.organisation
        ));
    }
    if let Some(serial) = &session.serial {
        line.push_str(&format!(", card {serial}"));
    }
    if let Some(reader) = &session.reader {
        line.push_str(&format!(" in {reader}"));
    }
    line
}

fn render_roles(roles: &Roles) -> String {
    if roles.roles.is_empty() {
        return "no roles".to_owned();
    }
    roles
        .roles
        .iter()
        .map(|role| {
            let selected = roles.selected.as_deref() == Some(role.id.as_str());
            let default = roles.default.as_deref() == Some(role.id.as_str());
            format!(
                "{} {}  {} at {}{}{}",
                if selected { "*" } else { " " },
                role.id,
                role.job_role,
                role.organisation,
                if role.activities.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", role.activities.join(", "))
                },
                if default { " (default)" } else { "" },
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_ticket(ticket: &Ticket) -> String {
    format!(
        "{}\nvalid until {}",
        ticket.ticket,
        utc_time(ticket.expires_at)
    )
}

fn render_operation(op: &OperationStatus) -> String {
    let kind = op.kind.as_str();
    format!(
        "{kind} {} of card {}: {} ({}{})",
        op.id,
        op.serial,
        op.message,
        op.step,
        if op.done { ", done" } else { "" }
    )
}

/// The portal's Smartcard Details table, one card, naming the holder (by user id only when
/// the service gives no name).
fn render_details(card: &CardDetails) -> String {
    format!(
        "Serial            Type        Issued on   Certs expire  Status\n{:<17} {:<11} {:<11} {:<13} {}{}\nholder {}, renewals used {} of {}",
        card.serial,
        card.card_type,
        card.issued_on,
        card.certs_expire.as_deref().unwrap_or("-"),
        card.status,
        match (&card.cancelled_on, card.expired) {
            (Some(on), _) => format!(" (cancelled {on})"),
            (None, true) => " (expired)".into(),
            (None, false) => String::new(),
        },
        card.holder_name.as_deref().unwrap_or(&card.holder_id),
        card.renewals_used,
        card.capacity,
    )
}

/// Asks a yes/no question on the terminal; no terminal means no.
fn confirm(question: &str) -> Result<bool, Failure> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        eprintln!("iactl: not a terminal: confirm with --yes");
        return Ok(false);
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::Unexpected(e.to_string()))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn render_doctor(report: &DoctorReport) -> String {
    let mut lines = vec![render_card(&report.card)];
    for check in &report.checks {
        lines.push(format!(
            "  [{}] {}: {}",
            check.outcome, check.name, check.message
        ));
    }
    lines.join("\n")
}

fn render_event(event: &Event) -> String {
    let detail = match event {
        Event::ReaderAdded { reader } | Event::ReaderRemoved { reader } => reader.clone(),
        Event::CardInserted { reader, card } => format!("{reader}: {}", render_card(card)),
        Event::CardRemoved { reader, serial } => match serial {
            Some(serial) => format!("{reader}: card {serial}"),
            None => reader.clone(),
        },
        Event::PcscUnavailable { message } => message.clone(),
        Event::PcscAvailable => String::new(),
        Event::SessionState { state } => state.as_str().to_owned(),
        Event::LoginFailed {
            reader,
            serial,
            error,
        } => format!(
            "{reader}{}: {} ({})",
            serial
                .as_ref()
                .map(|s| format!(" card {s}"))
                .unwrap_or_default(),
            error.message,
            code_name(error)
        ),
        Event::SessionStarted { session } => render_session(session),
        Event::SessionEnded {
            reason,
            reader,
            serial,
        } => format!(
            "{}{}{}",
            reason.as_str(),
            serial
                .as_ref()
                .map(|s| format!(", card {s}"))
                .unwrap_or_default(),
            reader
                .as_ref()
                .map(|r| format!(" in {r}"))
                .unwrap_or_default(),
        ),
        Event::RoleChanged { role } => format!("{} at {}", role.job_role, role.organisation),
        Event::ExpiryWarning {
            serial,
            days_left,
            expires_on,
        } => {
            if *days_left < 0 {
                format!("card {serial} EXPIRED on {expires_on}")
            } else {
                format!(
                    "card {serial} expires {expires_on} ({})",
                    days_words(*days_left)
                )
            }
        }
        Event::OperationProgress { operation } => render_operation(operation),
        Event::OperationResult { operation, error } => match error {
            Some(error) => format!(
                "{}: failed: {} ({})",
                render_operation(operation),
                error.message,
                code_name(error)
            ),
            None => render_operation(operation),
        },
    };
    if detail.is_empty() {
        event.name().to_owned()
    } else {
        format!("{}: {detail}", event.name())
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_time(unix: i64) -> String {
    agent::time::rfc3339(unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_read_well() {
        let mut card = agent_ipc::fixtures::card();
        assert_eq!(
            render_card(&card),
            "NHS CIS card 0123456789ABCDEF, Alex Example, expires 2027-01-01 (40 days)"
        );
        card.expired = true;
        card.days_left = Some(-3);
        assert!(
            render_card(&card).ends_with("EXPIRED (2027-01-01): see your Registration Authority")
        );
        // A card whose certificate names no holder: nothing stands in for the name.
        card.holder = None;
        assert!(render_card(&card).starts_with("NHS CIS card 0123456789ABCDEF, EXPIRED"));
    }

    #[test]
    fn smartcard_details_name_the_holder() {
        let mut card = CardDetails {
            serial: "FEDCBA9876543210".into(),
            card_type: "NHS CIS".into(),
            holder_id: "8c6f4f38-3d0e-4b59-9a52-2b1f0f0c6a11".into(),
            holder_name: Some("Harry Holder".into()),
            issued_on: "2017-11-21".into(),
            certs_expire: Some("2019-11-21".into()),
            cancelled_on: None,
            status: "Active".into(),
            expired: true,
            renewals_used: 0,
            capacity: 10,
        };
        let shown = render_details(&card);
        assert!(
            shown.ends_with("\nholder Harry Holder, renewals used 0 of 10"),
            "{shown}"
        );
        assert!(!shown.contains(&card.holder_id), "{shown}");
        // From a service that gives no name, the user id is all there is.
        card.holder_name = None;
        assert!(render_details(&card).contains("holder 8c6f4f38-"));
    }
}
