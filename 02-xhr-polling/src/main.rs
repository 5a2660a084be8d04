//! Runs step 02 on its own: `cargo run -p xhr-polling`, then open
//! http://127.0.0.1:3002/. `--help` lists the flags.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;

/// Step 02 · XHR polling: the page asks, again and again.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: shared::cli::Server,
    #[command(flatten)]
    options: xhr_polling::Options,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::init_logging();
    shared::cli::report(
        async {
            let listener = args.server.bind(xhr_polling::STEP).await?;
            let feed = Feed::new(args.server.history);
            xhr_polling::run(listener, feed, args.options, Shutdown::on_ctrl_c()).await
        }
        .await,
    )
}
