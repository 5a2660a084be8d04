//! Scenario `eras`: what one update costs in each era.
//!
//! For each era: a fresh server, C pages (100 by default) that start from
//! the page's cursor, and P posts at a steady rate. Each delivery (one
//! item shown on one page) is timed from the moment its POST went out.
//! The per-item costs divide what the pages sent and received, and how
//! many HTTP requests they made, by the number of deliveries. The poster's
//! own requests are left out: every era posts the same way.

use std::time::Duration;
use std::time::Instant;

use crate::clients::Era;
use crate::clients::StepFlags;
use crate::report;
use crate::report::Bar;
use crate::report::Panel;
use crate::report::Spread;
use crate::server;
use crate::server::Deployment;
use crate::server::Usage;
use crate::swarm;
use crate::swarm::Pages;
use crate::swarm::Poster;
use crate::swarm::Swarm;

#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Simulated pages per era.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Items posted per era.
    #[arg(long, default_value_t = 20)]
    pub posts: usize,
    /// Posts per second.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// How often step 02's pages poll, in milliseconds (the step's default).
    #[arg(long, default_value_t = xhr_polling::DEFAULT_INTERVAL_MS)]
    pub interval: u64,
    /// Which eras to run, for example `--eras 03,04`.
    #[arg(long, value_delimiter = ',', default_values = ["02", "03", "03b", "04", "05"])]
    pub eras: Vec<Era>,
}

/// What one era cost.
pub struct Row {
    pub era: Era,
    /// From POST to the page, over every delivery.
    pub latency: Spread,
    pub requests_per_item: f64,
    pub bytes_per_item: f64,
    /// Server CPU time while the pages were connected.
    pub cpu: Duration,
    pub peak_rss: u64,
}

pub async fn run(options: &Options) -> Result<Vec<Row>, String> {
    if options.clients == 0 || options.posts == 0 || options.rate <= 0.0 {
        return Err("--clients, --posts and --rate must be more than zero".into());
    }
    let mut rows = Vec::new();
    for &era in &options.eras {
        eprintln!(
            "eras: {}: {} pages, {} posts at {}/s",
            era.label(),
            options.clients,
            options.posts,
            options.rate
        );
        rows.extend(one(era, options).await?);
    }
    Ok(rows)
}

async fn one(era: Era, options: &Options) -> Result<Option<Row>, String> {
    let interval = Duration::from_millis(options.interval);
    let flags = StepFlags {
        history: options.posts.max(shared::feed::DEFAULT_CAPACITY),
        interval_ms: options.interval,
        max_parked: long_polling::DEFAULT_MAX_PARKED.max(options.clients + 64),
        redis: None,
    };
    let Some(servers) = Deployment::start(era, flags).await? else {
        return Ok(None);
    };
    // Pages are shared out over the servers (06 has two); posts go to the
    // first.
    let targets = servers.targets();
    let target = &targets[0];
    let cursors = swarm::page_cursors(&targets).await?;
    let before = Usage::total(&servers.usage()?);
    let bench_before = Usage::of(std::process::id()).map_err(|error| error.to_string())?;
    let (machine_before, started) = (server::machine_busy(), Instant::now());

    let pages = Pages {
        era,
        count: options.clients,
        cursors,
        interval,
        items: options.posts,
        rooms: 0,
        sleepy: 0,
    };
    let swarm = Swarm::start(&targets, &pages);
    swarm.ready(Duration::from_secs(60)).await?;
    era.settle(target, options.clients, Duration::from_secs(30))
        .await?;

    let poster = Poster::connect(target, 4).await?;
    let posted = poster.steady(options.posts, options.rate).await?;
    let last = posted.last().expect("at least one post").id;
    // 02's pages see the last item at their next poll, up to an interval
    // later; the others at once.
    let waited = swarm
        .reached(last, interval + Duration::from_secs(30))
        .await;
    let logs = swarm.stop().await?;
    let after = Usage::total(&servers.usage()?);
    let bench_after = Usage::of(std::process::id()).map_err(|error| error.to_string())?;
    server::warn_if_busy(
        &era.label(),
        server::machine_busy().saturating_sub(machine_before),
        after.cpu.saturating_sub(before.cpu) + bench_after.cpu.saturating_sub(bench_before.cpu),
        started.elapsed(),
    );
    drop(servers);

    let ids: Vec<u64> = posted.iter().map(|post| post.id).collect();
    swarm::check(&logs, &ids)?;
    waited?;

    let deliveries = (options.clients * options.posts) as f64;
    let requests: u64 = logs.iter().map(|log| log.tally.requests()).sum();
    let bytes: u64 = logs.iter().map(|log| log.tally.bytes()).sum();
    Ok(Some(Row {
        era,
        latency: Spread::of(swarm::latencies(&logs, &posted)),
        requests_per_item: requests as f64 / deliveries,
        bytes_per_item: bytes as f64 / deliveries,
        cpu: after.cpu.saturating_sub(before.cpu),
        peak_rss: after.peak_rss,
    }))
}

/// The Markdown table on stdout, and the chart under `target/bench/`.
pub fn report(options: &Options, rows: &[Row], chart_name: &str) -> Result<String, String> {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.era.label(),
                report::millis(row.latency.p50),
                report::millis(row.latency.p99),
                report::millis(row.latency.max),
                report::ratio(row.requests_per_item),
                report::thousands(row.bytes_per_item.round() as u64),
                format!("{:.2} s", row.cpu.as_secs_f64()),
                report::bytes(row.peak_rss as f64),
            ]
        })
        .collect();
    println!(
        "\n### What one update costs: {} pages, {} posts at {}/s\n",
        options.clients, options.posts, options.rate
    );
    print!(
        "{}",
        report::table(
            &[
                "Era",
                "Post → page p50",
                "p99",
                "max",
                "HTTP requests per item",
                "Bytes per item",
                "Server CPU",
                "Server peak RSS",
            ],
            &table,
        )
    );
    println!(
        "\nEvery page got every item exactly once, in order. \"Per item\" is per delivery \
         (one item shown on one page); requests and bytes are counted at the pages' sockets, \
         both directions, headers included."
    );

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
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let panels = [
        Panel {
            title: "Post to page, median".into(),
            bars: bars(&|row| ms(row.latency.p50), &|row| {
                report::millis(row.latency.p50)
            }),
        },
        Panel {
            title: "Post to page, 99th percentile".into(),
            bars: bars(&|row| ms(row.latency.p99), &|row| {
                report::millis(row.latency.p99)
            }),
        },
        Panel {
            title: "HTTP requests per delivered item".into(),
            bars: bars(&|row| row.requests_per_item, &|row| {
                report::ratio(row.requests_per_item)
            }),
        },
        Panel {
            title: "Bytes on the wire per delivered item".into(),
            bars: bars(&|row| row.bytes_per_item, &|row| {
                format!("{} B", report::thousands(row.bytes_per_item.round() as u64))
            }),
        },
        Panel {
            title: "Server CPU time for the whole run".into(),
            bars: bars(&|row| row.cpu.as_secs_f64(), &|row| {
                format!("{:.2} s", row.cpu.as_secs_f64())
            }),
        },
    ];
    let subtitle = format!(
        "{} pages, {} posts at {}/s, server and pages on 127.0.0.1",
        options.clients, options.posts, options.rate
    );
    let svg = report::chart("What one update costs, era by era", &subtitle, &panels);
    report::save(&crate::server::output_dir(), chart_name, &svg)
}

/// Each era keeps its colour in every chart.
pub fn colour(era: Era) -> usize {
    Era::ALL
        .iter()
        .position(|&e| e == era)
        .expect("every era is in ALL")
}
