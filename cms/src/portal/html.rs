//! Building HTML by hand: escaping every text and attribute value that is not a literal of
//! ours, and the page frame every portal page shares.

use std::fmt::Write as _;

/// `text` with the characters HTML gives meaning to replaced by references: safe in element
/// content and in double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What varies between pages in the shared frame.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The page's `<title>` and `<h1>`.
    pub title: &'a str,
    /// Which page this is, for the script (`data-page` on `<body>`).
    pub page: &'a str,
    /// The agent bridge URL given to the script, if the page uses the agent.
    pub agent_url: &'a str,
    /// The signed-in holder's name, for the header, when someone is signed in.
    pub signed_in_as: Option<&'a str>,
}

/// A whole page: `frame` around `main` (already HTML).
pub fn page(frame: &Frame<'_>, main: &str) -> String {
    let mut out = String::with_capacity(main.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"identity-agent-url\" content=\"{agent}\">\n\
         <title>{title} – Card Management Service</title>\n\
         <link rel=\"icon\" href=\"/portal/assets/favicon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/portal/assets/portal.css\">\n\
         <script type=\"module\" src=\"/portal/assets/portal.js\"></script>\n\
         </head>\n<body data-page=\"{page}\">\n\
         <a class=\"skip-link\" href=\"#main\">Skip to main content</a>\n\
         <header class=\"site-header\">\n<p class=\"service-name\">\
         <a href=\"/portal/profile\">Card Management Service</a></p>\n",
        agent = escape(frame.agent_url),
        title = escape(frame.title),
        page = escape(frame.page),
    );
    if let Some(name) = frame.signed_in_as {
        let _ = writeln!(
            out,
            "<form class=\"sign-out\" method=\"post\" action=\"/portal/sign-out\">\
             <span>Signed in as {}</span> \
             <button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
            escape(name)
        );
    }
    let _ = write!(
        out,
        "</header>\n<main id=\"main\" tabindex=\"-1\">\n<h1>{title}</h1>\n{main}</main>\n\
         </body>\n</html>\n",
        title = escape(frame.title),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            escape("<script>alert(\"x\" & 'y')</script>"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("Jane Doe"), "Jane Doe");
    }

    #[test]
    fn the_frame_escapes_what_it_is_given() {
        let html = page(
            &Frame {
                title: "A <b>",
                page: "x\"y",
                agent_url: "http://127.0.0.1:1",
                signed_in_as: Some("<i>Jane</i>"),
            },
            "<p>body</p>",
        );
        assert!(html.contains("<h1>A &lt;b&gt;</h1>"));
        assert!(html.contains("data-page=\"x&quot;y\""));
        assert!(html.contains("Signed in as &lt;i&gt;Jane&lt;/i&gt;"));
        assert!(html.contains("<p>body</p>"));
        assert!(html.contains("<html lang=\"en-GB\">"));
    }
}
