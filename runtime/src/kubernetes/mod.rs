//! The Kubernetes runtime (kube-rs): a namespace per scheduler, a Pod per room named after
//! the room, host ports from the scheduler's range, the room address from the node.
//!
//! Every call is idempotent: "already exists" on create and "not found" on delete are
//! success, a conflict on update is retried from a fresh read, and 429/5xx/transport errors
//! are retried with exponential backoff before the caller (an activity, which has its own
//! retries) sees them. What the API refuses for good (403 from admission or RBAC, 400/422)
//! fails at once with the API's own words. Namespaces: only Maestro's own (`namespace`).

mod namespace;
pub mod pod;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use maestro_core::{InstanceStatus, Scheduler, Version};
use tracing::{debug, info, warn};

use crate::room_env::{RoomsApiEndpoints, UsedPorts, allocate_ports};
use crate::{RoomInstance, Runtime, RuntimeError, RuntimeEvent};

/// How long a node's address is trusted before it is read again.
const NODE_ADDRESS_TTL: Duration = Duration::from_secs(300);
/// Extra wait for a deleted pod to disappear beyond its grace period.
const DELETE_SLACK: Duration = Duration::from_secs(10);
/// Reads of a disruption budget before giving up on conflicting writers.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, Clone)]
pub struct KubernetesRuntimeConfig {
    /// How rooms reach the rooms API (URLs as seen from inside the cluster, token secret).
    pub rooms_api: RoomsApiEndpoints,
    /// Retries of one API call on 429/5xx/transport errors, after the first try.
    pub api_retries: usize,
    /// First pause between those retries (doubling, with jitter).
    pub api_retry_delay: Duration,
    /// The Pod Security level written on the namespaces Maestro creates (rooms use host
    /// ports, which need `privileged`); `None` leaves the cluster's default.
    pub pod_security_level: Option<String>,
    /// How long creating a scheduler waits for an earlier namespace of the same name to
    /// finish terminating before the attempt fails (retryably).
    pub namespace_termination_wait: Duration,
}

impl Default for KubernetesRuntimeConfig {
    fn default() -> Self {
        Self {
            rooms_api: RoomsApiEndpoints::default(),
            api_retries: 4,
            api_retry_delay: Duration::from_millis(200),
            pod_security_level: Some("privileged".into()),
            namespace_termination_wait: Duration::from_secs(60),
        }
    }
}

/// How stale the partial rereads may leave a port book: ports freed by pods deleted
/// elsewhere come back this often (or whenever a scheduler's range looks full).
const FULL_REREAD_EVERY: Duration = Duration::from_secs(30);

pub struct KubernetesRuntime {
    client: Client,
    config: KubernetesRuntimeConfig,
    /// Host ports held by live rooms, per scheduler. Creations of one scheduler are
    /// serialized (one operation at a time, rooms created one after another), and
    /// [`Runtime::refresh_room_allocations`] rereads before each batch the pods this
    /// process did not create, so a batch run by another worker replica is never missed.
    port_books: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PortBook>>>>,
    /// This process's mark on the pods it creates (label [`pod::LABEL_CREATOR`]): its own
    /// pods' ports are in its books already, so a reread can skip them.
    creator: String,
    nodes: Arc<NodeAddresses>,
}

#[derive(Default)]
struct PortBook {
    /// When every pod was last read (`None`: never, the book is empty). Between full reads
    /// only other creators' pods are, so
    /// ports freed by others stay taken here until the next full read (at most
    /// [`FULL_REREAD_EVERY`] later, or at once when the range looks full).
    read_all_at: Option<std::time::Instant>,
    /// Host ports of the scheduler's pods, and those reserved below.
    used: UsedPorts,
    /// Ports of creations in flight: the book is not held across a pod POST (a batch's rooms
    /// are created concurrently), so a reread must keep them.
    reserved: BTreeSet<u16>,
}

impl KubernetesRuntime {
    pub fn new(client: Client, config: KubernetesRuntimeConfig) -> Self {
        Self {
            nodes: Arc::new(NodeAddresses::new(client.clone())),
            client,
            config,
            port_books: Mutex::new(HashMap::new()),
            creator: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// A runtime using the ambient configuration: `KUBECONFIG`/`~/.kube/config`, else the
    /// in-cluster service account.
    pub async fn from_environment(config: KubernetesRuntimeConfig) -> Result<Self, RuntimeError> {
        let client = Client::try_default()
            .await
            .map_err(|e| RuntimeError::Invalid(format!("no Kubernetes configuration: {e}")))?;
        Ok(Self::new(client, config))
    }

    fn pods(&self, scheduler: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), scheduler)
    }

    fn port_book(&self, scheduler: &str) -> Arc<tokio::sync::Mutex<PortBook>> {
        let mut books = self.port_books.lock().unwrap_or_else(|p| p.into_inner());
        books.entry(scheduler.to_string()).or_default().clone()
    }

    /// Runs one API call, retrying what may succeed later (429, 5xx, transport errors).
    async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        call.retry(
            ExponentialBuilder::default()
                .with_min_delay(self.config.api_retry_delay)
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(self.config.api_retries)
                .with_jitter(),
        )
        .when(|e| is_transient(e) || is_authorization_lag(e))
        .notify(|e, pause| warn!(call = what, error = %e, pause_ms = pause.as_millis(), "Kubernetes API call failed; retrying"))
        .await
    }

    /// Rereads the scheduler's host ports: every pod's (`all`), or only those of pods this
    /// process did not create, whose ports it cannot know otherwise. A scheduler with
    /// thousands of rooms was listed whole before every batch (a tenth of a 10 000-room
    /// scale-up, `docs/benchmarks.md`); its own creator's rooms are most of it.
    async fn load_ports(
        &self,
        scheduler: &str,
        book: &mut PortBook,
        all: bool,
    ) -> Result<(), RuntimeError> {
        let api = self.pods(scheduler);
        let params = if all {
            managed()
        } else {
            ListParams::default().labels(&format!(
                "{},{}!={}",
                pod::MANAGED_SELECTOR,
                pod::LABEL_CREATOR,
                self.creator
            ))
        };
        // Metadata only: whole pods are most of what the API server sends and we parse.
        let listed = self
            .call("list pod metadata", || api.list_metadata(&params))
            .await
            .map_err(|e| failure("list pod metadata", e))?;
        let annotated = listed
            .items
            .iter()
            .try_fold(UsedPorts::default(), |mut all, p| {
                all.extend(pod::annotated_host_ports(&p.metadata)?);
                Some(all)
            });
        let found = match annotated {
            Some(ports) => ports,
            // A pod made before the annotation: the specs say.
            None => {
                let pods = self
                    .call("list pods", || api.list(&params))
                    .await
                    .map_err(|e| failure("list pods", e))?;
                pods.items.iter().flat_map(pod::host_ports).collect()
            }
        };
        if all {
            book.used = found;
            book.read_all_at = Some(std::time::Instant::now());
        } else {
            book.used.union_with(&found);
        }
        book.used.extend(book.reserved.iter().copied());
        Ok(())
    }

    /// The room's token Secret and pod with the reserved `ports`; the pod already there when
    /// this is a retry of a creation that reached the API.
    async fn post_room(
        &self,
        scheduler: &Scheduler,
        version: Version,
        room_id: &str,
        api: &Api<Pod>,
        params: &PostParams,
        ports: &[maestro_core::room::RoomPort],
    ) -> Result<Pod, RuntimeError> {
        self.create_token_secret(&scheduler.name, room_id).await?;
        let mut wanted = pod::room_pod(scheduler, version, room_id, ports, &self.config.rooms_api);
        wanted
            .metadata
            .labels
            .get_or_insert_default()
            .insert(pod::LABEL_CREATOR.to_string(), self.creator.clone());
        match self
            .call("create pod", || api.create(params, &wanted))
            .await
        {
            Ok(pod) => {
                info!(scheduler = %scheduler.name, room = %room_id, ports = ?ports.iter().map(|p| p.port).collect::<Vec<_>>(), "pod created");
                Ok(pod)
            }
            // A retry of a creation that reached the API: the room exists, keep it as it is.
            Err(e) if status_code(&e) == Some(409) => {
                let existing = self
                    .call("get pod", || api.get(room_id))
                    .await
                    .map_err(|e| failure("get pod", e))?;
                debug!(scheduler = %scheduler.name, room = %room_id, "pod already exists");
                Ok(existing)
            }
            Err(e) => Err(failure("create pod", e)),
        }
    }

    /// The room's token Secret, before its pod (which reads it); one already there is the
    /// same (tokens are derived from the scheduler and room ids).
    async fn create_token_secret(
        &self,
        scheduler: &str,
        room_id: &str,
    ) -> Result<(), RuntimeError> {
        let Some(wanted) = pod::room_token_secret(scheduler, room_id, &self.config.rooms_api)
        else {
            return Ok(());
        };
        let (api, params): (Api<Secret>, _) = (
            Api::namespaced(self.client.clone(), scheduler),
            PostParams::default(),
        );
        match self
            .call("create token secret", || api.create(&params, &wanted))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(failure("create token secret", e)),
        }
    }

    async fn delete_token_secret(
        &self,
        scheduler: &str,
        room_id: &str,
    ) -> Result<(), RuntimeError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), scheduler);
        let (name, params) = (pod::token_secret_name(room_id), DeleteParams::default());
        match self
            .call("delete token secret", || api.delete(&name, &params))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(failure("delete token secret", e)),
        }
    }

    async fn instance(&self, pod: &Pod) -> Option<RoomInstance> {
        self.nodes.room(pod).await
    }

    async fn instances(&self, pods: Vec<Pod>) -> Vec<RoomInstance> {
        let mut rooms = Vec::with_capacity(pods.len());
        for pod in &pods {
            if let Some(room) = self.instance(pod).await {
                rooms.push(room);
            }
        }
        rooms
    }

    /// Waits until the pod is gone, polling with a growing pause.
    async fn await_gone(
        &self,
        scheduler: &str,
        room_id: &str,
        limit: Duration,
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        let api = self.pods(scheduler);
        loop {
            match self.call("get pod", || api.get_opt(room_id)).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => {}
                Err(e) => return Err(failure("get pod", e)),
            }
            if started.elapsed() >= limit {
                return Err(RuntimeError::Unavailable(format!(
                    "pod {scheduler}/{room_id} still exists {limit:?} after its deletion"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// Only Maestro's pods.
fn managed() -> ListParams {
    ListParams::default().labels(pod::MANAGED_SELECTOR)
}

fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// RBAC's 403 ("User … cannot create resource …") is also what an apiserver answers for a
/// moment after it starts, before its authorizer has read the roles: retried within the
/// call's short budget, then final.
fn is_authorization_lag(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains(" cannot "))
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Requests Kubernetes refuses for good fail the operation at once with the API's reason
/// (and, where one is known, what the operator can do); everything else (5xx, transport,
/// 404s in a race) is worth retrying.
fn failure(what: &str, e: kube::Error) -> RuntimeError {
    // kube's own Display of an API error appends the whole Status struct; keep the words.
    let said = match &e {
        kube::Error::Api(status) => format!(
            "Kubernetes answered {} {}: {}",
            status.code, status.reason, status.message
        ),
        other => other.to_string(),
    };
    let message = match &e {
        kube::Error::Api(s) if s.message.contains("violates PodSecurity") => format!(
            "{what}: {said}; rooms use host ports, which Pod Security allows only at the \
             `privileged` level: label the namespace {}=privileged (Maestro writes it on the \
             namespaces it creates unless --kubernetes-pod-security none)",
            pod::POD_SECURITY_ENFORCE
        ),
        _ if is_authorization_lag(&e) => format!(
            "{what}: {said}; Maestro's service account lacks this permission (see the Role \
             in deploy/kubernetes/maestro.yaml)"
        ),
        _ => format!("{what}: {said}"),
    };
    match status_code(&e) {
        Some(400 | 422) => RuntimeError::Invalid(message),
        Some(403) => RuntimeError::Refused(message),
        _ => RuntimeError::Unavailable(message),
    }
}

/// The namespace is gone or going (a scheduler being deleted): nothing there to guard.
fn namespace_gone(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            (s.code == 404 && s.message.contains("namespaces"))
                || (s.code == 403 && s.message.contains("being terminated"))
        }
        _ => false,
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    async fn create_scheduler(&self, scheduler: &str) -> Result<(), RuntimeError> {
        self.ensure_namespace(scheduler).await?;
        self.guard_disruptions(scheduler, 0).await
    }

    async fn delete_scheduler(&self, scheduler: &str) -> Result<(), RuntimeError> {
        self.remove_namespace(scheduler).await?;
        self.port_books
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(scheduler);
        Ok(())
    }

    async fn refresh_room_allocations(&self, scheduler: &str) -> Result<(), RuntimeError> {
        let book = self.port_book(scheduler);
        let mut book = book.lock().await;
        let all = book
            .read_all_at
            .is_none_or(|at| at.elapsed() >= FULL_REREAD_EVERY);
        self.load_ports(scheduler, &mut book, all).await
    }

    async fn create_room(
        &self,
        scheduler: &Scheduler,
        version: Version,
        room_id: &str,
    ) -> Result<RoomInstance, RuntimeError> {
        let book = self.port_book(&scheduler.name);
        let (api, params) = (self.pods(&scheduler.name), PostParams::default());
        // Ports are reserved under the book's lock and the lock released for the API calls,
        // so creations of one scheduler run concurrently without sharing a port.
        let ports = {
            let mut book = book.lock().await;
            let read_all = book.read_all_at.is_none();
            if read_all {
                self.load_ports(&scheduler.name, &mut book, true).await?;
            }
            let mut allocated =
                allocate_ports(scheduler, pod::container_ports(scheduler), &book.used);
            // Ports others freed since the last full read still look taken: read them all
            // before calling the range full.
            if allocated.is_err() && !read_all {
                self.load_ports(&scheduler.name, &mut book, true).await?;
                allocated = allocate_ports(scheduler, pod::container_ports(scheduler), &book.used);
            }
            match allocated {
                Ok(ports) => {
                    let reserved = ports.iter().map(|p| p.port);
                    book.used.extend(reserved.clone());
                    book.reserved.extend(reserved);
                    ports
                }
                // A retried creation finds every port taken, its own among them.
                Err(full) => {
                    drop(book);
                    let existing = self
                        .call("get pod", || api.get_opt(room_id))
                        .await
                        .map_err(|e| failure("get pod", e))?;
                    return match existing {
                        Some(pod) => self.instance(&pod).await.ok_or(full),
                        None => Err(full),
                    };
                }
            }
        };
        let created = self
            .post_room(scheduler, version, room_id, &api, &params, &ports)
            .await;
        let mut book = book.lock().await;
        for port in &ports {
            book.reserved.remove(&port.port);
        }
        // A failed POST may still have made the pod (a timeout after the server took it), and
        // rereads between full ones skip this process's pods: its ports stay taken until the
        // next full read says otherwise.
        let created = created?;
        for port in &ports {
            book.used.remove(port.port);
        }
        book.used.extend(pod::host_ports(&created));
        drop(book);
        self.instance(&created)
            .await
            .ok_or_else(|| RuntimeError::Invalid(format!("pod {room_id} lost Maestro's labels")))
    }

    async fn delete_room(
        &self,
        scheduler: &str,
        room_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let api = self.pods(scheduler);
        let params = DeleteParams {
            grace_period_seconds: Some(u32::try_from(grace.as_secs()).unwrap_or(u32::MAX)),
            ..DeleteParams::default()
        };
        let freed = match self
            .call("delete pod", || api.delete(room_id, &params))
            .await
        {
            Ok(either) => either.left().map(|pod| pod::host_ports(&pod)),
            Err(e) if status_code(&e) == Some(404) => {
                return self.delete_token_secret(scheduler, room_id).await;
            }
            Err(e) => return Err(failure("delete pod", e)),
        };
        self.await_gone(scheduler, room_id, grace + DELETE_SLACK)
            .await?;
        self.delete_token_secret(scheduler, room_id).await?;
        if let Some(freed) = freed {
            let book = self.port_book(scheduler);
            let mut book = book.lock().await;
            for port in freed {
                book.used.remove(port);
            }
        }
        info!(scheduler = %scheduler, room = %room_id, "pod deleted");
        Ok(())
    }

    async fn failure_reason(&self, scheduler: &str, room_id: &str) -> Option<String> {
        let api = self.pods(scheduler);
        // One try: this only words an error the operation already has.
        let pod = api.get_opt(room_id).await.ok()??;
        let (_, reason) = pod::instance_status(&pod);
        let mut parts: Vec<String> = reason.into_iter().collect();
        parts.extend(pod::last_exits(&pod));
        if parts.is_empty() {
            parts.push("no container error recorded".into());
        }
        // Where the room's output is: the previous container's once it restarted.
        let previous = if pod::restarted(&pod) {
            " --previous"
        } else {
            ""
        };
        Some(format!(
            "pod {scheduler}/{room_id}: {}; its output: kubectl logs -n {scheduler} {room_id}{previous}",
            parts.join("; ")
        ))
    }

    async fn list_rooms(&self, scheduler: &str) -> Result<Vec<RoomInstance>, RuntimeError> {
        let (api, params) = (self.pods(scheduler), managed());
        let pods = self
            .call("list pods", || api.list(&params))
            .await
            .map_err(|e| failure("list pods", e))?;
        Ok(self.instances(pods.items).await)
    }

    async fn list_all_rooms(&self) -> Result<Vec<RoomInstance>, RuntimeError> {
        let (api, params): (Api<Pod>, _) = (Api::all(self.client.clone()), managed());
        let pods = self
            .call("list pods", || api.list(&params))
            .await
            .map_err(|e| failure("list pods", e))?;
        Ok(self.instances(pods.items).await)
    }

    async fn guard_disruptions(&self, scheduler: &str, occupied: u32) -> Result<(), RuntimeError> {
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), scheduler);
        let min_available = pod::protected_rooms(occupied);
        let params = PostParams::default();
        for _ in 0..CONFLICT_RETRIES {
            let current = self
                .call("get disruption budget", || {
                    api.get_opt(pod::DISRUPTION_BUDGET_NAME)
                })
                .await
                .map_err(|e| failure("get disruption budget", e))?;
            let mut wanted = pod::disruption_budget(scheduler, min_available);
            let result = match current {
                None => {
                    self.call("create disruption budget", || api.create(&params, &wanted))
                        .await
                }
                Some(current) => {
                    let now = current.spec.as_ref().and_then(|s| s.min_available.clone());
                    if now == Some(IntOrString::Int(min_available)) {
                        return Ok(());
                    }
                    // Replace only what we read: a concurrent writer makes this a 409.
                    wanted.metadata.resource_version = current.metadata.resource_version.clone();
                    self.call("replace disruption budget", || {
                        api.replace(pod::DISRUPTION_BUDGET_NAME, &params, &wanted)
                    })
                    .await
                }
            };
            match result {
                Ok(_) => {
                    debug!(scheduler = %scheduler, min_available, "disruption budget set");
                    return Ok(());
                }
                Err(e) if status_code(&e) == Some(409) => {
                    debug!(
                        scheduler,
                        "disruption budget changed meanwhile; reading it again"
                    );
                }
                // A scheduler being deleted: its namespace no longer takes content.
                Err(e) if namespace_gone(&e) => {
                    debug!(
                        scheduler,
                        "namespace gone or terminating; no disruption budget to set"
                    );
                    return Ok(());
                }
                Err(e) => return Err(failure("write disruption budget", e)),
            }
        }
        Err(RuntimeError::Unavailable(format!(
            "disruption budget of {scheduler} kept changing under {CONFLICT_RETRIES} attempts"
        )))
    }

    fn watch(&self) -> BoxStream<'static, RuntimeEvent> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().labels(pod::MANAGED_SELECTOR);
        let nodes = self.nodes.clone();
        watcher::watcher(api, config)
            .backoff(WatchBackoff::default())
            .scan(
                (Relist::default(), Outage::default()),
                |(relist, outage), event| {
                    let changes = match event {
                        Ok(event) => {
                            outage.ended();
                            relist.apply(event)
                        }
                        Err(e) => {
                            outage.failed(&e);
                            Vec::new()
                        }
                    };
                    futures::future::ready(Some(changes))
                },
            )
            .flat_map(stream::iter)
            .then(move |change| {
                let nodes = nodes.clone();
                async move {
                    match change {
                        PodChange::Upserted(pod) => {
                            let room = nodes.room(&pod).await?;
                            if room.status == InstanceStatus::Error
                                && let (_, Some(reason)) = pod::instance_status(&pod)
                            {
                                warn!(scheduler = %room.scheduler, room = %room.room_id, reason, "room instance is in error");
                            }
                            Some(RuntimeEvent::Upserted(room))
                        }
                        PodChange::Deleted { scheduler, room_id } => {
                            Some(RuntimeEvent::Deleted { scheduler, room_id })
                        }
                    }
                }
            })
            .filter_map(futures::future::ready)
            .boxed()
    }
}

/// The watch's pause between attempts while the API server is away: short and capped, so a
/// watch resumes within about a second of the server answering again (kube's default grows
/// to 30 s during an outage, and the first events after it waited that long). Reset by
/// every event that gets through.
struct WatchBackoff(backon::ExponentialBackoff);

impl WatchBackoff {
    fn fresh() -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            // backon's jitter adds up to the delay itself: pauses stay within 1 s.
            .with_max_delay(Duration::from_millis(500))
            .with_jitter()
            .without_max_times()
            .build()
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self(Self::fresh())
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.0.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0 = Self::fresh();
    }
}

/// One warning when the watch loses the API server and one line when it is back, however
/// many attempts fail in between (an outage used to log a line per attempt).
#[derive(Default)]
struct Outage {
    since: Option<(Instant, u32)>,
}

impl Outage {
    fn failed(&mut self, e: &watcher::Error) {
        match &mut self.since {
            Some((_, attempts)) => {
                *attempts += 1;
                debug!(error = %e, "pod watch still failing");
            }
            None => {
                warn!(error = %e, "pod watch lost the Kubernetes API; retrying every second at most");
                self.since = Some((Instant::now(), 1));
            }
        }
    }

    fn ended(&mut self) {
        if let Some((since, attempts)) = self.since.take() {
            info!(
                after_ms = since.elapsed().as_millis() as u64,
                failed_attempts = attempts,
                "pod watch resumed"
            );
        }
    }
}

enum PodChange {
    Upserted(Box<Pod>),
    Deleted { scheduler: String, room_id: String },
}

/// Turns kube's watcher events into room changes. A relist (after a watch expired with 410
/// Gone, or the apiserver restarted) replays every live pod; pods seen before and missing
/// from the relist were deleted while nobody watched, and are reported so.
#[derive(Default)]
struct Relist {
    known: BTreeSet<(String, String)>,
    relisting: Option<BTreeSet<(String, String)>>,
}

fn key(pod: &Pod) -> Option<(String, String)> {
    let scheduler = pod
        .metadata
        .labels
        .as_ref()?
        .get(pod::LABEL_SCHEDULER)?
        .clone();
    Some((scheduler, pod.metadata.name.clone()?))
}

impl Relist {
    fn apply(&mut self, event: Event<Pod>) -> Vec<PodChange> {
        match event {
            Event::Apply(pod) => {
                if let Some(k) = key(&pod) {
                    self.known.insert(k);
                }
                vec![PodChange::Upserted(Box::new(pod))]
            }
            Event::Delete(pod) => match key(&pod) {
                Some(k) => {
                    self.known.remove(&k);
                    vec![PodChange::Deleted {
                        scheduler: k.0,
                        room_id: k.1,
                    }]
                }
                None => Vec::new(),
            },
            Event::Init => {
                self.relisting = Some(BTreeSet::new());
                Vec::new()
            }
            Event::InitApply(pod) => {
                if let (Some(k), Some(seen)) = (key(&pod), self.relisting.as_mut()) {
                    seen.insert(k);
                }
                vec![PodChange::Upserted(Box::new(pod))]
            }
            Event::InitDone => {
                let seen = self.relisting.take().unwrap_or_default();
                let gone: Vec<PodChange> = self
                    .known
                    .difference(&seen)
                    .map(|(scheduler, room_id)| PodChange::Deleted {
                        scheduler: scheduler.clone(),
                        room_id: room_id.clone(),
                    })
                    .collect();
                self.known = seen;
                gone
            }
        }
    }
}

/// Node addresses, read once per node and kept for [`NODE_ADDRESS_TTL`].
struct NodeAddresses {
    client: Client,
    cache: Mutex<BTreeMap<String, (String, Instant)>>,
}

impl NodeAddresses {
    fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The room a pod holds, with its address once the pod is on a node.
    async fn room(&self, pod: &Pod) -> Option<RoomInstance> {
        let address = match pod::node_name(pod) {
            Some(node) => self.address(node).await,
            None => None,
        };
        pod::room_instance(pod, address)
    }

    async fn address(&self, node: &str) -> Option<String> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((address, read_at)) = cache.get(node)
                && read_at.elapsed() < NODE_ADDRESS_TTL
            {
                return Some(address.clone());
            }
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.get(node).await {
            Ok(found) => {
                let address = pod::node_address(&found)?;
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(node.to_string(), (address.clone(), Instant::now()));
                Some(address)
            }
            Err(e) => {
                warn!(node, error = %e, "cannot read the node's address; the room has none yet");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
