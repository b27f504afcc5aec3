//! Whether the namespace has Maestro's search attributes
//! (`maestro_workflows::search_attributes`), registering the missing ones where the server
//! lets us (a dev server, a self-hosted cluster; Temporal Cloud registers them in its own
//! console or `tcld`). Only when all are there do schedulers get them: a workflow setting an
//! attribute its namespace does not know fails its task again and again.

use std::collections::HashMap;

use temporalio_client::Client;
use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};
use thiserror::Error;
use tracing::{info, warn};

#[derive(Debug, Error)]
pub enum SearchAttributeError {
    #[error("listing the namespace's search attributes failed: {0}")]
    List(String),
    #[error(
        "search attribute {name} exists with type {found}, not Keyword; operations stay unindexed"
    )]
    WrongType { name: String, found: String },
    #[error(
        "registering {missing} failed ({reason}); register them with `temporal operator search-attribute create --namespace {namespace} --name NAME --type Keyword` for each (docs/operations.md)"
    )]
    Register {
        missing: String,
        namespace: String,
        reason: String,
    },
}

/// Makes sure every attribute exists with its type; `Ok` means schedulers may use them.
pub async fn ensure(client: &Client, namespace: &str) -> Result<(), SearchAttributeError> {
    let mut operator = client.connection().operator_service();
    let listed = operator
        .list_search_attributes(tonic::Request::new(ListSearchAttributesRequest {
            namespace: namespace.to_string(),
        }))
        .await
        .map_err(|e| SearchAttributeError::List(e.message().to_string()))?
        .into_inner();
    let mut missing = HashMap::new();
    for (name, kind) in maestro_workflows::search_attributes::ALL {
        match listed.custom_attributes.get(name) {
            Some(found) if *found == kind as i32 => {}
            Some(found) => {
                return Err(SearchAttributeError::WrongType {
                    name: name.to_string(),
                    found: IndexedValueType::try_from(*found)
                        .map(|t| t.as_str_name().to_string())
                        .unwrap_or_else(|_| found.to_string()),
                });
            }
            None => {
                missing.insert(name.to_string(), kind as i32);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut names: Vec<String> = missing.keys().cloned().collect();
    names.sort();
    let names = names.join(", ");
    operator
        .add_search_attributes(tonic::Request::new(AddSearchAttributesRequest {
            search_attributes: missing,
            namespace: namespace.to_string(),
        }))
        .await
        .map_err(|e| SearchAttributeError::Register {
            missing: names.clone(),
            namespace: namespace.to_string(),
            reason: e.message().to_string(),
        })?;
    info!(namespace = %namespace, attributes = %names, "registered Maestro's search attributes");
    Ok(())
}

/// [`ensure`], with a failure logged once as a warning: the system runs on without them.
pub async fn available(client: &Client, namespace: &str) -> bool {
    match ensure(client, namespace).await {
        Ok(()) => true,
        Err(e) => {
            warn!(namespace = %namespace, "operations are not indexed in Temporal: {e}");
            false
        }
    }
}
