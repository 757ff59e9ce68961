//! The checks every request and upgrade passes before anything else, in order: the `Host`
//! (against DNS rebinding), the `Origin` (against every page but the allowed ones), then the
//! CORS preflight, answered with the Private Network Access header when asked. Pure functions
//! of the request's method and headers.

use super::config::AllowedOrigin;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, HOST, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};

/// `Access-Control-Request-Private-Network` (Private Network Access preflight).
pub const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
/// `Access-Control-Allow-Private-Network`.
pub const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Refused: 403 with this plain text and nothing else.
    Refuse(Refusal),
    /// A preflight from an allowed origin: 204 with these headers.
    Preflight(HeaderMap),
    /// Served; the answer carries [`cors_headers`] for this origin.
    Serve {
        /// The allowed origin the request came from.
        origin: HeaderValue,
    },
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` is not `127.0.0.1:PORT` or `localhost:PORT`: a page reaching the agent through a
    /// name of its own (DNS rebinding).
    Host,
    /// No `Origin`, or one not allowed.
    Origin,
}

impl Refusal {
    /// The plain text of the 403.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::Host => "host not allowed",
            Refusal::Origin => "origin not allowed",
        }
    }
}

/// The checks for a request of `method` with `headers` to the bridge on `port`.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    port: u16,
    allowed: &[AllowedOrigin],
) -> Verdict {
    if !host_allowed(headers, port) {
        return Verdict::Refuse(Refusal::Host);
    }
    let Some(origin) = allowed_origin(headers, allowed) else {
        return Verdict::Refuse(Refusal::Origin);
    };
    if method == Method::OPTIONS {
        return Verdict::Preflight(preflight_headers(&origin, headers));
    }
    Verdict::Serve { origin }
}

/// Whether the request has exactly one `Host`, and it is `127.0.0.1:PORT` or `localhost:PORT`.
pub fn host_allowed(headers: &HeaderMap, port: u16) -> bool {
    let mut hosts = headers.get_all(HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let Some((name, host_port)) = host.rsplit_once(':') else {
        return false;
    };
    matches!(name, "127.0.0.1" | "localhost") && host_port == port.to_string()
}

/// The request's origin when it has exactly one `Origin` and it is byte for byte one of
/// `allowed`.
pub fn allowed_origin(headers: &HeaderMap, allowed: &[AllowedOrigin]) -> Option<HeaderValue> {
    let mut origins = headers.get_all(ORIGIN).iter();
    let (Some(origin), None) = (origins.next(), origins.next()) else {
        return None;
    };
    allowed
        .iter()
        .any(|a| a.as_str().as_bytes() == origin.as_bytes())
        .then(|| origin.clone())
}

/// The answer to a preflight from `origin`: the CORS headers, and the Private Network Access
/// grant when the request asks for it.
pub fn preflight_headers(origin: &HeaderValue, request: &HeaderMap) -> HeaderMap {
    let mut headers = cors_headers(origin);
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    let private_network = request
        .get(REQUEST_PRIVATE_NETWORK)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if private_network {
        headers.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
    }
    headers
}

/// The headers every answer to an allowed origin carries: that origin (never `*`) and
/// `Vary: Origin`; never credentials.
pub fn cors_headers(origin: &HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(VARY, HeaderValue::from_static("Origin"));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: u16 = 8765;
    const PORTAL: &str = "https://cms.example.nhs.uk";

    fn allowed() -> Vec<AllowedOrigin> {
        vec![AllowedOrigin::try_from(PORTAL.to_owned()).unwrap()]
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn verdict(method: Method, pairs: &[(&str, &str)]) -> Verdict {
        check(&method, &headers(pairs), PORT, &allowed())
    }

    #[test]
    fn only_the_loopback_names_with_our_port_are_hosts() {
        for host in ["127.0.0.1:8765", "localhost:8765"] {
            assert!(host_allowed(&headers(&[("host", host)]), PORT), "{host}");
        }
        for host in [
            "evil.example:8765",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:8766",
            "localhost:80",
            "127.0.0.2:8765",
            "[::1]:8765",
            "localhost.:8765",
            "localhost:8765 ",
            "",
        ] {
            assert!(!host_allowed(&headers(&[("host", host)]), PORT), "{host:?}");
        }
        assert!(!host_allowed(&HeaderMap::new(), PORT));
        // Two Host headers are not one allowed host.
        let two = headers(&[("host", "localhost:8765"), ("host", "evil.example:8765")]);
        assert!(!host_allowed(&two, PORT));
    }

    #[test]
    fn only_an_exactly_listed_origin_is_allowed() {
        let found = allowed_origin(&headers(&[("origin", PORTAL)]), &allowed());
        assert_eq!(
            found.as_ref().map(|v| v.as_bytes()),
            Some(PORTAL.as_bytes())
        );
        for origin in [
            "https://evil.example",
            "https://cms.example.nhs.uk.evil.example",
            "https://cms.example.nhs.uk/",
            "http://cms.example.nhs.uk",
            "https://cms.example.nhs.uk:8443",
            "HTTPS://CMS.EXAMPLE.NHS.UK",
            "null",
            "*",
            "",
        ] {
            assert_eq!(
                allowed_origin(&headers(&[("origin", origin)]), &allowed()),
                None,
                "{origin:?}"
            );
        }
        assert_eq!(allowed_origin(&HeaderMap::new(), &allowed()), None);
        let two = headers(&[("origin", PORTAL), ("origin", PORTAL)]);
        assert_eq!(allowed_origin(&two, &allowed()), None);
        // Nothing is allowed when nothing is listed.
        assert_eq!(allowed_origin(&headers(&[("origin", PORTAL)]), &[]), None);
    }

    #[test]
    fn the_host_is_checked_before_the_origin() {
        assert_eq!(
            verdict(
                Method::GET,
                &[("host", "evil.example:8765"), ("origin", PORTAL)]
            ),
            Verdict::Refuse(Refusal::Host)
        );
        assert_eq!(
            verdict(Method::GET, &[("host", "localhost:8765")]),
            Verdict::Refuse(Refusal::Origin)
        );
        assert_eq!(
            verdict(
                Method::GET,
                &[("host", "127.0.0.1:8765"), ("origin", PORTAL)]
            ),
            Verdict::Serve {
                origin: HeaderValue::from_static(PORTAL)
            }
        );
    }

    #[test]
    fn a_preflight_from_the_portal_is_granted_with_private_network_access() {
        let Verdict::Preflight(granted) = verdict(
            Method::OPTIONS,
            &[
                ("host", "127.0.0.1:8765"),
                ("origin", PORTAL),
                ("access-control-request-method", "POST"),
                ("access-control-request-private-network", "true"),
            ],
        ) else {
            panic!("not a preflight");
        };
        assert_eq!(granted[ACCESS_CONTROL_ALLOW_ORIGIN], PORTAL);
        assert_eq!(granted[VARY], "Origin");
        assert_eq!(granted[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(granted[ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
        assert_eq!(granted[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(granted[ALLOW_PRIVATE_NETWORK], "true");
        assert!(!granted.contains_key("access-control-allow-credentials"));

        let Verdict::Preflight(plain) = verdict(
            Method::OPTIONS,
            &[("host", "127.0.0.1:8765"), ("origin", PORTAL)],
        ) else {
            panic!("not a preflight");
        };
        assert!(!plain.contains_key(ALLOW_PRIVATE_NETWORK));
    }

    #[test]
    fn a_preflight_from_elsewhere_is_refused() {
        assert_eq!(
            verdict(
                Method::OPTIONS,
                &[
                    ("host", "127.0.0.1:8765"),
                    ("origin", "https://evil.example"),
                    ("access-control-request-private-network", "true"),
                ]
            ),
            Verdict::Refuse(Refusal::Origin)
        );
    }

    #[test]
    fn cors_headers_name_the_origin_never_a_wildcard() {
        let headers = cors_headers(&HeaderValue::from_static(PORTAL));
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], PORTAL);
        assert_eq!(headers[VARY], "Origin");
    }
}
