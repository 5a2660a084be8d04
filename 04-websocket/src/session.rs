//! One page's socket on `/ws`: the snapshot, then news the moment it
//! exists, and posts from the page answered on the same socket, until one
//! side closes. This loop is the heart of the step.

use std::time::Instant;

use futures_util::StreamExt;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::Value;
use shared::feed::Pushed;
use shared::feed::Subscription;
use shared::flood::Poster;
use shared::form::Fields;
use shared::http;
use shared::http::Response;
use shared::news;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::App;
use crate::handshake;
use crate::protocol;
use crate::protocol::FromClient;
use crate::protocol::ToClient;
use crate::socket;
use crate::socket::Ending;
use crate::socket::Heartbeat;
use crate::socket::Socket;

/// After this many posts in a row refused for coming too fast (the limit is
/// per client address, see `shared::flood`), the socket is closed.
const FLOOD_LIMIT: usize = 20;

/// `GET /ws?since=ID`: the handshake, then the session of a socket that
/// has seen everything up to `ID` (or nothing, without it).
pub fn open(app: App, request: Request<Incoming>) -> Response {
    let since = Fields::query(request.uri().query()).and_then(|query| query.number("since"));
    match since {
        Ok(since) => handshake::upgrade(request, move |socket, poster| {
            session(app, socket, poster, since)
        }),
        Err(message) => http::json_error(StatusCode::BAD_REQUEST, &message),
    }
}

/// One socket on `/ws`, from the snapshot to the close.
async fn session(app: App, mut socket: Socket, poster: Poster, since: Option<u64>) {
    let _open = app.sockets.open();
    let started = Instant::now();
    // Subscribe and take the snapshot in one step, so that an item posted
    // in between is in exactly one of them.
    let (batch, mut news) = app.feed.subscribe(since);
    tracing::info!(
        "WS /ws opened, since={since:?}, {} sockets open",
        app.sockets.count()
    );
    let snapshot = ToClient::Snapshot { batch: &batch }.frame();
    // Sent as a frame, the batch is done with: dropped, it does not keep
    // its items in memory for as long as the socket lives.
    drop(batch);
    let ending = match socket::send(&mut socket, snapshot).await {
        Ok(()) => serve(&app, &mut socket, &mut news, &poster).await,
        Err(ending) => ending,
    };
    socket::end(&mut socket, ending).await;
    tracing::info!(
        "WS /ws closed after {:.1} s, {} sockets open",
        started.elapsed().as_secs_f64(),
        app.sockets.count() - 1
    );
}

/// The loop: whichever comes first of an item from the feed, a message
/// from the client, a heartbeat, or the server stopping.
async fn serve(app: &App, socket: &mut Socket, news: &mut Subscription, poster: &Poster) -> Ending {
    let mut heartbeat = Heartbeat::new(app.options.ping_interval);
    let mut refused = 0;
    // Made once, not at every turn of the loop: each new wait signs up with
    // the shutdown signal, and thousands of sockets signing up again for
    // every item they send would queue on its lock.
    let mut stopping = std::pin::pin!(app.shutdown.wait());
    loop {
        tokio::select! {
            // News first: a task woken by an item takes it without polling
            // the socket, the heartbeat and the shutdown signal on the way
            // (with 5,000 sockets, that is 5,000 times per item).
            biased;
            pushed = news.next() => {
                let first = [news_frame(app, pushed)];
                let more = || Some([news_frame(app, news.try_next()?)]);
                if let Err(ending) = socket::send_burst(socket, first, more).await {
                    return ending;
                }
            }
            incoming = socket.next() => {
                heartbeat.heard();
                let reply = match socket::read(incoming) {
                    Ok(Message::Text(text)) => match post(app, poster, &mut refused, &text) {
                        Ok(reply) => reply,
                        Err(ending) => return ending,
                    },
                    Ok(Message::Binary(_)) => {
                        return Ending::close(CloseCode::Unsupported, "binary frames are not spoken here");
                    }
                    Ok(_) => continue,
                    Err(ending) => return ending,
                };
                if let Err(ending) = socket::send(socket, reply).await {
                    return ending;
                }
            }
            () = heartbeat.tick() => {
                if let Err(ending) = heartbeat.beat(socket).await {
                    return ending;
                }
            }
            () = &mut stopping => return Ending::close(CloseCode::Away, "the server is stopping"),
        }
    }
}

/// `{"type":"post",...}` → store it and say `posted`, or say what is wrong.
/// A post past the client's limit is refused (`refused` counts those in a
/// row); past [`FLOOD_LIMIT`] of them, the socket is closed.
fn post(app: &App, poster: &Poster, refused: &mut usize, text: &str) -> Result<Message, Ending> {
    let (reference, FromClient::Post { post }) = match protocol::parse(text) {
        Ok(message) => message,
        Err(reply) => return Ok(reply),
    };
    if let Err(refusal) = poster.admit() {
        *refused += 1;
        if *refused > FLOOD_LIMIT {
            return Err(Ending::close(CloseCode::Policy, "too many posts"));
        }
        return Ok(protocol::refusal(&reference, &refusal.message));
    }
    *refused = 0;
    match news::validate(&post.title, &post.body) {
        Ok(post) => {
            let item = app.feed.post(post);
            let reference: &Value = &reference;
            Ok(ToClient::Posted {
                reference,
                id: item.id,
            }
            .frame())
        }
        Err(errors) => Ok(protocol::invalid(&reference, &errors)),
    }
}

/// The frame for one pushed item, encoded once for all sockets; or a
/// snapshot with a reset for a socket that fell behind the whole history.
fn news_frame(app: &App, pushed: Pushed) -> Message {
    match pushed {
        Pushed::Item(item) => Message::Text(
            app.frames
                .get(item.id, || ToClient::News { item: &item }.text()),
        ),
        Pushed::Reset(batch) => ToClient::Snapshot { batch: &batch }.frame(),
    }
}
