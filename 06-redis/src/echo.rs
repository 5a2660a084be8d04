//! `GET /echo`: the smallest full-duplex demo. Every text or binary message
//! comes back as it was sent. In all else it is a socket like the others:
//! the same limits and close codes, the same heartbeat, counted among the
//! open sockets, and told 1001 when the server stops.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::App;
use crate::socket;
use crate::socket::Ending;
use crate::socket::Heartbeat;
use crate::socket::Socket;

/// One socket on `/echo`, from the handshake to the close.
pub async fn session(app: App, mut socket: Socket) {
    let _open = app.sockets.open();
    tracing::info!("WS /echo opened, {} sockets open", app.sockets.count());
    let ending = serve(&app, &mut socket).await;
    socket::end(&mut socket, ending).await;
    tracing::info!("WS /echo closed, {} sockets open", app.sockets.count() - 1);
}

/// The loop: whichever comes first of a message to send back, a heartbeat,
/// or the server stopping.
async fn serve(app: &App, socket: &mut Socket) -> Ending {
    let mut heartbeat = Heartbeat::new(app.options.ping_interval);
    let mut stopping = std::pin::pin!(app.shutdown.wait());
    loop {
        tokio::select! {
            incoming = socket.next() => {
                heartbeat.heard();
                let echo = match socket::read(incoming) {
                    Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
                    Ok(_) => continue,
                    Err(ending) => return ending,
                };
                if let Err(ending) = socket::send(socket, echo).await {
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
