//! The command lines of `identity-agent` and `iactl`. They live in the library so that the man
//! pages and shell completions are generated from the very definitions `--help` prints (see
//! the `packaging` crate), and so cannot drift from it.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// One section of notes after the options: FILES, ENVIRONMENT, EXIT STATUS. `--help` prints
/// them after the options; the man page renders each as a section of its own.
#[derive(Debug, Clone, Copy)]
pub struct NoteSection {
    /// The section's title, in capitals as man pages write it.
    pub title: &'static str,
    /// Its entries: a term (a path, a variable, a code) and what it means.
    pub entries: &'static [(&'static str, &'static str)],
}

/// The notes `identity-agent --help` prints after its options.
pub const AGENT_NOTES: &[NoteSection] = &[
    NoteSection {
        title: "FILES",
        entries: &[
            (
                "/etc/identity-agent/config.toml",
                "the system configuration (every key has a default)",
            ),
            (
                "$XDG_CONFIG_HOME/identity-agent/config.toml",
                "the user's configuration, merged over the system file key by key \
                 (default ~/.config/identity-agent/config.toml); --config reads one file alone",
            ),
            (
                "$XDG_STATE_HOME/identity-agent/",
                "state, 0700 (default ~/.local/state/identity-agent): audit.log, the operations \
                 journal operations/, remembered roles, and agent.log when started in the background",
            ),
            (
                "$XDG_RUNTIME_DIR/identity-agent/agent.sock",
                "the socket the agent serves on (or the one systemd passes it)",
            ),
        ],
    },
    NoteSection {
        title: "ENVIRONMENT",
        entries: &[
            (
                "RUST_LOG",
                "the log filter: a level and target=level directives, comma separated (default info); transport and TLS crates stay at info whatever it says",
            ),
            (
                "IDENTITY_AGENT_SOCKET",
                "the socket path, unless --socket or the configuration names one",
            ),
            (
                "XDG_CONFIG_HOME, XDG_STATE_HOME, XDG_RUNTIME_DIR",
                "where the user's configuration, state and socket live",
            ),
            (
                "LISTEN_FDS, LISTEN_PID",
                "a listening socket passed by systemd (identity-agent.socket), served instead of binding one",
            ),
            (
                "NOTIFY_SOCKET, JOURNAL_STREAM",
                "set by systemd: readiness is notified there, logs go to journald",
            ),
            (
                "DISPLAY, WAYLAND_DISPLAY, XAUTHORITY",
                "passed to pinentry (under systemd, as the desktop imported them into the user manager)",
            ),
        ],
    },
    NoteSection {
        title: "EXIT STATUS",
        entries: &[
            (
                "0",
                "stopped cleanly (SIGTERM or SIGINT); in the background: the agent is ready",
            ),
            ("1", "the agent could not start (the reason is in its log)"),
            ("2", "usage error"),
        ],
    },
];

/// The notes `iactl --help` prints after its options.
pub const IACTL_NOTES: &[NoteSection] = &[
    NoteSection {
        title: "FILES",
        entries: &[(
            "$XDG_RUNTIME_DIR/identity-agent/agent.sock",
            "the agent's socket, unless --socket or IDENTITY_AGENT_SOCKET names another",
        )],
    },
    NoteSection {
        title: "ENVIRONMENT",
        entries: &[
            (
                "IDENTITY_AGENT_SOCKET",
                "the agent's socket, unless --socket is given",
            ),
            (
                "XDG_RUNTIME_DIR",
                "where the agent's socket is by default",
            ),
        ],
    },
    NoteSection {
        title: "EXIT STATUS",
        entries: &[
            ("0", "done"),
            (
                "1",
                "the agent answered an error (its message on standard error; --json prints it on standard output)",
            ),
            ("2", "usage error"),
            ("3", "the agent is not running"),
            (
                "4",
                "a protocol or unexpected error (an agent of another protocol version, a broken connection)",
            ),
        ],
    },
];

/// `notes` as `--help` prints them after the options.
pub fn notes_help(notes: &[NoteSection]) -> String {
    let mut text = String::new();
    for section in notes {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&title_case(section.title));
        text.push_str(":\n");
        for (term, meaning) in section.entries {
            text.push_str(&format!("  {term}\n          {meaning}\n"));
        }
    }
    text
}

/// `EXIT STATUS` → `Exit status`.
fn title_case(title: &str) -> String {
    let lower = title.to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `identity-agent`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "identity-agent",
    version,
    about = "The smartcard identity agent",
    long_about = "The smartcard identity agent: watches the card readers over PC/SC, signs the \
                  holder in against the Card Management Service, renews the card's certificates, \
                  and serves the local socket API to iactl, the tray and applications.\n\n\
                  Started by hand it forks into the background, returns once its socket is ready \
                  and logs to agent.log in its state directory. Under systemd it stays in the \
                  foreground, logs to journald and may be socket-activated.",
    after_help = notes_help(AGENT_NOTES)
)]
pub struct AgentArgs {
    /// Stay in the foreground (under systemd, or to watch the log) instead of starting in the
    /// background once the socket is ready.
    #[arg(long)]
    pub foreground: bool,
    /// Read only this configuration file (default: the system file, then the user's).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve on this socket instead of the configured one.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// `iactl`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "iactl",
    version,
    about = "Talk to the identity agent",
    long_about = "Talk to the identity agent over its local socket: the status of readers, \
                  cards and the session, sign-in, roles, tickets, events, renewal, repair and \
                  the card doctor.",
    after_help = notes_help(IACTL_NOTES)
)]
pub struct IactlArgs {
    /// Print the agent's JSON result instead of text (errors as {"error":{…}}).
    #[arg(long, global = true)]
    pub json: bool,
    /// The agent's socket (default: $IDENTITY_AGENT_SOCKET, else
    /// $XDG_RUNTIME_DIR/identity-agent/agent.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: IactlCommand,
}

/// `iactl`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum IactlCommand {
    /// The agent, pcscd, readers, cards and session.
    Status,
    /// The readers and their cards.
    Readers,
    /// Sign in with a card (the agent asks for the PIN).
    Login {
        /// The reader (default: the only one with a PIV card).
        #[arg(long)]
        reader: Option<String>,
    },
    /// End the session.
    Logout,
    /// The signed-in user's roles.
    Roles,
    /// Role selection.
    Role {
        /// What to do with the role.
        #[command(subcommand)]
        action: RoleAction,
    },
    /// The session ticket for relying applications.
    Ticket,
    /// Print events as they happen, until interrupted.
    Events {
        /// Keep following (the default; accepted for clarity).
        #[arg(long)]
        follow: bool,
    },
    /// Renew the signed-in card's certificates.
    Renew,
    /// Repair a holder's card (Registration Authority): shows its Smartcard Details and asks
    /// to confirm, then the holder chooses a new passcode.
    Repair {
        /// The reader holding the card.
        #[arg(long)]
        reader: Option<String>,
        /// Confirm without asking (the details are still printed).
        #[arg(long)]
        yes: bool,
    },
    /// A card's Smartcard Details at the Card Management Service.
    Card {
        /// The reader holding the card (default: a second reader's card, else your own).
        #[arg(long)]
        reader: Option<String>,
    },
    /// Cancel a card at the Card Management Service (Registration Authority).
    CancelCard {
        /// The card's serial.
        serial: String,
        /// Why it is cancelled.
        #[arg(long)]
        reason: String,
    },
    /// Cancel a running renew or repair.
    Cancel {
        /// The operation's id.
        id: String,
    },
    /// Diagnose a card.
    Doctor {
        /// The reader holding the card.
        #[arg(long)]
        reader: Option<String>,
        /// Also heal what is safe to heal.
        #[arg(long)]
        heal: bool,
    },
}

/// `iactl role …`.
#[derive(Debug, Subcommand)]
pub enum RoleAction {
    /// Select a role by its id (see `iactl roles`).
    Select {
        /// The role's id.
        id: String,
        /// Do not remember it as the default role.
        #[arg(long)]
        no_remember: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definitions_are_consistent() {
        AgentArgs::command().debug_assert();
        IactlArgs::command().debug_assert();
    }

    #[test]
    fn help_names_the_files_the_environment_and_the_exit_codes() {
        let agent = AgentArgs::command().render_help().to_string();
        for wanted in [
            "/etc/identity-agent/config.toml",
            "RUST_LOG",
            "IDENTITY_AGENT_SOCKET",
            "Exit status:",
            "LISTEN_FDS",
        ] {
            assert!(
                agent.contains(wanted),
                "identity-agent --help lacks {wanted}:\n{agent}"
            );
        }
        let iactl = IactlArgs::command().render_help().to_string();
        for wanted in [
            "IDENTITY_AGENT_SOCKET",
            "Exit status:",
            "the agent is not running",
        ] {
            assert!(
                iactl.contains(wanted),
                "iactl --help lacks {wanted}:\n{iactl}"
            );
        }
    }
}
