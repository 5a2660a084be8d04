//! # Step 01 · Form POST: the web before JavaScript
//!
//! In the first decade of the web a page was a document. The only way to
//! change what you saw was to load another one: follow a link, or submit a
//! form. This step serves the news feed exactly like that, with no
//! JavaScript of its own (the network meter that every step has in its
//! footer is the one script on the page, and it only counts page loads):
//!
//! - `GET /` renders the whole page: the post form, a search form, the
//!   latest 50 items and a link to older ones. `?q=` searches,
//!   `?before=ID` pages back, `?refresh=N` asks the browser to reload the
//!   page every N seconds (the "live" page of the 1990s).
//! - `POST /news` takes the form. A valid post answers `303 See Other` to
//!   `/`, and the browser loads the page again with the new item on it.
//!   An invalid one answers `422` with the page, the messages beside the
//!   fields and what was typed kept in them. Reading the form
//!   (`page::read_form` in `shared`) refuses one sent from another site's
//!   page: that would be cross-site request forgery, and the browser's
//!   `Origin` header gives it away.
//!
//! Run it with `cargo run -p form-post` and open http://127.0.0.1:3001/ in
//! two tabs. Post in one: the other shows nothing until you reload it. In the
//! browser's Network tab (keep "Preserve log" on), each post is three
//! things: the `POST`, its `303`, and a `GET` of the whole page, styles and
//! all. That is the cost of this era: every update is a full page load.

use std::io;

use askama::Template;
use hyper::Method;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use shared::Feed;
use shared::Shutdown;
use shared::assets;
use shared::http;
use shared::http::Response;
use shared::news;
use shared::page;
use shared::page::Layout;
use shared::page::Listing;
use shared::page::PostForm;
use shared::posting;
use shared::steps::STEPS;
use shared::steps::Step;
use tokio::net::TcpListener;

/// This step: its number, name and port, for the page and the launcher.
pub const STEP: &Step = &STEPS[0];

/// The largest request body we read: room for the largest valid post,
/// however the form or the script encodes it (26 KiB, see
/// `news::MAX_POST_BYTES`); anything bigger is refused before it fills our
/// memory.
const BODY_LIMIT: usize = news::MAX_POST_BYTES;

/// What every request handler can reach.
#[derive(Clone)]
struct App {
    /// The news. Shared with every other step when run from the launcher.
    feed: Feed,
}

/// Serves this step on `listener` until `shutdown` fires.
pub async fn run(listener: TcpListener, feed: Feed, shutdown: Shutdown) -> io::Result<()> {
    let app = App { feed };
    http::serve(listener, shutdown, move |request| {
        route(app.clone(), request)
    })
    .await
}

/// Every URL this step answers, and what a wrong method or path gets.
async fn route(app: App, request: Request<Incoming>) -> Response {
    let layout = Layout::new(STEP, request.headers());
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => index(&app, layout, request.uri().query()),
        (&Method::POST, "/news") => post_news(&app, layout, request).await,
        (_, "/") => page::method_not_allowed(layout, "GET"),
        (_, "/news") => page::method_not_allowed(layout, "POST"),
        (&Method::GET, path) => match assets::get(path, request.headers()) {
            Some(asset) => asset,
            None => page::not_found(layout, path),
        },
        (_, path) => page::not_found(layout, path),
    }
}

/// The page: the layout, the items, and the post form.
#[derive(Template)]
#[template(path = "index.html")]
struct Index {
    layout: Layout,
    listing: Listing,
    form: PostForm,
}

/// `GET /`: the whole page, built from scratch on every request.
fn index(app: &App, layout: Layout, query: Option<&str>) -> Response {
    match Listing::from_query(&app.feed, query) {
        Ok(listing) => {
            let index = Index {
                layout,
                listing,
                form: PostForm::default(),
            };
            page::render(StatusCode::OK, &index)
        }
        Err(message) => page::error(layout, StatusCode::BAD_REQUEST, &message),
    }
}

/// `POST /news`: store the post, then send the browser back to the page.
///
/// Every check comes before anything is stored, so a refused request
/// changes nothing.
async fn post_news(app: &App, layout: Layout, request: Request<Incoming>) -> Response {
    let fields = match posting::read_form(&layout, request, BODY_LIMIT).await {
        Ok(fields) => fields,
        Err(refusal) => return refusal,
    };
    let title = fields.get("title").unwrap_or("");
    let text = fields.get("body").unwrap_or("");

    match news::validate(title, text) {
        Ok(post) => {
            app.feed.post(post);
            // Post/Redirect/Get: answer the POST with "see /" rather than
            // with a page. The browser GETs `/`, and that GET is what its
            // history remembers, so Reload shows the page again instead of
            // asking "resend the form?" and posting twice.
            http::see_other("/")
        }
        Err(errors) => {
            // 422: the request was understood but cannot be accepted as it
            // is. The page comes back with the messages and what was typed.
            let index = Index {
                layout,
                listing: Listing::latest(&app.feed),
                form: PostForm::rejected(title, text, errors),
            };
            page::render(StatusCode::UNPROCESSABLE_ENTITY, &index)
        }
    }
}
