//! Runs this step on its own (`cargo run -p` and the package name in
//! `Cargo.toml`; its README says what else it needs), and prints where to
//! open it. `--help` lists the flags.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;

// The one line that differs between the steps' `main.rs` files.
use form_post as step;

/// One step of the realtime workshop, on its own.
#[derive(Parser)]
#[command(about = step::STEP.name, long_about = step::STEP.about)]
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
            let listener = args.server.bind(step::STEP).await?;
            let feed = Feed::new(args.server.history);
            step::run(listener, feed, Shutdown::on_ctrl_c()).await
        }
        .await,
    )
}
