//! Logging through tracing: journald under systemd, else standard error (the log file when
//! started in the background, as always on Windows), coloured only on a terminal; a filter that no
//! `RUST_LOG` can open for PINs or APDU payloads.
//!
//! The agent's own code never logs a PIN or an APDU payload at any level; the transport and TLS
//! crates below the CMS client might log request bodies or key material at `debug`/`trace`, so
//! their targets are capped at `info` whatever `RUST_LOG` says.

use std::io::IsTerminal;
use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Targets (and their submodules) never logged above `info`.
pub const CAPPED_TARGETS: &[&str] = &[
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
    "h2",
    "tokio_rustls",
    "tower",
    "tower_http",
    "mio",
    "want",
];

/// The filter for `directives` (`RUST_LOG`'s `target=level` and `level` directives, comma
/// separated; no `level` means `info`), capped so that [`CAPPED_TARGETS`] never log above `info`.
/// Malformed directives, and the span and field filters the agent has no use for, are skipped.
///
/// `Targets` rather than `EnvFilter`, whose regular-expression engine (some 0.2 MB of code and
/// tables) would be resident in every agent (BENCHMARKS.md, "What the idle agent's resident
/// memory is").
pub fn filter<S>(directives: &str) -> impl Filter<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let valid: Vec<&str> = directives
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty() && directive.parse::<Targets>().is_ok())
        .collect();
    // (An empty string is not an empty filter to `Targets`'s parser.)
    let wanted = if valid.is_empty() {
        Targets::new()
    } else {
        valid.join(",").parse().unwrap_or_default()
    };
    let wanted = match wanted.default_level() {
        Some(_) => wanted,
        None => wanted.with_default(LevelFilter::INFO),
    };
    let cap = CAPPED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |cap, target| cap.with_target(*target, LevelFilter::INFO),
    );
    wanted.and(cap)
}

/// Installs the global subscriber.
pub fn init() -> anyhow::Result<()> {
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let mut journald_error = None;
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let journald = journald
                    .with_syslog_identifier("identity-agent".to_owned())
                    .with_filter(filter(&directives));
                tracing_subscriber::registry()
                    .with(journald)
                    .try_init()
                    .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
                return Ok(());
            }
            Err(e) => journald_error = Some(e),
        }
    }
    // Colour only on a terminal: a log file (the background agent's) or journald's stream
    // would keep the escape codes.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter(&directives));
    tracing_subscriber::registry()
        .with(stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    if let Some(e) = journald_error {
        tracing::warn!(error = %e, "cannot log to journald; logging to standard error");
    }
    Ok(())
}

/// Whether standard error is the journal stream systemd connected (`JOURNAL_STREAM` names its
/// device and inode). An agent started by hand from a shell that inherited the variable, and
/// whose standard error is now its log file, keeps logging to that file.
#[cfg(unix)]
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let stderr = std::io::stderr();
    let Ok(meta) = stderr
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
    else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// There is no journal on Windows: the log goes to standard error, the log file when the agent
/// runs in the background.
#[cfg(not(unix))]
fn stderr_is_journal() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What reaches the output under `directives`.
    fn logged(directives: &str) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_filter(filter(directives)),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "hyper::proto::h1::io", "hyper-trace");
            tracing::debug!(target: "hyper", "hyper-debug");
            tracing::info!(target: "hyper::client", "hyper-info");
            tracing::trace!(target: "rustls::conn", "rustls-trace");
            tracing::debug!(target: "reqwest::connect", "reqwest-debug");
            tracing::trace!(target: "agent::session", "agent-trace");
            tracing::debug!(target: "agent::card", "agent-debug");
            tracing::info!(target: "agent", "agent-info");
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn trace_opens_the_agent_but_not_transport_crates() {
        for directives in [
            "trace",
            "trace,hyper=trace,rustls=trace",
            "hyper=trace,agent=trace",
        ] {
            let out = logged(directives);
            assert!(out.contains("agent-trace"), "{directives}: {out}");
            assert!(out.contains("agent-debug"), "{directives}: {out}");
            assert!(out.contains("hyper-info"), "{directives}: {out}");
            for hidden in [
                "hyper-trace",
                "hyper-debug",
                "rustls-trace",
                "reqwest-debug",
            ] {
                assert!(
                    !out.contains(hidden),
                    "{directives} let {hidden} through: {out}"
                );
            }
        }
    }

    #[test]
    fn the_default_is_info() {
        let out = logged("");
        assert!(out.contains("agent-info"), "{out}");
        assert!(out.contains("hyper-info"), "{out}");
        assert!(!out.contains("agent-debug"), "{out}");
        let out = logged("warn");
        assert!(!out.contains("agent-info"), "{out}");
    }

    #[test]
    fn malformed_directives_are_skipped_and_the_rest_kept() {
        let out = logged("agent=debug,agent=loud,[span]=trace");
        assert!(out.contains("agent-debug"), "{out}");
        assert!(!out.contains("agent-trace"), "{out}");
        assert!(out.contains("hyper-info"), "{out}");
    }
}
