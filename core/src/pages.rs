//! Pages of the customer's websites as the playbook names them: `url: /pricing*` in page rules
//! and `visited` conditions, matched against the `page_view` events the tracking script (or a
//! CRM) records, whose properties carry the page's `url` and `path`.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The behaviour event a page view is recorded as.
pub const PAGE_VIEW: &str = "page_view";

/// A page pattern: a glob over the path (`/pricing*`, `/blog/*/iot`), or over a whole
/// address without its query (`https://www.lumen-cloud.example/pricing*`). `*` matches any
/// characters, `/` included; `?` one; `[abc]` one of a set. Letters match in either case.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct UrlPattern {
    text: String,
    glob: glob::Pattern,
    /// Matched against the whole address (scheme, host, path) rather than the path.
    whole: bool,
}

impl UrlPattern {
    pub fn parse(text: &str) -> Result<UrlPattern, String> {
        let trimmed = text.trim();
        let whole = trimmed.starts_with("http://") || trimmed.starts_with("https://");
        if !whole && !trimmed.starts_with('/') {
            return Err(format!(
                "url {text:?} is neither a path (/pricing*) nor an address (https://www.example.com/pricing*)"
            ));
        }
        if trimmed.contains('#') {
            return Err(format!(
                "url {text:?} has a fragment (#…); pages are matched without it"
            ));
        }
        let glob = glob::Pattern::new(&trimmed.to_lowercase()).map_err(|e| {
            format!(
                "url {text:?} is not a valid pattern: {} at character {}",
                e.msg,
                e.pos + 1
            )
        })?;
        Ok(UrlPattern {
            text: trimmed.to_owned(),
            glob,
            whole,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a page view with these properties is of a matching page: the path is the
    /// `path` property, else the path of `url`; the address is `url` without query or
    /// fragment.
    pub fn matches(&self, properties: &Map<String, Value>) -> bool {
        let url = properties
            .get("url")
            .and_then(Value::as_str)
            .and_then(|u| url::Url::parse(u.trim()).ok());
        let candidate = if self.whole {
            let Some(mut url) = url else { return false };
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        } else {
            match properties.get("path").and_then(Value::as_str) {
                Some(path) => path.trim().split(['?', '#']).next().unwrap_or_default().to_owned(),
                None => match url {
                    Some(url) => url.path().to_owned(),
                    None => return false,
                },
            }
        };
        let options = glob::MatchOptions {
            case_sensitive: false,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        self.glob.matches_with(&candidate, options)
    }
}

impl TryFrom<String> for UrlPattern {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        UrlPattern::parse(&text)
    }
}

impl PartialEq for UrlPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for UrlPattern {}

impl std::fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// An origin sites post page views from (`https://www.lumen-cloud.example`), as browsers send
/// it in `Origin`: scheme, host and a port other than the scheme's, lower case, no path.
pub fn origin(text: &str) -> Result<String, String> {
    let problem = || format!("site {text:?} is not an origin like https://www.example.com (scheme and host, no path)");
    let url = url::Url::parse(text.trim()).map_err(|_| problem())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(problem());
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(properties: Value) -> Map<String, Value> {
        properties.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_path_pattern_matches_the_path_of_a_page_view() {
        let pricing = UrlPattern::parse("/pricing*").unwrap();
        assert!(pricing.matches(&view(json!({"path": "/pricing"}))));
        assert!(
            pricing.matches(&view(json!({"path": "/Pricing/enterprise"}))),
            "any case, across /"
        );
        assert!(
            pricing.matches(&view(json!({"path": "/pricing?plan=pro"}))),
            "the query left out"
        );
        assert!(pricing.matches(&view(json!({"url": "https://www.example.com/pricing/?utm_source=x"}))));
        assert!(!pricing.matches(&view(json!({"path": "/blog/pricing"}))));
        assert!(
            !pricing.matches(&view(json!({"title": "Pricing"}))),
            "no address, no match"
        );
        let middle = UrlPattern::parse("/blog/*/iot").unwrap();
        assert!(middle.matches(&view(json!({"path": "/blog/2026/11/iot"}))));
        assert!(!middle.matches(&view(json!({"path": "/blog/iot"}))));
    }

    #[test]
    fn an_address_pattern_matches_the_whole_address_without_its_query() {
        let pattern = UrlPattern::parse("https://www.example.com/pricing*").unwrap();
        assert!(pattern.matches(&view(json!({"url": "https://WWW.example.com/pricing?x=1#top"}))));
        assert!(!pattern.matches(&view(json!({"url": "https://shop.example.com/pricing"}))));
        assert!(
            !pattern.matches(&view(json!({"path": "/pricing"}))),
            "a path alone has no host"
        );
    }

    #[test]
    fn a_pattern_that_is_no_page_is_refused_with_the_reason() {
        let err = UrlPattern::parse("pricing*").unwrap_err();
        assert!(err.contains("neither a path"), "{err}");
        let err = UrlPattern::parse("/pricing[").unwrap_err();
        assert!(err.contains("not a valid pattern"), "{err}");
    }

    #[test]
    fn a_site_is_an_origin() {
        assert_eq!(
            origin("https://WWW.Lumen-Cloud.example").unwrap(),
            "https://www.lumen-cloud.example"
        );
        assert_eq!(origin("http://localhost:8080/").unwrap(), "http://localhost:8080");
        assert_eq!(origin("https://example.com:443").unwrap(), "https://example.com");
        for bad in [
            "www.example.com",
            "https://example.com/shop",
            "ftp://example.com",
            "https://example.com?a",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}
