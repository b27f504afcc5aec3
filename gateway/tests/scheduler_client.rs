//! The gateway's `SchedulerClient` against a real Temporal dev server: submissions (signals)
//! accepted while no worker runs, idempotency keys, cancel answers, and reads while no worker
//! is running.

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
use maestro_runtime::{MemoryRoomStore, ProcessRuntime, ProcessRuntimeConfig, Runtime as _};
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

/// Acceptance needs no worker: 50 concurrent submissions while none runs are each answered
/// with an id at once; when a worker comes, they run once each in the order Temporal recorded
/// them. An idempotency key: the same request again is the same operation, another request
/// under it is 409 naming the key; cancel answers 404 for an unknown operation and 409 for a
/// final one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_are_accepted_with_no_worker_and_run_in_order() -> Result<()> {
    let server = TemporalDevServer::start().await?;
    let client = client(&server).await?;
    let queue = "gateway-signals";
    let schedulers = SchedulerClient::new(client.clone(), queue);
    let name = format!("signals-{}", std::process::id());
    schedulers
        .create(Scheduler::with_command(&name, "g", &["sleep", "600"]))
        .await?;

    let started = std::time::Instant::now();
    let submissions = (0..50).map(|i| {
        let (schedulers, name) = (schedulers.clone(), name.clone());
        tokio::spawn(async move {
            let request =
                OperationRequest::RemoveRooms(maestro_core::operation::RemoveRoomsInput {
                    amount: 0,
                    rooms_ids: vec![format!("no-such-room-{i}")],
                });
            schedulers.submit(&name, request, None).await
        })
    });
    let mut accepted = Vec::new();
    for result in join_all(submissions).await {
        accepted.push(result??);
    }
    assert!(
        started.elapsed() < maestro_gateway::schedulers::SUBMIT_BOUND,
        "answered in {:?} with no worker",
        started.elapsed()
    );
    let keyed = OperationRequest::RemoveRooms(maestro_core::operation::RemoveRoomsInput {
        amount: 0,
        rooms_ids: vec!["keyed".into()],
    });
    let first = schedulers
        .submit(&name, keyed.clone(), Some("key-1".into()))
        .await?;

    let temporal = TemporalRuntime::from_current_tokio(Default::default())?;
    let mut worker = worker(&client, queue, &temporal)?;
    let shutdown = worker.shutdown_handle();
    let body = async {
        let view = eventually(Duration::from_secs(90), "the queue to drain", || async {
            let view = schedulers.operations(&name).await.ok()?;
            (view.pending.is_empty() && view.active.is_none() && view.finished.len() == 52)
                .then_some(view)
        })
        .await?;
        assert!(
            view.finished
                .iter()
                .all(|op| op.status == OperationStatus::Finished),
            "{:?}",
            view.finished
                .iter()
                .map(|op| (&op.id, op.status))
                .collect::<Vec<_>>()
        );
        let seqs: Vec<u64> = view.finished.iter().map(|op| op.seq).collect();
        assert_eq!(
            seqs,
            (1..=52).collect::<Vec<_>>(),
            "one seq each, run in order"
        );
        let ids: std::collections::BTreeSet<&String> =
            view.finished.iter().map(|op| &op.id).collect();
        assert!(
            accepted.iter().all(|id| ids.contains(id)),
            "every accepted id ran"
        );

        // The same key and request: the same operation, nothing enqueued.
        let again = schedulers
            .submit(&name, keyed.clone(), Some("key-1".into()))
            .await?;
        assert_eq!(again, first);
        // The same key, another request: refused, naming the key.
        let other = OperationRequest::RemoveRooms(maestro_core::operation::RemoveRoomsInput {
            amount: 0,
            rooms_ids: vec!["other".into()],
        });
        let reused = schedulers
            .submit(&name, other, Some("key-1".into()))
            .await
            .unwrap_err();
        assert_eq!(reused.code, ErrorCode::FailedPrecondition, "{reused:?}");
        assert_eq!(reused.fields[0].field, "Idempotency-Key", "{reused:?}");
        assert_eq!(schedulers.operations(&name).await?.finished.len(), 52);

        let unknown = schedulers.cancel(&name, "no-such-op").await.unwrap_err();
        assert_eq!(unknown.code, ErrorCode::NotFound);
        let done = schedulers.cancel(&name, &first).await.unwrap_err();
        assert_eq!(done.code, ErrorCode::FailedPrecondition);
        let missing = schedulers
            .submit(
                "never-created",
                OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(missing.code, ErrorCode::NotFound);
        anyhow::Ok(())
    };
    tokio::select! {
        stopped = worker.run() => anyhow::bail!("worker stopped early: {stopped:?}"),
        out = body => { shutdown(); out }
    }
}

/// With no worker to check an idempotency key, the workflow refuses the reused key itself:
/// the second request's operation is recorded as failed, naming the key and the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_key_is_refused_by_the_workflow_when_no_worker_could_check_it() -> Result<()> {
    let server = TemporalDevServer::start().await?;
    let client = client(&server).await?;
    let queue = "gateway-keys";
    let schedulers = SchedulerClient::new(client.clone(), queue);
    let name = format!("keys-{}", std::process::id());
    schedulers
        .create(Scheduler::with_command(&name, "g", &["sleep", "600"]))
        .await?;
    let request = |room: &str| {
        OperationRequest::RemoveRooms(maestro_core::operation::RemoveRoomsInput {
            amount: 0,
            rooms_ids: vec![room.into()],
        })
    };
    let first = schedulers
        .submit(&name, request("a"), Some("k".into()))
        .await?;
    let second = schedulers
        .submit(&name, request("b"), Some("k".into()))
        .await?;
    assert_ne!(first, second);

    let temporal = TemporalRuntime::from_current_tokio(Default::default())?;
    let mut worker = worker(&client, queue, &temporal)?;
    let shutdown = worker.shutdown_handle();
    let body = async {
        let view = eventually(Duration::from_secs(60), "both recorded", || async {
            let view = schedulers.operations(&name).await.ok()?;
            (view.pending.is_empty() && view.active.is_none() && view.finished.len() == 3)
                .then_some(view)
        })
        .await?;
        let find = |id: &str| {
            view.finished
                .iter()
                .find(|op| op.id == id)
                .cloned()
                .unwrap()
        };
        assert_eq!(find(&first).status, OperationStatus::Finished);
        let refused = find(&second);
        assert_eq!(refused.status, OperationStatus::Error);
        let error = refused.error.unwrap_or_default();
        assert!(
            error.contains("Idempotency-Key") && error.contains(&first),
            "{error}"
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
    let options = maestro_workflows::worker_options(
        queue,
        activities,
        maestro_workflows::DEFAULT_MAX_CACHED_WORKFLOWS,
    )?;
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

    // A scheduler no worker has run yet is read from the memo it was started with: what
    // its creation answered, not a 503.
    let fresh = format!("fresh-{}", std::process::id());
    let created = schedulers
        .create(Scheduler::with_command(&fresh, "g", &["sleep", "600"]))
        .await?;
    assert_eq!(created.state, Some(SchedulerState::Creating));
    assert_eq!(created.spec.version, "v1.0.0");
    let (unrun, source) = schedulers.read_snapshot(&fresh).await?;
    assert_eq!(source, ReadSource::Memo);
    assert_eq!(unrun.scheduler, created);
    assert_eq!(unrun.versions.len(), 1);
    assert_eq!(Some(unrun.versions[0].created_at), created.created_at);

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

/// A deploy that cannot run the scheduler workflow: every workflow task panics.
#[temporalio_macros::workflow]
#[derive(Default)]
struct BrokenScheduler;

#[temporalio_macros::workflow_methods]
impl BrokenScheduler {
    #[run(name = "scheduler")]
    async fn run(
        _ctx: &mut temporalio_sdk::WorkflowContext<Self>,
        _input: serde_json::Value,
    ) -> temporalio_sdk::WorkflowResult<()> {
        panic!("a broken deploy: this code cannot run the scheduler workflow")
    }
}

/// A scheduler whose workflow tasks keep failing is never silent and never holds its rooms
/// hostage: reads and the listing say on-error, DELETE terminates the workflow and a
/// standalone deletion removes the rooms once a good worker runs. The documented way out for
/// a scheduler to keep — a good worker again, then `temporal workflow reset` to the last
/// workflow task — brings it back, and the operation submitted while it was stuck runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_workflow_is_reported_deletable_and_recoverable() -> Result<()> {
    let server = TemporalDevServer::start().await?;
    let client = client(&server).await?;
    let queue = "gateway-stuck";
    // No health checks: the room counts are what the operations alone make.
    let schedulers = SchedulerClient::new(client.clone(), queue).with_health_check(Duration::ZERO);
    let pid = std::process::id();
    let (doomed, kept) = (format!("doomed-{pid}"), format!("kept-{pid}"));
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        rooms_api: maestro_runtime::RoomsApiEndpoints {
            http_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        },
        extra_path: vec![],
        log_dir: temp_dir("gateway-stuck"),
    }));
    let store = Arc::new(MemoryRoomStore::new());
    let temporal = TemporalRuntime::from_current_tokio(Default::default())?;
    let good_worker = || -> Result<Worker> {
        let activities = RoomActivities::new(runtime.clone(), store.clone());
        let options = maestro_workflows::worker_options(
            queue,
            activities,
            maestro_workflows::DEFAULT_MAX_CACHED_WORKFLOWS,
        )?;
        Ok(Worker::new(&temporal, client.clone(), options)?)
    };
    let drained = |name: String, n: usize| {
        let schedulers = schedulers.clone();
        async move {
            eventually(Duration::from_secs(90), "the queue to drain", || async {
                let view = schedulers.operations(&name).await.ok()?;
                (view.pending.is_empty() && view.active.is_none() && view.finished.len() >= n)
                    .then_some(view)
            })
            .await
        }
    };

    // 1. Healthy: both schedulers with two rooms each.
    let mut worker = good_worker()?;
    let shutdown = worker.shutdown_handle();
    let setup = async {
        for name in [&doomed, &kept] {
            schedulers
                .create(Scheduler::with_command(name, "g", &["sleep", "600"]))
                .await?;
            schedulers
                .submit(
                    name,
                    OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput {
                        amount: 2,
                    }),
                    None,
                )
                .await?;
            drained(name.clone(), 2).await?;
        }
        anyhow::Ok(())
    };
    let run = worker.run();
    tokio::pin!(run);
    tokio::select! {
        stopped = &mut run => anyhow::bail!("worker stopped early: {stopped:?}"),
        out = setup => out?,
    }
    shutdown();
    tokio::time::timeout(Duration::from_secs(30), run).await??;
    assert_eq!(runtime.list_rooms(&doomed).await?.len(), 2);

    // 2. A broken deploy: every task of both workflows fails.
    let mut broken_options = temporalio_sdk::WorkerOptions::new(queue)
        .max_cached_workflows(0)
        .build();
    broken_options.register_workflow::<BrokenScheduler>()?;
    let mut broken = Worker::new(&temporal, client.clone(), broken_options)?;
    let stop_broken = broken.shutdown_handle();
    let stuck_op = schedulers
        .submit(
            &kept,
            OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
            None,
        )
        .await?;
    schedulers
        .submit(
            &doomed,
            OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
            None,
        )
        .await?;
    let observed = async {
        let problem = eventually(Duration::from_secs(90), "the problem reported", || async {
            schedulers.workflow_problem(&doomed).await.ok().flatten()
        })
        .await?;
        let (snapshot, source) = schedulers.read_snapshot(&doomed).await?;
        assert_eq!(
            source,
            ReadSource::Memo,
            "the broken code cannot answer queries"
        );
        assert_eq!(snapshot.scheduler.state, Some(SchedulerState::OnError));
        let listed = eventually(
            Duration::from_secs(120),
            "the listing to say on-error",
            || async {
                let all = schedulers.list().await.ok()?;
                let doomed = all.iter().find(|s| s.scheduler.name == doomed)?;
                (doomed.scheduler.state == Some(SchedulerState::OnError)).then_some(())
            },
        )
        .await;
        listed?;
        assert!(
            schedulers.stuck_schedulers().await?.contains(&doomed),
            "readiness names it"
        );
        let deletion = schedulers
            .delete_bypassing_workflow(snapshot.scheduler, &problem)
            .await?;
        anyhow::Ok((problem, deletion))
    };
    let run = broken.run();
    tokio::pin!(run);
    let (problem, deletion) = tokio::select! {
        stopped = &mut run => anyhow::bail!("broken worker stopped early: {stopped:?}"),
        out = observed => out?,
    };
    println!("reported: {problem}; deletion {deletion}");
    stop_broken();
    tokio::time::timeout(Duration::from_secs(30), run).await??;

    // 3. A good worker again: the deletion runs; the kept scheduler is reset and goes on.
    let mut worker = good_worker()?;
    let shutdown = worker.shutdown_handle();
    let recovered = async {
        eventually(
            Duration::from_secs(90),
            "the stuck scheduler's rooms gone",
            || async {
                runtime
                    .list_rooms(&doomed)
                    .await
                    .ok()?
                    .is_empty()
                    .then_some(())
            },
        )
        .await?;
        let gone = schedulers.read_snapshot(&doomed).await.unwrap_err();
        assert_eq!(gone.code, ErrorCode::NotFound, "{gone:?}");
        let reset = std::process::Command::new(maestro_testkit::temporal_bin())
            .args(["workflow", "reset", "--workflow-id"])
            .arg(format!("scheduler:{kept}"))
            .args([
                "--type",
                "LastWorkflowTask",
                "--reason",
                "recover after a broken deploy",
            ])
            .args(["--address", &server.address()])
            .output()?;
        assert!(
            reset.status.success(),
            "{}",
            String::from_utf8_lossy(&reset.stderr)
        );
        let view = drained(kept.clone(), 3).await?;
        let op = view.finished.iter().find(|op| op.id == stuck_op).cloned();
        assert_eq!(
            op.as_ref().map(|op| op.status),
            Some(OperationStatus::Finished),
            "the operation submitted while stuck ran: {op:?}"
        );
        assert_eq!(runtime.list_rooms(&kept).await?.len(), 3);
        assert_eq!(schedulers.workflow_problem(&kept).await?, None);
        anyhow::Ok(())
    };
    tokio::select! {
        stopped = worker.run() => anyhow::bail!("worker stopped early: {stopped:?}"),
        out = recovered => { shutdown(); out }
    }
}
