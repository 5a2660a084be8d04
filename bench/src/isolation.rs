//! Step 05's promise, measured: with many rooms, news reaches its room's
//! members and nobody else.
//!
//! Part of `capacity` when 05 runs. On a fresh server, R rooms (`r0`,
//! `r1`, ...) of M pages each (100 of 50 by default: 5,000 sockets). Each
//! page joins its room and leaves `general`, so that it is in that one
//! room only. One more socket per room posts to it over the socket, the way
//! the page posts (`{"type":"post","ref":N,"room":R,...}`, answered by
//! `posted`):
//!
//! 1. **Rounds.** Every room gets one post per round, all rooms at once,
//!    [`ROUNDS`] rounds [`ROUND_EVERY`] apart.
//! 2. **Burst.** Every room's poster sends [`BURST`] posts back to back,
//!    all rooms at once. Deliveries per second: R × M × BURST over the time
//!    from the first post sent to the last page parsing the last item.
//!
//! A page that gets `news` of a room it is not in fails at once (see
//! `clients::rooms`), and the run with it; at the end, every page must
//! have got every item of its own room exactly once, in order.

use std::time::Duration;
use std::time::Instant;

use futures_util::future::join_all;

use crate::capacity::bench_usage;
use crate::clients::Era;
use crate::clients::RoomPoster;
use crate::clients::StepFlags;
use crate::report;
use crate::report::Spread;
use crate::server;
use crate::server::Deployment;
use crate::server::Usage;
use crate::swarm;
use crate::swarm::Pages;
use crate::swarm::Posted;
use crate::swarm::Swarm;

/// Posts per room in the rounds, and the time between rounds.
pub const ROUNDS: usize = 5;
pub const ROUND_EVERY: Duration = Duration::from_millis(200);
/// Posts per room in the burst. With the rounds, 15 posts from one socket
/// in about two seconds. (Every page posts from the same address, far past
/// the limit of 20 posts in 10 s per address: the bench lifts it.)
pub const BURST: usize = 10;

/// What the rooms did.
pub struct Row {
    pub rooms: usize,
    pub members: usize,
    /// Server memory per waiting page, each in one room.
    pub rss_per_page: f64,
    /// One post per room per round: from the post to each member.
    pub rounds: Spread,
    pub burst_per_second: f64,
    /// The burst's deliveries, from the post to each member.
    pub burst: Spread,
    pub cpu: Duration,
    pub peak_rss: u64,
}

pub async fn run(rooms: usize, members: usize) -> Result<Row, String> {
    let flags = StepFlags {
        history: shared::feed::DEFAULT_CAPACITY,
        interval_ms: xhr_polling::DEFAULT_INTERVAL_MS,
        max_parked: long_polling::DEFAULT_MAX_PARKED,
        redis: None,
    };
    let servers = Deployment::start(Era::Rooms, flags)
        .await?
        .expect("05 needs nothing but itself");
    let targets = servers.targets();
    let target = &targets[0];
    let cursors = swarm::page_cursors(&targets).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = Usage::total(&servers.usage()?);
    let bench_before = bench_usage()?;
    let (machine_before, started) = (server::machine_busy(), Instant::now());

    let pages = rooms * members;
    let swarm = Swarm::start(
        &targets,
        &Pages {
            era: Era::Rooms,
            count: pages,
            cursors,
            interval: Duration::ZERO,
            items: ROUNDS + BURST,
            rooms,
            sleepy: 0,
        },
    );
    let patience = Duration::from_secs(30) + Duration::from_millis(pages as u64 * 5);
    swarm.ready(patience).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = Usage::total(&servers.usage()?);
    let rss_per_page = idle.rss.saturating_sub(before.rss) as f64 / pages as f64;

    // Per room: what was posted in the rounds, and in the burst.
    let mut posted: Vec<(Vec<Posted>, Vec<Posted>)> = vec![Default::default(); rooms];
    let phases = async {
        let mut posters = Vec::with_capacity(rooms);
        for number in 0..rooms {
            posters.push(RoomPoster::connect(target, swarm::room_name(number)).await?);
        }
        // The newest id each page must reach: its room's last post so far.
        let last_each = |posted: &[(Vec<Posted>, Vec<Posted>)]| -> Vec<u64> {
            (0..pages)
                .map(|page| {
                    let (rounds, burst) = &posted[page * rooms / pages];
                    (rounds.iter().chain(burst))
                        .map(|post| post.id)
                        .max()
                        .unwrap_or(0)
                })
                .collect()
        };

        // 1. Rounds: one post per room, all rooms at once.
        let start = tokio::time::Instant::now();
        for round in 0..ROUNDS {
            tokio::time::sleep_until(start + ROUND_EVERY * round as u32).await;
            let answers = join_all(posters.iter_mut().map(|poster| poster.post(1))).await;
            for (room, answer) in answers.into_iter().enumerate() {
                posted[room].0.extend(answer?);
            }
        }
        swarm.reached_each(&last_each(&posted), patience).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;

        // 2. Burst: every room's poster sends BURST posts back to back.
        let answers = join_all(posters.iter_mut().map(|poster| poster.post(BURST))).await;
        for (room, answer) in answers.into_iter().enumerate() {
            posted[room].1.extend(answer?);
        }
        swarm.reached_each(&last_each(&posted), patience).await?;
        Ok::<_, String>(posters)
    }
    .await;
    let logs = swarm.stop().await?;
    let after = Usage::total(&servers.usage()?);
    let bench_after = bench_usage()?;
    server::warn_if_busy(
        &format!("05 Rooms with {rooms} rooms of {members}"),
        server::machine_busy().saturating_sub(machine_before),
        after.cpu.saturating_sub(before.cpu) + bench_after.cpu.saturating_sub(bench_before.cpu),
        started.elapsed(),
    );
    drop(phases);
    drop(servers);

    // Pages come in runs of `members`, room by room.
    let mut problems = Vec::new();
    let (mut rounds, mut burst) = (Vec::new(), Vec::new());
    for (number, (logs, (in_rounds, in_burst))) in logs.chunks(members).zip(&posted).enumerate() {
        let mut ids: Vec<u64> = (in_rounds.iter().chain(in_burst))
            .map(|post| post.id)
            .collect();
        ids.sort_unstable();
        if let Err(problem) = swarm::check(logs, &ids) {
            problems.push(format!("room r{number}: {problem}"));
        }
        rounds.extend(swarm::latencies(logs, in_rounds));
        burst.extend(swarm::latencies(logs, in_burst));
    }
    if !problems.is_empty() {
        let shown = problems.len().min(5);
        return Err(format!(
            "{} of {rooms} rooms were not kept apart, or lost news:\n{}",
            problems.len(),
            problems[..shown].join("\n")
        ));
    }
    let first_sent = posted
        .iter()
        .flat_map(|(_, burst)| burst)
        .map(|post| post.sent)
        .min();
    let last_seen = (logs.chunks(members).zip(&posted))
        .filter_map(|(logs, (_, burst))| swarm::last_delivery(logs, burst))
        .max();
    let burst_time = match (first_sent, last_seen) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    Ok(Row {
        rooms,
        members,
        rss_per_page,
        rounds: Spread::of(rounds),
        burst_per_second: (pages * BURST) as f64 / burst_time.as_secs_f64().max(1e-9),
        burst: Spread::of(burst),
        cpu: after.cpu.saturating_sub(before.cpu),
        peak_rss: after.peak_rss,
    })
}

/// The table on stdout.
pub fn report(row: &Row) {
    println!(
        "\n### 05 Rooms kept apart: {} rooms of {} pages, {ROUNDS} rounds of one post per room \
         ({} ms apart), then a burst of {BURST} per room\n",
        row.rooms,
        row.members,
        ROUND_EVERY.as_millis()
    );
    let table = vec![vec![
        format!("{} × {}", row.rooms, row.members),
        report::thousands((row.rooms * row.members) as u64),
        report::bytes(row.rss_per_page),
        row.rounds.triple(),
        row.burst.triple(),
        report::thousands(row.burst_per_second.round() as u64),
        format!("{:.2} s", row.cpu.as_secs_f64()),
        report::bytes(row.peak_rss as f64),
    ]];
    print!(
        "{}",
        report::table(
            &[
                "Rooms × pages",
                "Pages",
                "Server RSS per idle page",
                "Rounds: p50 / p99 / max",
                "Burst: p50 / p99 / max",
                "Burst: deliveries/s",
                "Server CPU",
                "Server peak RSS",
            ],
            &table,
        )
    );
    println!(
        "\nEach page was in its own room only, and got every item of that room exactly once, \
         in order, and nothing from any other room. Posts went over a socket per room (one \
         more member each, not counted as a page)."
    );
}

/// The target for rooms: met, or the run has failed already.
pub fn verdict(row: &Row) -> String {
    format!(
        "05 with {} rooms of {}: no page got news of a room it is not in: met",
        row.rooms, row.members
    )
}
