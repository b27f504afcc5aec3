//! Reading what a scheduler workflow keeps in its memo.

use maestro_workflows::{OperationsMark, SchedulerSnapshot, names};
use serde::de::DeserializeOwned;
use temporalio_common::protos::temporal::api::common::v1::Memo;
use tracing::debug;

use crate::error::{ApiError, ErrorCode};

/// The memo's value under `key`, if it has one.
fn decode<T: DeserializeOwned>(
    memo: Option<&Memo>,
    key: &str,
) -> Option<Result<T, serde_json::Error>> {
    let payload = memo?.fields.get(key)?;
    Some(serde_json::from_slice(&payload.data))
}

/// The snapshot a scheduler workflow keeps in its memo, if it wrote one.
pub(super) fn decode_snapshot(memo: Option<&Memo>) -> Option<Result<SchedulerSnapshot, ApiError>> {
    Some(decode(memo, names::MEMO_SNAPSHOT)?.map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("a recorded scheduler snapshot is unreadable: {e}"),
        )
    }))
}

/// The operations mark, if the memo has a readable one. An unreadable mark only costs its
/// reader a query, so it is not an error.
pub(super) fn decode_mark(memo: Option<&Memo>) -> Option<OperationsMark> {
    decode(memo, names::MEMO_OPERATIONS)?
        .inspect_err(|e| debug!(error = %e, "unreadable operations mark"))
        .ok()
}
