//! The admin namespace, `/admin/ws`: a second kind of socket on the same
//! server, with its own rule (the admin token, checked before the
//! handshake completes), its own view (every room's news and members) and
//! its own message (`announce`, posted to every room at once). This is what
//! Socket.IO calls a namespace. `/admin` is its page.

use std::sync::Arc;
use std::sync::Weak;

use futures_util::StreamExt;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::Value;
use shared::feed::Pushed;
use shared::form::Fields;
use shared::http;
use shared::http::Response;
use shared::news;
use shared::news::NewsItem;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::App;
use crate::attachments::Attachment;
use crate::handshake;
use crate::protocol;
use crate::protocol::FromClient;
use crate::protocol::ToClient;
use crate::rooms::Room;
use crate::rooms::lock;
use crate::socket;
use crate::socket::Ending;
use crate::socket::Heartbeat;
use crate::socket::Socket;

/// What the admin namespace hears about.
#[derive(Clone, Debug)]
pub enum Activity {
    News {
        room: Arc<str>,
        item: Arc<NewsItem>,
        attachment: Option<Attachment>,
    },
    Presence {
        room: Arc<str>,
        members: usize,
    },
}

/// `GET /admin/ws?token=T`. The namespace's rule comes before the
/// handshake: no token, no 101. Browsers cannot add headers to a WebSocket
/// request, so the token travels in the query string (the log hides it).
pub fn open(app: App, request: Request<Incoming>) -> Response {
    let query = Fields::query(request.uri().query()).unwrap_or_default();
    if !shared::token::same(query.get("token").unwrap_or(""), &app.admin_token) {
        let message = "The admin namespace needs ?token= with the admin token.";
        return http::json_error(StatusCode::UNAUTHORIZED, message);
    }
    handshake::upgrade(request, move |socket, _| session(app, socket))
}

/// Tells the admins about every item of one room, whoever posted it (a
/// socket, an HTTP POST, another step of the launcher), until the room is
/// forgotten.
pub async fn forward(
    room: Weak<Room>,
    activity: broadcast::Sender<Activity>,
    mut stop: oneshot::Receiver<()>,
) {
    let Some((name, mut news)) = room.upgrade().map(|room| {
        let (_, news) = room.feed.subscribe(Some(room.feed.cursor()));
        (room.name.clone(), news)
    }) else {
        return;
    };
    loop {
        tokio::select! {
            pushed = news.next() => {
                let Pushed::Item(item) = pushed else { continue };
                let attachment = room.upgrade().and_then(|room| room.attachment(item.id));
                let _no_admins_is_fine = activity.send(Activity::News { room: name.clone(), item, attachment });
            }
            _ = &mut stop => return,
        }
    }
}

/// One socket on `/admin/ws`: the list of rooms, then every room's news and
/// presence, and announcements to every room.
async fn session(app: App, mut socket: Socket) {
    let _open = app.sockets.open();
    tracing::info!("WS /admin/ws opened");
    let mut activity = app.rooms.activity.subscribe();
    let rooms = ToClient::Rooms {
        rooms: app.rooms.list(),
    };
    let ending = match socket::send(&mut socket, rooms.frame()).await {
        Ok(()) => serve(&app, &mut socket, &mut activity).await,
        Err(ending) => ending,
    };
    socket::end(&mut socket, ending).await;
    tracing::info!("WS /admin/ws closed");
}

/// The loop: whichever comes first of a message from the admin, activity
/// in a room, a heartbeat, or the server stopping.
async fn serve(
    app: &App,
    socket: &mut Socket,
    activity: &mut broadcast::Receiver<Activity>,
) -> Ending {
    let mut heartbeat = Heartbeat::new(app.options.ping_interval);
    let mut stopping = std::pin::pin!(app.shutdown.wait());
    loop {
        let frames = tokio::select! {
            incoming = socket.next() => {
                heartbeat.heard();
                match socket::read(incoming) {
                    Ok(Message::Text(text)) => vec![announce(app, &text)],
                    Ok(Message::Binary(_)) => {
                        return Ending::close(CloseCode::Unsupported, "binary frames are not spoken here");
                    }
                    Ok(_) => continue,
                    Err(ending) => return ending,
                }
            }
            heard_of = activity.recv() => match heard_of {
                Ok(activity) => activity_frames(activity),
                // An admin that fell behind gets the room list again; the
                // news it missed is in each room's history.
                Err(RecvError::Lagged(_)) => vec![ToClient::Rooms { rooms: app.rooms.list() }.frame()],
                Err(RecvError::Closed) => return Ending::Gone,
            },
            () = heartbeat.tick() => {
                if let Err(ending) = heartbeat.beat(socket).await {
                    return ending;
                }
                continue;
            }
            () = &mut stopping => return Ending::close(CloseCode::Away, "the server is stopping"),
        };
        if let Err(ending) = socket::send_burst(socket, frames, || None).await {
            return ending;
        }
    }
}

/// The frames that tell an admin about one thing that happened in a room.
fn activity_frames(activity: Activity) -> Vec<Message> {
    match activity {
        Activity::News {
            room,
            item,
            attachment,
        } => {
            let info = attachment.as_ref().map(|attachment| attachment.info(None));
            let news = ToClient::News {
                room: &room,
                item: &item,
                attachment: info,
            };
            let bytes = attachment.map(|attachment| Message::Binary(attachment.bytes));
            std::iter::once(news.frame()).chain(bytes).collect()
        }
        Activity::Presence { room, members } => {
            let room = &room;
            vec![ToClient::Presence { room, members }.frame()]
        }
    }
}

/// `{"type":"announce","ref":R,"title":...}` from an admin: post it to
/// every room.
fn announce(app: &App, text: &str) -> Message {
    let (reference, json) = match protocol::object(text) {
        Ok(message) => message,
        Err(reply) => return reply,
    };
    let Ok(FromClient::Announce { post }) = serde_json::from_value(Value::Object(json)) else {
        let message =
            "The admin namespace takes {\"type\":\"announce\",\"title\":...,\"body\":...}.";
        return protocol::refusal(&reference, message);
    };
    let post = match news::validate(&post.title, &post.body) {
        Ok(post) => post,
        Err(errors) => return protocol::invalid(&reference, &errors),
    };
    let rooms: Vec<Arc<Room>> = lock(&app.rooms.by_name).values().cloned().collect();
    for room in &rooms {
        room.post(&app.rooms, post.clone(), None);
    }
    let reference: &Value = &reference;
    ToClient::Announced {
        reference,
        rooms: rooms.len(),
    }
    .frame()
}
