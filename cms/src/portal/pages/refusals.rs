//! Pages that refuse: a role without the activity a page needs, a card that is not the
//! holder's, a page asked for without what it needs.

use crate::portal::html::{escape, page, Frame};

/// A page that says `title` and `explanation`, with a way back to the profile.
pub fn refusal(
    agent_url: &str,
    signed_in_as: Option<&str>,
    title: &str,
    explanation: &str,
) -> String {
    let main = format!(
        "<p id=\"refusal\">{}</p>\n<p><a href=\"/portal/profile\">Back to your profile</a></p>\n",
        escape(explanation)
    );
    page(
        &Frame {
            title,
            page: "refusal",
            agent_url,
            signed_in_as,
        },
        &main,
    )
}
