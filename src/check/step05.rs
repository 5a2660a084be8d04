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
