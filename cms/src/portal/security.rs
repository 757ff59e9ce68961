//! What every portal answer carries against injection, framing, sniffing and leaks (a strict
//! Content Security Policy that lets scripts reach only this service and the agent's bridge),
//! and the same-origin check of the portal's forms.

use super::config::PortalConfig;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, HOST, ORIGIN, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};

/// The security headers of the portal's answers, worked out once from its configuration.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    csp: HeaderValue,
}

impl SecurityHeaders {
    /// The headers for a portal whose pages talk to the agent bridge of `config`.
    pub fn new(config: &PortalConfig) -> Self {
        let policy = content_security_policy(config);
        Self {
            // The configuration admits only loopback URLs of digits and dots: a valid value.
            csp: HeaderValue::from_str(&policy)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
        }
    }

    /// Adds the headers to an answer; `Cache-Control: no-store` unless the answer set its own
    /// (the assets do).
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

/// The portal's Content Security Policy: nothing but this service's own scripts, styles and
/// images, connections only to itself and the agent's bridge, forms only to itself, never
/// framed, no `<base>`. No inline script or style is allowed.
pub fn content_security_policy(config: &PortalConfig) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' {} {}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        config.agent_url(),
        config.agent_socket_url()
    )
}

/// Whether a form post comes from the portal's own pages: its `Origin` is this service's own
/// origin, `https://<Host>`. Browsers send `Origin: null` instead on a form post from a page
/// whose referrer policy is `no-referrer` (the portal's own), so a `null` or absent `Origin`
/// passes only with `Sec-Fetch-Site: same-origin`, which the browser sets and no page can. A
/// post with neither, or from any other origin or site, is refused.
pub fn is_same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let fetch_site = text(SEC_FETCH_SITE);
    if fetch_site.is_some_and(|site| site != "same-origin") {
        return false;
    }
    match (text(ORIGIN.as_str()), text(HOST.as_str())) {
        (Some(origin), Some(host)) if origin != "null" => {
            !host.is_empty() && origin.strip_prefix("https://") == Some(host)
        }
        _ => fetch_site == Some("same-origin"),
    }
}

/// The Fetch Metadata header that says where a request came from, relative to its target.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        h
    }

    fn fetched_from(origin: Option<&str>, site: &str) -> HeaderMap {
        let mut h = headers(origin, "127.0.0.1:8443");
        h.insert(SEC_FETCH_SITE, HeaderValue::from_str(site).unwrap());
        h
    }

    #[test]
    fn a_null_origin_passes_only_when_the_browser_says_same_origin() {
        assert!(is_same_origin(&fetched_from(Some("null"), "same-origin")));
        assert!(is_same_origin(&fetched_from(None, "same-origin")));
        assert!(is_same_origin(&fetched_from(
            Some("https://127.0.0.1:8443"),
            "same-origin"
        )));
        for site in ["cross-site", "same-site", "none"] {
            assert!(!is_same_origin(&fetched_from(Some("null"), site)), "{site}");
            assert!(!is_same_origin(&fetched_from(
                Some("https://127.0.0.1:8443"),
                site
            )));
        }
        assert!(!is_same_origin(&fetched_from(
            Some("https://evil.example"),
            "same-origin"
        )));
    }

    #[test]
    fn only_the_services_own_origin_passes() {
        assert!(is_same_origin(&headers(
            Some("https://127.0.0.1:8443"),
            "127.0.0.1:8443"
        )));
        for origin in [
            None,
            Some("null"),
            Some("http://127.0.0.1:8443"),
            Some("https://127.0.0.1:8444"),
            Some("https://evil.example"),
            Some("https://127.0.0.1:8443.evil.example"),
        ] {
            assert!(
                !is_same_origin(&headers(origin, "127.0.0.1:8443")),
                "{origin:?}"
            );
        }
    }

    #[test]
    fn the_policy_names_the_bridge_and_nothing_inline() {
        let config = PortalConfig::new("http://127.0.0.1:8791").unwrap();
        let csp = content_security_policy(&config);
        assert!(csp.contains("connect-src 'self' http://127.0.0.1:8791 ws://127.0.0.1:8791;"));
        assert!(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self';"));
        assert!(!csp.contains("unsafe"));
    }
}
