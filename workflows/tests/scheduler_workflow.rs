//! The scheduler workflow against a real Temporal dev server, with an in-process worker, the
//! process runtime and the in-memory room store.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::future::join_all;
use maestro_activities::RoomActivities;
use maestro_core::naming::{operation_workflow_id, scheduler_workflow_id};
use maestro_core::scheduler::PortRange;
use maestro_core::{OperationRequest, OperationStatus, Scheduler, SchedulerState};
use maestro_runtime::{MemoryRoomStore, ProcessRuntime, ProcessRuntimeConfig, Runtime as _};
use maestro_testkit::{TemporalDevServer, eventually, processes_with_env, temp_dir};
use maestro_workflows::{
    OperationsMark, OperationsView, SchedulerSnapshot, SchedulerWorkflow, SchedulerWorkflowState,
    SubmitOperation, names, register_replayer_workflows, worker_options,
};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, WorkflowDescribeOptions,
    WorkflowFetchHistoryOptions, WorkflowHistory, WorkflowQueryOptions, WorkflowSignalOptions,
    WorkflowStartOptions,
};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use temporalio_sdk::{Runtime as TemporalRuntime, Worker};

struct Harness {
    _server: TemporalDevServer,
    client: Client,
    runtime: Arc<ProcessRuntime>,
    store: Arc<MemoryRoomStore>,
    task_queue: String,
}

async fn harness(label: &str) -> Result<Harness> {
    let server = TemporalDevServer::start().await?;
    let conn = Connection::connect(
        ConnectionOptions::new(url::Url::from_str(&server.url())?)
            .identity("workflow-tests")
            .build(),
    )
    .await?;
    let client = Client::new(conn, ClientOptions::new("default").build())?;
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        rooms_api: maestro_runtime::RoomsApiEndpoints {
            http_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        },
        extra_path: vec![],
        log_dir: temp_dir(label),
    }));
    Ok(Harness {
        _server: server,
        client,
        runtime,
        store: Arc::new(MemoryRoomStore::new()),
        task_queue: format!("test-{label}"),
    })
}

impl Harness {
    /// Runs `body` while a worker serves the task queue.
    async fn with_worker<T>(&self, body: impl Future<Output = Result<T>>) -> Result<T> {
        let temporal = TemporalRuntime::from_current_tokio(Default::default())?;
        let activities = RoomActivities::new(self.runtime.clone(), self.store.clone());
        let options = worker_options(
            &self.task_queue,
            activities,
            maestro_workflows::DEFAULT_MAX_CACHED_WORKFLOWS,
        )?;
        let mut worker = Worker::new(&temporal, self.client.clone(), options)?;
        let shutdown = worker.shutdown_handle();
        tokio::select! {
            stopped = worker.run() => anyhow::bail!("worker stopped early: {stopped:?}"),
            out = body => { shutdown(); out }
        }
    }

    async fn create(&self, scheduler: Scheduler, continue_as_new_every: u32) -> Result<()> {
        let mut input = SchedulerWorkflowState::new(scheduler.clone());
        input.continue_as_new_every = continue_as_new_every;
        self.start(input).await
    }

    async fn start(&self, input: SchedulerWorkflowState) -> Result<()> {
        let scheduler = input.scheduler.clone();
        self.client
            .start_workflow(
                SchedulerWorkflow::run,
                input,
                WorkflowStartOptions::new(&self.task_queue, scheduler_workflow_id(&scheduler.name))
                    .build(),
            )
            .await?;
        Ok(())
    }

    fn handle(&self, name: &str) -> temporalio_client::WorkflowHandle<Client, SchedulerWorkflow> {
        self.client
            .get_workflow_handle::<SchedulerWorkflow>(scheduler_workflow_id(name))
    }

    async fn submit(
        &self,
        name: &str,
        request: OperationRequest,
    ) -> Result<maestro_core::Operation> {
        self.submit_as(name, request, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Submits with a chosen request id (used as the operation id too, as the gateway's
    /// key-derived ids are), as a client retrying a request would; answers the operation as
    /// the workflow then holds it.
    async fn submit_as(
        &self,
        name: &str,
        request: OperationRequest,
        request_id: &str,
    ) -> Result<maestro_core::Operation> {
        let submission = SubmitOperation {
            request,
            request_id: request_id.to_string(),
            operation_id: request_id.to_string(),
            search_attributes: false,
        };
        self.handle(name)
            .signal(
                SchedulerWorkflow::enqueue_operations,
                vec![submission],
                WorkflowSignalOptions::builder()
                    .request_id(request_id.to_string())
                    .build(),
            )
            .await?;
        eventually(
            Duration::from_secs(60),
            "the operation recorded",
            || async {
                let view = self.operations(name).await.ok()?;
                view.pending
                    .into_iter()
                    .chain(view.active)
                    .chain(view.finished)
                    .find(|op| op.id == request_id)
            },
        )
        .await
    }

    /// Asks the workflow to cancel `operation_id`.
    async fn cancel(&self, name: &str, operation_id: &str) -> Result<()> {
        self.handle(name)
            .signal(
                SchedulerWorkflow::request_cancel,
                operation_id.to_string(),
                WorkflowSignalOptions::default(),
            )
            .await?;
        Ok(())
    }

    async fn operations(&self, name: &str) -> Result<OperationsView> {
        Ok(self
            .handle(name)
            .query(
                SchedulerWorkflow::get_operations,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?)
    }

    async fn snapshot(&self, name: &str) -> Result<SchedulerSnapshot> {
        Ok(self
            .handle(name)
            .query(
                SchedulerWorkflow::get_scheduler,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?)
    }

    /// The history of workflow `workflow_id`, as JSON.
    async fn history(&self, workflow_id: String) -> Result<Vec<u8>> {
        Ok(self
            .client
            .get_workflow_handle::<SchedulerWorkflow>(workflow_id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?)
    }

    /// Submits a new version whose validation room never gets ready (its command sleeps
    /// `seconds`, distinct per test so room processes are told apart): it runs until
    /// cancelled.
    async fn never_ready_version(
        &self,
        name: &str,
        seconds: &str,
    ) -> Result<maestro_core::Operation> {
        let mut never_ready = scheduler(name);
        never_ready.spec.containers[0].command = vec!["sleep".into(), seconds.into()];
        self.submit(
            name,
            OperationRequest::CreateNewSchedulerVersion(
                maestro_core::operation::CreateNewSchedulerVersionInput {
                    scheduler: Box::new(never_ready),
                },
            ),
        )
        .await
    }

    /// Waits until the queue is drained and `finished` operations are recorded.
    async fn drained(
        &self,
        name: &str,
        finished: usize,
        limit: Duration,
    ) -> Result<OperationsView> {
        eventually(limit, "the operation queue to drain", || async {
            let view = self.operations(name).await.ok()?;
            (view.pending.is_empty() && view.active.is_none() && view.finished.len() >= finished)
                .then_some(view)
        })
        .await
    }
}

fn scheduler(name: &str) -> Scheduler {
    let mut s = Scheduler::with_command(name, "game", &["sleep", "600"]);
    s.port_range = Some(PortRange {
        start: 20000,
        end: 29999,
    });
    s.spec.termination_grace_period = "5s".into();
    s
}

/// Finished operations ran one at a time, in acceptance order.
fn assert_strictly_sequential(view: &OperationsView) {
    for pair in view.finished.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.seq < b.seq,
            "finished out of order: #{} before #{}",
            a.seq,
            b.seq
        );
        assert!(
            b.started_at >= a.finished_at,
            "#{} started before #{} finished",
            b.seq,
            a.seq
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100_concurrent_submissions_runs_in_acceptance_order() -> Result<()> {
    let h = harness("burst").await?;
    // Unique per process: room processes are found by scheduler name machine-wide.
    let name = &format!("burst-{}", std::process::id());
    h.with_worker(async {
        // No health check in the window: the test counts exactly the 100 submitted (a
        // health_controller run among them made it flaky on a slow machine).
        let mut input = SchedulerWorkflowState::new(scheduler(name));
        input.health_check_secs = Some(0);
        h.start(input).await?;
        let submissions = (0..100).map(|_| {
            h.submit(
                name,
                OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
            )
        });
        let accepted: Vec<_> = join_all(submissions)
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let mut seqs: Vec<u64> = accepted.iter().map(|op| op.seq).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (2..=101).collect::<Vec<_>>(),
            "create is #1, then one seq per submission"
        );

        let view = h.drained(name, 100, Duration::from_secs(240)).await?;
        assert_eq!(view.finished.len(), 100, "the last 100 are kept");
        assert_strictly_sequential(&view);
        assert!(
            view.finished
                .iter()
                .all(|op| op.status == OperationStatus::Finished)
        );
        assert_eq!(view.finished.last().map(|op| op.seq), Some(101));
        assert_eq!(h.runtime.list_rooms(name).await?.len(), 100);
        assert_eq!(
            processes_with_env("MAESTRO_SCHEDULER_NAME", name).len(),
            100
        );

        let delete = h
            .submit(name, OperationRequest::DeleteScheduler(Default::default()))
            .await?;
        assert_eq!(delete.seq, 102);
        let refused = h
            .submit(
                name,
                OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
            )
            .await?;
        assert_eq!(refused.status, OperationStatus::Error, "{refused:?}");
        assert!(
            refused
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("being deleted"),
            "{refused:?}"
        );
        eventually(
            Duration::from_secs(120),
            "the scheduler to be deleted",
            || async { h.snapshot(name).await.ok().filter(|s| s.deleted) },
        )
        .await?;
        assert!(h.runtime.list_rooms(name).await?.is_empty());
        assert!(
            processes_with_env("MAESTRO_SCHEDULER_NAME", name).is_empty(),
            "orphan room processes"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_carries_a_non_empty_queue() -> Result<()> {
    let h = harness("can").await?;
    // Unique per process: room processes are found by scheduler name machine-wide.
    let name = &format!("can-{}", std::process::id());
    h.with_worker(async {
        h.create(scheduler(name), 3).await?;
        // A burst far larger than one run's share: the queue is non-empty at every
        // continue-as-new and must come through intact.
        let submissions = (0..20).map(|_| {
            h.submit(
                name,
                OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
            )
        });
        join_all(submissions)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let view = h.drained(name, 21, Duration::from_secs(180)).await?;
        let runs: Vec<(u64, &str)> = view
            .finished
            .iter()
            .map(|op| (op.seq, op.id.as_str()))
            .collect();
        assert_eq!(view.finished.len(), 21, "{runs:?}");
        assert_eq!(
            view.finished.iter().map(|op| op.seq).collect::<Vec<_>>(),
            (1..=21).collect::<Vec<_>>(),
            "every operation once, in order, across runs"
        );
        assert_strictly_sequential(&view);
        // Retries of accepted submissions, runs later: the same operations, nothing new.
        for op in &view.finished[1..4] {
            let request_id = op
                .request_id
                .clone()
                .expect("submissions carry a request id");
            let again = h
                .submit_as(
                    name,
                    OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput {
                        amount: 1,
                    }),
                    &request_id,
                )
                .await?;
            assert_eq!((again.id.as_str(), again.seq), (op.id.as_str(), op.seq));
        }
        let view = h.operations(name).await?;
        assert!(view.pending.is_empty() && view.active.is_none());
        assert_eq!(
            view.finished.len(),
            21,
            "a retried submission enqueues nothing"
        );
        let snapshot = h.snapshot(name).await?;
        assert!(
            snapshot.generation >= 6,
            "expected >= 6 continue-as-new, saw {}",
            snapshot.generation
        );
        assert_eq!(h.runtime.list_rooms(name).await?.len(), 20);
        h.submit(name, OperationRequest::DeleteScheduler(Default::default()))
            .await?;
        eventually(
            Duration::from_secs(120),
            "the scheduler to be deleted",
            || async { h.snapshot(name).await.ok().filter(|s| s.deleted) },
        )
        .await?;
        assert!(processes_with_env("MAESTRO_SCHEDULER_NAME", name).is_empty());
        Ok(())
    })
    .await
}

fn histories_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/histories")
}

fn replayer() -> Result<WorkflowReplayer> {
    let mut options = WorkflowReplayerOptions::new().build();
    register_replayer_workflows(&mut options)?;
    Ok(WorkflowReplayer::new(options)?)
}

/// Replays `histories`; with `MAESTRO_RECORD_HISTORIES=<tag>` first stores each as
/// `{name}-<tag>.json` beside the older ones (record a new set after a patched change; keep
/// the old sets replaying).
async fn record_and_replay(histories: Vec<(String, Vec<u8>)>) -> Result<()> {
    if let Ok(tag) = std::env::var("MAESTRO_RECORD_HISTORIES") {
        for (name, json) in &histories {
            std::fs::write(histories_dir().join(format!("{name}-{tag}.json")), json)?;
        }
    }
    replay_all(histories).await
}

async fn replay_all(histories: Vec<(String, Vec<u8>)>) -> Result<()> {
    let replayer = replayer()?;
    for (name, json) in histories {
        replayer
            .replay_workflow(WorkflowHistory::from_json(&json)?)
            .await
            .map_err(|e| anyhow::anyhow!("{name} no longer replays: {e}"))?;
    }
    Ok(())
}

/// Every history stored under `tests/histories` still replays: a change that would break
/// running workflows fails here. `MAESTRO_RECORD_HISTORIES=<tag>` records a new set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_histories_replay() -> Result<()> {
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(histories_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            stored.push((path.display().to_string(), std::fs::read(&path)?));
        }
    }
    assert!(
        stored.len() >= 4,
        "expected stored histories in {}",
        histories_dir().display()
    );
    replay_all(stored).await
}

/// The names running workflows depend on are the pinned ones, not Rust identifiers.
#[test]
fn stored_histories_use_the_pinned_names() -> Result<()> {
    let read = |file: &str| std::fs::read_to_string(histories_dir().join(file));
    let lifecycle = read("scheduler-lifecycle.json")?;
    for name in [names::SCHEDULER_WORKFLOW, names::UPDATE_SUBMIT_OPERATION] {
        assert!(lifecycle.contains(&format!("\"{name}\"")), "{name} missing");
    }
    // Since operations enter as signals: the set recorded with them carries the signal names.
    let signalled = read("scheduler-lifecycle-signals.json")?;
    assert!(signalled.contains(&format!("\"{}\"", names::SIGNAL_ENQUEUE_OPERATIONS)));
    let cancelled = read("scheduler-cancel-signals.json")?;
    assert!(cancelled.contains(&format!("\"{}\"", names::SIGNAL_CANCEL_OPERATION)));
    let versions = read("scheduler-versions.json")?;
    for kind in ["create_new_scheduler_version", "switch_active_version"] {
        assert!(versions.contains(&format!("\"{kind}\"")), "{kind} missing");
    }
    for (kind, activity) in [
        ("add_rooms", names::ACTIVITY_CREATE_ROOMS),
        ("remove_rooms", names::ACTIVITY_LIST_ROOMS),
        ("remove_rooms", names::ACTIVITY_DELETE_ROOMS),
        ("create_new_scheduler_version", names::ACTIVITY_CREATE_ROOMS),
        ("create_new_scheduler_version", names::ACTIVITY_AWAIT_READY),
        ("create_new_scheduler_version", names::ACTIVITY_DELETE_ROOMS),
    ] {
        assert!(
            lifecycle.contains(&format!("\"{kind}\"")) || versions.contains(&format!("\"{kind}\"")),
            "{kind} missing"
        );
        let child = read(&format!("{}.json", kind.replace('_', "-")))?;
        assert!(
            child.contains(&format!("\"{activity}\"")),
            "{activity} missing from {kind}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_lifecycle_history_replays() -> Result<()> {
    let h = harness("replay").await?;
    // Unique per process: room processes are found by scheduler name machine-wide.
    let name = &format!("replay-{}", std::process::id());
    let histories = h
        .with_worker(async {
            h.create(scheduler(name), 0).await?;
            let add = h
                .submit(
                    name,
                    OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput {
                        amount: 2,
                    }),
                )
                .await?;
            let remove = h
                .submit(
                    name,
                    OperationRequest::RemoveRooms(maestro_core::operation::RemoveRoomsInput {
                        amount: 1,
                        rooms_ids: vec![],
                    }),
                )
                .await?;
            h.drained(name, 3, Duration::from_secs(60)).await?;
            assert_eq!(h.runtime.list_rooms(name).await?.len(), 1);
            let delete = h
                .submit(name, OperationRequest::DeleteScheduler(Default::default()))
                .await?;
            eventually(Duration::from_secs(60), "deletion", || async {
                h.snapshot(name).await.ok().filter(|s| s.deleted)
            })
            .await?;
            let mut histories = vec![(
                "scheduler-lifecycle".to_string(),
                h.history(scheduler_workflow_id(name)).await?,
            )];
            for (kind, op) in [
                ("add-rooms", add),
                ("remove-rooms", remove),
                ("delete-scheduler", delete),
            ] {
                histories.push((
                    kind.to_string(),
                    h.history(operation_workflow_id(name, &op.id)).await?,
                ));
            }
            Ok(histories)
        })
        .await?;
    record_and_replay(histories).await
}

/// Version operations on a real server: a minor change is active at once; a major change
/// whose validation room cannot start is recorded as failed and leaves the active version
/// and the rooms alone; switching back works; the histories replay (and are stored with
/// `MAESTRO_RECORD_HISTORIES=<tag>`, like the lifecycle's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_operations_record_switch_and_replay() -> Result<()> {
    let h = harness("versions").await?;
    let name = &format!("versions-{}", std::process::id());
    // What the gateway's watcher does: a room process that exits shows as an error in the
    // store, which is how validation learns that the room failed.
    let mut events = h.runtime.watch();
    let store = h.store.clone();
    let mirror = tokio::spawn(async move {
        use futures::StreamExt;
        use maestro_runtime::{RoomStore, RuntimeEvent};
        while let Some(event) = events.next().await {
            let now = maestro_core::Timestamp::from_system_time(std::time::SystemTime::now());
            match event {
                RuntimeEvent::Upserted(instance) => {
                    let _ = store.record_instance(&instance, now).await;
                }
                RuntimeEvent::Deleted { scheduler, room_id } => {
                    let _ = store.remove(&scheduler, &room_id).await;
                }
                RuntimeEvent::Resync => {}
            }
        }
    });
    let histories = h
        .with_worker(async {
            h.create(scheduler(name), 0).await?;
            h.submit(
                name,
                OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
            )
            .await?;
            let mut minor = scheduler(name);
            minor.rooms_replicas = 4;
            let minor_op = h
                .submit(
                    name,
                    OperationRequest::CreateNewSchedulerVersion(
                        maestro_core::operation::CreateNewSchedulerVersionInput {
                            scheduler: Box::new(minor),
                        },
                    ),
                )
                .await?;
            let mut broken = scheduler(name);
            broken.spec.containers[0].command = vec!["false".into()];
            let major_op = h
                .submit(
                    name,
                    OperationRequest::CreateNewSchedulerVersion(
                        maestro_core::operation::CreateNewSchedulerVersionInput {
                            scheduler: Box::new(broken),
                        },
                    ),
                )
                .await?;
            let switch_op = h
                .submit(
                    name,
                    OperationRequest::SwitchActiveVersion(
                        maestro_core::operation::SwitchActiveVersionInput {
                            version: maestro_core::Version::FIRST,
                        },
                    ),
                )
                .await?;
            // create, add, minor, the minor's own switch, major (failed), switch back.
            let view = h.drained(name, 6, Duration::from_secs(90)).await?;
            let status = |id: &str| {
                view.finished
                    .iter()
                    .find(|op| op.id == id)
                    .map(|op| (op.status, op.error.clone()))
            };
            assert_eq!(
                status(&minor_op.id).map(|s| s.0),
                Some(OperationStatus::Finished)
            );
            let (major_status, major_error) = status(&major_op.id).unwrap();
            assert_eq!(major_status, OperationStatus::Error);
            assert!(major_error.unwrap().contains("validation room failed"));
            assert_eq!(
                status(&switch_op.id).map(|s| s.0),
                Some(OperationStatus::Finished)
            );
            let snapshot = h.snapshot(name).await?;
            // The minor's own switch was enqueued when the minor finished, behind the
            // major and the client's switch (as Maestro queues it): it runs last.
            assert_eq!(snapshot.scheduler.spec.version, "v1.1.0");
            assert_eq!(snapshot.scheduler.rooms_replicas, 4, "v1.1.0's document");
            let minor_switch = view
                .finished
                .iter()
                .find(|op| op.id == format!("{}-switch", minor_op.id))
                .expect("a minor version is switched to by its own operation");
            assert_eq!(minor_switch.status, OperationStatus::Finished);
            let versions: Vec<(String, bool)> = snapshot
                .versions
                .iter()
                .map(|v| (v.version.to_string(), v.failed.is_some()))
                .collect();
            assert_eq!(
                versions,
                [
                    ("v1.0.0".to_string(), false),
                    ("v1.1.0".to_string(), false),
                    ("v2.0.0".to_string(), true)
                ]
            );
            assert_eq!(
                h.runtime.list_rooms(name).await?.len(),
                1,
                "validation rooms gone"
            );
            let mut histories = vec![(
                "scheduler-versions".to_string(),
                h.history(scheduler_workflow_id(name)).await?,
            )];
            for (kind, op) in [
                ("create-new-scheduler-version", &major_op),
                ("switch-active-version", &switch_op),
            ] {
                histories.push((
                    kind.to_string(),
                    h.history(operation_workflow_id(name, &op.id)).await?,
                ));
            }
            h.submit(name, OperationRequest::DeleteScheduler(Default::default()))
                .await?;
            eventually(Duration::from_secs(60), "deletion", || async {
                h.snapshot(name).await.ok().filter(|s| s.deleted)
            })
            .await?;
            Ok(histories)
        })
        .await?;
    mirror.abort();
    record_and_replay(histories).await
}

/// Cancel: a pending operation leaves the queue at once; the running one (a validation
/// waiting for a room that never reports ready) stops at its next heartbeat, removes its
/// validation room and records nothing; final and unknown operations are refused; the queue
/// goes on. The history replays (stored with `MAESTRO_RECORD_HISTORIES=<tag>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_pending_and_running_operations() -> Result<()> {
    let h = &harness("cancel").await?;
    let name = &format!("cancel-{}", std::process::id());
    let history = h
        .with_worker(async {
            h.create(scheduler(name), 0).await?;
            let running = h.never_ready_version(name, "601").await?;
            let pending = h
                .submit(
                    name,
                    OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput {
                        amount: 1,
                    }),
                )
                .await?;
            eventually(Duration::from_secs(90), "the validation room", || async {
                let rooms = h.runtime.list_rooms(name).await.ok()?;
                (rooms.len() == 1).then_some(())
            })
            .await?;
            h.cancel(name, &pending.id).await?;
            h.cancel(name, &running.id).await?;
            let view = h.drained(name, 3, Duration::from_secs(60)).await?;
            let find = |id: &str| {
                view.finished
                    .iter()
                    .find(|op| op.id == id)
                    .cloned()
                    .unwrap()
            };
            assert_eq!(find(&pending.id).status, OperationStatus::Canceled);
            let stopped = find(&running.id);
            assert_eq!(stopped.status, OperationStatus::Canceled, "{stopped:?}");
            assert!(
                stopped
                    .execution_history
                    .iter()
                    .any(|e| e.event == "canceled while running")
            );
            assert!(
                h.runtime.list_rooms(name).await?.is_empty(),
                "validation room removed"
            );
            let snapshot = h.snapshot(name).await?;
            assert_eq!(
                snapshot.versions.len(),
                1,
                "a cancelled version is not recorded"
            );
            // Cancelling a final or an unknown operation changes nothing (the gateway answers
            // 409/404 before it signals).
            h.cancel(name, &running.id).await?;
            h.cancel(name, "no-such-operation").await?;
            h.submit(
                name,
                OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
            )
            .await?;
            let after = h.operations(name).await?;
            assert_eq!(
                after
                    .finished
                    .iter()
                    .filter(|op| op.status == OperationStatus::Canceled)
                    .count(),
                2
            );
            h.drained(name, 4, Duration::from_secs(60)).await?;
            assert_eq!(
                h.runtime.list_rooms(name).await?.len(),
                1,
                "the queue goes on"
            );
            let history = h.history(scheduler_workflow_id(name)).await?;
            h.submit(name, OperationRequest::DeleteScheduler(Default::default()))
                .await?;
            eventually(Duration::from_secs(60), "deletion", || async {
                h.snapshot(name).await.ok().filter(|s| s.deleted)
            })
            .await?;
            Ok(history)
        })
        .await?;
    record_and_replay(vec![("scheduler-cancel".into(), history)]).await
}

/// A delete accepted while another operation runs shows in the memo (what listings read) at
/// once, not only when its turn comes; the history replays (stored with
/// `MAESTRO_RECORD_HISTORIES=<tag>` as `scheduler-delete-queued-<tag>.json`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_queued_behind_a_running_operation_is_in_the_memo_at_once() -> Result<()> {
    let h = &harness("delete-queued").await?;
    let name = &format!("delete-queued-{}", std::process::id());
    let history = h
        .with_worker(async {
            h.create(scheduler(name), 0).await?;
            // A new version whose validation room never gets ready runs until cancelled.
            let running = h.never_ready_version(name, "602").await?;
            eventually(Duration::from_secs(90), "the validation room", || async {
                let rooms = h.runtime.list_rooms(name).await.ok()?;
                (rooms.len() == 1).then_some(())
            })
            .await?;
            let delete = h
                .submit(name, OperationRequest::DeleteScheduler(Default::default()))
                .await?;
            assert_eq!(delete.status, OperationStatus::Pending, "{delete:?}");
            let memo = eventually(Duration::from_secs(10), "the memo terminating", || async {
                memo_snapshot(h, name)
                    .await
                    .filter(|s| s.scheduler.state == Some(SchedulerState::Terminating))
            })
            .await?;
            assert!(!memo.deleted, "{memo:?}");
            let view = h.operations(name).await?;
            assert_eq!(
                view.active.map(|op| op.id),
                Some(running.id.clone()),
                "the version operation still runs while the memo says terminating"
            );
            h.cancel(name, &running.id).await?;
            eventually(Duration::from_secs(60), "deletion", || async {
                h.snapshot(name).await.ok().filter(|s| s.deleted)
            })
            .await?;
            h.history(scheduler_workflow_id(name)).await
        })
        .await?;
    record_and_replay(vec![("scheduler-delete-queued".into(), history)]).await
}

/// The snapshot the scheduler workflow last wrote to its memo, if any.
async fn memo_snapshot(h: &Harness, name: &str) -> Option<SchedulerSnapshot> {
    memo_value(h, name, names::MEMO_SNAPSHOT).await
}

/// The value under `key` the scheduler workflow last wrote to its memo, if any.
async fn memo_value<T: serde::de::DeserializeOwned>(
    h: &Harness,
    name: &str,
    key: &str,
) -> Option<T> {
    let description = h
        .handle(name)
        .describe(WorkflowDescribeOptions::default())
        .await
        .ok()?;
    let memo = description.raw_description.workflow_execution_info?.memo?;
    let payload = memo.fields.get(key)?;
    serde_json::from_slice(&payload.data).ok()
}

/// The memo's operations mark says busy while an operation runs and names the last one to
/// finish once idle (what lets the Metrics Reporter skip querying idle schedulers); the
/// history replays (stored with `MAESTRO_RECORD_HISTORIES=<tag>` as
/// `operations-busy-idle-<tag>.json`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memo_marks_operations_busy_then_last_finished() -> Result<()> {
    let h = &harness("operations-mark").await?;
    let name = &format!("operations-mark-{}", std::process::id());
    let mark = || memo_value::<OperationsMark>(h, name, names::MEMO_OPERATIONS);
    let history = h
        .with_worker(async {
            h.create(scheduler(name), 0).await?;
            // Whatever the start ran (or nothing), once idle the mark names its last one.
            let before = eventually(Duration::from_secs(30), "an idle workflow", || async {
                let view = h.operations(name).await.ok()?;
                (view.active.is_none() && view.pending.is_empty())
                    .then(|| view.finished.last().map(|op| op.id.clone()))
            })
            .await?;
            eventually(Duration::from_secs(10), "an idle mark", || async {
                mark()
                    .await
                    .filter(|m| !m.busy && m.last_finished == before)
            })
            .await?;
            // A new version whose validation room never gets ready runs until cancelled.
            let running = h.never_ready_version(name, "603").await?;
            let busy = eventually(Duration::from_secs(30), "a busy mark", || async {
                mark().await.filter(|m| m.busy)
            })
            .await?;
            assert_eq!(busy.last_finished, before, "nothing else finished");
            h.cancel(name, &running.id).await?;
            let after = eventually(Duration::from_secs(60), "idle again", || async {
                mark().await.filter(|m| !m.busy)
            })
            .await?;
            assert_eq!(after.last_finished, Some(running.id.clone()), "{after:?}");
            h.history(scheduler_workflow_id(name)).await
        })
        .await?;
    record_and_replay(vec![("operations-busy-idle".into(), history)]).await
}

/// The health controller runs on its interval (a timer in the scheduler workflow), converges
/// to `roomsReplicas` and removes a room in error; the histories replay (stored with
/// `MAESTRO_RECORD_HISTORIES=<tag>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_run_on_their_interval_and_replay() -> Result<()> {
    let h = &harness("health").await?;
    let name = &format!("health-{}", std::process::id());
    let histories = h
        .with_worker(async {
            let mut s = scheduler(name);
            s.rooms_replicas = 2;
            let mut input = SchedulerWorkflowState::new(s);
            input.health_check_secs = Some(1);
            h.start(input).await?;
            eventually(
                Duration::from_secs(60),
                "2 rooms from the health controller",
                || async { (h.runtime.list_rooms(name).await.ok()?.len() == 2).then_some(()) },
            )
            .await?;
            let view = eventually(Duration::from_secs(60), "a few health checks", || async {
                let view = h.operations(name).await.ok()?;
                let runs = view
                    .finished
                    .iter()
                    .filter(|op| op.definition_name == "health_controller")
                    .count();
                (runs >= 3).then_some(view)
            })
            .await?;
            let first = view
                .finished
                .iter()
                .find(|op| op.definition_name == "health_controller")
                .cloned()
                .unwrap();
            let mut histories = vec![(
                "scheduler-health".to_string(),
                h.history(scheduler_workflow_id(name)).await?,
            )];
            histories.push((
                "health-controller".to_string(),
                h.history(operation_workflow_id(name, &first.id)).await?,
            ));
            h.submit(name, OperationRequest::DeleteScheduler(Default::default()))
                .await?;
            eventually(Duration::from_secs(60), "deletion", || async {
                h.snapshot(name).await.ok().filter(|s| s.deleted)
            })
            .await?;
            assert!(h.runtime.list_rooms(name).await?.is_empty());
            Ok(histories)
        })
        .await?;
    record_and_replay(histories).await
}
