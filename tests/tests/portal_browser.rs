//! The CMS's portal in a real browser: headless Chromium loads the pages over the service's
//! HTTPS, and the pages reach the agent through its web bridge on loopback, with real cardsim
//! cards in the private pcscd and the PIN from the scripted pinentry.
//!
//! Each test leaves screenshots of the pages it saw in `target/screenshots/`.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{Event, SessionState};
use cardsim::{AtrProfile, InsertedCard};
use cms::issuance::InitialValidity;
use cms::policy::Policy;
use piv::CardSerial;
use std::time::Duration;
use testbed::bridge::free_port;
use testbed::browser::{screenshot_dir, serve_page, spki_pin, Browser, BrowserOptions};
use testbed::stack::{AgentOptions, Stack, StackCard, NURSE, RA_OFFICER};

/// How long a page may take to show what a step brings (a renewal's RSA key generation on the
/// virtual card included).
const PAGE_TIMEOUT: Duration = Duration::from_secs(90);

const RA_PIN: &str = "864209";
const HOLDER_PIN: &str = "975310";
const NEW_PIN: &str = "918273";

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x3A, n])
}

/// The service with its portal, the agent with its bridge allowing the portal's origin, and a
/// browser that trusts the service's key.
struct Portal {
    browser: Browser,
    stack: Stack,
    /// The bridge's port.
    bridge_port: u16,
}

impl Portal {
    /// Starts the service with the portal pointed at a free bridge port (no agent yet).
    fn start() -> Portal {
        let bridge_port = free_port().unwrap();
        let stack = Stack::start_with_portal(
            Policy::default(),
            &format!("http://127.0.0.1:{bridge_port}"),
        )
        .unwrap();
        let tls = stack.cms.data_dir().ca_files().tls_certificate;
        let browser = Browser::start(&BrowserOptions {
            trusted_spki: vec![spki_pin(&tls).unwrap()],
        })
        .unwrap();
        Portal {
            browser,
            stack,
            bridge_port,
        }
    }

    /// The portal's origin: the service's scheme, host and port.
    fn origin(&self) -> String {
        self.stack.cms_url().trim_end_matches('/').to_owned()
    }

    /// Starts the agent, not signing in by itself (the page asks it to), with its bridge open
    /// to the portal's origin only.
    fn start_agent(&mut self) {
        let options = AgentOptions {
            login_on_insert: false,
            extra_config: format!(
                "[bridge]\nport = {}\nallowed_origins = [{:?}]\n",
                self.bridge_port,
                self.origin()
            ),
            ..AgentOptions::default()
        };
        self.stack.start_agent(&options).unwrap();
    }

    /// Opens the portal's `path`.
    fn open(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.origin()))
            .unwrap();
    }

    /// Saves what the browser shows as `target/screenshots/portal-<name>.png`.
    fn screenshot(&self, name: &str) {
        let path = screenshot_dir().join(format!("portal-{name}.png"));
        self.browser.screenshot(&path).unwrap();
    }

    /// Signs in from the sign-in page (the agent asks the PIN through the scripted pinentry)
    /// and waits for the profile page.
    fn sign_in(&self) {
        self.open("/portal/");
        self.browser.wait_for("#sign-in", PAGE_TIMEOUT).unwrap();
        self.screenshot("sign-in");
        self.browser.click("#sign-in").unwrap();
        self.browser
            .wait_for("#smartcard-details", PAGE_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}: {}", self.browser.text("#message").unwrap()));
    }

    /// The Smartcard Details row of `card`, as its cells read.
    fn card_row(&self, card: &StackCard) -> String {
        self.browser
            .text(&format!(
                "#smartcard-details tr[data-serial=\"{}\"]",
                card.serial
            ))
            .unwrap()
    }

    /// Selects `card` in the Smartcard Details table and follows Service.
    fn service(&self, card: &StackCard) {
        self.browser
            .click(&format!(
                "#smartcard-details tr[data-serial=\"{}\"] input[type=radio]",
                card.serial
            ))
            .unwrap();
        self.browser.click("#service").unwrap();
        self.browser.wait_for("#renew-link", PAGE_TIMEOUT).unwrap();
    }

    /// Waits for the operation on the page to end; returns its result text, or panics with
    /// the error the page shows.
    fn wait_for_result(&self) -> String {
        let browser = &self.browser;
        let deadline = std::time::Instant::now() + PAGE_TIMEOUT;
        loop {
            let error = browser.text("#error").unwrap();
            assert!(error.is_empty(), "the page shows an error: {error}");
            let result = browser.text("#result").unwrap();
            if !result.is_empty() {
                return result;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no result on the page"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The service's date as the Smartcard Details table prints it: `21-Nov-2019`.
fn table_date(secs: Option<i64>) -> String {
    cms::dates::display_date(secs.expect("a date"))
}

/// A nurse's card with 20 days left, inserted in reader 0, and the agent started.
fn nurse_at_the_portal() -> (Portal, StackCard, InsertedCard) {
    let mut portal = Portal::start();
    let card = portal
        .stack
        .nurse_card(serial(1), InitialValidity::Days(20), AtrProfile::NhsCis)
        .unwrap();
    portal.start_agent();
    let inserted = portal.stack.insert(0, &card).unwrap();
    (portal, card, inserted)
}

#[test]
fn the_page_signs_in_through_the_agent_and_shows_the_cards_real_dates() {
    let (portal, card, _inserted) = nurse_at_the_portal();
    portal.stack.pin_answers(&[&card.pin]).unwrap();
    portal.sign_in();
    portal.screenshot("profile");

    // The PIN was asked by the agent, once, and the session is the agent's.
    assert_eq!(portal.stack.pin_prompts().len(), 1);
    assert_eq!(portal.stack.status().session.state, SessionState::SignedIn);
    assert_eq!(portal.browser.text("#holder-name").unwrap(), "Jane Doe");

    // The table shows the card with the service's own dates.
    let record = portal.stack.card_record(&card).unwrap();
    let row = portal.card_row(&card);
    assert!(row.contains(&card.serial.to_string()), "{row}");
    assert!(row.contains(&table_date(Some(record.issued_on))), "{row}");
    assert!(row.contains(&table_date(record.certs_expire)), "{row}");
    assert!(row.contains("Active"), "{row}");
}

#[test]
fn renewing_from_the_page_moves_the_expiry_and_keeps_the_session() {
    let (portal, card, _inserted) = nurse_at_the_portal();
    portal.stack.pin_answers(&[&card.pin, &card.pin]).unwrap();
    portal.sign_in();
    let before = portal.stack.card_record(&card).unwrap();
    let session = portal.stack.status().session;
    let mut events = portal.stack.subscribe();

    portal.service(&card);
    portal.screenshot("service");
    assert!(
        !portal.browser.exists("#repair-link").unwrap(),
        "a nurse is offered Repair Smartcard"
    );
    portal.browser.click("#renew-link").unwrap();
    portal.browser.wait_for("#renew", PAGE_TIMEOUT).unwrap();
    portal.browser.click("#renew").unwrap();
    let result = portal.wait_for_result();
    portal.screenshot("renewed");
    assert!(result.contains("Renewed"), "{result}");
    let progress = portal.browser.text("#progress").unwrap();
    assert!(!progress.is_empty(), "no progress was shown");

    // A real renewal: the service has a new expiry, and the profile shows it.
    let after = portal.stack.card_record(&card).unwrap();
    assert_eq!(after.renewals_used, before.renewals_used + 1);
    assert_ne!(after.certs_expire, before.certs_expire);
    portal.browser.click("#back").unwrap();
    portal
        .browser
        .wait_for("#smartcard-details", PAGE_TIMEOUT)
        .unwrap();
    let row = portal.card_row(&card);
    assert!(row.contains(&table_date(after.certs_expire)), "{row}");
    portal.screenshot("profile-renewed");

    // The session was not ended: no session_ended event, the same session still signed in.
    let ended = portal
        .stack
        .next_matching(&mut events, Duration::from_millis(300), |e| {
            matches!(e, Event::SessionEnded { .. })
        });
    assert!(ended.is_none(), "{ended:?}");
    let now = portal.stack.status().session;
    assert_eq!(now.state, SessionState::SignedIn);
    assert_eq!(now.signed_in_at, session.signed_in_at);

    // And the card signs in with its new certificate.
    let created = portal.stack.sign_in_directly(0, &card.pin).unwrap();
    assert_eq!(created.session.card_serial, card.serial.to_string());
}

#[test]
fn an_officer_repairs_an_expired_card_from_the_page_with_two_readers() {
    let mut portal = Portal::start();
    let officer = portal
        .stack
        .officer_card(&[RA_OFFICER], serial(2), RA_PIN)
        .unwrap();
    let (holder, _) = portal.stack.user("Harry Holder", &[NURSE]).unwrap();
    let holder = portal
        .stack
        .issue(
            &holder,
            serial(3),
            HOLDER_PIN,
            InitialValidity::Expired,
            AtrProfile::NhsCis,
        )
        .unwrap();
    portal.start_agent();
    let _officer_in = portal.stack.insert(0, &officer).unwrap();
    // The officer's PIN, then the holder's new PIN twice.
    portal
        .stack
        .pin_answers(&[RA_PIN, NEW_PIN, NEW_PIN])
        .unwrap();
    portal.sign_in();

    portal.service(&officer);
    portal.browser.click("#repair-link").unwrap();
    let _holder_in = portal.stack.insert(1, &holder).unwrap();
    portal.browser.wait_for("#read-card", PAGE_TIMEOUT).unwrap();
    portal.browser.click("#read-card").unwrap();
    let details = portal
        .browser
        .wait_for_text("#repair-card", PAGE_TIMEOUT, |t| t.contains("Harry Holder"))
        .unwrap();
    assert!(details.contains(&holder.serial.to_string()), "{details}");
    portal.screenshot("repair-card");
    portal.browser.click("#repair").unwrap();
    let result = portal.wait_for_result();
    portal.screenshot("repaired");
    assert!(result.contains("Repaired"), "{result}");

    // The holder's card works again, with the PIN they chose.
    let record = portal.stack.card_record(&holder).unwrap();
    assert!(record.certs_expire > Some(cms::dates::now()), "{record:?}");
    let created = portal.stack.sign_in_directly(1, NEW_PIN).unwrap();
    assert_eq!(created.session.card_serial, holder.serial.to_string());
}

/// A page on another origin than the portal's, served over plain HTTP on loopback: it asks the
/// bridge for the status and a ticket, over fetch and over a WebSocket, and writes what it got
/// into `#out` as JSON.
const FOREIGN_PAGE: &str = r#"<!doctype html><html><head><title>elsewhere</title></head><body>
<pre id="out"></pre><script>
const bridge = "http://127.0.0.1:BRIDGE_PORT";
const got = {};
async function ask(name, url, init) {
  try { const r = await fetch(url, init); got[name] = "answered " + r.status + " " + await r.text(); }
  catch (e) { got[name] = "refused: " + e.name; }
}
function socket() {
  return new Promise((done) => {
    const ws = new WebSocket(bridge.replace("http", "ws") + "/v1/socket");
    ws.onopen = () => ws.send(JSON.stringify({id: 1, method: "hello", params: {protocol: 1}}));
    ws.onmessage = (m) => { got.socket = "answered " + m.data; ws.close(); done(); };
    ws.onerror = () => { got.socket = "refused"; done(); };
  });
}
(async () => {
  await ask("status", bridge + "/v1/status");
  await ask("ticket", bridge + "/v1/call/ticket", {method: "POST", body: "{}",
    headers: {"content-type": "application/json"}});
  await ask("simple_ticket", bridge + "/v1/call/ticket", {method: "POST", mode: "no-cors", body: "{}"});
  await socket();
  document.getElementById("out").textContent = JSON.stringify(got);
})();
</script></body></html>"#;

#[test]
fn a_page_from_another_origin_gets_no_status_and_no_ticket() {
    let (portal, card, _inserted) = nurse_at_the_portal();
    portal.stack.pin_answers(&[&card.pin]).unwrap();
    // Signed in: there is a ticket to steal.
    portal.sign_in();

    let page = FOREIGN_PAGE.replace("BRIDGE_PORT", &portal.bridge_port.to_string());
    let port = serve_page(page).unwrap();
    portal
        .browser
        .goto(&format!("http://127.0.0.1:{port}/"))
        .unwrap();
    let out = portal
        .browser
        .wait_for_text("#out", PAGE_TIMEOUT, |t| !t.is_empty())
        .unwrap();
    portal.screenshot("foreign-origin");
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    // fetch with CORS: refused by the bridge, so the browser hands the page nothing.
    assert_eq!(got["status"], "refused: TypeError", "{got}");
    assert_eq!(got["ticket"], "refused: TypeError", "{got}");
    // A request without CORS is opaque to the page (status 0, no body), and the bridge refused
    // it all the same (below).
    assert_eq!(got["simple_ticket"], "answered 0 ", "{got}");
    assert_eq!(got["socket"], "refused", "{got}");
    let ticket = portal
        .stack
        .block_on(portal.stack.client().ticket())
        .unwrap();
    assert!(
        !out.contains("signed_in") && !out.contains(ticket.ticket.as_str()),
        "{out}"
    );
    // The bridge refused each of the four for their origin, and the holder is still signed in.
    let logs = portal.stack.agent_logs();
    let refusals = logs.matches("origin not allowed").count();
    assert!(refusals >= 4, "{refusals} refusals: {logs}");
    assert_eq!(portal.stack.status().session.state, SessionState::SignedIn);
}
