//! A browser and system in words, from a user agent.

/// "Firefox on Linux" from a user agent, "curl" for an HTTP library; "Unknown browser"
/// when it says nothing useful.
///
/// ```
/// let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
/// assert_eq!(tessera::views::device::describe(ua), "Firefox on Linux");
/// assert_eq!(tessera::views::device::describe("curl/8.0"), "curl");
/// assert_eq!(tessera::views::device::describe("no browser at all"), "Unknown browser");
/// ```
#[must_use]
pub fn describe(user_agent: &str) -> String {
    match woothee::parser::Parser::new().parse(user_agent) {
        Some(ua) if ua.name != "UNKNOWN" => {
            // woothee names every HTTP library "HTTP Library", and which one in `version`.
            let name = if ua.name == "HTTP Library" && !ua.version.is_empty() {
                ua.version
            } else {
                ua.name
            };
            if ua.os.is_empty() || ua.os == "UNKNOWN" {
                name.to_string()
            } else {
                format!("{name} on {}", ua.os)
            }
        }
        _ => "Unknown browser".to_string(),
    }
}
