//! Runs step 05 on its own: `cargo run -p rooms`, then open
//! http://127.0.0.1:3005/. `--help` lists the flags.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;

/// Step 05 · Rooms: the Socket.IO ideas, by hand.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: shared::cli::Server,
    #[command(flatten)]
    options: rooms::Options,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::init_logging();
    shared::cli::report(
        async {
            let listener = args.server.bind(rooms::STEP).await?;
            let feed = Feed::new(args.server.history);
            rooms::run(listener, feed, args.options, Shutdown::on_ctrl_c()).await
        }
        .await,
    )
}
