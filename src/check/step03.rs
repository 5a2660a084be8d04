//! The checks of step 03's exercises: the page's script in headless
//! Chromium, and the long poll's answers over HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Checked;
use super::Failure;
use super::Running;
use super::browser::Browser;
use super::client;
use super::unanswered;
use super::within;
use super::wrong;

async fn start(options: long_polling::Options) -> Result<Running, Failure> {
    super::start(|listener, feed, shutdown| long_polling::run(listener, feed, options, shutdown))
        .await
}

/// What `GET /stats` says about one of its counters.
async fn stat(step: &Running, name: &str) -> Result<u64, Failure> {
    let stats: Value = client()
        .get(step.url("/stats"))
        .send()
        .await
        .map_err(unanswered("GET /stats"))?
        .json()
        .await
        .map_err(|error| Failure::Wrong(format!("GET /stats is not JSON any more: {error}")))?;
    stats[name]
        .as_u64()
        .ok_or_else(|| Failure::Wrong(format!("GET /stats no longer counts {name:?}")))
}

/// A question that waits on the server (a long poll of another client),
/// until the handle is aborted.
fn park(step: &Running) -> JoinHandle<()> {
    let url = step.url(&format!("/news?since={}&timeout=55", step.feed.cursor()));
    tokio::spawn(async move {
        let _ = client().get(url).send().await;
    })
}

/// `03-retry-after`: refused with `503` and `Retry-After: 5`, the page
/// waits 5 s before asking again, instead of its backoff of about 1 s.
pub async fn retry_after() -> Checked {
    let browser = Browser::launch().await?;
    let options = long_polling::Options { max_parked: 1 };
    let step = start(options).await?;
    // Another client takes the one place: the page's question is refused.
    let other = park(&step);
    if !within(Duration::from_secs(5), async || {
        stat(&step, "parked").await.is_ok_and(|parked| parked == 1)
    })
    .await
    {
        return wrong("a long poll did not stay parked on the server");
    }
    browser.open(&step.url("/")).await?;
    if !within(Duration::from_secs(5), async || {
        stat(&step, "refused")
            .await
            .is_ok_and(|refused| refused >= 1)
    })
    .await
    {
        return wrong("the page did not ask for news within 5 s of loading");
    }
    let refused_at = Instant::now();

    // Its backoff would ask again after 0.5 to 1 s, then 1 to 2 s more.
    let told = Duration::from_millis(4_500);
    tokio::time::sleep(told).await;
    let refused = stat(&step, "refused").await?;
    if refused > 1 {
        return wrong(format!(
            "the server answered 503 with Retry-After: 5, and the page asked again anyway: \
             {refused} questions refused in {:.1} s",
            told.as_secs_f64()
        ));
    }

    // The place is free again: the page's next question, 5 s after the
    // refusal, stays parked, and news reaches it at once.
    other.abort();
    if !within(Duration::from_secs(10), async || {
        stat(&step, "parked").await.is_ok_and(|parked| parked == 1)
    })
    .await
    {
        return wrong(format!(
            "the page did not ask again {} s after it was refused with Retry-After: 5",
            refused_at.elapsed().as_secs()
        ));
    }
    let waited = refused_at.elapsed().as_secs_f64();
    step.post("News after waiting");
    if !within(Duration::from_secs(3), async || {
        matches!(browser.shows("News after waiting").await, Ok(true))
    })
    .await
    {
        return wrong("after waiting, the page's question got news, but it does not show it");
    }
    step.stop().await;
    Ok(format!(
        "refused with Retry-After: 5, the page asked again {waited:.0} s later, not before, \
         and then got the news at once"
    ))
}

/// The `X-Parked` of an answer to `GET path`, with `If-None-Match`.
async fn parked_header(
    step: &Running,
    path: &str,
    etag: Option<&str>,
) -> Result<(StatusCode, Option<String>, Option<String>), Failure> {
    let mut request = client().get(step.url(path));
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let response = request
        .send()
        .await
        .map_err(unanswered(&format!("GET {path}")))?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let parked = header("x-parked");
    let etag = header("etag");
    Ok((response.status(), parked, etag))
}

/// `03-parked-count`: every answer to `GET /news`, the bodiless `304`s
/// included, says in `X-Parked` how many other questions wait right now.
pub async fn parked_count() -> Checked {
    let step = start(Default::default()).await?;
    step.post("Something to answer with");
    let others = [park(&step), park(&step)];
    if !within(Duration::from_secs(5), async || {
        stat(&step, "parked").await.is_ok_and(|parked| parked == 2)
    })
    .await
    {
        return wrong("two long polls did not stay parked on the server");
    }

    let (status, parked, etag) = parked_header(&step, "/news", None).await?;
    if status != StatusCode::OK || parked.as_deref() != Some("2") {
        return wrong(match parked {
            None => "GET /news answered without an X-Parked header".to_owned(),
            Some(parked) => format!(
                "with 2 questions waiting, GET /news answered X-Parked: {parked}; it should say 2"
            ),
        });
    }
    let (status, parked, _) = parked_header(&step, "/news", etag.as_deref()).await?;
    if status != StatusCode::NOT_MODIFIED || parked.as_deref() != Some("2") {
        return wrong(format!(
            "with 2 questions waiting, the bodiless {status} answer said X-Parked: {}; \
             a header travels with a 304 too, and it should say 2",
            parked.as_deref().unwrap_or("(nothing)")
        ));
    }

    // One client leaves: the count follows.
    others[0].abort();
    let mut seen = None;
    let followed = within(Duration::from_secs(5), async || {
        seen = parked_header(&step, "/news", None)
            .await
            .ok()
            .and_then(|(_, parked, _)| parked);
        seen.as_deref() == Some("1")
    })
    .await;
    if !followed {
        return wrong(format!(
            "one of the 2 waiting clients left, and GET /news still says X-Parked: {}",
            seen.as_deref().unwrap_or("(nothing)")
        ));
    }
    // A question that waited does not count itself once it is answered.
    let path = format!("/news?since={}&timeout=1", step.feed.cursor());
    let (_, parked, _) = parked_header(&step, &path, None).await?;
    if parked.as_deref() != Some("1") {
        return wrong(format!(
            "a long poll answered after its 1 s timeout said X-Parked: {}, with one other \
             question waiting; it should say 1 (it is no longer waiting itself)",
            parked.as_deref().unwrap_or("(nothing)")
        ));
    }
    others[1].abort();
    step.stop().await;
    Ok(
        "with 2 questions waiting, both the 200 and the 304 said X-Parked: 2; one left, \
        and the next answer said 1"
            .into(),
    )
}
