//! The gateway's `SchedulerClient` against a real Temporal dev server: bursts of submissions
//! past Temporal's in-flight update limit, and reads while no worker is running.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::future::join_all;
use maestro_activities::RoomActivities;
use maestro_core::{OperationRequest, OperationStatus, Scheduler, SchedulerState};
use maestro_gateway::SchedulerClient;
use maestro_gateway::error::ErrorCode;
use maestro_gateway::schedulers::ReadSource;
use maestro_runtime::{MemoryRoomStore, ProcessRuntime, ProcessRuntimeConfig};
use maestro_testkit::{TemporalDevServer, eventually, temp_dir};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use temporalio_sdk::{Runtime as TemporalRuntime, Worker};

async fn client(server: &TemporalDevServer) -> Result<Client> {
    let conn = Connection::connect(
        ConnectionOptions::new(url::Url::from_str(&server.url())?)
            .identity("gateway-tests")
            .build(),
    )
    .await?;
    Ok(Client::new(conn, ClientOptions::new("default").build())?)
}

/// 15 concurrent submissions against a server that admits one in-flight update per workflow
/// (the default is 10; lowered so the limit is hit every time): every one is accepted exactly
/// once and they run in order. The SDK client retries RESOURCE_EXHAUSTED itself; the gateway's
/// own backoff only extends that budget under sustained saturation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_past_the_in_flight_update_limit_are_retried() -> Result<()> {
    let server = TemporalDevServer::start_with_config(&["history.maxInFlightUpdates=1"]).await?;
    let client = client(&server).await?;
    let queue = "gateway-burst";
    let schedulers = SchedulerClient::new(client.clone(), queue);
    let name = format!("burst-{}", std::process::id());
    schedulers
        .create(Scheduler::with_command(&name, "g", &["sleep", "600"]))
        .await?;

    let submissions = (0..15).map(|i| {
        let (schedulers, name) = (schedulers.clone(), name.clone());
        tokio::spawn(async move {
            let request = OperationRequest::RemoveRooms {
                amount: 0,
                rooms_ids: vec![format!("no-such-room-{i}")],
            };
            schedulers.submit(&name, request, None).await
        })
    });
    let submitted = tokio::spawn(join_all(submissions));
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        rooms_api: maestro_runtime::RoomsApiEndpoints {
            http_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        },
        extra_path: vec![],
        log_dir: temp_dir("gateway-burst"),
    }));
    let activities = RoomActivities::new(runtime, Arc::new(MemoryRoomStore::new()));
    let temporal = TemporalRuntime::from_current_tokio(Default::default())?;
    let mut worker = Worker::new(
        &temporal,
        client,
        maestro_workflows::worker_options(queue, activities)?,
    )?;
    let shutdown = worker.shutdown_handle();
    let body = async {
        let results = submitted.await?;
        let mut seqs = Vec::new();
        for result in results {
            seqs.push(result??.seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=16).collect::<Vec<_>>(), "all 15 accepted once");
        let view = eventually(Duration::from_secs(60), "the queue to drain", || async {
            let view = schedulers.operations(&name).await.ok()?;
            (view.pending.is_empty() && view.active.is_none() && view.finished.len() == 16)
                .then_some(view)
        })
        .await?;
        assert!(
            view.finished
                .iter()
                .all(|op| op.status == OperationStatus::Finished)
        );
        anyhow::Ok(())
    };
    tokio::select! {
        stopped = worker.run() => anyhow::bail!("worker stopped early: {stopped:?}"),
        out = body => { shutdown(); out }
    }
}

fn worker(client: &Client, queue: &str, temporal: &TemporalRuntime) -> Result<Worker> {
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        rooms_api: maestro_runtime::RoomsApiEndpoints {
            http_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        },
        extra_path: vec![],
        log_dir: temp_dir("gateway-reads"),
    }));
    let activities = RoomActivities::new(runtime, Arc::new(MemoryRoomStore::new()));
    let options = maestro_workflows::worker_options(queue, activities)?;
    Ok(Worker::new(temporal, client.clone(), options)?)
}

/// With a worker, reads come from the workflow's query; with none, from the memo the
/// workflow recorded, within the query timeout and with the same content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_to_the_memo_while_no_worker_runs() -> Result<()> {
    let server = TemporalDevServer::start().await?;
    let client = client(&server).await?;
    let queue = "gateway-reads";
    let schedulers = SchedulerClient::new(client.clone(), queue);
    let name = format!("reads-{}", std::process::id());
    let temporal = TemporalRuntime::from_current_tokio(Default::default())?;

    let mut worker = worker(&client, queue, &temporal)?;
    let shutdown = worker.shutdown_handle();
    let with_worker = async {
        schedulers
            .create(Scheduler::with_command(&name, "g", &["sleep", "600"]))
            .await?;
        eventually(
            Duration::from_secs(30),
            "the scheduler to be in sync",
            || async {
                let (snapshot, source) = schedulers.read_snapshot(&name).await.ok()?;
                (snapshot.scheduler.state == Some(SchedulerState::InSync)).then_some(source)
            },
        )
        .await
    };
    let run = worker.run();
    tokio::pin!(run);
    let source = tokio::select! {
        stopped = &mut run => anyhow::bail!("worker stopped early: {stopped:?}"),
        out = with_worker => out?,
    };
    assert_eq!(source, ReadSource::Query);
    shutdown();
    tokio::time::timeout(Duration::from_secs(30), run).await??;

    // No worker now.
    let started = std::time::Instant::now();
    let (snapshot, source) = schedulers.read_snapshot(&name).await?;
    assert_eq!(source, ReadSource::Memo);
    assert_eq!(snapshot.scheduler.name, name);
    assert_eq!(snapshot.scheduler.state, Some(SchedulerState::InSync));
    assert_eq!(snapshot.versions.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the query timeout"
    );

    let missing = schedulers.read_snapshot("never-created").await.unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);

    // A scheduler no worker has run yet has nothing recorded: 503, not a hang or a 500.
    let fresh = format!("fresh-{}", std::process::id());
    schedulers
        .create(Scheduler::with_command(&fresh, "g", &["sleep", "600"]))
        .await?;
    let unread = schedulers.read_snapshot(&fresh).await.unwrap_err();
    assert_eq!(unread.code, ErrorCode::Unavailable, "{unread:?}");

    // Readiness follows Temporal: unavailable within the timeout once the server is gone.
    schedulers.temporal_ready().await?;
    let mut server = server;
    server.kill();
    let started = std::time::Instant::now();
    let down = schedulers.temporal_ready().await.unwrap_err();
    assert_eq!(down.code, ErrorCode::Unavailable, "{down:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}
