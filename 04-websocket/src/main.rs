//! Runs step 04 on its own: `cargo run -p websocket`, then open
//! http://127.0.0.1:3004/. `--help` lists the flags.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;

/// Step 04 · WebSocket: full duplex, server push.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: shared::cli::Server,
    #[command(flatten)]
    options: websocket::Options,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::init_logging();
    shared::cli::report(
        async {
            let listener = args.server.bind(websocket::STEP).await?;
            let feed = Feed::new(args.server.history);
            websocket::run(listener, feed, args.options, Shutdown::on_ctrl_c()).await
        }
        .await,
    )
}
