//! The display variables the desktop session gave the systemd user manager. An agent started by
//! its socket before the desktop imported `DISPLAY`, `WAYLAND_DISPLAY`, `XAUTHORITY` and
//! `DBUS_SESSION_BUS_ADDRESS` into the manager lacks them in its own environment; at prompt time
//! they are read from `systemctl --user show-environment`, so a graphical pinentry still finds
//! the display.

use std::process::Stdio;
use std::time::Duration;

/// How long `systemctl --user show-environment` may take.
const SHOW_ENVIRONMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this process knows no display: neither `DISPLAY` nor `WAYLAND_DISPLAY` is set (an
/// empty value counts as unset).
pub fn lacks_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .all(|name| std::env::var_os(name).is_none_or(|v| v.is_empty()))
}

/// The variables among `allowed` the user manager's environment holds, as
/// `systemctl --user show-environment` prints them; empty when it cannot be asked (no
/// systemd, no user manager), which is said in the log at debug level.
pub async fn environment(allowed: &[&str]) -> Vec<(String, String)> {
    let mut command = tokio::process::Command::new("systemctl");
    command
        .args(["--user", "show-environment"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(SHOW_ENVIRONMENT_TIMEOUT, command.output()).await {
        Ok(Ok(output)) if output.status.success() => output,
        Ok(Ok(output)) => {
            tracing::debug!(
                "systemctl --user show-environment failed ({})",
                output.status
            );
            return Vec::new();
        }
        Ok(Err(e)) => {
            tracing::debug!("cannot run systemctl --user show-environment: {e}");
            return Vec::new();
        }
        Err(_) => {
            tracing::debug!("systemctl --user show-environment did not answer in time");
            return Vec::new();
        }
    };
    parse_show_environment(&String::from_utf8_lossy(&output.stdout))
        .into_iter()
        .filter(|(name, _)| allowed.contains(&name.as_str()))
        .collect()
}

/// `NAME=value` lines as `systemctl show-environment` prints them: a value is bare, or quoted
/// the way systemd quotes one with characters a shell would take apart (`"…"` with backslash
/// escapes, or `$'…'` with C escapes). Lines that are not assignments are skipped.
pub fn parse_show_environment(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            let valid_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return None;
            }
            Some((name.to_owned(), unquote(value)?))
        })
        .collect()
}

/// A value as systemd's `shell_maybe_quote` wrote it; `None` when it is quoted badly.
fn unquote(value: &str) -> Option<String> {
    if let Some(inner) = value.strip_prefix("$'") {
        let inner = inner.strip_suffix('\'')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                'x' => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                }
                other => out.push(other),
            }
        }
        Some(out)
    } else if let Some(inner) = value.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' { chars.next()? } else { c });
        }
        Some(out)
    } else {
        Some(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_values_are_taken_as_they_are() {
        let text = "DISPLAY=:0\nXAUTHORITY=/run/user/1000/.mutter-Xwaylandauth.X1B2C3\n\
                    DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus,guid=abc\n";
        assert_eq!(
            parse_show_environment(text),
            [
                ("DISPLAY".into(), ":0".into()),
                (
                    "XAUTHORITY".into(),
                    "/run/user/1000/.mutter-Xwaylandauth.X1B2C3".into()
                ),
                (
                    "DBUS_SESSION_BUS_ADDRESS".into(),
                    "unix:path=/run/user/1000/bus,guid=abc".into()
                ),
            ]
        );
    }

    #[test]
    fn quoted_values_are_unquoted() {
        let text = "LANG=\"en GB\"\nPINENTRY_USER_DATA=$'tab\\there\\nnewline \\'q\\' \\x41'\n\
                    HOME=\"/home/a \\\"b\\\"\"\n";
        assert_eq!(
            parse_show_environment(text),
            [
                ("LANG".into(), "en GB".into()),
                (
                    "PINENTRY_USER_DATA".into(),
                    "tab\there\nnewline 'q' A".into()
                ),
                ("HOME".into(), "/home/a \"b\"".into()),
            ]
        );
    }

    #[test]
    fn lines_that_are_not_assignments_are_skipped() {
        let text = "\nnot an assignment\n=value\n1X=y\nBAD-NAME=z\nBROKEN=$'open\nOK=1\n";
        assert_eq!(parse_show_environment(text), [("OK".into(), "1".into())]);
    }
}
