//! A scheduler's namespace. Maestro owns only the namespaces it created, known by its labels
//! (`heritage=maestro`, `maestro-scheduler={name}`): it never adopts, changes or deletes one
//! without them. A namespace of the same name still terminating (a scheduler deleted and
//! created again) is waited for, within a bound, instead of being taken for a live one.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tracing::{debug, info, warn};

use super::{KubernetesRuntime, failure, pod, status_code};
use crate::RuntimeError;

/// What is stored under a scheduler's namespace name.
enum Found {
    Absent,
    Ours {
        uid: Option<String>,
        terminating: bool,
    },
    Foreign,
}

fn classify(scheduler: &str, namespace: Option<Namespace>) -> Found {
    let Some(namespace) = namespace else {
        return Found::Absent;
    };
    let labels = namespace.metadata.labels.unwrap_or_default();
    let ours = labels.get(pod::LABEL_HERITAGE).map(String::as_str) == Some(pod::HERITAGE)
        && labels.get(pod::LABEL_SCHEDULER).map(String::as_str) == Some(scheduler);
    if !ours {
        return Found::Foreign;
    }
    Found::Ours {
        uid: namespace.metadata.uid,
        terminating: namespace.metadata.deletion_timestamp.is_some(),
    }
}

fn foreign(scheduler: &str) -> RuntimeError {
    RuntimeError::Refused(format!(
        "namespace {scheduler} exists and was not created by Maestro (it lacks the labels \
         {}={} and {}={scheduler}); Maestro never takes over a namespace: choose another \
         scheduler name, or add those labels to hand the namespace to Maestro",
        pod::LABEL_HERITAGE,
        pod::HERITAGE,
        pod::LABEL_SCHEDULER
    ))
}

impl KubernetesRuntime {
    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    async fn read_namespace(&self, scheduler: &str) -> Result<Found, RuntimeError> {
        let api = self.namespaces();
        let namespace = self
            .call("get namespace", || api.get_opt(scheduler))
            .await
            .map_err(|e| failure("get namespace", e))?;
        Ok(classify(scheduler, namespace))
    }

    /// Creates the scheduler's namespace, or finds it already made by Maestro; waits (up to
    /// the configured bound) for an earlier one of the same name to finish terminating.
    pub(super) async fn ensure_namespace(&self, scheduler: &str) -> Result<(), RuntimeError> {
        let api = self.namespaces();
        let wanted = pod::namespace(scheduler, self.config.pod_security_level.as_deref());
        let params = PostParams::default();
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        let mut said_waiting = false;
        loop {
            match self
                .call("create namespace", || api.create(&params, &wanted))
                .await
            {
                Ok(_) => {
                    info!(scheduler = %scheduler, "namespace created");
                    return Ok(());
                }
                Err(e) if status_code(&e) == Some(409) => {}
                Err(e) => return Err(failure("create namespace", e)),
            }
            match self.read_namespace(scheduler).await? {
                Found::Foreign => return Err(foreign(scheduler)),
                Found::Ours {
                    terminating: false, ..
                } => {
                    debug!(scheduler = %scheduler, "namespace already exists");
                    return Ok(());
                }
                // Deleted between the create and the read: create again.
                Found::Absent => continue,
                Found::Ours {
                    terminating: true, ..
                } => {
                    let waited = started.elapsed();
                    let bound = self.config.namespace_termination_wait;
                    if waited >= bound {
                        return Err(RuntimeError::Unavailable(format!(
                            "namespace {scheduler}, left by an earlier scheduler of this name, \
                             is still terminating after {}s; it is retried, and `kubectl get \
                             namespace {scheduler} -o yaml` shows what holds it (finalizers, \
                             pods that do not stop)",
                            waited.as_secs()
                        )));
                    }
                    if !said_waiting {
                        info!(
                            scheduler,
                            "namespace of an earlier scheduler with this name is terminating; waiting for it to go"
                        );
                        said_waiting = true;
                    }
                    tokio::time::sleep(pause.min(bound - waited)).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Deletes the scheduler's namespace if Maestro created it; one it did not is left as it
    /// is (with a warning), so that deleting a scheduler never removes anything else.
    pub(super) async fn remove_namespace(&self, scheduler: &str) -> Result<(), RuntimeError> {
        let uid = match self.read_namespace(scheduler).await? {
            Found::Absent => {
                debug!(scheduler = %scheduler, "namespace already gone");
                return Ok(());
            }
            Found::Foreign => {
                warn!(
                    scheduler,
                    "namespace was not created by Maestro; leaving it in place"
                );
                return Ok(());
            }
            Found::Ours {
                terminating: true, ..
            } => return Ok(()),
            Found::Ours { uid, .. } => uid,
        };
        // The uid precondition: the namespace read above, not one made meanwhile.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api = self.namespaces();
        match self
            .call("delete namespace", || api.delete(scheduler, &params))
            .await
        {
            Ok(_) => info!(scheduler = %scheduler, "namespace deletion requested"),
            Err(e) if status_code(&e) == Some(404) => {
                debug!(scheduler = %scheduler, "namespace already gone")
            }
            Err(e) if status_code(&e) == Some(409) => {
                warn!(
                    scheduler,
                    "namespace was replaced while being deleted; leaving the new one"
                );
            }
            Err(e) => return Err(failure("delete namespace", e)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use std::collections::BTreeMap;

    fn namespace(labels: &[(&str, &str)], terminating: bool) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                uid: Some("u1".into()),
                deletion_timestamp: terminating
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[test]
    fn only_namespaces_with_both_labels_are_maestros() {
        let ours = [("heritage", "maestro"), ("maestro-scheduler", "game")];
        assert!(matches!(classify("game", None), Found::Absent));
        assert!(matches!(
            classify("game", Some(namespace(&ours, false))),
            Found::Ours {
                terminating: false,
                ..
            }
        ));
        assert!(matches!(
            classify("game", Some(namespace(&ours, true))),
            Found::Ours {
                terminating: true,
                ..
            }
        ));
        // Another scheduler's label, or none (`default`, Maestro's own namespace): not ours.
        assert!(matches!(
            classify("other", Some(namespace(&ours, false))),
            Found::Foreign
        ));
        assert!(matches!(
            classify("game", Some(namespace(&[("heritage", "maestro")], false))),
            Found::Foreign
        ));
        assert!(matches!(
            classify("game", Some(namespace(&[], false))),
            Found::Foreign
        ));
    }
}
