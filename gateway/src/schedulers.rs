//! The gateway's view of scheduler workflows: start them, submit and cancel operations as
//! signals, read them with queries (or the memo). Maps Temporal's answers to API errors.

mod lease;
mod memo;

use memo::{decode_mark, decode_snapshot};

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use maestro_core::naming::{
    operation_workflow_id, scheduler_of_workflow_id, scheduler_workflow_id,
};
use maestro_core::operation::{DeleteSchedulerInput, Rejection};
use maestro_core::{Operation, OperationRequest, Scheduler, SchedulerState, Timestamp};
use maestro_workflows::{
    ChildInput, OperationsMark, OperationsView, SchedulerSnapshot, SchedulerWorkflow,
    SchedulerWorkflowState, SubmitOperation, mark_created, names, search_attributes,
};
use temporalio_client::errors::{WorkflowInteractionError, WorkflowQueryError, WorkflowStartError};
use temporalio_client::{
    Client, RpcOptions, WorkflowDescribeOptions, WorkflowHandle, WorkflowListOptions,
    WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions, WorkflowTerminateOptions,
};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use temporalio_common::protos::temporal::api::workflow::v1::WorkflowExecutionInfo;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeWorkflowExecutionResponse;
use tracing::{debug, info, warn};

use crate::error::{ApiError, ErrorCode};
use crate::submissions::Submissions;

/// Which source answered a read; the API says it in the `x-maestro-read-source` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadSource {
    /// The scheduler workflow itself, through a query: current.
    Query,
    /// The memo recorded after the last change: current unless an operation is running.
    Memo,
}

impl ReadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Memo => "memo",
        }
    }
}

/// Bound on one page of a visibility listing. Longer than a query's: a listing has no memo
/// to fall back to, and visibility reads slow down most while a burst of creations runs.
const LIST_TIMEOUT: Duration = Duration::from_secs(15);

/// One scheduler as a listing shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub snapshot: SchedulerSnapshot,
    /// What its memo says of its operations; `None` for a workflow recorded before the memo
    /// had the mark (readers must then ask the workflow).
    pub operations: Option<OperationsMark>,
}

#[derive(Clone)]
pub struct SchedulerClient {
    client: Client,
    task_queue: String,
    query_timeout: Duration,
    /// Health-check interval given to schedulers created through this client.
    health_check: Option<Duration>,
    /// Operations per workflow run given to schedulers created through this client.
    continue_as_new_every: u32,
    /// Submissions on their way, grouped per scheduler into one signal.
    submissions: Submissions,
    /// The namespace has Maestro's search attributes: schedulers and their operations carry
    /// them (`crate::search_attributes`).
    search_attributes: bool,
}

impl SchedulerClient {
    pub fn new(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            client,
            task_queue: task_queue.into(),
            // Long enough for a busy worker, short enough that reads fall back to the memo
            // quickly while no worker is up.
            query_timeout: Duration::from_secs(3),
            health_check: None,
            continue_as_new_every: 0,
            submissions: Submissions::default(),
            search_attributes: false,
        }
    }

    /// Schedulers and operations from now on carry Maestro's search attributes; only once
    /// the namespace has them (`crate::search_attributes::available`).
    pub fn with_search_attributes(mut self, available: bool) -> Self {
        self.search_attributes = available;
        self
    }

    /// Schedulers created from now on continue as new every `operations` operations (0: the
    /// workflow's default).
    pub fn with_continue_as_new_every(mut self, operations: u32) -> Self {
        self.continue_as_new_every = operations;
        self
    }

    /// Schedulers created from now on run their health controller every `interval`
    /// (Maestro's default: 1 min); zero turns it off.
    pub fn with_health_check(mut self, interval: Duration) -> Self {
        self.health_check = Some(interval);
        self
    }

    fn handle(&self, name: &str) -> WorkflowHandle<Client, SchedulerWorkflow> {
        // No run id: the handle follows continue-as-new to the current run.
        self.client
            .get_workflow_handle::<SchedulerWorkflow>(scheduler_workflow_id(name))
    }

    /// Starts the scheduler's workflow; 409 when a scheduler of that name exists. Answers
    /// the scheduler as the workflow holds it from its first task on (`mark_created`, with
    /// `createdAt` stamped here and carried in the input), so the caller needs no read-back:
    /// that waited for a worker to run the first task.
    pub async fn create(&self, mut scheduler: Scheduler) -> Result<Scheduler, ApiError> {
        let now = crate::now();
        mark_created(&mut scheduler, now);
        let name = scheduler.name.clone();
        let state = SchedulerWorkflowState {
            health_check_secs: self
                .health_check
                .map(|d| d.as_secs().max(u64::from(!d.is_zero()))),
            continue_as_new_every: self.continue_as_new_every,
            search_attributes: self.search_attributes,
            ..SchedulerWorkflowState::new(scheduler.clone())
        };
        // The memo the workflow's first task writes, already at the start: a scheduler is
        // listed (and readable without a worker) from the moment its creation is answered.
        // The operation id does not show in the snapshot.
        let mut memo = temporalio_common::MemoValues::new();
        memo.insert(
            names::MEMO_SNAPSHOT,
            state.clone().started(String::new(), now).snapshot(),
        );
        let options = WorkflowStartOptions::new(&self.task_queue, scheduler_workflow_id(&name))
            .memo(memo)
            .static_summary(format!("scheduler {name} of game {}", scheduler.game))
            .maybe_search_attributes(
                self.search_attributes
                    .then(|| search_attributes::of_scheduler(&name, &scheduler.game)),
            )
            .build();
        match self
            .client
            .start_workflow(SchedulerWorkflow::run, state, options)
            .await
        {
            Ok(_) => {
                info!(scheduler = %name, "scheduler created");
                Ok(scheduler)
            }
            Err(WorkflowStartError::AlreadyStarted { .. }) => Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("scheduler {name} already exists"),
            )),
            Err(e) => Err(temporal_unavailable(e)),
        }
    }

    /// The scheduler as its workflow holds it; 404 when it does not exist or was deleted.
    pub async fn snapshot(&self, name: &str) -> Result<SchedulerSnapshot, ApiError> {
        self.read_snapshot(name).await.map(|(snapshot, _)| snapshot)
    }

    /// Like [`Self::snapshot`], saying which source answered: the workflow's query, or — when
    /// no worker answers within the query timeout — the memo the workflow last recorded.
    pub async fn read_snapshot(
        &self,
        name: &str,
    ) -> Result<(SchedulerSnapshot, ReadSource), ApiError> {
        let queried = self
            .handle(name)
            .query(SchedulerWorkflow::get_scheduler, (), self.query_options())
            .await;
        let (snapshot, source) = match queried {
            Ok(snapshot) => (snapshot, ReadSource::Query),
            Err(WorkflowQueryError::NotFound(_)) => return Err(scheduler_not_found(name)),
            Err(e) => {
                warn!(scheduler = %name, error = %e, "query unanswered; reading the memo");
                (self.memo_snapshot(name).await?, ReadSource::Memo)
            }
        };
        if snapshot.deleted {
            return Err(scheduler_not_found(name));
        }
        Ok((snapshot, source))
    }

    async fn memo_snapshot(&self, name: &str) -> Result<SchedulerSnapshot, ApiError> {
        let description = self.describe(name).await?;
        let info = description.workflow_execution_info.as_ref();
        // A scheduler's workflow closes only when it is deleted (or terminated to delete it).
        if info.is_some_and(|i| i.status != WorkflowExecutionStatus::Running as i32) {
            return Err(scheduler_not_found(name));
        }
        let mut snapshot =
            decode_snapshot(info.and_then(|i| i.memo.as_ref())).unwrap_or_else(|| {
                Err(ApiError::unavailable(format!(
                    "no worker answered for scheduler {name} and it has no recorded snapshot yet"
                )))
            })?;
        if let Some(problem) = workflow_problem(&description) {
            warn!(scheduler = %name, problem = %problem, "the scheduler's workflow cannot make progress");
            snapshot.scheduler.state = Some(SchedulerState::OnError);
        }
        Ok(snapshot)
    }

    async fn describe(&self, name: &str) -> Result<DescribeWorkflowExecutionResponse, ApiError> {
        let options = WorkflowDescribeOptions::builder()
            .rpc_options(RpcOptions::builder().timeout(self.query_timeout).build())
            .build();
        self.handle(name)
            .describe(options)
            .await
            .map(|d| d.raw_description)
            .map_err(|e| match e {
                WorkflowInteractionError::NotFound(_) => scheduler_not_found(name),
                other => temporal_unavailable(other),
            })
    }

    /// Why the scheduler's workflow cannot make progress (its workflow tasks keep failing:
    /// a nondeterminism after a deploy, a bug), or `None` while it can.
    pub async fn workflow_problem(&self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(workflow_problem(&self.describe(name).await?))
    }

    /// Deletes a scheduler whose workflow cannot run: the workflow is terminated (its history
    /// stays, for the post-mortem) and a standalone `delete_scheduler` workflow removes the
    /// rooms and the runtime's resources, as the operation would have. Answers its id.
    pub async fn delete_bypassing_workflow(
        &self,
        scheduler: Scheduler,
        problem: &str,
    ) -> Result<String, ApiError> {
        let name = scheduler.name.clone();
        let reason = format!("deleted through the API while its workflow was stuck: {problem}");
        match self
            .handle(&name)
            .terminate(WorkflowTerminateOptions::builder().reason(reason).build())
            .await
        {
            Ok(()) | Err(WorkflowInteractionError::NotFound(_)) => {}
            Err(e) => return Err(temporal_unavailable(e)),
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        let operation = Operation::pending(
            id.clone(),
            0,
            &name,
            DeleteSchedulerInput {}.into(),
            None,
            now,
        );
        let options =
            WorkflowStartOptions::new(&self.task_queue, operation_workflow_id(&name, &id))
                .static_summary(format!(
                    "delete_scheduler of {name} (its workflow was stuck)"
                ))
                .maybe_search_attributes(self.search_attributes.then(|| {
                    search_attributes::of_operation(&name, &scheduler.game, "delete_scheduler")
                }))
                .build();
        self.client
            .start_workflow(
                maestro_workflows::operations::DeleteScheduler::run,
                ChildInput {
                    operation: (&operation).into(),
                    scheduler,
                    request: DeleteSchedulerInput {},
                },
                options,
            )
            .await
            .map_err(temporal_unavailable)?;
        warn!(scheduler = %name, operation = %id, problem = %problem, "stuck scheduler workflow terminated; deleting its rooms directly");
        Ok(id)
    }

    /// Every live scheduler, from Temporal visibility and the snapshot each workflow keeps in
    /// its memo (set when the workflow is started): one listing call per page, no query per
    /// scheduler. A workflow without a snapshot is left out.
    pub async fn list(&self) -> Result<Vec<SchedulerSnapshot>, ApiError> {
        Ok(self
            .listed()
            .await?
            .into_iter()
            .map(|l| l.snapshot)
            .collect())
    }

    /// [`Self::list`] with each scheduler's operations mark, where its memo has one.
    pub async fn listed(&self) -> Result<Vec<Listed>, ApiError> {
        let query = running_schedulers();
        let options = WorkflowListOptions::builder()
            .rpc_options(RpcOptions::builder().timeout(LIST_TIMEOUT).build())
            .build();
        let mut executions = self.client.list_workflows(query, options);
        let mut schedulers = Vec::new();
        while let Some(execution) = executions.next().await {
            let execution = execution.map_err(temporal_unavailable)?;
            let memo = execution.raw().memo.as_ref();
            match decode_snapshot(memo) {
                Some(Ok(mut snapshot)) if !snapshot.deleted => {
                    if let Some(problems) = reported_problems(execution.raw()) {
                        debug!(workflow = execution.id(), problems = %problems, "scheduler workflow reported problems");
                        snapshot.scheduler.state = Some(SchedulerState::OnError);
                    }
                    schedulers.push(Listed {
                        snapshot,
                        operations: decode_mark(memo),
                    })
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    warn!(workflow = execution.id(), error = %e, "unreadable scheduler snapshot")
                }
                None => debug!(workflow = execution.id(), "scheduler has no snapshot yet"),
            }
        }
        schedulers.sort_by(|a, b| a.snapshot.scheduler.name.cmp(&b.snapshot.scheduler.name));
        Ok(schedulers)
    }

    pub async fn operations(&self, name: &str) -> Result<OperationsView, ApiError> {
        let view = self
            .handle(name)
            .query(SchedulerWorkflow::get_operations, (), self.query_options())
            .await
            .map_err(|e| query_error(name, e))?;
        if view.deleted {
            return Err(scheduler_not_found(name));
        }
        Ok(view)
    }

    /// Names of the (at most 20 first) schedulers Temporal reports as unable to make
    /// progress: their workflow tasks keep failing (`TemporalReportedProblems`).
    pub async fn stuck_schedulers(&self) -> Result<Vec<String>, ApiError> {
        let query = format!(
            "{} AND TemporalReportedProblems IS NOT NULL",
            running_schedulers()
        );
        let options = WorkflowListOptions::builder()
            .limit(20)
            .rpc_options(RpcOptions::builder().timeout(self.query_timeout).build())
            .build();
        let mut executions = self.client.list_workflows(query, options);
        let mut stuck = Vec::new();
        while let Some(execution) = executions.next().await {
            let execution = execution.map_err(temporal_unavailable)?;
            let id = execution.id();
            stuck.push(scheduler_of_workflow_id(id).unwrap_or(id).to_string());
        }
        Ok(stuck)
    }

    /// Ok when Temporal answers a visibility call within the query timeout (the same call
    /// readiness makes, see [`Self::stuck_schedulers`]).
    pub async fn temporal_ready(&self) -> Result<(), ApiError> {
        self.stuck_schedulers().await.map(|_| ())
    }

    /// Submits an operation and answers its id as soon as Temporal holds it durably: a
    /// signal (shared with the submissions to the same scheduler arriving meanwhile, see
    /// [`Submissions`]), which the scheduler workflow appends to its queue in the order
    /// Temporal recorded it. No worker takes part, so a busy or replaying worker never slows
    /// or refuses an acceptance (see `docs/reliability.md`, "Why signals").
    ///
    /// With an `idempotency_key` the id is derived from the key and the request: a retry
    /// gets the same id and enqueues nothing; the same key with another request is 409.
    /// Answers within [`SUBMIT_BOUND`], else 503 — a submission answered 503 may still have
    /// been recorded, which a retry with the same key resolves.
    pub async fn submit(
        &self,
        name: &str,
        request: OperationRequest,
        idempotency_key: Option<String>,
    ) -> Result<String, ApiError> {
        request.validate()?;
        let started = std::time::Instant::now();
        let kind = request.kind().definition_name();
        let operation_id = match &idempotency_key {
            Some(key) => keyed_operation_id(name, key, &request),
            None => uuid::Uuid::new_v4().to_string(),
        };
        if let Some(key) = &idempotency_key
            && let Some(existing) = self.operation_with_key(name, key).await?
        {
            if existing == operation_id {
                return Ok(operation_id);
            }
            return Err(ApiError::field(
                ErrorCode::FailedPrecondition,
                IDEMPOTENCY_KEY,
                format!(
                    "{key:?} was already used for operation {existing} with a different request"
                ),
            ));
        }
        let submission = SubmitOperation {
            request,
            request_id: idempotency_key.unwrap_or_default(),
            operation_id: operation_id.clone(),
            search_attributes: self.search_attributes,
        };
        let (client, scheduler) = (self.clone(), name.to_string());
        let send = move |batch: Vec<SubmitOperation>| {
            let (client, scheduler) = (client.clone(), scheduler.clone());
            async move {
                // Temporal dedupes a retried signal by its request id: the batch's ids.
                let ids: Vec<&str> = batch.iter().map(|s| s.operation_id.as_str()).collect();
                let request_id =
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, ids.join("\n").as_bytes());
                debug!(scheduler = %scheduler, submissions = batch.len(), "sending a batch");
                client
                    .signal(
                        &scheduler,
                        || SchedulerWorkflow::enqueue_operations,
                        batch,
                        &request_id.to_string(),
                    )
                    .await
            }
        };
        // The key check above counts against the bound too.
        let left = SUBMIT_BOUND
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        self.submissions
            .submit(name, submission, left, send)
            .await?;
        info!(scheduler = %name, operation = %operation_id, %kind, "operation accepted");
        Ok(operation_id)
    }

    /// The id of the operation the workflow holds for `key`, if any. Unanswered (no worker
    /// within the query timeout) counts as none: the workflow refuses a reused key itself.
    async fn operation_with_key(&self, name: &str, key: &str) -> Result<Option<String>, ApiError> {
        match self.operations(name).await {
            Ok(view) => Ok(view
                .pending
                .into_iter()
                .chain(view.active)
                .chain(view.finished)
                .find(|op| op.request_id.as_deref() == Some(key))
                .map(|op| op.id)),
            Err(e) if e.code == ErrorCode::NotFound => Err(e),
            Err(e) => {
                debug!(scheduler = %name, error = %e.message, "idempotency key not checked; the workflow checks it");
                Ok(None)
            }
        }
    }

    /// Cancels a pending operation (removed from the queue) or the running one (stopped at
    /// its next heartbeat). 404 for an unknown operation, 409 for a final one.
    pub async fn cancel(&self, name: &str, operation_id: &str) -> Result<(), ApiError> {
        match self.operations(name).await {
            Ok(view) => {
                let open = view.pending.iter().chain(view.active.iter());
                if let Some(refusal) =
                    Rejection::of_cancel(name, operation_id, open, view.finished.iter())
                {
                    return Err(refusal.into());
                }
            }
            Err(e) if e.code == ErrorCode::NotFound => return Err(e),
            // No worker answered: the workflow ignores a cancel it cannot apply.
            Err(_) => {}
        }
        let request_id = format!("cancel-{operation_id}");
        self.signal(
            name,
            || SchedulerWorkflow::request_cancel,
            operation_id.to_string(),
            &request_id,
        )
        .await?;
        info!(scheduler = %name, operation = %operation_id, "operation cancel requested");
        Ok(())
    }

    /// Sends one signal, retrying what Temporal refused before recording it (same request
    /// id: Temporal dedupes it) for at most [`SUBMIT_BOUND`].
    async fn signal<S>(
        &self,
        name: &str,
        signal: impl Fn() -> S,
        input: S::Input,
        request_id: &str,
    ) -> Result<(), ApiError>
    where
        S: temporalio_common::SignalDefinition<
                Workflow = <SchedulerWorkflow as temporalio_common::HasWorkflowDefinition>::Run,
            >,
        S::Input: Clone + Send,
    {
        let send = || async {
            let options = WorkflowSignalOptions::builder()
                .request_id(request_id.to_string())
                .rpc_options(RpcOptions::builder().timeout(SIGNAL_TIMEOUT).build())
                .build();
            self.handle(name)
                .signal(signal(), input.clone(), options)
                .await
        };
        let sent = send.retry(transient_backoff()).when(is_transient).notify(
            |e, delay| debug!(scheduler = %name, error = %e, delay_ms = delay.as_millis(), "signal refused; retrying"),
        );
        match tokio::time::timeout(SUBMIT_BOUND, sent).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(WorkflowInteractionError::NotFound(_))) => Err(scheduler_not_found(name)),
            Ok(Err(WorkflowInteractionError::Rpc(status)))
                if status.code() == tonic::Code::ResourceExhausted =>
            {
                warn!(scheduler = %name, error = %status.message(), "Temporal refused the signal: too many");
                Err(ApiError::new(
                    ErrorCode::ResourceExhausted,
                    format!("scheduler {name} is receiving too much at once; retry later"),
                ))
            }
            Ok(Err(e)) => Err(temporal_unavailable(e)),
            Err(_) => {
                warn!(scheduler = %name, bound_ms = SUBMIT_BOUND.as_millis(), "no answer from Temporal in time");
                Err(ApiError::unavailable(format!(
                    "Temporal did not confirm the submission to scheduler {name} in time; \
                     retry (with the same Idempotency-Key, it is applied once)"
                )))
            }
        }
    }

    fn query_options(&self) -> WorkflowQueryOptions {
        WorkflowQueryOptions::builder()
            .rpc_options(RpcOptions::builder().timeout(self.query_timeout).build())
            .build()
    }
}

/// The longest a submission waits for Temporal before the client gets a 503.
pub const SUBMIT_BOUND: Duration = Duration::from_secs(8);
/// One signal call's timeout (the bound allows a few).
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(3);
/// The header whose value keys idempotent submissions.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Refusals that happen before Temporal records anything, worth sending again: overload
/// (`ResourceExhausted`), an unreachable or restarting frontend (`Unavailable`), a timed-out
/// call (`DeadlineExceeded`; the request id makes a repeat harmless).
fn is_transient(e: &WorkflowInteractionError) -> bool {
    matches!(e, WorkflowInteractionError::Rpc(status) if matches!(
        status.code(),
        tonic::Code::ResourceExhausted | tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    ))
}

fn transient_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(800))
        .with_max_times(10)
        .with_jitter()
}

/// A submission's id derived from its idempotency key and its request: the same request
/// sent again gets the same id; another request under the same key gets another id, which
/// the workflow refuses by the key.
fn keyed_operation_id(scheduler: &str, key: &str, request: &OperationRequest) -> String {
    let request = serde_json::to_string(request).unwrap_or_default();
    let name = format!("{scheduler}\n{key}\n{request}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// The visibility query for every running scheduler workflow.
fn running_schedulers() -> String {
    format!(
        "WorkflowType = '{}' AND ExecutionStatus = 'Running'",
        names::SCHEDULER_WORKFLOW
    )
}

/// Failed workflow task attempts after which a scheduler's workflow counts as stuck (one or
/// two happen when a worker dies mid-task).
const STUCK_AFTER_ATTEMPTS: i32 = 3;

/// What Temporal itself flags on a workflow whose tasks keep failing
/// (`TemporalReportedProblems`, e.g. `category=WorkflowTaskFailed`,
/// `cause=WorkflowTaskFailedCauseNonDeterministicError`).
fn reported_problems(info: &WorkflowExecutionInfo) -> Option<String> {
    let payload = info
        .search_attributes
        .as_ref()?
        .indexed_fields
        .get("TemporalReportedProblems")?;
    let problems: Vec<String> = serde_json::from_slice(&payload.data).ok()?;
    (!problems.is_empty()).then(|| problems.join(", "))
}

fn workflow_problem(description: &DescribeWorkflowExecutionResponse) -> Option<String> {
    let info = description.workflow_execution_info.as_ref()?;
    if info.status != WorkflowExecutionStatus::Running as i32 {
        return None;
    }
    if let Some(problems) = reported_problems(info) {
        return Some(problems);
    }
    let attempt = description.pending_workflow_task.as_ref()?.attempt;
    (attempt >= STUCK_AFTER_ATTEMPTS)
        .then(|| format!("its workflow task failed {} times in a row", attempt - 1))
}

pub(crate) fn scheduler_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("scheduler {name} not found"))
}

fn temporal_unavailable(e: impl std::fmt::Display) -> ApiError {
    warn!(error = %e, "Temporal call failed");
    ApiError::unavailable(format!("Temporal is unavailable: {e}"))
}

fn query_error(name: &str, e: WorkflowQueryError) -> ApiError {
    match e {
        WorkflowQueryError::NotFound(_) => scheduler_not_found(name),
        other => temporal_unavailable(other),
    }
}
