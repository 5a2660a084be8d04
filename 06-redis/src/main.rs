//! Runs step 06 on its own: start Redis (`redis-server`), then
//! `cargo run -p redis-rooms` and open http://127.0.0.1:3006/. A second
//! server of the same rooms: `cargo run -p redis-rooms -- --port 3016`.
//! `--help` lists the flags.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;

/// Step 06 · Redis: step 05's rooms, served by as many servers as you like.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: shared::cli::Server,
    #[command(flatten)]
    options: redis_rooms::Options,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::init_logging();
    shared::cli::report(
        async {
            let listener = args.server.bind(redis_rooms::STEP).await?;
            let feed = Feed::new(args.server.history);
            redis_rooms::run(listener, feed, args.options, Shutdown::on_ctrl_c()).await
        }
        .await,
    )
}
