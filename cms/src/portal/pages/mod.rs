//! The portal's pages as HTML, one file per part of the walk: signing in, the holder's cards,
//! the card work the agent does (renew, repair), and refusals. Every value that is not ours is
//! escaped; the pages' behaviour is in `cms/portal/portal.js` (no inline script or style).

mod card_work;
mod cards;
mod refusals;
mod sign_in;

pub use card_work::{renew, repair};
pub use cards::{profile, service};
pub use refusals::refusal;
pub use sign_in::{sign_in, SignInNotice};

use crate::db::RoleProfile;
use crate::service::Caller;

/// A role as people read it: "Staff Nurse, Leeds Teaching Hospitals".
fn role_label(role: &RoleProfile) -> String {
    format!("{}, {}", role.job_role, role.organisation)
}

/// The caller's selected role as people read it.
fn selected_role_label(caller: &Caller) -> String {
    caller
        .selected_role()
        .map(role_label)
        .unwrap_or_else(|| "No role selected".into())
}

/// The `<noscript>` of a page whose work needs the identity agent.
const NOSCRIPT_AGENT: &str = "<noscript><p class=\"notice\">This needs JavaScript: the page \
    talks to the identity agent on this computer, which reads your smartcard and asks for your \
    passcode. Turn JavaScript on for this site, or ask your IT service desk.</p></noscript>\n";
