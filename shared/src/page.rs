//! What every step's page is made of: the layout (the navigation and the
//! era header, from [`crate::steps`]), the feed listing with search and
//! paging, the post form with its errors, and the error page.
//!
//! The templates live in `shared/templates` and every step finds them through
//! the `dirs` of its `askama.toml`, so all steps render the same markup and a
//! diff between two steps shows only what their transports change.

use std::sync::Arc;

use askama::Template;
use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::header;

use crate::feed::Feed;
use crate::form::Fields;
use crate::http;
use crate::http::Response;
use crate::news::FieldErrors;
use crate::news::NewsItem;
use crate::steps::STEPS;
use crate::steps::Step;

/// How many items a page shows at once.
pub const PAGE_SIZE: usize = 50;
/// The slowest and fastest `?refresh=N` (seconds) a page accepts.
pub const REFRESH_RANGE: std::ops::RangeInclusive<u32> = 1..=60;

/// What the layout (`base.html`) needs on every page.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The step serving this page.
    pub step: &'static Step,
    /// The host name the browser used to reach us, so that links to the
    /// other steps point at the same machine.
    pub host: String,
    /// The page is shown inside a frame (the launcher's side-by-side
    /// index): only the feed and the meter, no chrome around them.
    pub embedded: bool,
}

impl Layout {
    pub fn new(step: &'static Step, headers: &HeaderMap) -> Layout {
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map(host_without_port)
            .filter(|host| !host.is_empty())
            .unwrap_or("127.0.0.1");
        // Browsers say where a response will go: `Sec-Fetch-Dest: iframe`
        // for a page loading inside a frame.
        let embedded = headers
            .get("sec-fetch-dest")
            .is_some_and(|dest| dest == "iframe");
        Layout {
            step,
            host: host.to_owned(),
            embedded,
        }
    }

    pub fn steps(&self) -> &'static [Step] {
        &STEPS
    }

    /// The address of a step, on the host this page came from.
    pub fn url(&self, step: &Step) -> String {
        format!("http://{}:{}/", self.host, step.port)
    }

    pub fn previous(&self) -> Option<&'static Step> {
        self.step.index().checked_sub(1).map(|index| &STEPS[index])
    }

    pub fn next(&self) -> Option<&'static Step> {
        STEPS.get(self.step.index() + 1)
    }

    pub fn is_current(&self, step: &Step) -> bool {
        step.slug == self.step.slug
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: `[::1]:3001`.
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

/// The list of items a page shows: the latest, a search, or an older page.
#[derive(Debug)]
pub struct Listing {
    /// Newest first.
    pub items: Vec<Arc<NewsItem>>,
    /// The search text (`?q=`), empty when not searching.
    pub q: String,
    /// The page starts below this id (`?before=`).
    pub before: Option<u64>,
    /// Where the "older" link points, when there is more to see.
    pub older: Option<u64>,
    /// Reload the page every N seconds (`?refresh=`), through a
    /// `<meta http-equiv="refresh">`.
    pub refresh: Option<u32>,
    /// The feed's cursor when the page was rendered.
    pub cursor: u64,
}

impl Listing {
    /// The listing for a page's query string: `q`, `before`, `refresh`. Bad
    /// numbers are an error to show, not something to guess around.
    pub fn from_query(feed: &Feed, query: Option<&str>) -> Result<Listing, String> {
        let fields = Fields::query(query)?;
        let q = fields.get("q").unwrap_or("").trim().to_owned();
        let before = fields.number::<u64>("before")?;
        let refresh = fields
            .number::<u32>("refresh")?
            .map(|seconds| seconds.clamp(*REFRESH_RANGE.start(), *REFRESH_RANGE.end()));

        let needle = q.to_lowercase();
        let page = feed.page(before, PAGE_SIZE, |item| matches(item, &needle));
        let older = page
            .more
            .then(|| page.items.last().map(|item| item.id))
            .flatten();
        Ok(Listing {
            items: page.items,
            q,
            before,
            older,
            refresh,
            cursor: page.cursor,
        })
    }

    /// The newest items, as a page without a query string shows them.
    pub fn latest(feed: &Feed) -> Listing {
        Listing::from_query(feed, None).expect("an empty query has nothing to reject")
    }

    /// The "older" link, keeping the search.
    pub fn older_href(&self) -> Option<String> {
        let older = self.older?;
        Some(if self.q.is_empty() {
            format!("/?before={older}")
        } else {
            format!("/?q={}&before={older}", encode(&self.q))
        })
    }

    /// The "back to the newest" link, keeping the search.
    pub fn newest_href(&self) -> String {
        if self.q.is_empty() {
            "/".into()
        } else {
            format!("/?q={}", encode(&self.q))
        }
    }

    /// Showing the newest items, unfiltered: the view that live updates
    /// belong in.
    pub fn is_live(&self) -> bool {
        self.q.is_empty() && self.before.is_none()
    }
}

/// Case-insensitive search in the title and the body.
fn matches(item: &NewsItem, needle: &str) -> bool {
    needle.is_empty()
        || item.title.to_lowercase().contains(needle)
        || item.body.to_lowercase().contains(needle)
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The post form: what was typed, and what was wrong with it.
#[derive(Debug, Default)]
pub struct PostForm {
    pub title: String,
    pub body: String,
    pub errors: FieldErrors,
    /// Offer an image attachment (step 05, where a socket can carry one).
    pub attachments: bool,
}

impl PostForm {
    /// The form as it was sent, with the messages to show beside its fields.
    pub fn rejected(title: &str, body: &str, errors: FieldErrors) -> PostForm {
        PostForm {
            title: title.to_owned(),
            body: body.to_owned(),
            errors,
            attachments: false,
        }
    }

    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }
}

/// Renders a template into a response; a template that fails to render is
/// a bug, logged and answered with 500.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(page) => http::html(status, page),
        Err(error) => {
            tracing::error!(%error, "cannot render a page");
            http::response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "500 Internal Server Error: the page could not be rendered.",
            )
        }
    }
}

/// A page that explains what went wrong, in the step's layout.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: StatusCode,
    /// "Not Found", "Payload Too Large", ...
    reason: &'static str,
    message: &'a str,
}

/// An error page with this status and message.
pub fn error(layout: Layout, status: StatusCode, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            layout,
            status,
            reason: status.canonical_reason().unwrap_or("Error"),
            message,
        },
    )
}

/// 405: the path exists, the method does not. `Allow` says which one does.
pub fn method_not_allowed(layout: Layout, allow: &str) -> Response {
    let message = format!("This address only answers {allow}.");
    let response = error(layout, StatusCode::METHOD_NOT_ALLOWED, &message);
    http::with_header(response, header::ALLOW, allow)
}

/// 404, as a page with the navigation, so that nobody is stranded.
pub fn not_found(layout: Layout, path: &str) -> Response {
    let message = format!("There is no page at {path}.");
    error(layout, StatusCode::NOT_FOUND, &message)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;
    use std::time::SystemTime;
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::news::NewPost;

    fn fixed() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_000_000)
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("127.0.0.1:3001"), "127.0.0.1");
        assert_eq!(host_without_port("localhost"), "localhost");
        assert_eq!(host_without_port("[::1]:3001"), "[::1]");
    }

    #[test]
    fn steps_know_their_neighbours() {
        let first = Layout::new(&STEPS[0], &HeaderMap::new());
        assert!(first.previous().is_none());
        assert_eq!(first.next().unwrap().slug, "02-xhr-polling");
        assert_eq!(first.url(&STEPS[4]), "http://127.0.0.1:3004/");
        let last = Layout::new(&STEPS[6], &HeaderMap::new());
        assert!(last.next().is_none());
        // 03b came in between 03 and 04.
        let between = Layout::new(&STEPS[3], &HeaderMap::new());
        assert_eq!(between.step.slug, "03b-server-sent-events");
        assert_eq!(between.previous().unwrap().slug, "03-long-polling");
        assert_eq!(between.next().unwrap().slug, "04-websocket");
    }

    #[test]
    fn every_step_has_a_port_of_its_own_above_the_base() {
        let offsets: Vec<u16> = STEPS.iter().map(Step::offset).collect();
        assert_eq!(offsets, [1, 2, 3, 13, 4, 5, 6]);
    }

    #[test]
    fn listing_searches_pages_and_clamps() {
        let feed = Feed::starting_at(1_000, 0, fixed);
        for i in 1..=60 {
            let title = if i % 10 == 0 { "Rust NEWS" } else { "other" };
            feed.post(NewPost {
                title: format!("{title} {i}"),
                body: String::new(),
            });
        }
        let latest = Listing::from_query(&feed, None).unwrap();
        assert_eq!(latest.items.len(), PAGE_SIZE);
        assert_eq!(latest.older, Some(11));
        assert!(latest.is_live());

        let older = Listing::from_query(&feed, Some("before=11")).unwrap();
        assert_eq!(older.items.len(), 10);
        assert_eq!(older.older, None);

        let search = Listing::from_query(&feed, Some("q=rust+news")).unwrap();
        assert_eq!(search.items.len(), 6);
        assert!(!search.is_live());

        let clamped = Listing::from_query(&feed, Some("refresh=600")).unwrap();
        assert_eq!(clamped.refresh, Some(60));
        let clamped = Listing::from_query(&feed, Some("refresh=0")).unwrap();
        assert_eq!(clamped.refresh, Some(1));

        assert!(Listing::from_query(&feed, Some("before=abc")).is_err());
        assert!(Listing::from_query(&feed, Some("refresh=-1")).is_err());
    }

    #[test]
    fn paging_links_keep_the_search() {
        let listing = Listing {
            items: Vec::new(),
            q: "a&b".into(),
            before: None,
            older: Some(7),
            refresh: None,
            cursor: 0,
        };
        assert_eq!(listing.older_href().unwrap(), "/?q=a%26b&before=7");
        assert_eq!(listing.newest_href(), "/?q=a%26b");
    }
}
