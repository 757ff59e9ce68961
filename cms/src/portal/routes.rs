//! The portal's routes under `/portal`: what each page needs from the session and the
//! registry, and which page or redirect answers.

use super::assets;
use super::config::PortalConfig;
use super::pages::{self, SignInNotice};
use super::security::{is_same_origin, SecurityHeaders};
use super::session::{cleared_cookie, see_other, ticket_cookie, ticket_from, SignedIn};
use crate::error::CmsError;
use crate::service::{Caller, Cms};
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cms_api::protocol::SmartcardDetails;
use cms_api::RA_ACTIVITY;
use serde::Deserialize;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The largest form body the portal reads (a ticket is 43 characters).
const MAX_FORM_BYTES: usize = 4 * 1024;

/// What the portal's handlers share.
#[derive(Debug, Clone)]
struct Portal {
    cms: Arc<Cms>,
    agent_url: Arc<str>,
}

impl FromRef<Portal> for Arc<Cms> {
    fn from_ref(portal: &Portal) -> Self {
        portal.cms.clone()
    }
}

/// The portal's routes over the service, every answer with the security headers; merged with
/// the API's by the server when the portal is on.
pub fn router(cms: Arc<Cms>, config: &PortalConfig) -> Router {
    let portal = Portal {
        cms,
        agent_url: config.agent_url().into(),
    };
    Router::new()
        .route("/portal", get(sign_in_page))
        .route("/portal/", get(sign_in_page))
        .route("/portal/sign-in", post(sign_in))
        .route("/portal/sign-out", post(sign_out))
        .route("/portal/profile", get(profile))
        .route("/portal/service", get(service))
        .route("/portal/renew", get(renew))
        .route("/portal/repair", get(repair))
        .route("/portal/assets/{name}", get(assets::asset))
        .route("/portal/{*rest}", get(not_found).post(not_found))
        .with_state(portal)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response_with_state(
            SecurityHeaders::new(config),
            secure,
        ))
}

/// Adds the security headers to every portal answer.
async fn secure(State(headers): State<SecurityHeaders>, mut response: Response) -> Response {
    headers.apply(response.headers_mut());
    response
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// The sign-in page's query: why the holder is back at it.
#[derive(Debug, Deserialize)]
struct SignInQuery {
    reason: Option<String>,
}

async fn sign_in_page(
    State(portal): State<Portal>,
    Query(query): Query<SignInQuery>,
    headers: HeaderMap,
) -> Response {
    let live = ticket_from(&headers).and_then(|t| portal.cms.ticket_caller(&t).ok());
    let body = pages::sign_in(
        &portal.agent_url,
        SignInNotice::from_reason(query.reason.as_deref()),
        live.as_ref().map(|c| c.user.name.as_str()),
    );
    html(StatusCode::OK, body)
}

/// The sign-in form: the agent's ticket.
#[derive(Debug, Deserialize)]
struct SignInForm {
    ticket: Zeroizing<String>,
}

/// Takes the agent's ticket when it comes from the portal's own page and the service
/// validates it, as `POST /v1/tickets/validate` does; keeps it in the cookie.
async fn sign_in(State(portal): State<Portal>, request: Request) -> Response {
    let refuse = |status, notice| html(status, pages::sign_in(&portal.agent_url, notice, None));
    // The origin first: a form from another site is refused before its body is read.
    if !is_same_origin(request.headers()) {
        tracing::warn!("portal sign-in refused: not from the portal's own origin");
        return refuse(StatusCode::FORBIDDEN, SignInNotice::ForeignOrigin);
    }
    let Ok(Form(form)) = Form::<SignInForm>::from_request(request, &portal).await else {
        return refuse(StatusCode::BAD_REQUEST, SignInNotice::TicketRefused);
    };
    let Some(cookie) = ticket_cookie(&form.ticket) else {
        return refuse(StatusCode::UNAUTHORIZED, SignInNotice::TicketRefused);
    };
    match portal.cms.ticket_caller(&form.ticket) {
        Ok(_) => see_other("/portal/profile", Some(cookie)),
        Err(CmsError::InvalidTicket) => {
            refuse(StatusCode::UNAUTHORIZED, SignInNotice::TicketRefused)
        }
        Err(e) => e.into_response(),
    }
}

/// Ends the portal session (the agent's session goes on).
async fn sign_out(headers: HeaderMap) -> Response {
    if !is_same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "refused: not from the portal's own pages",
        )
            .into_response();
    }
    see_other("/portal/?reason=signed_out", Some(cleared_cookie()))
}

/// The caller's own cards, from the registry as `GET /v1/users/{id}/cards` gives them.
fn own_cards(cms: &Cms, caller: &Caller) -> Result<Vec<SmartcardDetails>, CmsError> {
    cms.user_cards(caller, &caller.user.id)
        .map(|cards| cards.cards)
}

async fn profile(State(portal): State<Portal>, SignedIn(caller): SignedIn) -> Response {
    match own_cards(&portal.cms, &caller) {
        Ok(cards) => html(
            StatusCode::OK,
            pages::profile(&portal.agent_url, &caller, &cards),
        ),
        Err(e) => e.into_response(),
    }
}

/// A page's query naming one of the holder's cards.
#[derive(Debug, Deserialize)]
struct CardQuery {
    serial: Option<String>,
}

/// Why a page about one card cannot be shown.
#[derive(Debug)]
enum NoCard {
    /// The query names none.
    NotChosen,
    /// The card named is not the holder's.
    NotTheirs,
    /// The registry failed.
    Failed(CmsError),
}

/// The holder's card that `query` names.
fn chosen_card(
    portal: &Portal,
    caller: &Caller,
    query: &CardQuery,
) -> Result<SmartcardDetails, NoCard> {
    let serial = query
        .serial
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(NoCard::NotChosen)?;
    own_cards(&portal.cms, caller)
        .map_err(NoCard::Failed)?
        .into_iter()
        .find(|c| c.serial.eq_ignore_ascii_case(serial))
        .ok_or(NoCard::NotTheirs)
}

/// The page that says why a card page cannot be shown.
fn no_card(portal: &Portal, caller: &Caller, why: NoCard) -> Response {
    let (status, title, explanation) = match why {
        NoCard::NotChosen => (
            StatusCode::BAD_REQUEST,
            "Choose a smartcard",
            "Choose one of your smartcards in the Smartcard Details table first, then Service.",
        ),
        NoCard::NotTheirs => (
            StatusCode::NOT_FOUND,
            "Not one of your smartcards",
            "That smartcard is not registered to you. Choose one of your own smartcards.",
        ),
        NoCard::Failed(e) => return e.into_response(),
    };
    html(
        status,
        pages::refusal(
            &portal.agent_url,
            Some(&caller.user.name),
            title,
            explanation,
        ),
    )
}

async fn service(
    State(portal): State<Portal>,
    SignedIn(caller): SignedIn,
    Query(query): Query<CardQuery>,
) -> Response {
    card_page(&portal, &caller, &query, pages::service)
}

async fn renew(
    State(portal): State<Portal>,
    SignedIn(caller): SignedIn,
    Query(query): Query<CardQuery>,
) -> Response {
    card_page(&portal, &caller, &query, pages::renew)
}

/// The page `page` draws for the card the query chose, or why there is none.
fn card_page(
    portal: &Portal,
    caller: &Caller,
    query: &CardQuery,
    page: fn(&str, &Caller, &SmartcardDetails) -> String,
) -> Response {
    match chosen_card(portal, caller, query) {
        Ok(card) => html(StatusCode::OK, page(&portal.agent_url, caller, &card)),
        Err(why) => no_card(portal, caller, why),
    }
}

/// Repair Smartcard: only for a selected role holding B0267; others get a 403 page.
async fn repair(State(portal): State<Portal>, SignedIn(caller): SignedIn) -> Response {
    if !caller.acts_as(RA_ACTIVITY) {
        return html(
            StatusCode::FORBIDDEN,
            pages::refusal(
                &portal.agent_url,
                Some(&caller.user.name),
                "You cannot repair smartcards with this role",
                "Repair Smartcard needs a role with activity B0267 (such as RAA ID Checker). If \
                 you hold such a role, select it at the identity agent and sign in again; \
                 otherwise ask your Registration Authority.",
            ),
        );
    }
    html(StatusCode::OK, pages::repair(&portal.agent_url, &caller))
}

async fn not_found(State(portal): State<Portal>) -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::refusal(
            &portal.agent_url,
            None,
            "Page not found",
            "There is no such page in the portal.",
        ),
    )
}
