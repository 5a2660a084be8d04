//! Step 02, driven the way its page drives it: poll `GET /news?since=`,
//! post JSON, and still post the plain form without JavaScript.

mod support;

use reqwest::StatusCode;
use shared::Feed;
use support::Running;
use support::api;
use xhr_polling::Options;

async fn start() -> Running {
    support::start(|listener, feed, shutdown| {
        xhr_polling::run(listener, feed, Options::default(), shutdown)
    })
    .await
}

#[tokio::test]
async fn the_page_polls_with_xmlhttprequest() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let page = support::page(server.url("/")).await;
    assert!(page.contains("XMLHttpRequest"));
    assert!(page.contains("asks the server for news every 2000 ms"));
    assert!(page.contains(r#"<template id="item-template">"#));
    assert!(page.contains(r#"data-cursor="0" data-live="true""#));
    insta::assert_snapshot!("02_page", support::markup(&page));
    server.stop().await;
}

#[tokio::test]
async fn the_interval_is_a_flag() {
    let options = Options { interval: 500 };
    let server = support::start(|listener, feed, shutdown| {
        xhr_polling::run(listener, feed, options, shutdown)
    })
    .await;
    let page = support::page(server.url("/")).await;
    assert!(page.contains("asks the server for news every 500 ms"));
    server.stop().await;
}

#[tokio::test]
async fn answers_look_like_the_contract() {
    let server = start().await;
    api::answers_look_like_the_contract(&server, "02").await;
    server.stop().await;
}

#[tokio::test]
async fn cursors_give_exactly_the_missed_items() {
    let server = start().await;
    api::cursors_give_exactly_the_missed_items(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_cursors_are_refused() {
    let server = start().await;
    api::malformed_cursors_are_refused(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn an_unchanged_feed_answers_304() {
    let server = start().await;
    api::an_unchanged_feed_answers_304(&server, "").await;
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_older_than_the_history_resets() {
    let feed = Feed::starting_at(5, 0, support::fixed_clock);
    let server = support::start_with_feed(feed, |listener, feed, shutdown| {
        xhr_polling::run(listener, feed, Options::default(), shutdown)
    })
    .await;
    api::a_cursor_older_than_the_history_resets(&server, 5).await;
    server.stop().await;
}

#[tokio::test]
async fn json_and_form_posts_both_work() {
    let server = start().await;
    api::json_and_form_posts_both_work(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn bad_posts_store_nothing() {
    let server = start().await;
    api::bad_posts_store_nothing(&server, "GET, POST").await;
    server.stop().await;
}

#[tokio::test]
async fn the_largest_valid_post_is_stored_by_form_and_by_script() {
    let server = start().await;
    api::the_largest_form_post_is_stored(&server).await;
    api::the_largest_json_post_is_stored(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn posting_too_fast_is_refused_with_429() {
    let server = start().await;
    api::posting_too_fast_is_refused_with_429(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn polling_answers_at_once_even_when_nothing_is_new() {
    let server = start().await;
    let (status, answer) = api::get_json(&server, "/news?since=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api::ids(&answer), Vec::<u64>::new());
    assert_eq!(answer["cursor"], 0);
    server.stop().await;
}
