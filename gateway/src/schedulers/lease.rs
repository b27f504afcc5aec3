//! An active operation's lease, as Maestro answers it (`lease.ttl`: when the operation is
//! considered lost unless its worker renews it). Here it comes from Temporal itself: the
//! heartbeat deadline of the activity the operation's workflow is running (its last
//! heartbeat, or its start, plus its heartbeat timeout). Between activities there is none.

use std::time::SystemTime;

use maestro_core::Timestamp;
use maestro_core::naming::operation_workflow_id;
use maestro_workflows::SchedulerWorkflow;
use temporalio_client::{RpcOptions, WorkflowDescribeOptions};
use temporalio_common::protos::temporal::api::workflow::v1::PendingActivityInfo;

use super::SchedulerClient;

/// Temporal's timestamps (prost-wkt) as a `SystemTime`; `None` before 1970 or malformed.
fn system_time(seconds: i64, nanos: i32) -> Option<SystemTime> {
    let since_epoch =
        std::time::Duration::new(u64::try_from(seconds).ok()?, u32::try_from(nanos).ok()?);
    SystemTime::UNIX_EPOCH.checked_add(since_epoch)
}

/// The latest heartbeat deadline among the operation workflow's running activities.
fn deadline(activities: &[PendingActivityInfo]) -> Option<SystemTime> {
    activities
        .iter()
        .filter_map(|activity| {
            let options = activity.activity_options.as_ref()?;
            let timeout = options
                .heartbeat_timeout
                .or(options.start_to_close_timeout)
                .and_then(|d| std::time::Duration::try_from(d).ok())?;
            let since = activity
                .last_heartbeat_time
                .as_ref()
                .or(activity.last_started_time.as_ref())
                .and_then(|t| system_time(t.seconds, t.nanos))?;
            Some(since + timeout)
        })
        .max()
}

impl SchedulerClient {
    /// The lease of the running operation `operation_id`, if one of its activities runs.
    /// Best effort: an unanswered describe is no lease, never an error of the read.
    pub async fn operation_lease(&self, scheduler: &str, operation_id: &str) -> Option<Timestamp> {
        let options = WorkflowDescribeOptions::builder()
            .rpc_options(RpcOptions::builder().timeout(self.query_timeout).build())
            .build();
        let described = self
            .client
            .get_workflow_handle::<SchedulerWorkflow>(operation_workflow_id(
                scheduler,
                operation_id,
            ))
            .describe(options)
            .await;
        match described {
            Ok(d) => {
                deadline(&d.raw_description.pending_activities).map(Timestamp::from_system_time)
            }
            Err(e) => {
                tracing::debug!(scheduler = %scheduler, operation = %operation_id, error = %e, "no lease: the operation's workflow was not described");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_common::protos::temporal::api::activity::v1::ActivityOptions;

    /// A running activity started (and last heartbeating) at these seconds, whose heartbeat
    /// timeout is 30 s.
    fn activity(heartbeat: Option<i64>, started: i64) -> PendingActivityInfo {
        let mut info = PendingActivityInfo {
            last_started_time: Some(Default::default()),
            activity_options: Some(ActivityOptions {
                heartbeat_timeout: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(t) = info.last_started_time.as_mut() {
            t.seconds = started;
        }
        if let Some(at) = heartbeat {
            let mut t = info.last_started_time.unwrap_or_default();
            t.seconds = at;
            info.last_heartbeat_time = Some(t);
        }
        if let Some(d) = info
            .activity_options
            .as_mut()
            .and_then(|o| o.heartbeat_timeout.as_mut())
        {
            d.seconds = 30;
        }
        info
    }

    #[test]
    fn the_deadline_is_the_last_heartbeat_plus_the_heartbeat_timeout() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(deadline(&[activity(Some(1_000), 900)]), Some(at(1_030)));
        assert_eq!(deadline(&[activity(None, 900)]), Some(at(930)));
        assert_eq!(
            deadline(&[activity(None, 900), activity(Some(2_000), 10)]),
            Some(at(2_030))
        );
        assert_eq!(deadline(&[]), None);
        let mut no_options = activity(None, 5);
        no_options.activity_options = None;
        assert_eq!(deadline(&[no_options]), None);
    }
}
