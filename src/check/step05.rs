//! The checks of step 05's exercises: sockets speaking the rooms protocol.

use std::time::Duration;

use serde_json::Value;
use serde_json::json;

use super::Checked;
use super::Failure;
use super::Running;
use super::wrong;
use super::ws::Socket;
use super::ws::connect;
use super::ws::next_of_type;
use super::ws::next_of_types;
use super::ws::send;

async fn start() -> Result<Running, Failure> {
    super::start(|listener, feed, shutdown| {
        rooms::run(listener, feed, Default::default(), shutdown)
    })
    .await
}

/// Asks `{"type":"mine"}` with `reference`; the rooms of the answer.
async fn mine(socket: &mut Socket, reference: u64) -> Result<Vec<String>, Failure> {
    send(socket, json!({ "type": "mine", "ref": reference })).await?;
    let limit = Duration::from_secs(3);
    let deadline = tokio::time::Instant::now() + limit;
    // The answer is the next message of type `mine`, or an `error` about
    // this question.
    let answer = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_of_types(socket, &["mine", "error"], left).await? {
            Some(answer) if answer["type"] == "mine" => break answer,
            Some(error) if error["ref"] == reference => {
                return wrong(format!(
                    "{{\"type\":\"mine\",\"ref\":{reference}}} was answered {error}"
                ));
            }
            Some(_) => continue,
            None => {
                return wrong(format!(
                    "{{\"type\":\"mine\",\"ref\":{reference}}} got no answer within {} s",
                    limit.as_secs()
                ));
            }
        }
    };
    if answer["ref"] != reference {
        return wrong(format!(
            "the answer to {{\"type\":\"mine\",\"ref\":{reference}}} is {answer}: without the \
             same ref, the page cannot tell which question it answers"
        ));
    }
    let Some(rooms) = answer["rooms"].as_array() else {
        return wrong(format!("the answer {answer} has no \"rooms\" list"));
    };
    let mut rooms: Vec<String> = rooms
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    rooms.sort();
    Ok(rooms)
}

/// `05-my-rooms`: a socket asks which rooms it is in, and the answer
/// carries its question's `ref`.
pub async fn my_rooms() -> Checked {
    let step = start().await?;
    let mut socket = connect(&step, "/ws").await?;
    let limit = Duration::from_secs(3);
    // Every socket starts in `general`.
    next_of_type(&mut socket, "joined", limit).await?;
    let rooms = mine(&mut socket, 7).await?;
    if rooms != ["general"] {
        return wrong(format!(
            "a new socket is in general only, and the answer said {rooms:?}"
        ));
    }
    send(
        &mut socket,
        json!({ "type": "join", "ref": 8, "room": "rust" }),
    )
    .await?;
    if next_of_type(&mut socket, "joined", limit).await?.is_none() {
        return wrong("joining the room rust was not answered with joined");
    }
    let rooms = mine(&mut socket, 9).await?;
    if rooms != ["general", "rust"] {
        return wrong(format!(
            "after joining rust, the socket is in general and rust, and the answer said \
             {rooms:?}"
        ));
    }
    send(
        &mut socket,
        json!({ "type": "leave", "ref": 10, "room": "general" }),
    )
    .await?;
    next_of_type(&mut socket, "left", limit).await?;
    let rooms = mine(&mut socket, 11).await?;
    if rooms != ["rust"] {
        return wrong(format!(
            "after leaving general, the socket is in rust only, and the answer said {rooms:?}"
        ));
    }
    step.stop().await;
    Ok(
        "asked with ref 7, 9 and 11, the socket was told [general], [general, rust], then \
        [rust], each with its ref"
            .into(),
    )
}

/// `05-typing`: "someone is typing" reaches the room's other members at
/// once, and is stored nowhere: a volatile message.
pub async fn typing() -> Checked {
    let step = start().await?;
    let limit = Duration::from_secs(3);
    let mut sockets = Vec::new();
    for (name, room) in [("A", Some("rust")), ("B", Some("rust")), ("C", None)] {
        let mut socket = connect(&step, "/ws").await?;
        next_of_type(&mut socket, "joined", limit).await?;
        if let Some(room) = room {
            send(
                &mut socket,
                json!({ "type": "join", "ref": 1, "room": room }),
            )
            .await?;
            if next_of_type(&mut socket, "joined", limit).await?.is_none() {
                return wrong(format!("socket {name} could not join the room {room}"));
            }
        }
        sockets.push(socket);
    }
    let [a, b, c] = &mut sockets[..] else {
        unreachable!("three sockets")
    };
    send(a, json!({ "type": "typing", "room": "rust" })).await?;
    match next_of_types(b, &["typing", "error"], limit).await? {
        Some(typing) if typing["type"] == "typing" && typing["room"] == "rust" => {}
        Some(other) => {
            return wrong(format!(
                "A said it is typing in rust, and B, in rust too, was told {other}"
            ));
        }
        None => {
            let said = next_of_types(a, &["error"], Duration::from_millis(200)).await?;
            return wrong(format!(
                "A said {{\"type\":\"typing\",\"room\":\"rust\"}}, and B, in rust too, heard \
                 nothing within {} s{}",
                limit.as_secs(),
                said.map(|error| format!(" (A was told {error})"))
                    .unwrap_or_default()
            ));
        }
    }
    let quiet = Duration::from_secs(1);
    if let Some(typing) = next_of_type(c, "typing", quiet).await? {
        return wrong(format!("C is not in rust, and was told {typing}"));
    }
    if let Some(typing) = next_of_type(a, "typing", quiet).await? {
        return wrong(format!(
            "A was told {typing} about its own typing: tell the others only"
        ));
    }
    // Nothing of it was stored: a socket joining now finds no item.
    let mut late = connect(&step, "/ws").await?;
    next_of_type(&mut late, "joined", limit).await?;
    send(
        &mut late,
        json!({ "type": "join", "ref": 2, "room": "rust", "since": 0 }),
    )
    .await?;
    let joined = next_of_type(&mut late, "joined", limit).await?;
    let items = joined
        .as_ref()
        .and_then(|joined| joined["items"].as_array());
    if items.is_some_and(|items| !items.is_empty()) {
        return wrong(
            "a socket that joined rust afterwards found items there: typing must not be \
             stored in the room's feed",
        );
    }
    step.stop().await;
    Ok(
        "A typed in rust: B (in rust) was told at once, C (elsewhere) and A itself were \
        not, and nothing was stored"
            .into(),
    )
}
