//! `cargo run` at the root: every step in one process, each on its own
//! port, all serving one shared feed, and the index that shows them side by
//! side at http://127.0.0.1:3000/.

use std::process::ExitCode;

use clap::Parser;
use clap::Subcommand;
use shared::Feed;
use shared::Shutdown;
use shared::feed::DEFAULT_CAPACITY;
use shared::flood::DEFAULT_POSTS;
use shared::steps::BASE_PORT;

/// Every era of the real-time web, side by side.
#[derive(Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The address every step listens on. Use 0.0.0.0 to let other
    /// machines in the room connect.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// The index listens on BASE_PORT, step NN on BASE_PORT + NN (3001,
    /// 3002, ... by default), and step 03b on BASE_PORT + 13.
    #[arg(long, default_value_t = BASE_PORT)]
    base_port: u16,
    /// Which steps to run, by number (`--steps 1,3,3b,4`); all by default.
    #[arg(long, value_delimiter = ',')]
    steps: Vec<String>,
    /// How many items the shared feed keeps.
    #[arg(long, default_value_t = DEFAULT_CAPACITY)]
    history: usize,
    /// How many posts one client address may send to a step per 10
    /// seconds; past that, 429 Too Many Requests. 0 lifts the limit.
    #[arg(long, env = "POST_LIMIT", default_value_t = DEFAULT_POSTS)]
    post_limit: usize,
    /// A name the steps are reached by besides this machine's addresses (a
    /// DNS name, or an HTTPS tunnel's or proxy's), comma-separated or
    /// repeated. Requests for other names get 421.
    #[arg(long, env = "ALLOWED_HOST", value_delimiter = ',')]
    allowed_host: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a workshop exercise: `check 02-back-off`. `check --list`
    /// lists them.
    Check(workshop::check::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Check(check)) = args.command {
        return workshop::check::main(check).await;
    }
    shared::cli::init_logging();
    shared::flood::set_policy(args.post_limit);
    shared::hosts::allow(&args.allowed_host);
    shared::cli::raise_fd_limit();
    let steps = match workshop::select(&args.steps) {
        Ok(steps) => steps,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let (steps, skipped) = workshop::without_redis(steps).await;
    let listeners = match workshop::bind(&args.host, args.base_port, &steps).await {
        Ok(listeners) => listeners,
        Err(error) => return shared::cli::report(Err(error)),
    };

    // With `--host 0.0.0.0` every address of this machine answers; print
    // them all, so that the leader can read out the one the room reaches.
    let hosts = shared::cli::reachable_hosts(&args.host);
    println!("\nThe workshop is running. Open the index, or each step in a tab of its own:\n");
    for host in &hosts {
        println!(
            "      {:<18} http://{host}:{}/",
            "Side by side", args.base_port
        );
        for (step, listener) in &listeners.steps {
            let port = listener.local_addr().map_or(0, |addr| addr.port());
            println!(
                "  {:<3} {:<18} http://{host}:{port}/",
                step.number, step.name
            );
        }
        println!();
    }
    if let Some(skipped) = skipped {
        println!("{skipped}\n");
    }
    println!("Every step serves the same feed: post in one, watch the others.");
    if listeners.steps.iter().any(|(step, _)| step.number == "06") {
        println!("(06 keeps its rooms in Redis: post in its own pane.)");
    }
    println!("Ctrl-C stops every step.\n");

    let feed = Feed::new(args.history);
    shared::cli::report(workshop::serve(listeners, feed, Shutdown::on_ctrl_c()).await)
}
