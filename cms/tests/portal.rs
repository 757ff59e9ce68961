//! The web portal over the real service's HTTPS: signing in with an agent's ticket, the cookie
//! session that ends with the agent's, the Smartcard Details table, who sees Repair Smartcard,
//! the same-origin check, the security headers, escaping, and the assets.

mod common;

use common::{relay_as_card, start, Fixture, NURSE, RA, SERIAL_A, SERIAL_B};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

/// The agent bridge the portal's pages are pointed at (nothing listens there: the pages'
/// scripts are not run here).
const AGENT: &str = "http://127.0.0.1:8791";

/// The Content Security Policy every portal answer must carry.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self' http://127.0.0.1:8791 ws://127.0.0.1:8791; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A browser of the portal: no redirects followed, the ticket cookie kept by hand.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

/// One answer, read in full.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    fn set_cookie(&self) -> Option<&str> {
        self.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok())
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

impl Browser {
    fn new(fx: &Fixture) -> Self {
        let ca = reqwest::Certificate::from_pem(fx.cms.ca().certificate_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: fx.server.as_ref().unwrap().url(),
            cookie: None,
        }
    }

    /// The portal's own origin, as a browser on its pages sends it.
    fn origin(&self) -> String {
        self.base.clone()
    }

    async fn read(response: reqwest::Response) -> Page {
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Self::read(request.send().await.unwrap()).await
    }

    async fn post_form(&self, path: &str, origin: Option<&str>, body: String) -> Page {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Self::read(request.send().await.unwrap()).await
    }

    /// Posts `ticket` to the sign-in form from the portal's own origin; keeps the cookie set.
    async fn sign_in(&mut self, ticket: &str) -> Page {
        let page = self
            .post_form(
                "/portal/sign-in",
                Some(&self.origin()),
                format!("ticket={ticket}"),
            )
            .await;
        if let Some(cookie) = page.set_cookie() {
            self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
        }
        page
    }
}

/// A portal and Jane Doe (nurse) signed in at the service with card A, her ticket in hand.
async fn jane_with_ticket(fx: &Fixture, days: i64) -> (String, String) {
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, days);
    let (session, _) = fx.login(&card).await;
    (jane, session.ticket.to_string())
}

/// The expiry date of `serial` as the national table prints it, from the registry's record.
fn expiry_shown(fx: &Fixture, serial: &str) -> String {
    let card = fx.cms.database().card(serial).unwrap().unwrap();
    cms::dates::display_date(card.certs_expire.unwrap())
}

#[tokio::test]
async fn a_real_ticket_signs_in_and_sets_a_strict_http_only_cookie() {
    let fx = Fixture::with_portal(AGENT).await;
    let (_, ticket) = jane_with_ticket(&fx, 300).await;
    let mut browser = Browser::new(&fx);

    let page = browser.sign_in(&ticket).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/portal/profile"));
    assert_eq!(
        page.set_cookie(),
        Some(
            format!("portal_ticket={ticket}; HttpOnly; Secure; SameSite=Strict; Path=/portal")
                .as_str()
        )
    );

    let profile = browser.get("/portal/profile").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(profile
        .body
        .contains("<dd id=\"holder-name\">Jane Doe</dd>"));
    assert!(profile
        .body
        .contains("<dd id=\"role\">Staff Nurse, Leeds Teaching Hospitals</dd>"));
}

#[tokio::test]
async fn a_forged_or_malformed_ticket_is_refused_with_a_message_and_no_cookie() {
    let fx = Fixture::with_portal(AGENT).await;
    jane_with_ticket(&fx, 300).await;
    let mut browser = Browser::new(&fx);
    for forged in ["Zt9w0c1LZt9w0c1LZt9w0c1LZt9w0c1LZt9w0c1LZt9", "a%3Bb", ""] {
        let page = browser.sign_in(forged).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{forged}");
        assert!(page.set_cookie().is_none());
        assert!(
            page.body.contains("Your sign-in was not accepted"),
            "{}",
            page.body
        );
        assert!(page.body.contains("id=\"sign-in\""));
    }
    // Without a cookie, a page sends the browser to sign in.
    let profile = browser.get("/portal/profile").await;
    assert_eq!(profile.status, StatusCode::SEE_OTHER);
    assert_eq!(profile.location(), Some("/portal/"));
}

#[tokio::test]
async fn the_profile_lists_the_holders_cards_as_the_smartcard_details_table() {
    let fx = Fixture::with_portal(AGENT).await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card_a = fx.card(&jane, SERIAL_A, 300);
    fx.card(&jane, SERIAL_B, 30);
    fx.cms
        .admin_cancel_card(SERIAL_B, "lost on the ward")
        .unwrap();
    let (harry, _) = fx.user("Harry Holder", &[NURSE]);
    let other = "0123456789ABCDEF";
    fx.card(&harry, other, 100);
    let (session, _) = fx.login(&card_a).await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&session.ticket).await;

    let profile = browser.get("/portal/profile").await;
    assert_eq!(profile.status, StatusCode::OK);
    let body = &profile.body;
    assert!(body.contains("<table id=\"smartcard-details\">"));
    let issued =
        cms::dates::display_date(fx.cms.database().card(SERIAL_A).unwrap().unwrap().issued_on);
    let cancelled = cms::dates::display_date(
        fx.cms
            .database()
            .card(SERIAL_B)
            .unwrap()
            .unwrap()
            .cancelled_on
            .unwrap(),
    );
    let row_a = format!(
        "<td class=\"serial\">{SERIAL_A}</td><td>Smartcard</td><td>Gemalto</td><td>{issued}</td><td>{}</td><td>Active</td></tr>",
        expiry_shown(&fx, SERIAL_A)
    );
    let row_b = format!(
        "<td class=\"serial\">{SERIAL_B}</td><td>Smartcard</td><td>Gemalto</td><td>{issued}</td><td>{}</td><td>{cancelled}</td></tr>",
        expiry_shown(&fx, SERIAL_B)
    );
    assert!(body.contains(&row_a), "{body}");
    assert!(body.contains(&row_b), "{body}");
    assert!(body.contains(&format!("<tr data-serial=\"{SERIAL_A}\"")));
    // The session's card is the one chosen; the Service button sends it to the service page.
    assert!(body.contains(&format!(
        "<input type=\"radio\" name=\"serial\" value=\"{SERIAL_A}\" id=\"card-{SERIAL_A}\" checked"
    )));
    assert!(body.contains(&format!(
        "<input type=\"radio\" name=\"serial\" value=\"{SERIAL_B}\" id=\"card-{SERIAL_B}\" required>"
    )));
    assert!(body.contains("<form method=\"get\" action=\"/portal/service\">"));
    assert!(body.contains("id=\"service\""));
    // Someone else's card is not listed, and its service page is refused.
    assert!(!body.contains(other));
    let foreign = browser
        .get(&format!("/portal/service?serial={other}"))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert!(!foreign.body.contains("renew-link"));
}

#[tokio::test]
async fn after_a_renewal_the_profile_shows_the_new_expiry() {
    let fx = Fixture::with_portal(AGENT).await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 20);
    let (session, client) = fx.login(&card).await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&session.ticket).await;
    let before = expiry_shown(&fx, SERIAL_A);
    assert!(browser.get("/portal/profile").await.body.contains(&before));

    let op = start(&client, cms_api::OperationKind::Renew, SERIAL_A).await;
    relay_as_card(&client, &op.id, &common::card_key(&fx, SERIAL_A)).await;
    common::issue_and_confirm(&client, &op.id, &common::SoftKey::p256()).await;

    let after = expiry_shown(&fx, SERIAL_A);
    assert_ne!(before, after);
    let profile = browser.get("/portal/profile").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(profile
        .body
        .contains(&format!("<td>{after}</td><td>Active</td>")));
    assert!(!profile.body.contains(&before));
}

#[tokio::test]
async fn repair_is_offered_only_to_a_b0267_role_and_refused_to_others() {
    let fx = Fixture::with_portal(AGENT).await;
    let (_, ticket) = jane_with_ticket(&fx, 300).await;
    let mut nurse = Browser::new(&fx);
    nurse.sign_in(&ticket).await;
    let service = nurse
        .get(&format!("/portal/service?serial={SERIAL_A}"))
        .await;
    assert_eq!(service.status, StatusCode::OK);
    assert!(service.body.contains(&format!(
        "<a id=\"renew-link\" href=\"/portal/renew?serial={SERIAL_A}\">Renew Certificate</a>"
    )));
    assert!(!service.body.contains("repair-link"));
    let repair = nurse.get("/portal/repair").await;
    assert_eq!(repair.status, StatusCode::FORBIDDEN);
    assert!(repair.body.contains("B0267"));
    assert!(!repair.body.contains("id=\"read-card\""));
    assert_eq!(repair.header("content-security-policy"), CSP);

    let (officer, _) = fx.user("Olive Officer", &[RA]);
    let card = fx.card(&officer, SERIAL_B, 300);
    let (session, _) = fx.login(&card).await;
    let mut ra = Browser::new(&fx);
    ra.sign_in(&session.ticket).await;
    let service = ra.get(&format!("/portal/service?serial={SERIAL_B}")).await;
    assert!(service
        .body
        .contains("<a id=\"repair-link\" href=\"/portal/repair\">Repair Smartcard</a>"));
    assert!(service.body.contains("id=\"renew-link\""));
    let repair = ra.get("/portal/repair").await;
    assert_eq!(repair.status, StatusCode::OK);
    for id in [
        "read-card",
        "repair-card",
        "repair",
        "progress",
        "result",
        "error",
        "back",
    ] {
        assert!(repair.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
}

#[tokio::test]
async fn an_officer_with_b0267_in_another_role_is_told_which_role_to_select() {
    let fx = Fixture::with_portal(AGENT).await;
    let (officer, roles) = fx.user("Olive Officer", &[NURSE, RA]);
    let card = fx.card(&officer, SERIAL_B, 300);
    let (created, client) = fx.login(&card).await;
    assert_eq!(created.session.selected_role, None);
    let session = client.select_role(roles[0]).await.unwrap();
    assert_eq!(session.selected_role, Some(roles[0]));
    let mut browser = Browser::new(&fx);
    browser.sign_in(&created.ticket).await;
    let service = browser
        .get(&format!("/portal/service?serial={SERIAL_B}"))
        .await;
    assert!(!service.body.contains("repair-link"));
    assert!(service
        .body
        .contains("Repair Smartcard needs your role RAA ID Checker, Leeds Teaching Hospitals"));
    assert_eq!(
        browser.get("/portal/repair").await.status,
        StatusCode::FORBIDDEN
    );

    // Selecting the officer's role at the agent changes what the same portal session may do.
    client.select_role(roles[1]).await.unwrap();
    assert_eq!(browser.get("/portal/repair").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_renew_page_is_ready_only_for_the_signed_in_unexpired_card() {
    let fx = Fixture::with_portal(AGENT).await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 30);
    fx.card(&jane, SERIAL_B, 30);
    let (session, _) = fx.login(&card).await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&session.ticket).await;

    let ready = browser
        .get(&format!("/portal/renew?serial={SERIAL_A}"))
        .await;
    assert_eq!(ready.status, StatusCode::OK);
    assert!(ready
        .body
        .contains("<button type=\"button\" id=\"renew\">Renew Certificate</button>"));
    assert!(ready
        .body
        .contains("<ol id=\"progress\" aria-live=\"polite\"></ol>"));
    assert!(ready.body.contains("<p id=\"result\" role=\"status\"></p>"));
    assert!(ready.body.contains("<p id=\"error\" role=\"alert\"></p>"));
    assert!(ready.body.contains("<noscript>"));

    let other = browser
        .get(&format!("/portal/renew?serial={SERIAL_B}"))
        .await;
    assert!(other.body.contains("id=\"renew\" disabled"));
    assert!(other
        .body
        .contains(&format!("You signed in with smartcard {SERIAL_A}")));
}

#[tokio::test]
async fn a_logged_out_ticket_sends_the_next_page_back_to_sign_in() {
    let fx = Fixture::with_portal(AGENT).await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 300);
    let (session, client) = fx.login(&card).await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&session.ticket).await;
    assert_eq!(browser.get("/portal/profile").await.status, StatusCode::OK);

    // The agent's session ends (the card pulled: the agent logs out at the service).
    client.logout().await.unwrap();
    let page = browser.get("/portal/profile").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/portal/?reason=ended"));
    let cleared = page.set_cookie().unwrap();
    assert!(cleared.starts_with("portal_ticket=;"));
    assert!(cleared.contains("Max-Age=0"));
    for path in [
        format!("/portal/service?serial={SERIAL_A}"),
        format!("/portal/renew?serial={SERIAL_A}"),
        "/portal/repair".to_owned(),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.location(), Some("/portal/?reason=ended"), "{path}");
    }
    let sign_in = browser.get("/portal/?reason=ended").await;
    assert_eq!(sign_in.status, StatusCode::OK);
    assert!(sign_in
        .body
        .contains("Your session has ended: your smartcard was removed"));
    // The ended ticket cannot sign in again either.
    assert_eq!(
        browser.sign_in(&session.ticket).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sign_in_and_sign_out_from_another_origin_are_refused() {
    let fx = Fixture::with_portal(AGENT).await;
    let (_, ticket) = jane_with_ticket(&fx, 300).await;
    let mut browser = Browser::new(&fx);
    let own = browser.origin();
    let own_http = own.replacen("https://", "http://", 1);
    for origin in [
        Some("https://evil.example"),
        Some("null"),
        Some(own_http.as_str()),
        None,
    ] {
        let page = browser
            .post_form("/portal/sign-in", origin, format!("ticket={ticket}"))
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert!(page.set_cookie().is_none());
        assert!(page.body.contains("did not come from this site"));
    }
    // A browser posting from a page whose referrer policy is no-referrer (the portal's) sends
    // `Origin: null`; the Fetch Metadata it sets tells whether the post came from this origin.
    for (site, status) in [
        ("cross-site", StatusCode::FORBIDDEN),
        ("same-site", StatusCode::FORBIDDEN),
        ("same-origin", StatusCode::SEE_OTHER),
    ] {
        let page = browser
            .http
            .post(format!("{}/portal/sign-in", browser.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("origin", "null")
            .header("sec-fetch-site", site)
            .body(format!("ticket={ticket}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), status, "{site}");
        assert_eq!(
            page.headers().contains_key(SET_COOKIE),
            status.is_redirection()
        );
    }
    assert_eq!(browser.sign_in(&ticket).await.status, StatusCode::SEE_OTHER);
    let refused = browser
        .post_form(
            "/portal/sign-out",
            Some("https://evil.example"),
            String::new(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.set_cookie().is_none());
    let signed_out = browser
        .post_form("/portal/sign-out", Some(&own), String::new())
        .await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location(), Some("/portal/?reason=signed_out"));
    assert!(signed_out.set_cookie().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn every_portal_answer_carries_the_security_headers() {
    let fx = Fixture::with_portal(AGENT).await;
    let (_, ticket) = jane_with_ticket(&fx, 300).await;
    let mut browser = Browser::new(&fx);
    let mut pages = vec![
        browser.get("/portal/").await,
        browser.get("/portal").await,
        browser.get("/portal/profile").await,
        browser.get("/portal/no-such-page").await,
        browser.sign_in("forged").await,
    ];
    pages.push(browser.sign_in(&ticket).await);
    for path in [
        "/portal/profile",
        &format!("/portal/service?serial={SERIAL_A}"),
    ] {
        pages.push(browser.get(path).await);
    }
    for page in &pages {
        assert_eq!(page.header("content-security-policy"), CSP);
        assert_eq!(page.header("x-content-type-options"), "nosniff");
        assert_eq!(page.header("referrer-policy"), "no-referrer");
        assert_eq!(page.header("cache-control"), "no-store");
    }
    let sign_in = &pages[0];
    assert!(sign_in.header("content-type").starts_with("text/html"));
    for id in ["sign-in", "message"] {
        assert!(sign_in.body.contains(&format!("id=\"{id}\"")));
    }
    assert!(sign_in
        .body
        .contains("id=\"message\" class=\"message\" role=\"status\" aria-live=\"polite\""));
    assert!(sign_in.body.contains("<html lang=\"en-GB\">"));
    assert!(sign_in
        .body
        .contains("<meta name=\"identity-agent-url\" content=\"http://127.0.0.1:8791\">"));
    // Nothing inline for the CSP to refuse: every script has a source, no style attributes.
    for page in &pages {
        assert_eq!(
            page.body.matches("<script").count(),
            page.body
                .matches("<script type=\"module\" src=\"/portal/assets/portal.js\"></script>")
                .count()
        );
        assert!(!page.body.contains("style="));
        assert!(!page.body.contains("<style"));
        assert!(!page.body.contains(" onclick"));
    }
    assert_eq!(pages[3].status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn names_from_the_registry_are_escaped() {
    let fx = Fixture::with_portal(AGENT).await;
    let (user, _) = fx.user(
        "<script>alert(\"x\")</script> O'Brien & Co",
        &[("<b>Trust</b>", "Nurse \"A\"", &["B0360"])],
    );
    let card = fx.card(&user, SERIAL_A, 300);
    let (session, _) = fx.login(&card).await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&session.ticket).await;
    for path in [
        "/portal/profile",
        &format!("/portal/service?serial={SERIAL_A}"),
        "/portal/",
    ] {
        let page = browser.get(path).await;
        assert!(!page.body.contains("<script>alert"), "{path}");
        assert!(!page.body.contains("<b>Trust"), "{path}");
        assert!(
            page.body
                .contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; O&#39;Brien &amp; Co"),
            "{path}"
        );
    }
    let profile = browser.get("/portal/profile").await;
    assert!(profile
        .body
        .contains("<dd id=\"role\">Nurse &quot;A&quot;, &lt;b&gt;Trust&lt;/b&gt;</dd>"));
}

#[tokio::test]
async fn assets_are_served_with_their_content_types() {
    let fx = Fixture::with_portal(AGENT).await;
    let browser = Browser::new(&fx);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, content_type, source) in [
        (
            "identity-agent.js",
            "text/javascript; charset=utf-8",
            root.join("../agent-ipc/js/identity-agent.js"),
        ),
        (
            "portal.js",
            "text/javascript; charset=utf-8",
            root.join("portal/portal.js"),
        ),
        (
            "portal.css",
            "text/css; charset=utf-8",
            root.join("portal/portal.css"),
        ),
        (
            "favicon.svg",
            "image/svg+xml",
            root.join("portal/favicon.svg"),
        ),
    ] {
        let page = browser.get(&format!("/portal/assets/{name}")).await;
        assert_eq!(page.status, StatusCode::OK, "{name}");
        assert_eq!(page.header("content-type"), content_type);
        assert_eq!(page.header("x-content-type-options"), "nosniff");
        assert_eq!(page.header("content-security-policy"), CSP);
        assert_eq!(page.body, std::fs::read_to_string(source).unwrap());
    }
    let portal_js = browser.get("/portal/assets/portal.js").await;
    assert!(portal_js.body.contains("from \"./identity-agent.js\""));
    assert_eq!(
        browser.get("/portal/assets/nothing.js").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn without_an_agent_url_the_portal_is_off() {
    let fx = Fixture::start().await;
    let browser = Browser::new(&fx);
    for path in ["/portal/", "/portal/profile", "/portal/assets/portal.js"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.body.contains("unknown_endpoint"), "{path}");
    }
    // The API is as it was when the portal is on.
    let on = Fixture::with_portal(AGENT).await;
    let page = Browser::new(&on).get("/v1/health").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers.get("content-security-policy").is_none());
}
