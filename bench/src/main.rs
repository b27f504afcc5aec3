//! `maestro-bench`: every benchmark of `docs/benchmarks.md`, each figure a ratio against a
//! baseline measured in the same run on this machine (absolute times on shared machines are
//! noise). Loopback only; every load loop is bounded in count and time.
//!
//! Owns measuring only: it starts the real pieces (Temporal dev server, redis-server, the
//! `maestro` binary, the in-test Kubernetes API server) and must not contain product logic.

mod allocate;
mod fleet;
mod load;
mod ping;
mod report;
mod system;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use maestro_testkit::{RedisServer, TemporalDevServer, temp_dir};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};

use crate::report::Report;

#[derive(Parser, Debug)]
#[command(about = "Run every benchmark and write docs/benchmarks.md")]
struct Args {
    /// Where the Markdown page goes.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Benchmark groups to run (default: all): ping, operations, scale, capacity, autoscaler,
    /// allocate.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only load this Maestro ping server for 15 s (under `perf record`); writes no page.
    #[arg(long, value_enum)]
    profile_ping: Option<ping::Target>,
    /// Criterion's output folder (`cargo bench -p maestro-core --bench hot_paths` runs
    /// first); its results join the table.
    #[arg(long, env = "MAESTRO_CRITERION_DIR")]
    criterion: Option<PathBuf>,
    /// The command line recorded in the page.
    #[arg(long, default_value = "make bench")]
    command: String,
}

impl Args {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

async fn connect(temporal: &TemporalDevServer) -> Result<Client> {
    let conn = Connection::connect(
        ConnectionOptions::new(url::Url::from_str(&temporal.url())?)
            .identity("maestro-bench")
            .build(),
    )
    .await?;
    Ok(Client::new(conn, ClientOptions::new("default").build())?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let work_dir = temp_dir("bench");
    // Logs as the maestro binary writes them (info), into a file: the handlers under test
    // pay for the same subscriber they have in production.
    let log = std::fs::File::create(work_dir.join("bench.log"))?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::sync::Mutex::new(log))
        .init();
    // The servers under test get their own two worker threads, as `maestro serve` has on
    // this 2-core machine; the load generators and harness run on the main runtime.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()?;
    let harness = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let started = Instant::now();
    let report = harness.block_on(run(&args, server.handle(), &work_dir))?;
    if args.profile_ping.is_some() {
        server.shutdown_background();
        return Ok(());
    }
    let results = results(&args, &report, started.elapsed());
    // Only the results section is rewritten: the notes around it (methods, profiles of the
    // misses) are kept by hand.
    let page = match std::fs::read_to_string(&args.out) {
        Ok(old) => match (old.find(RESULTS_START), old.find(RESULTS_END)) {
            (Some(start), Some(end)) if start < end => {
                format!(
                    "{}{results}{}",
                    &old[..start],
                    &old[end + RESULTS_END.len()..]
                )
            }
            _ => format!("# Benchmarks\n\n{results}"),
        },
        Err(_) => format!("# Benchmarks\n\n{results}"),
    };
    std::fs::write(&args.out, page).with_context(|| format!("write {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    server.shutdown_background();
    Ok(())
}

async fn run(
    args: &Args,
    server: &tokio::runtime::Handle,
    work_dir: &std::path::Path,
) -> Result<Report> {
    let mut report = Report::default();
    // The server as `maestro dev` runs it: both sides of every ratio measured on it.
    let temporal =
        TemporalDevServer::start_with_config(maestro_workflows::DEV_SERVER_DYNAMIC_CONFIG).await?;
    let redis = RedisServer::start().await?;
    let client = connect(&temporal).await?;
    if let Some(target) = args.profile_ping {
        // Returning (not exiting) lets the dev server and redis-server be stopped on drop.
        ping::profile(server, client, &redis.url(), target).await?;
        return Ok(report);
    }
    if args.wants("ping") {
        ping::run(
            &mut report,
            server,
            client.clone(),
            &redis.url(),
            redis.port(),
            work_dir,
        )
        .await?;
    }
    let wants = system::Wants {
        operations: args.wants("operations"),
        scale: args.wants("scale"),
        autoscaler: args.wants("autoscaler"),
        capacity: args.wants("capacity"),
        allocate: args.wants("allocate"),
    };
    if wants.operations || wants.scale || wants.autoscaler || wants.capacity || wants.allocate {
        system::run(
            &mut report,
            &temporal.address(),
            client,
            &redis.url(),
            redis.port(),
            work_dir,
            wants,
        )
        .await?;
    }
    if let Some(dir) = &args.criterion {
        criterion_rows(&mut report, dir)?;
    }
    Ok(report)
}

/// The criterion suite's medians, Maestro's function against its group's baseline.
fn criterion_rows(report: &mut Report, dir: &std::path::Path) -> Result<()> {
    let groups = [
        (
            "scheduler_document",
            "Scheduler document: parse + validate",
            "parse into a JSON value",
        ),
        (
            "ping_json",
            "Ping decoding (HTTP JSON)",
            "parse into a JSON value",
        ),
        (
            "ping_protobuf",
            "Ping decoding (gRPC protobuf)",
            "the JSON ping into a JSON value",
        ),
        (
            "status_mapping",
            "Status mapping: apply a ping to a room (with its clone)",
            "the room's clone alone",
        ),
        (
            "autoscaler_1000_rooms",
            "Autoscaler decision over 1 000 rooms",
            "summing their running matches",
        ),
    ];
    for (group, name, baseline) in groups {
        let median = |function: &str| -> Result<f64> {
            let path = dir.join(group).join(function).join("new/estimates.json");
            let estimates: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("read {}", path.display()))?,
            )?;
            estimates["median"]["point_estimate"]
                .as_f64()
                .with_context(|| format!("no median in {}", path.display()))
        };
        report.row(report::Row::ratio(
            &format!("criterion: {name}"),
            baseline,
            median("maestro")?,
            median("baseline")?,
            "ns",
            report::Verdict::none(),
        ));
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
        })
        .map_or_else(
            || "?".into(),
            |kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {memory} RAM, Linux {}",
        kernel.trim()
    )
}

const RESULTS_START: &str = "<!-- results: written by maestro-bench -->";
const RESULTS_END: &str = "<!-- end of results -->";

fn results(args: &Args, report: &Report, took: std::time::Duration) -> String {
    format!(
        "{RESULTS_START}\n\
         Produced by `{command}` on {machine}; the system benchmarks took {took:.0?}.\n\
         Temporal: the dev server with `{temporal}` (as `maestro dev` runs it).\n\
         Every figure is a ratio against a baseline measured in the same run, because absolute\n\
         times on these shared machines are noise. All traffic is on loopback; every load loop is\n\
         bounded in count and time. How each is measured, and what the misses are: below the table.\n\n\
         {table}\n{RESULTS_END}",
        command = args.command,
        machine = machine(),
        temporal = maestro_workflows::DEV_SERVER_DYNAMIC_CONFIG.join(" "),
        table = report.table(),
    )
}
