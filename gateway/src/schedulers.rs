//! The gateway's view of scheduler workflows: start them, submit operations as updates,
//! read them with queries. Maps Temporal's answers to API errors.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use maestro_core::naming::scheduler_workflow_id;
use maestro_core::{Operation, OperationRequest, Scheduler};
use maestro_workflows::{
    OperationsView, Rejection, RejectionCode, SchedulerSnapshot, SchedulerWorkflow,
    SchedulerWorkflowInput, SubmitOperation, names,
};
use temporalio_client::errors::{
    WorkflowInteractionError, WorkflowQueryError, WorkflowStartError, WorkflowUpdateError,
};
use temporalio_client::{
    Client, RpcOptions, WorkflowCountOptions, WorkflowDescribeOptions,
    WorkflowExecuteUpdateOptions, WorkflowHandle, WorkflowListOptions, WorkflowQueryOptions,
    WorkflowStartOptions,
};
use tracing::{debug, info, warn};

use crate::error::{ApiError, ErrorCode};

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

#[derive(Clone)]
pub struct SchedulerClient {
    client: Client,
    task_queue: String,
    query_timeout: Duration,
    /// Health-check interval given to schedulers created through this client.
    health_check: Option<Duration>,
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
        }
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

    /// Starts the scheduler's workflow; 409 when a scheduler of that name exists.
    pub async fn create(&self, scheduler: Scheduler) -> Result<(), ApiError> {
        let name = scheduler.name.clone();
        let options = WorkflowStartOptions::new(&self.task_queue, scheduler_workflow_id(&name))
            .static_summary(format!("scheduler {name} of game {}", scheduler.game))
            .build();
        match self
            .client
            .start_workflow(
                SchedulerWorkflow::run,
                SchedulerWorkflowInput {
                    health_check_secs: self
                        .health_check
                        .map(|d| d.as_secs().max(u64::from(!d.is_zero()))),
                    ..SchedulerWorkflowInput::new(scheduler)
                },
                options,
            )
            .await
        {
            Ok(_) => {
                info!(scheduler = %name, "scheduler created");
                Ok(())
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
        let description = self
            .handle(name)
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(|e| match e {
                WorkflowInteractionError::NotFound(_) => scheduler_not_found(name),
                other => temporal_unavailable(other),
            })?;
        let memo = description
            .raw_description
            .workflow_execution_info
            .as_ref()
            .and_then(|info| info.memo.as_ref());
        decode_snapshot(memo).unwrap_or_else(|| {
            Err(ApiError::unavailable(format!(
                "no worker answered for scheduler {name} and it has no recorded snapshot yet"
            )))
        })
    }

    /// Every live scheduler, from Temporal visibility and the snapshot each workflow keeps in
    /// its memo: one listing call per page, no query per scheduler. A scheduler no worker
    /// has run yet has no snapshot and is left out.
    pub async fn list(&self) -> Result<Vec<SchedulerSnapshot>, ApiError> {
        let query = format!(
            "WorkflowType = '{}' AND ExecutionStatus = 'Running'",
            names::SCHEDULER_WORKFLOW
        );
        let options = WorkflowListOptions::builder()
            .rpc_options(RpcOptions::builder().timeout(self.query_timeout).build())
            .build();
        let mut executions = self.client.list_workflows(query, options);
        let mut schedulers = Vec::new();
        while let Some(execution) = executions.next().await {
            let execution = execution.map_err(temporal_unavailable)?;
            match decode_snapshot(execution.raw().memo.as_ref()) {
                Some(Ok(snapshot)) if !snapshot.deleted => schedulers.push(snapshot),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    warn!(workflow = execution.id(), error = %e, "unreadable scheduler snapshot")
                }
                None => debug!(workflow = execution.id(), "scheduler has no snapshot yet"),
            }
        }
        schedulers.sort_by(|a, b| a.scheduler.name.cmp(&b.scheduler.name));
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

    /// Ok when Temporal answers a visibility call within the query timeout.
    pub async fn temporal_ready(&self) -> Result<(), ApiError> {
        let options = WorkflowCountOptions::builder()
            .rpc_options(RpcOptions::builder().timeout(self.query_timeout).build())
            .build();
        self.client
            .count_workflows(
                format!("WorkflowType = '{}'", names::SCHEDULER_WORKFLOW),
                options,
            )
            .await
            .map(|_| ())
            .map_err(temporal_unavailable)
    }

    /// Submits an operation; returns it as accepted (with its id).
    /// `request_id` makes retries idempotent: a repeated id returns the first operation.
    pub async fn submit(
        &self,
        name: &str,
        request: OperationRequest,
        request_id: Option<String>,
    ) -> Result<Operation, ApiError> {
        request.validate()?;
        let kind = request.kind().definition_name();
        let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let submit = || async {
            // The same id as the update id: Temporal dedupes within a run, the workflow
            // across runs, so retrying is safe.
            let options = WorkflowExecuteUpdateOptions::builder()
                .update_id(request_id.clone())
                .build();
            let submission = SubmitOperation {
                request: request.clone(),
                request_id: request_id.clone(),
            };
            self.handle(name)
                .execute_update(SchedulerWorkflow::submit_operation, submission, options)
                .await
        };
        let operation = submit
            .retry(busy_backoff())
            .when(is_retryable)
            .notify(|_, delay| {
                debug!(scheduler = %name, ?delay, "submission refused before acceptance; retrying")
            })
            .await
            .map_err(|e| update_error(name, e))?;
        info!(scheduler = %name, operation = %operation.id, kind, seq = operation.seq, "operation accepted");
        Ok(operation)
    }

    /// Cancels a pending operation (removed from the queue) or the running one (stopped at
    /// its next heartbeat). 404 for an unknown operation, 409 for a final one.
    pub async fn cancel(&self, name: &str, operation_id: &str) -> Result<(), ApiError> {
        let cancel = || async {
            // A fresh update id per try is fine: cancelling twice is harmless.
            self.handle(name)
                .execute_update(
                    SchedulerWorkflow::cancel_operation,
                    operation_id.to_string(),
                    WorkflowExecuteUpdateOptions::default(),
                )
                .await
        };
        cancel
            .retry(busy_backoff())
            .when(is_retryable)
            .await
            .map_err(|e| update_error(name, e))?;
        info!(scheduler = %name, operation = %operation_id, "operation cancel requested");
        Ok(())
    }

    fn query_options(&self) -> WorkflowQueryOptions {
        WorkflowQueryOptions::builder()
            .rpc_options(RpcOptions::builder().timeout(self.query_timeout).build())
            .build()
    }
}

/// Submissions the server refused before accepting them, which are safe to send again
/// (the request id dedupes): past the in-flight update limit per workflow (10 by default,
/// `ResourceExhausted`), or aborted before acceptance, e.g. when a workflow task timed out
/// under load (`Unavailable`). The SDK client retries some of this itself; its budget was
/// seen to run out under heavy load, hence a longer one here.
fn is_retryable(e: &WorkflowUpdateError) -> bool {
    matches!(e, WorkflowUpdateError::Rpc(status)
        if matches!(status.code(), tonic::Code::ResourceExhausted | tonic::Code::Unavailable))
}

/// About 15 s of retries in all before the caller gets a 503.
fn busy_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(20)
        .with_jitter()
}

/// The snapshot a scheduler workflow keeps in its memo, if it wrote one.
fn decode_snapshot(
    memo: Option<&temporalio_common::protos::temporal::api::common::v1::Memo>,
) -> Option<Result<SchedulerSnapshot, ApiError>> {
    let payload = memo?.fields.get(names::MEMO_SNAPSHOT)?;
    Some(serde_json::from_slice(&payload.data).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("a recorded scheduler snapshot is unreadable: {e}"),
        )
    }))
}

fn scheduler_not_found(name: &str) -> ApiError {
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

fn update_error(name: &str, e: WorkflowUpdateError) -> ApiError {
    match e {
        WorkflowUpdateError::NotFound(_) => scheduler_not_found(name),
        WorkflowUpdateError::Failed(failure) => match failure.message.parse::<Rejection>() {
            Ok(Rejection {
                code: RejectionCode::Invalid,
                message,
            }) => ApiError::new(ErrorCode::InvalidArgument, message),
            Ok(Rejection {
                code: RejectionCode::Conflict,
                message,
            }) => ApiError::new(ErrorCode::FailedPrecondition, message),
            Ok(Rejection {
                code: RejectionCode::NotFound,
                message,
            }) => ApiError::not_found(message),
            // A closed workflow refuses updates: the scheduler was deleted.
            Err(_) if failure.message.contains("completed") => scheduler_not_found(name),
            Err(_) => ApiError::new(ErrorCode::Internal, failure.message),
        },
        e if is_retryable(&e) => ApiError::unavailable(format!(
            "scheduler {name} is busy accepting other operations; retry later"
        )),
        other => temporal_unavailable(other),
    }
}
