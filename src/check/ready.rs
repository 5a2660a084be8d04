//! `cargo run -- check --ready`: is this machine ready for the workshop?
//! It built (or this would not run); then: the workshop's ports are free,
//! a step answers a browser's request, and what the optional parts need
//! (Chromium for the browser checks, `redis-server` for step 06) is here.

use std::net::TcpListener;
use std::process::ExitCode;

use super::browser::Browser;
use super::client;

/// The ports `cargo run` listens on: the index, and each step.
const PORTS: &[u16] = &[3000, 3001, 3002, 3003, 3004, 3005, 3006, 3013];

pub async fn main() -> ExitCode {
    let mut ready = true;
    println!("ok    the workshop builds (this is it, running)");

    let taken: Vec<String> = PORTS
        .iter()
        .filter(|&&port| TcpListener::bind(("127.0.0.1", port)).is_err())
        .map(u16::to_string)
        .collect();
    if taken.is_empty() {
        println!("ok    ports 3000 to 3006 and 3013 are free for `cargo run`");
    } else {
        ready = false;
        println!(
            "FAIL  ports in use: {}. Another `cargo run`? Stop it, or run with \
             --base-port 4000",
            taken.join(", ")
        );
    }

    match a_step_answers().await {
        Ok(()) => println!("ok    a step starts and serves its page"),
        Err(why) => {
            ready = false;
            println!("FAIL  a step did not serve its page: {why}");
        }
    }

    match Browser::launch().await {
        Ok(_) => println!("ok    Chromium and chromedriver start (browser checks and tests)"),
        Err(super::Failure::CannotRun(why) | super::Failure::Wrong(why)) => {
            println!("note  no browser checks: {why}");
        }
    }
    match which("redis-server") {
        true => println!("ok    redis-server is installed (step 06)"),
        false => println!(
            "note  no redis-server: step 06 is optional (on Debian: sudo apt-get install \
             redis-server)"
        ),
    }

    if ready {
        println!(
            "\nReady. `cargo run` starts the workshop; `cargo run -- check --list` lists the exercises."
        );
        ExitCode::SUCCESS
    } else {
        println!("\nNot ready yet: see the FAIL lines above.");
        ExitCode::FAILURE
    }
}

/// Starts step 01 on a free port and asks for its page.
async fn a_step_answers() -> Result<(), String> {
    let step = super::start(form_post::run)
        .await
        .map_err(|_| "no free port on 127.0.0.1".to_owned())?;
    let answer = client().get(step.url("/")).send().await;
    step.stop().await;
    match answer {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("it answered {}", response.status())),
        Err(error) => Err(error.to_string()),
    }
}

fn which(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}
