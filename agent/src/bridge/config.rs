//! The `[bridge]` section of the configuration, checked as it is read: a bad origin is refused
//! with the file and line, before the agent starts.

use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// The web bridge: HTTP and a WebSocket on `127.0.0.1` for the organisation's web portal.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// The port on `127.0.0.1` (no other address can be configured); 0, the default, leaves
    /// the bridge off.
    pub port: u16,
    /// The web origins whose pages may call the agent, exactly as browsers send them
    /// (`https://cms.example.nhs.uk`, `http://localhost:8080`).
    pub allowed_origins: Vec<AllowedOrigin>,
    /// At most this many connections at once.
    pub max_connections: usize,
    /// Requests (and WebSocket messages) per second per connection, on average.
    pub requests_per_second: u32,
    /// Requests one connection may make at once before the rate applies.
    pub burst: u32,
    /// A connection with nothing running that sends nothing this many seconds is closed
    /// (0: never).
    pub idle_timeout_secs: u64,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            allowed_origins: Vec::new(),
            max_connections: 32,
            requests_per_second: 20,
            burst: 40,
            idle_timeout_secs: 30,
        }
    }
}

impl BridgeConfig {
    /// Whether the bridge is on.
    pub fn enabled(&self) -> bool {
        self.port != 0
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// One allowed web origin: `scheme://host[:port]`, as a browser serialises it in `Origin`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AllowedOrigin(String);

impl AllowedOrigin {
    /// The origin as browsers send it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AllowedOrigin {
    type Error = String;

    fn try_from(origin: String) -> Result<Self, String> {
        check_origin(&origin).map_err(|why| format!("allowed origin {origin:?}: {why}"))?;
        Ok(Self(origin))
    }
}

/// Why `origin` is not an exact origin (`http` or `https`, a host, an optional port, nothing
/// more), in words that say what to write instead.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin.contains('*') {
        return Err("wildcards are not allowed; list each origin exactly".into());
    }
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or("write it as scheme://host[:port], e.g. https://cms.example.nhs.uk")?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return Err("the scheme must be https or http (in lowercase)".into()),
    };
    if rest.contains(['/', '?', '#']) {
        return Err("an origin has no path, query or trailing slash".into());
    }
    if rest.contains('@') {
        return Err("an origin has no user name or password".into());
    }
    let (host, port) = match rest.find(']') {
        // An IPv6 literal: `[…]`, then nothing or `:port`.
        Some(end) if rest.starts_with('[') => match &rest[end + 1..] {
            "" => (&rest[..=end], None),
            tail => match tail.strip_prefix(':') {
                Some(port) => (&rest[..=end], Some(port)),
                None => return Err("write an IPv6 host as [address]:port".into()),
            },
        },
        _ => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let host_chars_ok = if bracketed {
        host[1..host.len() - 1]
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        host.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !host_chars_ok {
        return Err("the host may hold only letters, digits, '-' and '.'".into());
    }
    if host.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("write the host in lowercase, as browsers send it".into());
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.chars().all(|c| c.is_ascii_digit())
            && !port.starts_with('0')
            && port.parse::<u16>().is_ok();
        if !valid {
            return Err("the port must be a number from 1 to 65535".into());
        }
        if port == default_port {
            return Err(format!(
                "browsers leave the default port out: write {scheme}://{host}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_are_accepted() {
        for origin in [
            "https://cms.example.nhs.uk",
            "https://cms.example.nhs.uk:8443",
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "https://[::1]:8443",
            "https://[::1]",
        ] {
            assert!(check_origin(origin).is_ok(), "{origin}");
        }
    }

    #[test]
    fn anything_but_an_exact_origin_is_refused_with_a_reason() {
        for (origin, why) in [
            ("*", "wildcard"),
            ("https://*.example.nhs.uk", "wildcard"),
            ("https://cms.example.nhs.uk/", "path"),
            ("https://cms.example.nhs.uk/portal", "path"),
            ("https://cms.example.nhs.uk?x", "path"),
            ("cms.example.nhs.uk", "scheme://host"),
            ("ftp://cms.example.nhs.uk", "scheme"),
            ("HTTPS://cms.example.nhs.uk", "scheme"),
            ("https://", "host is missing"),
            ("https://:8443", "host is missing"),
            ("https://CMS.example.nhs.uk", "lowercase"),
            ("https://user@cms.example.nhs.uk", "user name"),
            ("https://cms.example.nhs.uk:", "port"),
            ("https://cms.example.nhs.uk:99999", "port"),
            ("https://cms.example.nhs.uk:08443", "port"),
            ("https://cms.example.nhs.uk:443", "default port"),
            ("http://localhost:80", "default port"),
            ("https://cms example", "letters"),
            ("null", "scheme://host"),
        ] {
            let err = check_origin(origin).expect_err(origin);
            assert!(err.contains(why), "{origin}: {err}");
        }
    }

    #[test]
    fn a_bad_origin_in_the_file_is_a_configuration_error() {
        let err = toml::from_str::<BridgeConfig>("allowed_origins = [\"https://x.example/\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://x.example/"), "{err}");
        assert!(err.contains("no path"), "{err}");
        let config: BridgeConfig =
            toml::from_str("port = 8765\nallowed_origins = [\"https://x.example\"]\n").unwrap();
        assert!(config.enabled());
        assert_eq!(config.allowed_origins[0].as_str(), "https://x.example");
    }

    #[test]
    fn off_by_default() {
        let config = BridgeConfig::default();
        assert!(!config.enabled());
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.max_connections, 32);
        assert_eq!(config.requests_per_second, 20);
        assert_eq!(config.burst, 40);
        assert_eq!(config.idle_timeout(), Duration::from_secs(30));
    }
}
