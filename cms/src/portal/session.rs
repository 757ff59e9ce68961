//! The portal session: the agent's ticket kept in an `HttpOnly`, `Secure`, `SameSite=Strict`
//! cookie and validated again on every page, so the portal session ends when the agent's does
//! (the card pulled, a logout at the agent, the service's session expired).

use crate::service::{Caller, Cms};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The cookie's name.
pub const TICKET_COOKIE: &str = "portal_ticket";
/// The longest ticket taken (the service's are 43 characters).
const MAX_TICKET_LEN: usize = 256;

/// The attributes of the ticket cookie: scripts cannot read it, it travels only over HTTPS,
/// only to the portal, and never with a request another site started.
const COOKIE_ATTRIBUTES: &str = "HttpOnly; Secure; SameSite=Strict; Path=/portal";

/// Whether `ticket` looks like a ticket (base64url, not too long): anything else is refused
/// before it is looked up, and never reaches a header.
pub fn is_plausible_ticket(ticket: &str) -> bool {
    !ticket.is_empty()
        && ticket.len() <= MAX_TICKET_LEN
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Set-Cookie` value that keeps `ticket` (which must be plausible).
pub fn ticket_cookie(ticket: &str) -> Option<HeaderValue> {
    if !is_plausible_ticket(ticket) {
        return None;
    }
    HeaderValue::from_str(&format!("{TICKET_COOKIE}={ticket}; {COOKIE_ATTRIBUTES}")).ok()
}

/// The `Set-Cookie` value that removes the ticket.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "portal_ticket=; HttpOnly; Secure; SameSite=Strict; Path=/portal; Max-Age=0",
    )
}

/// The ticket in the request's cookies, if there is a plausible one.
pub fn ticket_from(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TICKET_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| is_plausible_ticket(value))
        .map(|value| Zeroizing::new(value.to_owned()))
}

/// A `303 See Other` to `location`, with `cookie` set if given.
pub fn see_other(location: &'static str, cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(location));
    if let Some(cookie) = cookie {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// The holder of a page's live session: the ticket in the cookie still validates. Otherwise
/// the page is answered with a redirect to the sign-in page (saying the session ended when
/// there was one) and the cookie is removed.
#[derive(Debug)]
pub struct SignedIn(pub Caller);

impl<S> FromRequestParts<S> for SignedIn
where
    Arc<Cms>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(ticket) = ticket_from(&parts.headers) else {
            return Err(see_other("/portal/", None));
        };
        let cms = Arc::<Cms>::from_ref(state);
        match cms.ticket_caller(&ticket) {
            Ok(caller) => Ok(SignedIn(caller)),
            Err(crate::CmsError::InvalidTicket) => {
                Err(see_other("/portal/?reason=ended", Some(cleared_cookie())))
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_is_read_from_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; portal_ticket=Zt9w0c1L-_x; b=2"),
        );
        assert_eq!(ticket_from(&headers).unwrap().as_str(), "Zt9w0c1L-_x");
        headers.insert(COOKIE, HeaderValue::from_static("portal_ticket=a\"b"));
        assert!(ticket_from(&headers).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_secure_strict_and_portal_only() {
        let cookie = ticket_cookie("abc").unwrap();
        assert_eq!(
            cookie.to_str().unwrap(),
            "portal_ticket=abc; HttpOnly; Secure; SameSite=Strict; Path=/portal"
        );
        assert!(ticket_cookie("a;b").is_none());
        assert!(ticket_cookie(&"a".repeat(300)).is_none());
    }
}
