//! Group commit of submissions: the submissions this gateway receives for one scheduler while
//! its previous signal is on its way go to Temporal together, as one `enqueue_operations`
//! signal, in the order they arrived. A burst of a thousand requests becomes a few signals
//! instead of a thousand signal transactions on one workflow.
//!
//! Every submission is answered within the caller's bound. Past [`MAX_WAITING`] waiting
//! submissions for a scheduler, or when the bound passes before its batch was sent, the answer
//! is 429 and nothing was sent: such a refusal is never applied. Only a batch whose signal was
//! sent but not confirmed in time is ambiguous (503; a retry with the same key resolves it).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use maestro_workflows::SubmitOperation;
use tokio::sync::oneshot;

use crate::error::{ApiError, ErrorCode};

/// Submissions waiting per scheduler in one gateway; past it, 429 at once.
pub const MAX_WAITING: usize = 1000;
/// The most one signal carries (bytes of its submissions as JSON; at least one submission).
/// Temporal refuses payloads past 2 MB.
const MAX_BATCH_BYTES: usize = 512 * 1024;

struct Waiting {
    submission: SubmitOperation,
    bytes: usize,
    sent: oneshot::Sender<Result<(), ApiError>>,
}

#[derive(Default)]
struct Lane {
    waiting: Mutex<Vec<Waiting>>,
    /// Held while a batch is on its way: one signal per scheduler at a time from here.
    sending: tokio::sync::Mutex<()>,
}

impl Lane {
    fn waiting(&self) -> MutexGuard<'_, Vec<Waiting>> {
        // Each critical section is a push, a drain or a retain: a poisoned lock still holds
        // a consistent queue.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest waiting submissions, up to [`MAX_BATCH_BYTES`].
    fn next_batch(&self) -> Vec<Waiting> {
        let mut waiting = self.waiting();
        let mut bytes = 0;
        let count = waiting
            .iter()
            .take_while(|w| {
                bytes += w.bytes;
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1)
            .min(waiting.len());
        waiting.drain(..count).collect()
    }
}

#[derive(Default, Clone)]
pub struct Submissions {
    lanes: Arc<Mutex<HashMap<String, Arc<Lane>>>>,
}

impl Submissions {
    fn lane(&self, scheduler: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.entry(scheduler.to_string()).or_default().clone()
    }

    /// Sends `submission` to `scheduler` with the ones waiting beside it, through `send`
    /// (one signal carrying a batch), within `bound`. The sending runs as its own task: a
    /// caller that goes away does not cancel a batch that carries other callers' submissions.
    pub async fn submit<F, Fut>(
        &self,
        scheduler: &str,
        submission: SubmitOperation,
        bound: Duration,
        send: F,
    ) -> Result<(), ApiError>
    where
        F: Fn(Vec<SubmitOperation>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        let lane = self.lane(scheduler);
        let id = submission.operation_id.clone();
        let (sent, answer) = oneshot::channel();
        {
            let mut waiting = lane.waiting();
            if waiting.len() >= MAX_WAITING {
                return Err(busy(scheduler, "too many submissions are waiting"));
            }
            let bytes = serde_json::to_vec(&submission).map_or(0, |b| b.len());
            waiting.push(Waiting {
                submission,
                bytes,
                sent,
            });
        }
        tokio::spawn(send_waiting(lane.clone(), id.clone(), send));
        match tokio::time::timeout(bound, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ApiError::unavailable(format!(
                "the submission to scheduler {scheduler} was lost on its way; retry"
            ))),
            Err(_) => {
                // Still waiting means never sent: refuse it cleanly. Gone means its batch is
                // on its way: the outcome is not known.
                let mut waiting = lane.waiting();
                let before = waiting.len();
                waiting.retain(|w| w.submission.operation_id != id);
                if waiting.len() < before {
                    Err(busy(scheduler, "its turn did not come in time"))
                } else {
                    Err(ApiError::unavailable(format!(
                        "Temporal did not confirm the submission to scheduler {scheduler} in \
                         time; retry (with the same Idempotency-Key, it is applied once)"
                    )))
                }
            }
        }
    }
}

/// Takes the lane's turn and sends what waits, batch after batch, until the batch with `id`
/// went (or `id` was withdrawn): every submission is sent by the task its arrival started or
/// by an earlier one.
async fn send_waiting<F, Fut>(lane: Arc<Lane>, id: String, send: F)
where
    F: Fn(Vec<SubmitOperation>) -> Fut,
    Fut: Future<Output = Result<(), ApiError>>,
{
    let _turn = lane.sending.lock().await;
    loop {
        let batch = lane.next_batch();
        if batch.is_empty() {
            return;
        }
        let ours = batch.iter().any(|w| w.submission.operation_id == id);
        let submissions = batch.iter().map(|w| w.submission.clone()).collect();
        let result = send(submissions).await;
        for waiting in batch {
            // A waiter that gave up is gone: nothing to tell it.
            let _ = waiting.sent.send(result.clone());
        }
        if ours {
            return;
        }
    }
}

fn busy(scheduler: &str, why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ResourceExhausted,
        format!(
            "scheduler {scheduler} is receiving too much at once ({why}); nothing was applied, retry later"
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use maestro_core::OperationRequest;

    use super::*;

    fn submission(i: usize) -> SubmitOperation {
        SubmitOperation {
            request: OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput {
                amount: 1,
            }),
            request_id: String::new(),
            operation_id: format!("op-{i}"),
            search_attributes: false,
        }
    }

    /// 300 concurrent submissions against a slow signal (50 ms each): all answered, each sent
    /// exactly once, in a handful of signals, and in the order they were handed over per
    /// batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_go_in_few_signals_each_once() {
        let submissions = Submissions::default();
        let signals = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(Mutex::new(Vec::<String>::new()));
        let send = {
            let (signals, sent) = (signals.clone(), sent.clone());
            move |batch: Vec<SubmitOperation>| {
                let (signals, sent) = (signals.clone(), sent.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    signals.fetch_add(1, Ordering::SeqCst);
                    sent.lock()
                        .unwrap()
                        .extend(batch.into_iter().map(|s| s.operation_id));
                    Ok(())
                }
            }
        };
        let all = (0..300)
            .map(|i| submissions.submit("s", submission(i), Duration::from_secs(5), send.clone()));
        let results = futures::future::join_all(all).await;
        assert!(results.iter().all(Result::is_ok));
        let mut sent = sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 300);
        sent.sort();
        sent.dedup();
        assert_eq!(sent.len(), 300, "each submission sent once");
        let signals = signals.load(Ordering::SeqCst);
        assert!(signals <= 10, "{signals} signals for 300 submissions");
    }

    /// A signal that never comes back: the submissions still waiting are refused (429,
    /// never sent); the one on its way is 503 (unknown outcome). All within the bound.
    #[tokio::test]
    async fn a_stuck_signal_refuses_the_waiting_ones_cleanly() {
        let submissions = Submissions::default();
        let send = |_batch: Vec<SubmitOperation>| std::future::pending::<Result<(), ApiError>>();
        let started = std::time::Instant::now();
        let first = submissions.submit("s", submission(0), Duration::from_millis(200), send);
        let second = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            submissions
                .submit("s", submission(1), Duration::from_millis(200), send)
                .await
        };
        let (first, second) = tokio::join!(first, second);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(first.unwrap_err().code, ErrorCode::Unavailable);
        assert_eq!(second.unwrap_err().code, ErrorCode::ResourceExhausted);
    }
}
