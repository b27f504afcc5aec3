//! The gateway's view of scheduler workflows: start them, submit operations as updates,
//! read them with queries. Maps Temporal's answers to API errors.

use std::time::Duration;

use maestro_core::naming::scheduler_workflow_id;
use maestro_core::{Operation, OperationRequest, Scheduler};
use maestro_workflows::{
    OperationsView, Rejection, RejectionCode, SchedulerSnapshot, SchedulerWorkflow,
    SchedulerWorkflowInput, SubmitOperation,
};
use temporalio_client::errors::{WorkflowQueryError, WorkflowStartError, WorkflowUpdateError};
use temporalio_client::{
    Client, RpcOptions, WorkflowExecuteUpdateOptions, WorkflowHandle, WorkflowQueryOptions,
    WorkflowStartOptions,
};
use tracing::{info, warn};

use crate::error::{ApiError, ErrorCode};

#[derive(Clone)]
pub struct SchedulerClient {
    client: Client,
    task_queue: String,
    query_timeout: Duration,
}

impl SchedulerClient {
    pub fn new(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            client,
            task_queue: task_queue.into(),
            query_timeout: Duration::from_secs(5),
        }
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
                SchedulerWorkflowInput::new(scheduler),
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
        let snapshot = self
            .handle(name)
            .query(SchedulerWorkflow::get_scheduler, (), self.query_options())
            .await
            .map_err(|e| query_error(name, e))?;
        if snapshot.deleted {
            return Err(scheduler_not_found(name));
        }
        Ok(snapshot)
    }

    pub async fn operations(&self, name: &str) -> Result<OperationsView, ApiError> {
        // A deleted scheduler's workflow still answers queries: 404 it first.
        self.snapshot(name).await?;
        self.handle(name)
            .query(SchedulerWorkflow::get_operations, (), self.query_options())
            .await
            .map_err(|e| query_error(name, e))
    }

    /// Submits an operation; returns it as accepted (with its id).
    pub async fn submit(
        &self,
        name: &str,
        request: OperationRequest,
    ) -> Result<Operation, ApiError> {
        request.validate()?;
        let kind = request.kind().definition_name();
        let operation = self
            .handle(name)
            .execute_update(
                SchedulerWorkflow::submit_operation,
                SubmitOperation { request },
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
            .map_err(|e| update_error(name, e))?;
        info!(scheduler = %name, operation = %operation.id, kind, seq = operation.seq, "operation accepted");
        Ok(operation)
    }

    fn query_options(&self) -> WorkflowQueryOptions {
        WorkflowQueryOptions::builder()
            .rpc_options(RpcOptions::builder().timeout(self.query_timeout).build())
            .build()
    }
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
            // A closed workflow refuses updates: the scheduler was deleted.
            Err(_) if failure.message.contains("completed") => scheduler_not_found(name),
            Err(_) => ApiError::new(ErrorCode::Internal, failure.message),
        },
        other => temporal_unavailable(other),
    }
}
