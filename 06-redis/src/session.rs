//! One page's socket on `/ws`: `general` first, then whatever rooms it
//! joins, their news and presence pushed, and its messages answered, until
//! one side closes. Step 04's loop, with a [`Member`] in place of one feed;
//! in step 06, it also ends when Redis goes away.

use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::StreamExt;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::Value;
use shared::flood::Poster;
use shared::form::Fields;
use shared::http;
use shared::http::Response;
use shared::news;
use shared::news::PostRequest;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::App;
use crate::attachments::Awaiting;
use crate::handshake;
use crate::health;
use crate::health::REDIS_AWAY;
use crate::member::Member;
use crate::protocol;
use crate::protocol::AttachmentInfo;
use crate::protocol::FromClient;
use crate::protocol::ToClient;
use crate::rooms::GENERAL;
use crate::socket;
use crate::socket::Ending;
use crate::socket::Heartbeat;
use crate::socket::Socket;

/// After this many posts in a row refused for coming too fast (the limit is
/// per client address, see `shared::flood`), the socket is closed.
const FLOOD_LIMIT: usize = 20;

/// `GET /ws?since=ID`: the handshake, then the session of a socket that
/// has seen everything in `general` up to `ID` (or nothing, without it).
pub fn open(app: App, request: Request<Incoming>) -> Response {
    let since = Fields::query(request.uri().query()).and_then(|query| query.number("since"));
    match since {
        Ok(since) => handshake::upgrade(request, move |socket, poster| {
            session(app, socket, poster, since)
        }),
        Err(message) => http::json_error(StatusCode::BAD_REQUEST, &message),
    }
}

/// One socket on `/ws`, from joining `general` to the close.
async fn session(app: App, mut socket: Socket, poster: Poster, since: Option<u64>) {
    let _open = app.sockets.open();
    let mut redis = app.store.health();
    let started = Instant::now();
    tracing::info!(
        "WS /ws opened, since={since:?}, {} sockets open",
        app.sockets.count()
    );
    let mut member = Member::new(poster);
    let joined = member.join(&app, &Value::Null, GENERAL, since).await;
    let ending = match socket::send_burst(&mut socket, joined, || None).await {
        Ok(()) => serve(&app, &mut socket, &mut member, &mut redis).await,
        Err(ending) => ending,
    };
    socket::end(&mut socket, ending).await;
    tracing::info!(
        "WS /ws closed after {:.1} s, {} sockets open",
        started.elapsed().as_secs_f64(),
        app.sockets.count() - 1
    );
}

/// The loop: whichever comes first of an event in one of its rooms, a
/// message from the client, a heartbeat, the server stopping, or Redis
/// going away.
async fn serve(
    app: &App,
    socket: &mut Socket,
    member: &mut Member,
    redis: &mut watch::Receiver<bool>,
) -> Ending {
    let mut heartbeat = Heartbeat::new(app.options.ping_interval);
    // Made once, not at every turn of the loop: each new wait signs up with
    // the shutdown signal, and thousands of sockets signing up again for
    // every item they send would queue on its lock.
    let mut stopping = std::pin::pin!(app.shutdown.wait());
    // Made once: it resolves at the first outage of Redis since the socket
    // opened.
    let mut redis_lost = std::pin::pin!(health::lost(redis));
    loop {
        tokio::select! {
            // News first: a task woken by an item takes it without polling
            // the socket, the heartbeat and the shutdown signal on the way
            // (with 5,000 sockets, that is 5,000 times per item).
            biased;
            Some((room, event)) = member.events.next() => {
                let first = member.frames(&room, event);
                let more = || {
                    let (room, event) = member.events.next().now_or_never().flatten()?;
                    Some(member.frames(&room, event))
                };
                if let Err(ending) = socket::send_burst(socket, first, more).await {
                    return ending;
                }
            }
            incoming = socket.next() => {
                heartbeat.heard();
                let replies = match socket::read(incoming) {
                    Ok(Message::Text(text)) => match handle_text(app, member, &text).await {
                        Ok(replies) => replies,
                        Err(ending) => return ending,
                    },
                    Ok(Message::Binary(bytes)) => vec![handle_binary(app, member, bytes).await],
                    Ok(_) => continue,
                    Err(ending) => return ending,
                };
                if let Err(ending) = socket::send_burst(socket, replies, || None).await {
                    return ending;
                }
            }
            () = heartbeat.tick() => {
                if let Err(ending) = heartbeat.beat(socket).await {
                    return ending;
                }
            }
            () = &mut stopping => return Ending::close(CloseCode::Away, "the server is stopping"),
            // 1013, "try again later": the page reconnects with backoff, to
            // this server once Redis is back, or to another one.
            () = &mut redis_lost => return Ending::close(CloseCode::Again, REDIS_AWAY),
        }
    }
}

/// A JSON message from a `/ws` client → the frames that answer it: one
/// function per message type.
async fn handle_text(app: &App, member: &mut Member, text: &str) -> Result<Vec<Message>, Ending> {
    let mut replies = Vec::new();
    if let Some(dropped) = member.awaiting.take() {
        let message = "The attachment must come right after its post, as one binary frame. The post was dropped.";
        replies.push(protocol::refusal(&dropped.reference, message));
    }
    match protocol::parse(text) {
        Err(reply) => replies.push(reply),
        Ok((reference, FromClient::Join { room, since })) => {
            replies.extend(member.join(app, &reference, &room, since).await);
        }
        Ok((reference, FromClient::Leave { room })) => {
            replies.push(member.leave(&reference, &room))
        }
        Ok((
            reference,
            FromClient::Post {
                room,
                post,
                attachment,
                key,
            },
        )) => {
            let post = (post, key);
            let reply = handle_post(app, member, reference, &room, post, attachment).await?;
            replies.extend(reply);
        }
        Ok((reference, FromClient::Announce { .. })) => {
            let message = "Announcements belong to the admin namespace.";
            replies.push(protocol::refusal(&reference, message));
        }
    }
    Ok(replies)
}

/// `{"type":"post","room":R,...}` → store it and say `posted`, or say what
/// is wrong; with an announced attachment, nothing until its bytes come.
/// Past [`FLOOD_LIMIT`] posts in a row refused for coming too fast, the
/// socket is closed.
async fn handle_post(
    app: &App,
    member: &mut Member,
    reference: Value,
    room: &str,
    (post, key): (PostRequest, Option<String>),
    attachment: Option<AttachmentInfo>,
) -> Result<Option<Message>, Ending> {
    if let Err(refusal) = member.poster.admit() {
        member.refused += 1;
        if member.refused > FLOOD_LIMIT {
            return Err(Ending::close(CloseCode::Policy, "too many posts"));
        }
        return Ok(Some(protocol::refusal(&reference, &refusal.message)));
    }
    member.refused = 0;
    let Some(membership) = member.joined.get(room) else {
        let message = "Join the room before posting to it.";
        return Ok(Some(protocol::refusal(&reference, message)));
    };
    let post = match news::validate(&post.title, &post.body) {
        Ok(post) => post,
        Err(errors) => return Ok(Some(protocol::invalid(&reference, &errors))),
    };
    if key
        .as_deref()
        .is_some_and(|key| !protocol::is_post_key(key))
    {
        return Ok(Some(protocol::refusal(&reference, protocol::KEY_RULE)));
    }
    let room = membership.room.clone();
    let Some(attachment) = attachment else {
        let reference = &reference;
        let reply = match room.post(&app.rooms, post, key.as_deref(), None).await {
            Ok(item) => ToClient::Posted {
                reference,
                id: item.id,
            }
            .frame(),
            Err(refusal) => protocol::refused(reference, refusal),
        };
        return Ok(Some(reply));
    };
    // Nothing is stored until the bytes arrive, whole and right.
    match Awaiting::new(reference, room, (post, key), &attachment) {
        Ok(awaiting) => member.awaiting = Some(awaiting),
        Err(refusal) => return Ok(Some(refusal)),
    }
    Ok(None)
}

/// A binary frame: the attachment of the post just before it, or an error.
async fn handle_binary(app: &App, member: &mut Member, bytes: Bytes) -> Message {
    match member.awaiting.take() {
        Some(awaiting) => awaiting.complete(app, member.poster.client(), bytes).await,
        None => {
            let message = "A binary frame must follow a post that announces it as an attachment.";
            protocol::refusal(&Value::Null, message)
        }
    }
}
