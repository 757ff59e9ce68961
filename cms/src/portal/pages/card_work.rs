//! The pages where the identity agent works on a card: Renew Certificate (the holder's own
//! card) and Repair Smartcard (an officer with B0267, the holder's card in the second reader).
//! The script drives the agent; the server says beforehand what cannot work.

use super::NOSCRIPT_AGENT;
use crate::portal::html::{escape, page, Frame};
use crate::service::Caller;
use cms_api::protocol::SmartcardDetails;

/// The progress, result and error areas the script fills, and the way back once done.
const OUTCOME: &str = "<h2>Progress</h2>\n\
    <ol id=\"progress\" aria-live=\"polite\"></ol>\n\
    <p id=\"result\" role=\"status\"></p>\n";

/// Why the holder cannot renew `card` here, if they cannot.
fn renewal_refusal(caller: &Caller, card: &SmartcardDetails) -> Option<String> {
    let [serial, _, _, _, expires, cancelled] = &card.row;
    if card.cancelled_on.is_some() {
        return Some(format!(
            "Smartcard {serial} was cancelled on {cancelled}: it cannot be renewed. Ask your \
             Registration Authority for a new smartcard."
        ));
    }
    if card.expired {
        return Some(format!(
            "The certificates on smartcard {serial} expired on {expires}: you cannot renew them \
             yourself any more. Take the card to your Registration Authority, who can repair it."
        ));
    }
    if card.renewals_used >= card.capacity {
        return Some(format!(
            "Smartcard {serial} has been renewed as many times as it can be: your Registration \
             Authority must repair it."
        ));
    }
    if &caller.session.card_serial != serial {
        return Some(format!(
            "You signed in with smartcard {}. To renew smartcard {serial}, insert it, sign in \
             with it, and come back here.",
            caller.session.card_serial
        ));
    }
    None
}

/// The Renew Certificate page for the holder's `card`.
pub fn renew(agent_url: &str, caller: &Caller, card: &SmartcardDetails) -> String {
    let refusal = renewal_refusal(caller, card);
    let disabled = if refusal.is_some() { " disabled" } else { "" };
    let main = format!(
        "<section id=\"renewal\" data-serial=\"{serial}\">\n\
         <p>Smartcard <strong>{serial}</strong>: certificates expire on \
         <span id=\"current-expiry\">{expires}</span>.</p>\n\
         <p>Keep your smartcard in the reader until this page says it is done. The identity \
         agent asks for your passcode once; it takes a few seconds, and you stay signed in.</p>\n\
         {NOSCRIPT_AGENT}\
         <p><button type=\"button\" id=\"renew\"{disabled}>Renew Certificate</button></p>\n\
         {OUTCOME}<p id=\"error\" role=\"alert\">{error}</p>\n\
         <p><a id=\"back\" href=\"/portal/profile\"{back_hidden}>Back to your profile</a></p>\n\
         </section>\n",
        serial = escape(&card.serial),
        expires = escape(&card.row[4]),
        error = escape(refusal.as_deref().unwrap_or("")),
        back_hidden = if refusal.is_some() { "" } else { " hidden" },
    );
    page(
        &Frame {
            title: "Renew Certificate",
            page: "renew",
            agent_url,
            signed_in_as: Some(&caller.user.name),
        },
        &main,
    )
}

/// The Repair Smartcard page (for an officer whose selected role holds B0267).
pub fn repair(agent_url: &str, caller: &Caller) -> String {
    let main = format!(
        "<section id=\"repair-work\" data-officer-card=\"{officer_card}\">\n\
         <p>Repair Smartcard gives new certificates to another person's smartcard that has \
         expired or is full. Keep your own smartcard in your usual reader.</p>\n\
         <ol class=\"steps\">\n\
         <li>Insert the card holder's smartcard into the <strong>second</strong> reader now, \
         then choose <strong>Read the card</strong>.</li>\n\
         <li>Check the name and dates with the card holder, then choose <strong>Repair \
         Smartcard</strong>.</li>\n\
         <li>The card holder chooses their new passcode in the identity agent's prompt: 4 to 8 \
         digits, not an obvious run such as 1234 or 9999. Only they may know it.</li>\n\
         </ol>\n\
         {NOSCRIPT_AGENT}\
         <p><button type=\"button\" id=\"read-card\">Read the card</button></p>\n\
         <table id=\"repair-card\" hidden>\n<caption>The card in the second reader</caption>\n\
         <tbody>\n\
         <tr><th scope=\"row\">Holder</th><td data-field=\"holder_name\"></td></tr>\n\
         <tr><th scope=\"row\">Serial Number</th><td data-field=\"serial\"></td></tr>\n\
         <tr><th scope=\"row\">Type</th><td data-field=\"card_type\"></td></tr>\n\
         <tr><th scope=\"row\">Issued on</th><td data-field=\"issued_on\"></td></tr>\n\
         <tr><th scope=\"row\">Certs expire</th><td data-field=\"certs_expire\"></td></tr>\n\
         <tr><th scope=\"row\">Cancelled on</th><td data-field=\"cancelled_on\"></td></tr>\n\
         </tbody>\n</table>\n\
         <p><button type=\"button\" id=\"repair\" disabled>Repair Smartcard</button></p>\n\
         {OUTCOME}<p id=\"error\" role=\"alert\"></p>\n\
         <p><a id=\"back\" href=\"/portal/profile\" hidden>Back to your profile</a></p>\n\
         </section>\n",
        officer_card = escape(&caller.session.card_serial),
    );
    page(
        &Frame {
            title: "Repair Smartcard",
            page: "repair",
            agent_url,
            signed_in_as: Some(&caller.user.name),
        },
        &main,
    )
}
