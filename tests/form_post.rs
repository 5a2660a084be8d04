//! Step 01, driven the way a browser without JavaScript drives it: GET the
//! page, POST the form, follow the 303, search, page back.

mod support;

use reqwest::StatusCode;
use reqwest::header;
use shared::news::MAX_POST_BYTES;
use shared::news::NewPost;
use support::Running;

const FORM: &str = "application/x-www-form-urlencoded";

async fn start() -> Running {
    support::start(form_post::run).await
}

/// Submits the post form as a browser on this very page would.
async fn post_form(server: &Running, body: &str) -> reqwest::Response {
    support::client()
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, FORM)
        .header(header::ORIGIN, server.origin())
        .body(body.to_owned())
        .send()
        .await
        .expect("the step answers")
}

/// The step took the post (a 2xx or 3xx, not a refusal). That the answer
/// is a 303 is `a_post_redirects_and_shows_up_newest_first`'s promise
/// alone: the README's exercise "Break Post/Redirect/Get" breaks it on
/// purpose, and only that test should say so.
fn taken(status: StatusCode) -> bool {
    status.is_success() || status.is_redirection()
}

async fn get_page(server: &Running, path: &str) -> (StatusCode, String) {
    let response = support::client()
        .get(server.url(path))
        .send()
        .await
        .expect("the step answers");
    let status = response.status();
    (status, response.text().await.expect("a text body"))
}

#[tokio::test]
async fn the_empty_page_invites_the_first_post() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let response = support::client().get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("Nothing here yet: be the first to post."));
    // The network meter counts the page loads, and the wire view shows
    // them; nothing else is a script.
    assert_eq!(
        page.matches("<script").collect::<Vec<_>>(),
        [r#"<script"#, r#"<script"#],
        "step 01 has no JavaScript but the meter's and the wire view's"
    );
    assert!(page.contains(r#"<script src="/static/meter.js""#));
    assert!(page.contains(r#"<script src="/static/wire.js" defer>"#));
    insta::assert_snapshot!("01_empty_page", page);
    server.stop().await;
}

#[tokio::test]
async fn a_post_redirects_and_shows_up_newest_first() {
    let _snapshots = support::snapshots();
    let server = start().await;
    for body in [
        "title=First+news&body=",
        "title=Second+news&body=Two+lines%0D%0Aof+text",
        "title=Third+news&body=caf%C3%A9",
    ] {
        let response = post_form(&server, body).await;
        // Post/Redirect/Get: the answer to a POST is "go and GET /".
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/");
    }
    let (status, page) = get_page(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    let first = page.find("First news").unwrap();
    let third = page.find("Third news").unwrap();
    assert!(third < first, "newest first");
    assert!(page.contains("café"));
    insta::assert_snapshot!("01_page_with_three_items", page);

    // Reloading the page after the redirect is a GET: nothing is posted twice.
    get_page(&server, "/").await;
    assert_eq!(server.feed.latest(10).len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_post_comes_back_with_messages_and_the_input_kept() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let long_body = "x".repeat(2001);
    let response = post_form(&server, &format!("title=+++&body=<b>{long_body}")).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("Please give your news a title."));
    assert!(page.contains("The text is 2004 characters long; the limit is 2000."));
    assert!(
        page.contains("&#60;b&#62;xxx"),
        "the typed text is kept, escaped"
    );
    assert!(!page.contains("<b>x"));
    assert!(page.contains(r#"aria-invalid="true""#));
    assert_eq!(server.feed.cursor(), 0, "nothing was stored");

    let short = post_form(&server, "title=&body=kept+text").await;
    insta::assert_snapshot!("01_invalid_post", short.text().await.unwrap());
    assert_eq!(server.feed.cursor(), 0, "nothing was stored");
    server.stop().await;
}

#[tokio::test]
async fn markup_in_posts_is_shown_as_text() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let nasty = [
        "title=%3Cscript%3Ealert(1)%3C%2Fscript%3E&body=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E",
        "title=%22Quotes%22+%26+%27apostrophes%27&body=Tom+%26+Jerry+%3C3",
    ];
    for body in nasty {
        assert!(taken(post_form(&server, body).await.status()));
    }
    let (_, page) = get_page(&server, "/").await;
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("<img src=x"));
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(page.contains("&#34;Quotes&#34; &#38; &#39;apostrophes&#39;"));
    insta::assert_snapshot!("01_escaped_items", page);
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_a_clear_status_and_store_nothing() {
    let server = start().await;
    let client = support::client();

    // Larger than any valid post can be: 413, refused before it is read.
    let huge = format!("title=big&body={}", "x".repeat(MAX_POST_BYTES));
    let response = post_form(&server, &huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("larger than 26 KiB")
    );

    // JSON is not what this step's form sends: 415.
    let response = client
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"title":"json"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A form on another site posting here: 403.
    for origin in ["http://evil.example", "null"] {
        let response = client
            .post(server.url("/news"))
            .header(header::CONTENT_TYPE, FORM)
            .header(header::ORIGIN, origin)
            .body("title=forged")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "Origin {origin}");
    }

    // Bytes that are not UTF-8 once decoded: 400, not a replacement character.
    let response = post_form(&server, "title=%FF%FE&body=").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("not valid UTF-8"));

    assert_eq!(server.feed.cursor(), 0, "none of these stored anything");

    // Without an Origin (curl, scripts) posting is allowed.
    let response = client
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, FORM)
        .body("title=from+curl")
        .send()
        .await
        .unwrap();
    assert!(taken(response.status()));
    assert_eq!(server.feed.cursor(), 1);
    server.stop().await;
}

/// A title that shows as nothing, or text that hides what it says behind
/// a right-to-left override, comes back with the reason; nothing is stored.
#[tokio::test]
async fn titles_that_show_nothing_and_direction_tricks_are_refused() {
    let server = start().await;
    // Zero-width spaces around a word joiner.
    let response = post_form(&server, "title=%E2%80%8B%E2%81%A0%E2%80%8B&body=").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("The title is only invisible characters"),
        "{page}"
    );

    // `invoice`, U+202E, `fdp.exe`: shown as "invoiceexe.pdf".
    let response = post_form(&server, "title=Fine&body=invoice%E2%80%AEfdp.exe").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(
        page.contains(
            "The text holds a character that changes the direction of text \
             (U+202E, right-to-left override)"
        ),
        "{page}"
    );
    assert_eq!(server.feed.cursor(), 0, "nothing was stored");
    server.stop().await;
}

/// 120 emoji and 2,000 more are a valid post, and a form sends each of
/// their bytes as `%XX`: the limit on a form's size lets it through.
#[tokio::test]
async fn the_largest_valid_post_is_stored() {
    let server = start().await;
    support::api::the_largest_form_post_is_stored(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_explained() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let client = support::client();

    let (status, page) = get_page(&server, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("There is no page at /nope."));
    insta::assert_snapshot!("01_not_found", page);

    let response = client.get(server.url("/news")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");

    let response = client.delete(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "GET");
    server.stop().await;
}

#[tokio::test]
async fn search_and_paging_walk_the_history() {
    let server = start().await;
    // Sixty posts, straight into the feed: one client may only post 20 in
    // 10 seconds over HTTP.
    for i in 1..=60 {
        let title = if i % 20 == 0 {
            "Rust release"
        } else {
            "Weather"
        };
        server.feed.post(NewPost {
            title: format!("{title} {i}"),
            body: String::new(),
        });
    }

    let (_, page) = get_page(&server, "/").await;
    assert_eq!(page.matches(r#"class="item""#).count(), 50);
    assert!(page.contains(r#"href="/?before=11""#), "an older link");

    let (_, older) = get_page(&server, "/?before=11").await;
    assert_eq!(older.matches(r#"class="item""#).count(), 10);
    assert!(older.contains("Weather 1<"));
    assert!(!older.contains("Older news"), "the end of the history");

    let (_, found) = get_page(&server, "/?q=RUST").await;
    assert_eq!(found.matches(r#"class="item""#).count(), 3);
    assert!(found.contains("News matching “RUST”"));

    let (_, nothing) = get_page(&server, "/?q=snow").await;
    assert!(nothing.contains("Nothing matches your search."));

    let (status, bad) = get_page(&server, "/?before=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("“before” must be a whole number, not “yesterday”."));
    server.stop().await;
}

#[tokio::test]
async fn refresh_asks_the_browser_to_reload_within_limits() {
    let server = start().await;
    let (_, page) = get_page(&server, "/?refresh=5").await;
    assert!(page.contains(r#"<meta http-equiv="refresh" content="5">"#));
    let (_, page) = get_page(&server, "/?refresh=3600").await;
    assert!(page.contains(r#"<meta http-equiv="refresh" content="60">"#));
    let (_, page) = get_page(&server, "/").await;
    assert!(!page.contains("http-equiv"));
    server.stop().await;
}

#[tokio::test]
async fn the_stylesheet_is_cached_by_etag() {
    let server = start().await;
    let client = support::client();
    let response = client
        .get(server.url("/static/style.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    let etag = response.headers()[header::ETAG].clone();
    assert!(response.text().await.unwrap().contains("--accent"));

    let again = client
        .get(server.url("/static/style.css"))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_post_stores_nothing() {
    use tokio::io::AsyncWriteExt;

    let server = start().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /news HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\nContent-Length: 100\r\n\r\ntitle=half",
        server.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    drop(socket);

    // The server is unharmed...
    let (status, _) = get_page(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    // ...and once it has finished every connection, it has stored nothing.
    let feed = server.feed.clone();
    server.stop().await;
    assert_eq!(feed.cursor(), 0);
}

#[tokio::test]
async fn a_client_posting_too_fast_gets_429_and_the_page_says_why() {
    let server = start().await;
    for i in 0..20 {
        let response = post_form(&server, &format!("title=post+{i}&body=")).await;
        assert!(taken(response.status()), "post {i}");
    }
    let response = post_form(&server, "title=one+too+many&body=").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Too many posts: at most 20 in 10 seconds"),
        "{page}"
    );
    assert_eq!(server.feed.latest(50).len(), 20, "the 21st was not stored");
    server.stop().await;
}
