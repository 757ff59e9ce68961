//! The `cms` command line (server and admin CLI), in the library so the man page and shell
//! completions are generated from the definitions `--help` prints.

use crate::policy::{AgentVersion, Rate, Throttling};
use crate::portal::PortalConfig;
use crate::server::ServerLimits;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use piv::{CardSerial, ManagementAlgorithm};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What `cms --help` prints after the options (the man page renders each part as a section).
pub const CMS_NOTES: &str = "\
Files:
  $CMS_DATA_DIR/
          the data directory (default ./cms-data; /var/lib/identity-agent-cms for the packaged \
service): the SQLite registry, the CA, the TLS certificate and key, the master secret
  /etc/default/identity-agent-cms
          the packaged service's options (CMS_SERVE_ARGS)

Environment:
  CMS_DATA_DIR
          the data directory, unless --data-dir is given
  CMS_ISSUE_PIN
          the holder's PIN for issue-card, unless --pin is given
  CMS_PORTAL_AGENT_URL
          the identity agent bridge of the web portal (serve), unless --portal-agent-url is given
  RUST_LOG
          the log filter (default info); transport and TLS crates stay at warn

Exit status:
  0
          done (serve: stopped by SIGTERM or SIGINT)
  1
          the command failed (the reason on standard error)
  2
          usage error
";

/// The reference Card Management Service: HTTPS API, CA, card registry and issuing.
#[derive(Debug, Parser)]
#[command(
    name = "cms",
    version,
    about = "The reference Card Management Service",
    long_about = "The reference Card Management Service: the HTTPS API the identity agent signs \
                  in, renews and repairs cards against, its own CA, the card registry, and the \
                  admin commands that add users and issue cards over PC/SC.",
    after_help = CMS_NOTES
)]
pub struct Cli {
    /// The service's data directory (database, CA, TLS certificate, master secret).
    #[arg(long, env = "CMS_DATA_DIR", default_value = "cms-data", global = true)]
    pub data_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The admin commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates the CA, the TLS certificate, the master secret and the database (keeps what
    /// exists).
    Init {
        /// Extra host names or addresses for the TLS certificate (localhost, 127.0.0.1 and ::1
        /// are always in it).
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
    },
    /// Serves the API over HTTPS until interrupted (initialises the data directory first).
    Serve(ServeArgs),
    /// Adds a user and prints their id.
    AddUser {
        /// Their name.
        #[arg(long)]
        name: String,
        /// Their UUID (a new one by default).
        #[arg(long)]
        id: Option<String>,
    },
    /// Adds a role profile to a user and prints its id.
    AddRoleProfile {
        /// The user's id.
        #[arg(long)]
        user: String,
        /// The organisation.
        #[arg(long)]
        organisation: String,
        /// The job role.
        #[arg(long)]
        job_role: String,
        /// Activity codes, comma-separated (B0267 is "repair smartcard").
        #[arg(long, value_delimiter = ',')]
        activities: Vec<String>,
    },
    /// Personalises the blank PIV card in a reader for a user and registers it.
    IssueCard(IssueArgs),
    /// Lists every card as the Smartcard Details table.
    ListCards,
    /// Cancels a card.
    CancelCard {
        /// The card serial.
        serial: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Shows the audit log.
    Audit {
        /// Only entries about this card.
        #[arg(long)]
        card: Option<String>,
        /// How many of the latest entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// `cms serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Extra host names for the TLS certificate, when it is created.
    #[arg(long = "hostname")]
    pub hostnames: Vec<String>,
    /// The lowest identity agent version allowed to self-renew.
    #[arg(long, default_value = "0.1.0")]
    pub min_agent_version: AgentVersion,
    /// Agent versions refused for self-renewal (repeatable).
    #[arg(long = "block-agent-version")]
    pub blocked_agent_versions: Vec<AgentVersion>,
    /// How long a session lasts, in minutes.
    #[arg(long, default_value_t = 720)]
    pub session_minutes: u64,
    /// How long a challenge can be answered, in seconds.
    #[arg(long, default_value_t = 60)]
    pub challenge_seconds: u64,
    /// Self-renewals a card takes before it must be repaired.
    #[arg(long, default_value_t = 10)]
    pub card_capacity: u32,
    /// Present this TLS certificate chain (PEM) instead of the one the service issued itself.
    #[arg(long, requires = "tls_key")]
    pub tls_certificate: Option<PathBuf>,
    /// The PKCS#8 PEM key of --tls-certificate.
    #[arg(long, requires = "tls_certificate")]
    pub tls_key: Option<PathBuf>,
    /// Turns the web portal on under /portal, its pages talking to the identity agent's
    /// loopback bridge at this URL (http://127.0.0.1:PORT); without it the portal is off.
    #[arg(long, env = "CMS_PORTAL_AGENT_URL", value_name = "URL")]
    pub portal_agent_url: Option<PortalConfig>,
    /// The limits on connections (each phase of a connection has a deadline).
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The limits on challenges and failed sign-ins.
    #[command(flatten)]
    pub throttling: ThrottleArgs,
}

/// `cms serve`'s connection limits: the flags of [`crate::server::ServerLimits`], with its
/// defaults.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// The most connections served at once; more wait in the listen queue.
    #[arg(long, default_value_t = ServerLimits::default().max_connections,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections: usize,
    /// The most connections one client address (an IPv6 client's /64) holds at once; more are
    /// closed as soon as they are accepted.
    #[arg(long, default_value_t = ServerLimits::default().max_connections_per_client,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections_per_client: usize,
    /// Seconds a client may take to finish the TLS handshake.
    #[arg(long, default_value_t = ServerLimits::default().handshake_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout_secs: u64,
    /// Seconds a connection may wait, from when it is ready for a request (after the handshake
    /// or the previous answer), until the request's headers have all arrived: the idle
    /// keep-alive deadline too.
    #[arg(long, default_value_t = ServerLimits::default().header_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a request's whole body may take to arrive after its headers; a late one's
    /// connection is closed unanswered.
    #[arg(long, default_value_t = ServerLimits::default().body_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Seconds a write to a client may stay blocked because the client does not read its
    /// answers; then its connection is closed.
    #[arg(long, default_value_t = ServerLimits::default().write_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub write_timeout_secs: u64,
}

impl LimitArgs {
    /// The server limits these flags give.
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            write_timeout: Duration::from_secs(self.write_timeout_secs),
        }
    }
}

/// `cms serve`'s limits on challenges and failed sign-ins: the flags of
/// [`crate::policy::Throttling`] a site may need to change (an office whose holders all come
/// from one NAT address signs in more often), with its defaults.
#[derive(Debug, Args)]
pub struct ThrottleArgs {
    /// Challenges one client address may ask at once after a quiet spell.
    #[arg(long, default_value_t = challenge_rate().burst,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub challenge_burst: u32,
    /// Challenges a second one client address may ask after its burst.
    #[arg(long, default_value_t = challenge_rate().per_second as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub challenges_per_second: u32,
    /// Failed sign-ins of one card from one address before that pair waits (then 1 s, doubling).
    #[arg(long, default_value_t = Throttling::default().pair_failures,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub failures_before_backoff: u32,
    /// The longest wait after failed sign-ins, in seconds: no failure blocks anyone longer.
    #[arg(long, default_value_t = Throttling::default().backoff_cap.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_backoff_secs: u64,
}

fn challenge_rate() -> Rate {
    Throttling::default()
        .challenge_rate
        .expect("the default policy limits challenges")
}

impl ThrottleArgs {
    /// The default throttling with these flags applied.
    pub fn throttling(&self) -> Throttling {
        Throttling {
            challenge_rate: Some(Rate {
                burst: self.challenge_burst,
                per_second: f64::from(self.challenges_per_second),
            }),
            pair_failures: self.failures_before_backoff,
            backoff_cap: Duration::from_secs(self.max_backoff_secs),
            ..Throttling::default()
        }
    }
}

/// The algorithm of a card's key.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Algorithm {
    /// RSA-2048.
    Rsa2048,
    /// ECDSA P-256.
    P256,
}

/// `cms issue-card`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The holder's user id.
    #[arg(long)]
    pub user: String,
    /// The holder's PIN (4 to 8 digits, no obvious sequence).
    #[arg(long, env = "CMS_ISSUE_PIN", hide_env_values = true)]
    pub pin: String,
    /// The reader (the first reader holding a card by default).
    #[arg(long)]
    pub reader: Option<String>,
    /// The algorithm of the key generated on the card.
    #[arg(long, value_enum, default_value = "rsa2048")]
    pub algorithm: Algorithm,
    /// The certificate expires in this many days (two years by default).
    #[arg(long, conflicts_with = "expired")]
    pub expires_in_days: Option<i64>,
    /// The certificate has already expired (for repair tests and demos).
    #[arg(long)]
    pub expired: bool,
    /// The serial to write to a card that has no CHUID yet.
    #[arg(long)]
    pub serial: Option<CardSerial>,
    /// The card's current management key, hex: the transport key its supplier set (the
    /// factory key `0102…08` repeated by default). Its algorithm is the card's, read from the
    /// card's metadata or found by asking it.
    #[arg(long, hide_default_value = true)]
    pub management_key: Option<String>,
    /// The algorithms the card's new management key may take, in order of preference: the
    /// first the card takes is given. A card that takes none is left untouched.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "aes256,aes192,aes128,3des"
    )]
    pub management_algorithms: Vec<ManagementAlgorithm>,
    /// The card's current PIN.
    #[arg(long, default_value = "123456", hide_default_value = true)]
    pub current_pin: String,
    /// The card's current PUK.
    #[arg(long, default_value = "12345678", hide_default_value = true)]
    pub current_puk: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["cms", "serve"].iter().chain(flags)).unwrap();
        match cli.command {
            Command::Serve(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serve_flags_default_to_the_policy_and_the_server_limits() {
        let args = serve_args(&[]);
        assert_eq!(args.throttling.throttling(), Throttling::default());
        assert_eq!(args.limits.limits(), ServerLimits::default());
    }

    #[test]
    fn the_portal_is_off_unless_its_agent_url_is_given() {
        assert_eq!(serve_args(&[]).portal_agent_url, None);
        let args = serve_args(&["--portal-agent-url", "http://127.0.0.1:8791"]);
        assert_eq!(
            args.portal_agent_url.map(|p| p.agent_url()).as_deref(),
            Some("http://127.0.0.1:8791")
        );
        assert!(
            Cli::try_parse_from(["cms", "serve", "--portal-agent-url", "http://10.1.1.1:1"])
                .is_err()
        );
    }

    #[test]
    fn throttle_flags_reach_the_policy() {
        let args = serve_args(&[
            "--challenge-burst",
            "200",
            "--challenges-per-second",
            "50",
            "--failures-before-backoff",
            "8",
            "--max-backoff-secs",
            "60",
        ]);
        let throttling = args.throttling.throttling();
        assert_eq!(
            throttling.challenge_rate,
            Some(Rate {
                burst: 200,
                per_second: 50.0
            })
        );
        assert_eq!(throttling.pair_failures, 8);
        assert_eq!(throttling.backoff_cap, Duration::from_secs(60));
        assert!(Cli::try_parse_from(["cms", "serve", "--challenge-burst", "0"]).is_err());
    }
}
