//! `GET /console`: one self-contained page (no build step, nothing fetched from elsewhere) that
//! asks this endpoint for any action of the family and draws the answer as SVG. With auth on,
//! the page signs each request itself (V1, WebCrypto) with a key typed into it and kept in the
//! page's memory only.

use srctraffic::Clock;
use srctraffic::time::ApiTime;

const PAGE: &str = include_str!("console.html");

/// The `Content-Security-Policy` the page is served with: its own inline script and style, and
/// requests to this origin only.
pub const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                       connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/// The page, told whether requests must be signed and, for a fixed data clock, what "now" is
/// (so that it offers the day before it, where a replayed store has data).
pub fn page(auth_on: bool, clock: &Clock) -> String {
    let now = match clock {
        Clock::System => String::new(),
        fixed => ApiTime::from_unix_seconds(fixed.now_unix()).to_string(),
    };
    PAGE.replacen("__AUTH__", if auth_on { "on" } else { "off" }, 1)
        .replacen("__NOW__", &now, 1)
}

/// Whether a request is for the page: `GET .../console`, under any stage prefix.
pub fn is_page_request(method: &str, path: &str) -> bool {
    method == "GET" && (path.ends_with("/console") || path.ends_with("/console/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_told_about_auth_and_the_data_clock() {
        let p = page(true, &Clock::fixed("2019-12-11T00:00:00Z").unwrap());
        assert!(p.contains(r#"data-auth="on" data-now="2019-12-11T00:00:00Z""#));
        let p = page(false, &Clock::System);
        assert!(p.contains(r#"data-auth="off" data-now="""#));
        // Self-contained: nothing is loaded from another origin.
        assert!(!p.contains("src=\"http") && !p.contains("href=\"http"));
    }

    #[test]
    fn only_a_get_of_console_is_the_page() {
        assert!(is_page_request("GET", "/console"));
        assert!(is_page_request("GET", "/prod/console"));
        assert!(!is_page_request("POST", "/console"));
        assert!(!is_page_request("GET", "/"));
        assert!(!is_page_request("GET", "/consoles"));
    }
}
