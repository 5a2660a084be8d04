//! Runs step 01 on its own: `cargo run -p form-post`, then open
//! http://127.0.0.1:3001/. `--help` lists the flags.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;

/// Step 01 · Form POST: the web before JavaScript.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: shared::cli::Server,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::init_logging();
    shared::cli::report(
        async {
            let listener = args.server.bind(form_post::STEP).await?;
            let feed = Feed::new(args.server.history);
            form_post::run(listener, feed, Shutdown::on_ctrl_c()).await
        }
        .await,
    )
}
