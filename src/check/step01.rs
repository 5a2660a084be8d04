//! The checks of step 01's exercises: plain HTTP, as a browser sends it.

use reqwest::StatusCode;
use reqwest::Url;
use reqwest::header;

use super::Checked;
use super::Failure;
use super::Running;
use super::client;
use super::unanswered;
use super::wrong;

/// `01-stay-live`: after a post, the browser goes back to the page it
/// posted from (`/?refresh=5` stays live), if that is this server's `/`.
pub async fn stay_live() -> Checked {
    let step = super::start(form_post::run).await?;
    let here = step.url("");
    let cases = [
        (Some(step.url("/?refresh=5")), "/?refresh=5"),
        (Some(step.url("/?q=rust")), "/?q=rust"),
        (None, "/"),
        // The page a refused post shows is at `/news`, which only takes
        // POSTs: going back there would be a 405.
        (Some(step.url("/news")), "/"),
        // Another site's address: following it would make this server
        // send people wherever a link says (an "open redirect").
        (Some("http://elsewhere.example/?refresh=5".into()), "/"),
    ];
    for (referer, expected) in cases {
        let from = referer.as_deref().unwrap_or("a page that sent no Referer");
        let landed = post_from(&step, referer.as_deref()).await?;
        let Ok(landed) = Url::parse(&here).and_then(|here| here.join(&landed)) else {
            return wrong(format!(
                "a post from {from} was sent to {landed:?}, which is no address"
            ));
        };
        let same_server = landed.origin() == Url::parse(&here).expect("a URL").origin();
        let path = match landed.query() {
            Some(query) => format!("{}?{query}", landed.path()),
            None => landed.path().to_owned(),
        };
        if !same_server || path != expected {
            return wrong(format!(
                "a post from {from} sent the browser to {landed}; it should go to {expected} \
                 on this server"
            ));
        }
    }
    step.stop().await;
    Ok(
        "a post from /?refresh=5 comes back to /?refresh=5, from /?q=rust to /?q=rust, \
        and from anywhere else (no Referer, /news, another site) to /"
            .into(),
    )
}

/// Posts the form as a browser on `referer` would; where the 303 sends it.
async fn post_from(step: &Running, referer: Option<&str>) -> Result<String, Failure> {
    let mut request = client()
        .post(step.url("/news"))
        .header(header::ORIGIN, step.origin())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("title=Checking&body=Where+does+this+post+lead%3F");
    if let Some(referer) = referer {
        request = request.header(header::REFERER, referer);
    }
    let response = request.send().await.map_err(unanswered("POST /news"))?;
    if response.status() != StatusCode::SEE_OTHER {
        return wrong(format!(
            "POST /news answered {} instead of 303 See Other: Post/Redirect/Get is gone",
            response.status()
        ));
    }
    let location = response.headers().get(header::LOCATION);
    let location = location.and_then(|location| location.to_str().ok());
    match location {
        Some(location) => Ok(location.to_owned()),
        None => wrong("POST /news answered 303 without a Location to go to"),
    }
}

/// `01-not-modified`: `GET /` has an `ETag`; asked again with it while
/// nothing changed, the answer is `304` with no page; after news, a `200`
/// with the news and another `ETag`.
pub async fn not_modified() -> Checked {
    let step = super::start(form_post::run).await?;
    step.post("Already there");
    let http = client();
    let first = http
        .get(step.url("/"))
        .send()
        .await
        .map_err(unanswered("GET /"))?;
    let Some(etag) = first.headers().get(header::ETAG).cloned() else {
        return wrong("GET / has no ETag: the browser has nothing to ask \"has it changed?\" with");
    };
    let again = |etag: header::HeaderValue| {
        http.get(step.url("/"))
            .header(header::IF_NONE_MATCH, etag)
            .send()
    };
    let unchanged = again(etag.clone())
        .await
        .map_err(unanswered("GET / with If-None-Match"))?;
    let status = unchanged.status();
    let bytes = unchanged.bytes().await.map_or(0, |body| body.len());
    if status != StatusCode::NOT_MODIFIED || bytes != 0 {
        return wrong(format!(
            "GET / with If-None-Match and nothing new answered {status} with \
             {bytes} bytes of page; the browser already has it: 304 Not Modified, no body"
        ));
    }

    step.post("Fresh news");
    let changed = again(etag.clone())
        .await
        .map_err(unanswered("GET / with If-None-Match"))?;
    let status = changed.status();
    let new_etag = changed.headers().get(header::ETAG).cloned();
    let page = changed.text().await.unwrap_or_default();
    if status != StatusCode::OK || !page.contains("Fresh news") {
        return wrong(format!(
            "after a post, GET / with the old ETag answered {status}: the browser would \
             keep showing the old page and miss the news"
        ));
    }
    if new_etag.is_none() || new_etag.as_ref() == Some(&etag) {
        return wrong(
            "after a post, the page's ETag is the same as before (or gone): it must change with \
             the feed, or the next Reload shows the old page again",
        );
    }
    step.stop().await;
    let shown = |tag: &header::HeaderValue| tag.to_str().unwrap_or("?").to_owned();
    Ok(format!(
        "GET / is tagged {}; asked again with it, 304 and no page; after a post, the page \
         with the news and a new tag, {}",
        shown(&etag),
        shown(&new_etag.expect("checked above"))
    ))
}
