//! Runs step 03b on its own: `cargo run -p server-sent-events`, then open
//! http://127.0.0.1:3013/. `--help` lists the flags.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;

/// Step 03b · Server-sent events: the answer that never ends.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: shared::cli::Server,
    #[command(flatten)]
    options: server_sent_events::Options,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::init_logging();
    shared::cli::report(
        async {
            let listener = args.server.bind(server_sent_events::STEP).await?;
            let feed = Feed::new(args.server.history);
            server_sent_events::run(listener, feed, args.options, Shutdown::on_ctrl_c()).await
        }
        .await,
    )
}
