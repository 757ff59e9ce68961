//! The portal's configuration: where the identity agent's bridge listens, which the pages'
//! scripts connect to and the Content Security Policy allows.

use std::str::FromStr;
use thiserror::Error;

/// Why an agent bridge URL is refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "the identity agent's bridge URL must be http://127.0.0.1:PORT or http://localhost:PORT \
     (the bridge listens on loopback only), not {0:?}"
)]
pub struct PortalConfigError(String);

/// The portal, on: the identity agent bridge its pages talk to (`--portal-agent-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalConfig {
    host: String,
    port: u16,
}

impl PortalConfig {
    /// The portal with the agent bridge at `agent_url` (`http://127.0.0.1:PORT` or
    /// `http://localhost:PORT`, an optional trailing `/`).
    pub fn new(agent_url: &str) -> Result<Self, PortalConfigError> {
        let refuse = || PortalConfigError(agent_url.to_owned());
        let rest = agent_url.strip_prefix("http://").ok_or_else(refuse)?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = authority.rsplit_once(':').ok_or_else(refuse)?;
        if host != "127.0.0.1" && host != "localhost" {
            return Err(refuse());
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse());
        }
        let port: u16 = port.parse().map_err(|_| refuse())?;
        if port == 0 {
            return Err(refuse());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The bridge's HTTP origin, `http://127.0.0.1:PORT`: what the pages' scripts are given.
    pub fn agent_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The bridge's WebSocket origin, `ws://127.0.0.1:PORT`.
    pub fn agent_socket_url(&self) -> String {
        format!("ws://{}:{}", self.host, self.port)
    }
}

impl FromStr for PortalConfig {
    type Err = PortalConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_http_origin_with_a_port_is_taken() {
        let config = PortalConfig::new("http://127.0.0.1:8791/").unwrap();
        assert_eq!(config.agent_url(), "http://127.0.0.1:8791");
        assert_eq!(config.agent_socket_url(), "ws://127.0.0.1:8791");
        assert_eq!(
            PortalConfig::new("http://localhost:9").unwrap().agent_url(),
            "http://localhost:9"
        );
        for bad in [
            "https://127.0.0.1:8791",
            "http://10.0.0.1:8791",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:8791/v1",
            "http://127.0.0.1:+80",
            "http://evil.example:80",
            "http://127.0.0.1:80 'unsafe-inline'",
        ] {
            assert!(PortalConfig::new(bad).is_err(), "{bad}");
        }
    }
}
