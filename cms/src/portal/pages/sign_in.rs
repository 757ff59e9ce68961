//! The sign-in page: the script asks the identity agent to sign in (the agent asks for the
//! passcode) and for its ticket, and posts the ticket here.

use super::NOSCRIPT_AGENT;
use crate::portal::html::{escape, page, Frame};

/// What the sign-in page says before anything is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInNotice {
    /// Nothing: a first visit.
    None,
    /// The portal session ended because the agent's did.
    SessionEnded,
    /// The holder signed out of the portal.
    SignedOut,
    /// The ticket posted was refused.
    TicketRefused,
    /// The sign-in form came from another site.
    ForeignOrigin,
}

impl SignInNotice {
    /// The notice for the `reason` query parameter of the page.
    pub fn from_reason(reason: Option<&str>) -> Self {
        match reason {
            Some("ended") => Self::SessionEnded,
            Some("signed_out") => Self::SignedOut,
            _ => Self::None,
        }
    }

    fn text(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::SessionEnded => Some(
                "Your session has ended: your smartcard was removed, or you signed out at the \
                 identity agent. Insert your smartcard and sign in again.",
            ),
            Self::SignedOut => Some("You have signed out of the portal."),
            Self::TicketRefused => Some(
                "Your sign-in was not accepted: the identity agent's session has ended or is \
                 not valid. Check your smartcard is in the reader and sign in again.",
            ),
            Self::ForeignOrigin => Some(
                "This sign-in did not come from this site's sign-in page, so it was refused. \
                 Open the portal's address yourself and sign in there.",
            ),
        }
    }

    fn is_error(self) -> bool {
        matches!(self, Self::TicketRefused | Self::ForeignOrigin)
    }
}

/// The sign-in page, saying `notice`; `signed_in_as` names a holder whose session is live.
pub fn sign_in(agent_url: &str, notice: SignInNotice, signed_in_as: Option<&str>) -> String {
    let class = if notice.is_error() {
        "message error"
    } else {
        "message"
    };
    let continue_link = match signed_in_as {
        Some(name) => format!(
            "<p>You are signed in as {}. <a href=\"/portal/profile\">Go to your profile</a>.</p>\n",
            escape(name)
        ),
        None => String::new(),
    };
    let main = format!(
        "{continue_link}\
         <p>Insert your smartcard into the reader, then choose <strong>Sign in</strong>. The \
         identity agent on this computer asks for your passcode.</p>\n\
         {NOSCRIPT_AGENT}\
         <p><button type=\"button\" id=\"sign-in\">Sign in</button></p>\n\
         <p id=\"message\" class=\"{class}\" role=\"status\" aria-live=\"polite\">{message}</p>\n\
         <fieldset id=\"role-choice\" hidden>\n<legend>Choose the role for this session</legend>\n\
         <div id=\"role-options\"></div>\n\
         <button type=\"button\" id=\"choose-role\">Continue with this role</button>\n\
         </fieldset>\n\
         <form id=\"sign-in-form\" method=\"post\" action=\"/portal/sign-in\" hidden>\
         <input type=\"hidden\" name=\"ticket\" value=\"\"></form>\n",
        message = escape(notice.text().unwrap_or("")),
    );
    page(
        &Frame {
            title: "Sign in with your smartcard",
            page: "sign-in",
            agent_url,
            signed_in_as: None,
        },
        &main,
    )
}
