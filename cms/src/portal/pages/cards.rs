//! The holder's profile with the Smartcard Details table, and the service choices for one card.

use super::{role_label, selected_role_label};
use crate::portal::html::{escape, page, Frame};
use crate::service::Caller;
use cms_api::protocol::SmartcardDetails;
use cms_api::RA_ACTIVITY;
use std::fmt::Write as _;

/// The profile page: the holder's name, the selected role, and their cards as the national
/// Smartcard Details table, each with a radio button; `Service` opens the chosen card's
/// services. The session's card is chosen at first.
pub fn profile(agent_url: &str, caller: &Caller, cards: &[SmartcardDetails]) -> String {
    let session_card = &caller.session.card_serial;
    let chosen = cards
        .iter()
        .find(|c| &c.serial == session_card)
        .or_else(|| cards.iter().find(|c| c.cancelled_on.is_none()))
        .map(|c| c.serial.as_str());
    let mut rows = String::new();
    for card in cards {
        let serial = escape(&card.serial);
        let checked = if Some(card.serial.as_str()) == chosen {
            " checked"
        } else {
            ""
        };
        let [_, format, card_type, issued, expires, cancelled] = &card.row;
        let _ = writeln!(
            rows,
            "<tr data-serial=\"{serial}\" data-expired=\"{expired}\">\
             <td><input type=\"radio\" name=\"serial\" value=\"{serial}\" id=\"card-{serial}\"{checked} required>\
             <label class=\"visually-hidden\" for=\"card-{serial}\">Card {serial}</label></td>\
             <td class=\"serial\">{serial}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(format),
            escape(card_type),
            escape(issued),
            escape(expires),
            escape(cancelled),
            expired = card.expired,
        );
    }
    let table = if cards.is_empty() {
        "<p id=\"no-cards\">No smartcard is registered to you.</p>\n".to_owned()
    } else {
        format!(
            "<form method=\"get\" action=\"/portal/service\">\n\
             <table id=\"smartcard-details\">\n<caption>Smartcard Details</caption>\n\
             <thead><tr><th scope=\"col\"><span class=\"visually-hidden\">Select</span></th>\
             <th scope=\"col\">Serial Number</th><th scope=\"col\">Format</th>\
             <th scope=\"col\">Type</th><th scope=\"col\">Issued on</th>\
             <th scope=\"col\">Certs expire</th><th scope=\"col\">Cancelled on</th></tr></thead>\n\
             <tbody>\n{rows}</tbody>\n</table>\n\
             <p><button type=\"submit\" id=\"service\">Service</button> \
             <span class=\"hint\">Choose a smartcard, then Service to renew it.</span></p>\n\
             </form>\n"
        )
    };
    let expiry = cards
        .iter()
        .find(|c| &c.serial == session_card)
        .map(session_card_note)
        .unwrap_or_default();
    let main = format!(
        "<dl class=\"holder\">\n<dt>Name</dt><dd id=\"holder-name\">{name}</dd>\n\
         <dt>Role</dt><dd id=\"role\">{role}</dd>\n\
         <dt>Signed in with</dt><dd id=\"session-card\">{card}</dd>\n</dl>\n\
         {expiry}<h2>Your smartcards</h2>\n{table}",
        name = escape(&caller.user.name),
        role = escape(&selected_role_label(caller)),
        card = escape(session_card),
    );
    page(
        &Frame {
            title: "Your profile",
            page: "profile",
            agent_url,
            signed_in_as: Some(&caller.user.name),
        },
        &main,
    )
}

/// What the profile says about the card the holder signed in with.
fn session_card_note(card: &SmartcardDetails) -> String {
    let expires = escape(&card.row[4]);
    if card.cancelled_on.is_some() {
        format!(
            "<p id=\"expiry\" class=\"notice\">Smartcard {} was cancelled on {}. Ask your \
             Registration Authority for a new one.</p>\n",
            escape(&card.serial),
            escape(&card.row[5])
        )
    } else if card.expired {
        format!(
            "<p id=\"expiry\" class=\"notice\">The certificates on your smartcard expired on \
             {expires}. You cannot renew it yourself: take it to your Registration Authority, \
             who can repair it.</p>\n"
        )
    } else {
        format!(
            "<p id=\"expiry\">The certificates on your smartcard expire on {expires}. You can \
             renew them yourself before then: choose the card below, then Service.</p>\n"
        )
    }
}

/// The services for card `card`: Renew Certificate, and Repair Smartcard only when the
/// selected role holds B0267 (with a hint when another of the holder's roles does).
pub fn service(agent_url: &str, caller: &Caller, card: &SmartcardDetails) -> String {
    let serial = escape(&card.serial);
    let repair = if caller.acts_as(RA_ACTIVITY) {
        "<li><a id=\"repair-link\" href=\"/portal/repair\">Repair Smartcard</a> \
         <span class=\"hint\">another person's expired or full smartcard, in the second \
         reader</span></li>\n"
            .to_owned()
    } else {
        String::new()
    };
    let hint = match caller.roles.iter().find(|r| r.grants(RA_ACTIVITY)) {
        Some(role) if !caller.acts_as(RA_ACTIVITY) => format!(
            "<p class=\"hint\" id=\"repair-hint\">Repair Smartcard needs your role {}: select \
             it at the identity agent and sign in again.</p>\n",
            escape(&role_label(role))
        ),
        _ => String::new(),
    };
    let main = format!(
        "<p>Smartcard <strong id=\"service-card\">{serial}</strong> ({card_type}), \
         certificates expire {expires}.</p>\n\
         <ul class=\"services\">\n\
         <li><a id=\"renew-link\" href=\"/portal/renew?serial={serial}\">Renew Certificate</a> \
         <span class=\"hint\">new certificates on your own smartcard, before they expire</span></li>\n\
         {repair}</ul>\n{hint}\
         <p><a href=\"/portal/profile\">Back to your profile</a></p>\n",
        card_type = escape(&card.card_type),
        expires = escape(&card.row[4]),
    );
    page(
        &Frame {
            title: "Smartcard service",
            page: "service",
            agent_url,
            signed_in_as: Some(&caller.user.name),
        },
        &main,
    )
}
