//! Pages of the customer's websites as the playbook names them: `url: /pricing*` in page rules
//! and `visited` conditions, matched against the `page_view` events the tracking script (or a
//! CRM) records, whose properties carry the page's `url` and `path`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::lead::FieldError;

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

/// What the tracking script posts to `POST /t/events`: a visitor's first-party id, what it did
/// on the site, and who it is when the site says so (`nurture('identify', {email})`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackBatch {
    /// The id the script keeps for this browser: 16 to 64 letters, digits, `-` or `_`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{16,64}$"))]
    pub visitor: String,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub events: Vec<TrackEvent>,
    #[serde(default)]
    pub identify: Option<Identify>,
    /// The visitor's consent, when the playbook requires it (`tracking: { consent: required }`).
    #[serde(default)]
    pub consent: Option<bool>,
}

/// Who a visitor is, as the site says.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identify {
    pub email: String,
}

/// Something a visitor did on a page.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackEvent {
    #[serde(rename = "type")]
    pub kind: TrackKind,
    /// The page's address (http or https).
    #[schemars(regex(pattern = r"^https?://"), length(max = 2048))]
    pub url: String,
    #[serde(default)]
    #[schemars(length(max = 300))]
    pub title: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub referrer: Option<String>,
    /// A click's or download's link.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub link: Option<String>,
    /// A click's link text.
    #[serde(default)]
    #[schemars(length(max = 300))]
    pub text: Option<String>,
}

/// What the script records: page views always, clicks and downloads where the site asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    PageView,
    Click,
    Download,
}

impl TrackKind {
    /// The behaviour event it is recorded as.
    pub fn event_type(self) -> &'static str {
        match self {
            TrackKind::PageView => PAGE_VIEW,
            TrackKind::Click => "link_clicked",
            TrackKind::Download => "file_downloaded",
        }
    }
}

/// The most events one post may carry (the script sends a few at a time).
pub const MAX_TRACK_EVENTS: usize = 50;

const MAX_URL: usize = 2048;
const MAX_TEXT: usize = 300;

impl TrackBatch {
    /// What is wrong with the batch, each with the field it is about.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        let visitor = self.visitor.trim();
        if !(16..=64).contains(&visitor.len())
            || !visitor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push(FieldError::new(
                "visitor",
                "a visitor id is 16 to 64 letters, digits, '-' or '_' (the script makes one)",
            ));
        }
        if self.events.len() > MAX_TRACK_EVENTS {
            out.push(FieldError::new(
                "events",
                format!("at most {MAX_TRACK_EVENTS} events a post; send the rest in another"),
            ));
        }
        for (i, event) in self.events.iter().enumerate() {
            let web = |text: &str| {
                text.len() <= MAX_URL
                    && url::Url::parse(text.trim()).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            };
            if !web(&event.url) {
                out.push(FieldError::new(
                    format!("events[{i}].url"),
                    format!("an http or https address of at most {MAX_URL} characters"),
                ));
            }
            for (name, value, limit) in [
                ("referrer", &event.referrer, MAX_URL),
                ("link", &event.link, MAX_URL),
                ("title", &event.title, MAX_TEXT),
                ("text", &event.text, MAX_TEXT),
            ] {
                if value.as_ref().is_some_and(|v| v.chars().count() > limit) {
                    out.push(FieldError::new(
                        format!("events[{i}].{name}"),
                        format!("at most {limit} characters"),
                    ));
                }
            }
        }
        out
    }
}

impl TrackEvent {
    /// The event's properties: the address, its path and UTM parameters, the title, the
    /// referrer, a click's link and text; `automated` when a bot made it.
    pub fn properties(&self, automated: bool) -> Map<String, Value> {
        let mut out = Map::new();
        let url = self.url.trim();
        out.insert("url".into(), Value::from(url));
        if let Ok(parsed) = url::Url::parse(url) {
            out.insert("path".into(), Value::from(parsed.path()));
            for (key, value) in parsed.query_pairs() {
                if key.starts_with("utm_") && key.len() <= 32 && !out.contains_key(key.as_ref()) {
                    out.insert(
                        key.into_owned(),
                        Value::from(value.chars().take(MAX_TEXT).collect::<String>()),
                    );
                }
            }
        }
        for (name, value) in [
            ("title", &self.title),
            ("referrer", &self.referrer),
            ("link", &self.link),
            ("text", &self.text),
        ] {
            if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                out.insert(name.into(), Value::from(v));
            }
        }
        out.insert("automated".into(), Value::from(automated));
        out
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
    fn a_page_view_carries_its_path_and_utm_parameters() {
        let batch: TrackBatch = serde_json::from_value(json!({
            "visitor": "v_0123456789abcdef",
            "events": [{"type": "page_view", "url": "https://www.example.com/pricing?utm_source=ads&utm_medium=cpc&x=1", "title": " Pricing ", "referrer": ""}]
        }))
        .unwrap();
        assert!(batch.problems().is_empty());
        let properties = batch.events[0].properties(false);
        assert_eq!(
            Value::Object(properties),
            json!({"url": "https://www.example.com/pricing?utm_source=ads&utm_medium=cpc&x=1", "path": "/pricing",
                   "utm_source": "ads", "utm_medium": "cpc", "title": "Pricing", "automated": false})
        );
    }

    #[test]
    fn a_batch_says_what_is_wrong_with_it() {
        let batch: TrackBatch = serde_json::from_value(json!({
            "visitor": "short",
            "events": [{"type": "click", "url": "javascript:alert(1)", "title": "x".repeat(301)}]
        }))
        .unwrap();
        let fields: Vec<String> = batch.problems().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["visitor", "events[0].url", "events[0].title"]);
        assert!(serde_json::from_value::<TrackBatch>(
            json!({"visitor": "v_0123456789abcdef", "events": [{"type": "scroll", "url": "https://a.example/"}]})
        )
        .is_err());
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
