//! Runs step 03 on its own: `cargo run -p long-polling`, then open
//! http://127.0.0.1:3003/. `--help` lists the flags.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;

/// Step 03 · Long polling: the server holds the question.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: shared::cli::Server,
    #[command(flatten)]
    options: long_polling::Options,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::init_logging();
    shared::cli::report(
        async {
            let listener = args.server.bind(long_polling::STEP).await?;
            let feed = Feed::new(args.server.history);
            long_polling::run(listener, feed, args.options, Shutdown::on_ctrl_c()).await
        }
        .await,
    )
}
