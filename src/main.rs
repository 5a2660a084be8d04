//! The workshop launcher: `cargo run` at the root starts every step in one
//! process, each on its own port, all serving one shared feed: post in one
//! era and watch the others find out, each in its own way.

use std::process::ExitCode;

use clap::Parser;
use shared::Feed;
use shared::Shutdown;
use shared::feed::DEFAULT_CAPACITY;
use shared::page::Step;
use tokio::task::JoinSet;

/// Every era of the real-time web, side by side.
#[derive(Parser)]
struct Args {
    /// The address every step listens on. Use 0.0.0.0 to let other
    /// machines in the room connect.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// Step NN listens on BASE_PORT + NN (3001, 3002, ... by default).
    #[arg(long, default_value_t = 3000)]
    base_port: u16,
    /// How many items the shared feed keeps.
    #[arg(long, default_value_t = DEFAULT_CAPACITY)]
    history: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::init_logging();
    let feed = Feed::new(args.history);
    let shutdown = Shutdown::on_ctrl_c();
    let mut steps = JoinSet::new();

    // Each step on its own port, all with the same feed and the same
    // shutdown signal.
    let step = form_post::STEP;
    let listener = match shared::cli::bind(&args.host, port(&args, step), step, "--base-port").await
    {
        Ok(listener) => listener,
        Err(error) => return shared::cli::report(Err(error)),
    };
    steps.spawn(form_post::run(listener, feed.clone(), shutdown.clone()));

    let step = xhr_polling::STEP;
    let listener = match shared::cli::bind(&args.host, port(&args, step), step, "--base-port").await
    {
        Ok(listener) => listener,
        Err(error) => return shared::cli::report(Err(error)),
    };
    let options = xhr_polling::Options::default();
    steps.spawn(xhr_polling::run(
        listener,
        feed.clone(),
        options,
        shutdown.clone(),
    ));

    let step = long_polling::STEP;
    let listener = match shared::cli::bind(&args.host, port(&args, step), step, "--base-port").await
    {
        Ok(listener) => listener,
        Err(error) => return shared::cli::report(Err(error)),
    };
    let options = long_polling::Options::default();
    steps.spawn(long_polling::run(
        listener,
        feed.clone(),
        options,
        shutdown.clone(),
    ));

    println!("\nThe workshop is running. Open each step in its own tab:\n");
    for step in [
        form_post::STEP,
        xhr_polling::STEP,
        long_polling::STEP,
        websocket::STEP,
    ] {
        println!(
            "  {} {:<14} http://{}:{}/",
            step.number,
            step.name,
            args.host,
            port(&args, step)
        );
    }
    println!("\nEvery step serves the same feed: post in one, watch the others.");
    println!("Ctrl-C stops every step.\n");

    let mut result = Ok(());
    while let Some(ended) = steps.join_next().await {
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(error)) => result = Err(error),
            Err(panic) => result = Err(std::io::Error::other(panic)),
        }
        // One step failing takes the others down with it, cleanly.
        shutdown.trigger();
    }
    shared::cli::report(result)
}

/// The port of a step: base port + its number.
fn port(args: &Args, step: &Step) -> u16 {
    let number: u16 = step.number.parse().expect("step numbers are digits");
    args.base_port + number
}
