//! Scenario `reset`: a burst larger than the push buffer and the history.
//!
//! A feed keeps its last 1,000 items (`--history`), and a pushing server
//! keeps at most [`shared::feed::PUSH_BUFFER`] (256) of them waiting for a
//! socket that has not taken them yet. A page that falls further behind
//! than that catches up from the history; one that falls behind the whole
//! history cannot, and the feed's promise is that it then gets a *reset*
//! (the latest items, to show instead of what it had: `"reset":true` for
//! 03, `event: reset` for 03b, a `snapshot` with `"reset":true` for 04, a
//! `joined` for 05), never a silent gap.
//!
//! For each era, on a fresh server with `--history` items of history:
//!
//! 1. `--pages` pages connect. One in `--sleepy` is sleepy: it is on a
//!    slow link (a 4 KiB receive buffer, 1,460-byte segments: see
//!    [`crate::wire::SLOW_LINK`]), so that its server soon has to wait
//!    for it.
//! 2. The sleepy pages stop reading, as a tab in the background would; a
//!    long-polling page stops asking again.
//! 3. A burst of `--burst` items is posted over a few connections, then
//!    [`NAP`] passes, then the sleepy pages read again.
//! 4. Every page must end with the last item posted, and what it showed is
//!    checked with [`crate::swarm::check_resets`]: before a reset, exactly
//!    the first items posted; a reset's items are the server's latest,
//!    without a hole, up to its cursor; after it, exactly what came next.
//!
//! The report counts the pages that got resets (sleepy ones and awake
//! ones: a server that cannot keep up lets awake pages fall behind, too)
//! and the items the pages showed in all, against pages × burst had nobody
//! fallen behind.

use std::time::Duration;
use std::time::Instant;

use crate::clients::Era;
use crate::clients::StepFlags;
use crate::eras::colour;
use crate::report;
use crate::report::Bar;
use crate::report::Panel;
use crate::server::Deployment;
use crate::server::Usage;
use crate::swarm;
use crate::swarm::Pages;
use crate::swarm::Poster;
use crate::swarm::Swarm;

#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Which eras to run, for example `--eras 04`.
    #[arg(long, value_delimiter = ',', default_values = ["03", "03b", "04", "05"])]
    pub eras: Vec<Era>,
    /// How many pages. The sleepy ones must wake before their server's
    /// send deadline (10 s in 03b, 04 and 05) cuts them off: the burst
    /// takes about pages × burst / 500,000 seconds here.
    #[arg(long, default_value_t = 500)]
    pub pages: usize,
    /// One page in this many sleeps through the burst (0: none).
    #[arg(long, default_value_t = 4)]
    pub sleepy: usize,
    /// Items in the burst: more than the push buffer (256) and the history.
    /// A server's kernel holds a good part of a burst for a page that does
    /// not read (its send buffer grows to megabytes), so the burst is three
    /// times the history.
    #[arg(long, default_value_t = 3_000)]
    pub burst: usize,
    /// Items the server's feed keeps (the step's `--history`).
    #[arg(long, default_value_t = shared::feed::DEFAULT_CAPACITY)]
    pub history: usize,
}

/// How long the sleepy pages go on sleeping after the last post was
/// answered: time for the server to fill what their connections hold.
pub const NAP: Duration = Duration::from_millis(500);

/// How many connections the burst is posted over.
const POSTERS: usize = 16;

/// What one era did with the burst.
pub struct Row {
    pub era: Era,
    pub pages: usize,
    /// How many of the pages were sleepy...
    pub sleepy: usize,
    /// ...how many of those got at least one reset, and how many of the
    /// others.
    pub reset_sleepy: usize,
    pub reset_awake: usize,
    /// Resets over all pages.
    pub resets: usize,
    /// Items the pages showed, over all pages, a reset's items included.
    pub shown: usize,
    /// Items posted in the burst.
    pub posted: usize,
    /// From the first post to the last page showing the last item.
    pub took: Duration,
    /// Server CPU over the burst.
    pub cpu: Duration,
}

pub async fn run(options: &Options) -> Result<Vec<Row>, String> {
    if options.pages == 0 || options.burst == 0 {
        return Err("--pages and --burst must be more than zero".into());
    }
    let mut rows = Vec::new();
    for &era in &options.eras {
        if matches!(era, Era::XhrPolling | Era::Redis) {
            eprintln!(
                "reset: skipping {}: it runs 03, 03b, 04 and 05",
                era.label()
            );
            continue;
        }
        eprintln!(
            "reset: {}: {} pages, one in {} sleepy, a burst of {} with a history of {}",
            era.label(),
            options.pages,
            options.sleepy,
            options.burst,
            options.history
        );
        rows.extend(one(era, options).await?);
    }
    Ok(rows)
}

async fn one(era: Era, options: &Options) -> Result<Option<Row>, String> {
    let pages = options.pages;
    let flags = StepFlags {
        history: options.history,
        interval_ms: xhr_polling::DEFAULT_INTERVAL_MS,
        max_parked: long_polling::DEFAULT_MAX_PARKED.max(pages + 64),
        redis: None,
    };
    let Some(servers) = Deployment::start(era, flags).await? else {
        return Ok(None);
    };
    let targets = servers.targets();
    let target = &targets[0];
    let swarm = Swarm::start(
        &targets,
        &Pages {
            era,
            count: pages,
            cursors: swarm::page_cursors(&targets).await?,
            interval: Duration::from_millis(xhr_polling::DEFAULT_INTERVAL_MS),
            items: options.burst,
            rooms: 0,
            sleepy: options.sleepy,
        },
    );
    let patience = Duration::from_secs(30) + Duration::from_millis(pages as u64 * 5);
    swarm.ready(patience).await?;
    era.settle(target, pages, patience).await?;

    let poster = Poster::connect(target, POSTERS).await?;
    let before = Usage::total(&servers.usage()?);
    let started = Instant::now();
    swarm.doze(true);
    let burst = poster.burst(options.burst).await;
    tokio::time::sleep(NAP).await;
    swarm.doze(false);
    let reached = match &burst {
        Ok(burst) => {
            let last = burst.last().map_or(0, |post| post.id);
            swarm.reached(last, patience).await
        }
        Err(error) => Err(error.clone()),
    };
    let took = started.elapsed();
    let after = Usage::total(&servers.usage()?);
    let logs = swarm.stop().await?;
    drop(servers);
    let burst = burst?;
    reached?;

    let ids: Vec<u64> = burst.iter().map(|post| post.id).collect();
    swarm::check_resets(&logs, &ids)?;
    let is_sleepy = |index: usize| swarm::is_sleepy(index, options.sleepy);
    let reset = |sleepy: bool| {
        (logs.iter().enumerate())
            .filter(|(index, log)| is_sleepy(*index) == sleepy && !log.resets.is_empty())
            .count()
    };
    Ok(Some(Row {
        era,
        pages,
        sleepy: (0..pages).filter(|&index| is_sleepy(index)).count(),
        reset_sleepy: reset(true),
        reset_awake: reset(false),
        resets: logs.iter().map(|log| log.resets.len()).sum(),
        shown: logs.iter().map(|log| log.got.len()).sum(),
        posted: ids.len(),
        took,
        cpu: after.cpu.saturating_sub(before.cpu),
    }))
}

/// The Markdown table and the verdict on stdout, the chart under
/// `target/bench/`.
pub fn report(options: &Options, rows: &[Row], chart_name: &str) -> Result<String, String> {
    println!(
        "\n### A burst of {} to {} pages, one in {} asleep, with a history of {} and a push buffer of {}\n",
        options.burst,
        options.pages,
        options.sleepy,
        options.history,
        shared::feed::PUSH_BUFFER
    );
    let thousands = |n: usize| report::thousands(n as u64);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.era.label(),
                thousands(row.pages),
                format!(
                    "{} / {}",
                    thousands(row.reset_sleepy),
                    thousands(row.sleepy)
                ),
                format!(
                    "{} / {}",
                    thousands(row.reset_awake),
                    thousands(row.pages - row.sleepy)
                ),
                thousands(row.resets),
                thousands(row.shown),
                thousands(row.pages * row.posted),
                report::millis(row.took),
                format!("{:.2} s", row.cpu.as_secs_f64()),
            ]
        })
        .collect();
    print!(
        "{}",
        report::table(
            &[
                "Era",
                "Pages",
                "Reset: sleepy pages",
                "awake pages",
                "Resets",
                "Items shown",
                "Pages × burst",
                "Burst to last page",
                "Server CPU",
            ],
            &table,
        )
    );
    println!(
        "\nA sleepy page stops reading while the burst is posted and for {} ms after, \
         on a slow link (4 KiB receive buffer, 1,460-byte segments). Items shown count every item every page showed, \
         a reset's included; without resets they would be pages × burst. Every page ended \
         with the last item; before a reset it had exactly the first items posted, a \
         reset's items were the server's latest without a hole, and after it came exactly \
         what followed: no silent gap, nothing doubled.",
        NAP.as_millis()
    );
    println!("\nTarget of issue 19:\n");
    for row in rows {
        let pages = row.reset_sleepy + row.reset_awake;
        if pages == 0 {
            println!(
                "- {}: no page fell behind the history, so no reset was shown (a larger \
                 --burst or a smaller --history would); every page got every item",
                row.era.number()
            );
        } else {
            println!(
                "- {}: {} pages fell behind and got a reset, never a silent gap: met",
                row.era.number(),
                thousands(pages)
            );
        }
    }
    let bars = |value: &dyn Fn(&Row) -> f64, text: &dyn Fn(&Row) -> String| {
        rows.iter()
            .map(|row| Bar {
                label: row.era.label(),
                value: value(row),
                text: text(row),
                colour: colour(row.era),
            })
            .collect()
    };
    let panels = [
        Panel {
            title: "Pages that got a reset".into(),
            bars: bars(&|row| (row.reset_sleepy + row.reset_awake) as f64, &|row| {
                thousands(row.reset_sleepy + row.reset_awake)
            }),
        },
        Panel {
            title: "Items shown, over all pages".into(),
            bars: bars(&|row| row.shown as f64, &|row| thousands(row.shown)),
        },
    ];
    let svg = report::chart(
        "Pages that fell behind: a reset, never a gap",
        &format!(
            "a burst of {} to {} pages, history {}",
            options.burst, options.pages, options.history
        ),
        &panels,
    );
    report::save(&crate::server::output_dir(), chart_name, &svg)
}
