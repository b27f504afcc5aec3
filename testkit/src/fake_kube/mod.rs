//! An in-test Kubernetes API server speaking the real wire format, for the resources Maestro
//! uses (namespaces, nodes, pods, pods' status, secrets, pod disruption budgets): JSON objects with
//! resource versions, lists with label selectors (one namespace or all), watch streams of
//! newline-delimited events with bookmarks and `410 Gone` for compacted history, `Status`
//! errors (404 NotFound, 409 AlreadyExists/Conflict, 422), graceful pod deletion, and
//! injected faults (429/500). As strict as a real one where Maestro was seen to differ:
//! namespaces terminate (their content first, then the namespace, 403 on new content
//! meanwhile), admission refuses invalid names and labels and host ports below Pod
//! Security's `privileged` level (`admission`), delete preconditions are checked, and a
//! restart is an outage (connections refused) after which old watches get `410 Gone`.
//! An optional kubelet puts new pods on a node and makes them ready, so rooms behave as
//! on a cluster.

mod admission;

pub use admission::POD_SECURITY_ENFORCE;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

/// What the fake kubelet does with new pods.
#[derive(Debug, Clone)]
pub struct Kubelet {
    /// The node every pod lands on (created at start with the addresses below).
    pub node: String,
    pub internal_ip: String,
    pub external_ip: Option<String>,
    /// Time from creation to Running + Ready.
    pub ready_after: Duration,
    /// Time a deleted pod takes to stop (capped by its grace period).
    pub stop_after: Duration,
}

impl Default for Kubelet {
    fn default() -> Self {
        Self {
            node: "node-1".into(),
            internal_ip: "10.0.0.1".into(),
            external_ip: Some("203.0.113.10".into()),
            ready_after: Duration::from_millis(50),
            stop_after: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    resource: String,
    namespace: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

#[derive(Debug)]
struct Fault {
    method: Method,
    path_contains: String,
    status: u16,
    remaining: u32,
    /// The Status message; a generic one naming the request when `None`.
    message: Option<String>,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// Watches from a version at or below this get `410 Gone`.
    compacted: u64,
    faults: Vec<Fault>,
    requests: Vec<String>,
    /// When each of `requests` arrived.
    arrivals: Vec<std::time::Instant>,
    /// Added to every request but watches (a slow or loaded apiserver).
    latency: Duration,
    /// While restarting: requests on connections still open get 503, as a server draining.
    down: bool,
    /// The cluster's Pod Security level for namespaces without the enforce label.
    pod_security_default: String,
    /// How long a terminating namespace stays after its content is gone.
    namespace_finalize_after: Duration,
}

struct Shared {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
    /// Bumped to cut every open watch (an apiserver restart).
    restarts: watch::Sender<u64>,
    kubelet: Option<Kubelet>,
    bookmark_every: Duration,
}

impl Shared {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores (or removes, for `DELETED`) an object under a new resource version and tells
    /// the watchers. Called with the lock held so versions and history stay in order.
    fn commit(&self, inner: &mut Inner, kind: &'static str, key: Key, mut object: Value) -> Value {
        inner.rv += 1;
        object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        if kind == "DELETED" {
            inner.objects.remove(&key);
        } else {
            inner.objects.insert(key.clone(), object.clone());
        }
        let change = Change {
            rv: inner.rv,
            kind,
            key,
            object: object.clone(),
        };
        inner.history.push_back(change.clone());
        let _ = self.changes.send(change);
        object
    }
}

/// A running fake API server on a loopback port; stops when dropped.
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Mutex<tokio::task::JoinHandle<()>>,
}

impl FakeKube {
    /// A bare API server: pods stay as created unless the test changes them.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// An API server with a kubelet that schedules and readies every pod.
    pub async fn start_with_kubelet(kubelet: Kubelet) -> anyhow::Result<Self> {
        Self::start_with(Some(kubelet)).await
    }

    async fn start_with(kubelet: Option<Kubelet>) -> anyhow::Result<Self> {
        let (changes, _) = broadcast::channel(65536);
        let (restarts, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                pod_security_default: "privileged".into(),
                namespace_finalize_after: Duration::from_millis(100),
                ..Inner::default()
            }),
            changes,
            restarts,
            kubelet: kubelet.clone(),
            bookmark_every: Duration::from_millis(500),
        });
        if let Some(kubelet) = &kubelet {
            let mut addresses = vec![json!({"type": "InternalIP", "address": kubelet.internal_ip})];
            if let Some(external) = &kubelet.external_ip {
                addresses.push(json!({"type": "ExternalIP", "address": external}));
            }
            addresses.push(json!({"type": "Hostname", "address": kubelet.node}));
            let node = json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": kubelet.node, "uid": uuid_like(0), "creationTimestamp": now()},
                "status": {"addresses": addresses},
            });
            let mut inner = shared.inner();
            shared.commit(&mut inner, "ADDED", key("nodes", "", &kubelet.node), node);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = Mutex::new(serve(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// Restarts the server: for `outage` new connections are refused and requests on open
    /// ones answer 503; every watch is cut, and the event history is gone afterwards, so
    /// a watch resuming from before the restart gets `410 Gone` (what a real apiserver
    /// answered on every restart).
    pub async fn restart(&self, outage: Duration) -> anyhow::Result<()> {
        self.task.lock().unwrap_or_else(|p| p.into_inner()).abort();
        self.shared.inner().down = true;
        self.drop_watches();
        tokio::time::sleep(outage).await;
        self.compact();
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.shared.inner().down = false;
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = serve(listener, self.shared.clone());
        Ok(())
    }

    /// The Pod Security level enforced in namespaces without their own enforce label
    /// (a real cluster's default is `privileged`; hardened ones set `baseline`).
    pub fn set_pod_security_default(&self, level: &str) {
        self.shared.inner().pod_security_default = level.into();
    }

    /// How long a deleted namespace stays `Terminating` once its content is gone.
    pub fn set_namespace_finalize_after(&self, after: Duration) {
        self.shared.inner().namespace_finalize_after = after;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server (for processes that read `KUBECONFIG`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: fake\n",
            self.url()
        )
    }

    /// Makes the next `times` requests whose method is `method` and whose `path?query`
    /// contains `path_contains` fail with `status` (429 carries `Retry-After`).
    pub fn fail_next(&self, method: Method, path_contains: &str, status: u16, times: u32) {
        self.shared.inner().faults.push(Fault {
            method,
            path_contains: path_contains.into(),
            status,
            remaining: times,
            message: None,
        });
    }

    /// As [`Self::fail_next`], with the Status message a real server would give (e.g.
    /// RBAC's `… cannot create resource "pods" …`).
    pub fn refuse_next(
        &self,
        method: Method,
        path_contains: &str,
        status: u16,
        message: &str,
        times: u32,
    ) {
        self.shared.inner().faults.push(Fault {
            method,
            path_contains: path_contains.into(),
            status,
            remaining: times,
            message: Some(message.into()),
        });
    }

    /// Drops every injected fault not yet used.
    pub fn clear_faults(&self) {
        self.shared.inner().faults.clear();
    }

    /// Makes every request but watches take at least `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.inner().latency = latency;
    }

    /// Forgets the event history: watches resuming from an older version get 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.shared.inner();
        inner.compacted = inner.rv;
        inner.history.clear();
    }

    /// Cuts every open watch, as an apiserver restart does.
    pub fn drop_watches(&self) {
        self.shared.restarts.send_modify(|n| *n += 1);
    }

    /// `METHOD path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.inner().requests.clone()
    }

    /// Every request so far with the instant it arrived (benchmarks time runtime calls).
    pub fn timed_requests(&self) -> Vec<(std::time::Instant, String)> {
        let inner = self.shared.inner();
        inner
            .arrivals
            .iter()
            .copied()
            .zip(inner.requests.iter().cloned())
            .collect()
    }

    /// One stored object (`resource` is the plural: `pods`, `namespaces`, ...).
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .inner()
            .objects
            .get(&key(resource, namespace, name))
            .cloned()
    }

    /// Every stored object of a resource, in every namespace.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        let inner = self.shared.inner();
        scoped(&inner.objects, resource, "")
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The pods of `namespace` that are not being deleted.
    pub fn live_pods(&self, namespace: &str) -> Vec<Value> {
        let inner = self.shared.inner();
        scoped(&inner.objects, "pods", namespace)
            .filter(|(k, pod)| is_live_pod(k, pod, namespace))
            .map(|(_, pod)| pod.clone())
            .collect()
    }

    /// How many pods of `namespace` are Ready and not being deleted (without copying them:
    /// benchmarks poll this while they measure).
    pub fn ready_pods(&self, namespace: &str) -> usize {
        let inner = self.shared.inner();
        scoped(&inner.objects, "pods", namespace)
            .filter(|(k, pod)| {
                is_live_pod(k, pod, namespace)
                    && pod["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count()
    }

    /// Replaces a pod's status, as the kubelet reports it.
    pub fn set_pod_status(&self, namespace: &str, name: &str, status: Value) -> bool {
        let mut inner = self.shared.inner();
        let k = key("pods", namespace, name);
        let Some(mut pod) = inner.objects.get(&k).cloned() else {
            return false;
        };
        pod["status"] = status;
        self.shared.commit(&mut inner, "MODIFIED", k, pod);
        true
    }

    /// Removes a pod at once (eviction, node loss), with no graceful phase.
    pub fn remove_pod(&self, namespace: &str, name: &str) -> bool {
        let mut inner = self.shared.inner();
        let k = key("pods", namespace, name);
        let Some(pod) = inner.objects.get(&k).cloned() else {
            return false;
        };
        self.shared.commit(&mut inner, "DELETED", k, pod);
        true
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.lock().unwrap_or_else(|p| p.into_inner()).abort();
    }
}

fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().fallback(handle).with_state(shared);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

fn key(resource: &str, namespace: &str, name: &str) -> Key {
    Key {
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// The stored objects of `resource` in `namespace` (every namespace when empty), found by a
/// range of the ordered map instead of a scan of every object: benchmarks poll and list
/// namespaces of 10 000 pods while others hold as many.
fn scoped<'a>(
    objects: &'a BTreeMap<Key, Value>,
    resource: &'a str,
    namespace: &'a str,
) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
    objects
        .range(key(resource, namespace, "")..)
        .take_while(move |(k, _)| {
            k.resource == resource && (namespace.is_empty() || k.namespace == namespace)
        })
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn uuid_like(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// `(apiVersion, kind, namespaced)` of each resource the fake serves.
fn resource_info(resource: &str) -> Option<(&'static str, &'static str, bool)> {
    Some(match resource {
        "pods" => ("v1", "Pod", true),
        "secrets" => ("v1", "Secret", true),
        "namespaces" => ("v1", "Namespace", false),
        "nodes" => ("v1", "Node", false),
        "poddisruptionbudgets" => ("policy/v1", "PodDisruptionBudget", true),
        _ => return None,
    })
}

fn status_error(code: u16, reason: &str, message: String) -> Response {
    status_error_with(code, reason, message, Value::Null)
}

/// A `Status` failure with `details` (the object's name and kind, and causes) when given.
fn status_error_with(code: u16, reason: &str, message: String, details: Value) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if !details.is_null() {
        body["details"] = details;
    }
    let mut response = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
    }
    response
}

fn not_found(resource: &str, name: &str) -> Response {
    status_error(404, "NotFound", format!("{resource} \"{name}\" not found"))
}

/// Where a request points: a collection (`name` empty) or one object, maybe its status.
struct Target {
    resource: String,
    namespace: String,
    name: String,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let rest = path
        .strip_prefix("/api/v1/")
        .or_else(|| path.strip_prefix("/apis/policy/v1/"))?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let target = |resource: &str, namespace: &str, name: &str, status: bool| Target {
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        status,
    };
    match parts.as_slice() {
        [resource] => Some(target(resource, "", "", false)),
        ["namespaces", ns, resource] => Some(target(resource, ns, "", false)),
        ["namespaces", ns, resource, name] => Some(target(resource, ns, name, false)),
        ["namespaces", ns, resource, name, "status"] => Some(target(resource, ns, name, true)),
        [resource, name] => Some(target(resource, "", name, false)),
        _ => None,
    }
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn is_live_pod(key: &Key, pod: &Value, namespace: &str) -> bool {
    key.resource == "pods"
        && key.namespace == namespace
        && pod["metadata"]["deletionTimestamp"].is_null()
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // `Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`.
    let metadata_only = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=PartialObjectMetadataList"));
    let query = query_map(request.uri().query());
    let latency = shared.inner().latency;
    if !latency.is_zero() && !query.contains_key("watch") {
        tokio::time::sleep(latency).await;
    }
    {
        let mut inner = shared.inner();
        if inner.down {
            return status_error(
                503,
                "ServiceUnavailable",
                "apiserver is shutting down".into(),
            );
        }
        inner.arrivals.push(std::time::Instant::now());
        inner.requests.push(match request.uri().query() {
            Some(q) => format!("{method} {path}?{q}"),
            None => format!("{method} {path}"),
        });
        let full = inner.requests.last().cloned().unwrap_or_default();
        if let Some(fault) = inner
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && full.contains(&f.path_contains))
        {
            fault.remaining -= 1;
            let status = fault.status;
            let message = fault
                .message
                .clone()
                .unwrap_or_else(|| format!("injected fault on {method} {path}"));
            let reason = match status {
                403 => "Forbidden",
                409 => "Conflict",
                410 => "Expired",
                422 => "Invalid",
                429 => "TooManyRequests",
                503 => "ServiceUnavailable",
                _ => "InternalError",
            };
            return status_error(status, reason, message);
        }
    }
    let Some(target) = parse_path(&path) else {
        return status_error(404, "NotFound", format!("the server could not find {path}"));
    };
    let Some((api_version, kind, namespaced)) = resource_info(&target.resource) else {
        return status_error(
            404,
            "NotFound",
            format!("unknown resource {}", target.resource),
        );
    };
    let body = match axum::body::to_bytes(request.into_body(), 16 << 20).await {
        Ok(body) => body,
        Err(e) => return status_error(400, "BadRequest", e.to_string()),
    };
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => return status_error(400, "BadRequest", format!("invalid JSON: {e}")),
        }
    };
    let namespace = if namespaced {
        target.namespace.clone()
    } else {
        String::new()
    };
    match (method.clone(), target.name.is_empty()) {
        (Method::GET, true) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_stream(shared, target, query)
        }
        (Method::GET, true) if metadata_only => list_metadata(&shared, &target, &query),
        (Method::GET, true) => list(&shared, &target, &query, api_version, kind),
        (Method::GET, false) => {
            match shared
                .inner()
                .objects
                .get(&key(&target.resource, &namespace, &target.name))
            {
                Some(object) => axum::Json(object.clone()).into_response(),
                None => not_found(&target.resource, &target.name),
            }
        }
        (Method::POST, true) => match parsed {
            Some(object) => create(
                &shared,
                &target.resource,
                &namespace,
                object,
                api_version,
                kind,
            ),
            None => status_error(400, "BadRequest", "a body is required".into()),
        },
        (Method::PUT, false) => match parsed {
            Some(object) => replace(&shared, &target, &namespace, object),
            None => status_error(400, "BadRequest", "a body is required".into()),
        },
        (Method::PATCH, false) => match parsed {
            Some(patch) => patch_object(&shared, &target, &namespace, &patch),
            None => status_error(400, "BadRequest", "a body is required".into()),
        },
        (Method::DELETE, false) => {
            let grace = parsed
                .as_ref()
                .and_then(|b| b["gracePeriodSeconds"].as_u64())
                .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
            let uid = parsed
                .as_ref()
                .and_then(|b| b["preconditions"]["uid"].as_str());
            delete(
                &shared,
                &target.resource,
                &namespace,
                &target.name,
                grace,
                uid,
            )
        }
        _ => status_error(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        ),
    }
}

/// Label selector terms: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.
fn matches_selector(labels: &Value, selector: &str) -> bool {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
    terms
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .all(|term| {
            let set = |rest: &str| -> Vec<String> {
                rest.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect()
            };
            if let Some((k, v)) = term.split_once("!=") {
                label(k) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                label(k) == Some(v.trim())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                label(k).is_none_or(|v| !set(rest).iter().any(|s| s == v))
            } else if let Some((k, rest)) = term.split_once(" in ") {
                label(k).is_some_and(|v| set(rest).iter().any(|s| s == v))
            } else if let Some(k) = term.strip_prefix('!') {
                label(k).is_none()
            } else {
                label(term).is_some()
            }
        })
}

fn selected(target: &Target, query: &BTreeMap<String, String>, k: &Key, object: &Value) -> bool {
    k.resource == target.resource
        && (target.namespace.is_empty() || k.namespace == target.namespace)
        && query
            .get("labelSelector")
            .is_none_or(|s| matches_selector(&object["metadata"]["labels"], s))
}

fn list(
    shared: &Shared,
    target: &Target,
    query: &BTreeMap<String, String>,
    api_version: &str,
    kind: &str,
) -> Response {
    list_as(
        shared,
        target,
        query,
        (&format!("{kind}List"), api_version),
        |o| {
            // Items of a real list carry no kind/apiVersion.
            let mut item = o.clone();
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        },
    )
}

/// A list as `PartialObjectMetadataList`: each item only its kind and metadata, as a real
/// API server answers a client that asked for metadata.
fn list_metadata(shared: &Shared, target: &Target, query: &BTreeMap<String, String>) -> Response {
    let list_type = ("PartialObjectMetadataList", "meta.k8s.io/v1");
    list_as(shared, target, query, list_type, |o| {
        json!({
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": o["metadata"].clone(),
        })
    })
}

/// The selected objects, each shaped by `item`, in a list of `(kind, apiVersion)`.
fn list_as(
    shared: &Shared,
    target: &Target,
    query: &BTreeMap<String, String>,
    (kind, api_version): (&str, &str),
    item: impl Fn(&Value) -> Value,
) -> Response {
    let inner = shared.inner();
    let items: Vec<Value> = scoped(&inner.objects, &target.resource, &target.namespace)
        .filter(|(k, o)| selected(target, query, k, o))
        .map(|(_, o)| item(o))
        .collect();
    let rv = inner.rv;
    // Encoded after the lock is released, as other requests need it.
    drop(inner);
    axum::Json(json!({
        "kind": kind, "apiVersion": api_version,
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    }))
    .into_response()
}

fn create(
    shared: &Arc<Shared>,
    resource: &str,
    namespace: &str,
    mut object: Value,
    api_version: &str,
    kind: &str,
) -> Response {
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return status_error(
            422,
            "Invalid",
            format!("{kind}: metadata.name: Required value"),
        );
    };
    let created = {
        let mut inner = shared.inner();
        if !namespace.is_empty()
            && !inner
                .objects
                .contains_key(&key("namespaces", "", namespace))
        {
            return not_found("namespaces", namespace);
        }
        let k = key(resource, namespace, &name);
        if inner.objects.contains_key(&k) {
            return status_error(
                409,
                "AlreadyExists",
                format!("{resource} \"{name}\" already exists"),
            );
        }
        let level = inner.pod_security_default.clone();
        if let Err(refusal) =
            admission::admit(&inner, resource, kind, namespace, &name, &object, &level)
        {
            return *refusal;
        }
        let uid = uuid_like(inner.rv + 1);
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["creationTimestamp"] = json!(now());
        if !namespace.is_empty() {
            object["metadata"]["namespace"] = json!(namespace);
        }
        match resource {
            "pods" => object["status"] = json!({"phase": "Pending", "qosClass": "Burstable"}),
            // As a real server stores it: `stringData` merged into `data`, base64.
            "secrets" => {
                use base64::Engine as _;
                if let Some(plain) = object
                    .as_object_mut()
                    .and_then(|o| o.remove("stringData"))
                    .and_then(|p| p.as_object().cloned())
                {
                    for (k, v) in plain {
                        let encoded = base64::engine::general_purpose::STANDARD
                            .encode(v.as_str().unwrap_or_default());
                        object["data"][k] = json!(encoded);
                    }
                }
            }
            "namespaces" => object["status"] = json!({"phase": "Active"}),
            _ => {}
        }
        shared.commit(&mut inner, "ADDED", k, object)
    };
    if resource == "pods"
        && let Some(kubelet) = shared.kubelet.clone()
    {
        tokio::spawn(run_pod(
            shared.clone(),
            kubelet,
            namespace.to_string(),
            name,
        ));
    }
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

/// The fake kubelet: binds the pod to its node, then makes it ready.
async fn run_pod(shared: Arc<Shared>, kubelet: Kubelet, namespace: String, name: String) {
    let k = key("pods", &namespace, &name);
    {
        let mut inner = shared.inner();
        let Some(mut pod) = inner.objects.get(&k).cloned() else {
            return;
        };
        pod["spec"]["nodeName"] = json!(kubelet.node);
        pod["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
        shared.commit(&mut inner, "MODIFIED", k.clone(), pod);
    }
    tokio::time::sleep(kubelet.ready_after).await;
    let mut inner = shared.inner();
    let Some(mut pod) = inner.objects.get(&k).cloned() else {
        return;
    };
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return;
    }
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c["name"], "image": c["image"], "ready": true, "restartCount": 0,
                "started": true, "state": {"running": {"startedAt": now()}},
            })
        })
        .collect();
    pod["status"] = json!({
        "phase": "Running", "hostIP": kubelet.internal_ip, "podIP": "10.244.0.10",
        "startTime": now(),
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "containerStatuses": containers,
    });
    shared.commit(&mut inner, "MODIFIED", k, pod);
}

fn replace(shared: &Shared, target: &Target, namespace: &str, mut object: Value) -> Response {
    let mut inner = shared.inner();
    let k = key(&target.resource, namespace, &target.name);
    let Some(current) = inner.objects.get(&k).cloned() else {
        return not_found(&target.resource, &target.name);
    };
    let given = object["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string);
    if let Some(given) = given
        && Some(given.as_str()) != current["metadata"]["resourceVersion"].as_str()
    {
        return status_error(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                target.resource, target.name
            ),
        );
    }
    for field in ["uid", "creationTimestamp", "namespace"] {
        object["metadata"][field] = current["metadata"][field].clone();
    }
    if !target.status {
        object["status"] = current["status"].clone();
    }
    let stored = shared.commit(&mut inner, "MODIFIED", k, object);
    axum::Json(stored).into_response()
}

fn patch_object(shared: &Shared, target: &Target, namespace: &str, patch: &Value) -> Response {
    let mut inner = shared.inner();
    let k = key(&target.resource, namespace, &target.name);
    let Some(mut object) = inner.objects.get(&k).cloned() else {
        return not_found(&target.resource, &target.name);
    };
    json_patch::merge(&mut object, patch);
    let stored = shared.commit(&mut inner, "MODIFIED", k, object);
    axum::Json(stored).into_response()
}

fn delete(
    shared: &Arc<Shared>,
    resource: &str,
    namespace: &str,
    name: &str,
    grace: Option<u64>,
    precondition_uid: Option<&str>,
) -> Response {
    let mut inner = shared.inner();
    let k = key(resource, namespace, name);
    let Some(object) = inner.objects.get(&k).cloned() else {
        return not_found(resource, name);
    };
    if let Some(wanted) = precondition_uid
        && object["metadata"]["uid"].as_str() != Some(wanted)
    {
        return status_error(
            409,
            "Conflict",
            format!(
                "Precondition failed: UID in precondition: {wanted}, UID in object meta: {}",
                object["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        );
    }
    if resource == "namespaces" {
        return terminate_namespace(shared, &mut inner, k, object);
    }
    let stored = delete_locked(shared, &mut inner, k, object, grace);
    axum::Json(stored).into_response()
}

/// Deletes one stored object; a pod on a node goes through its graceful phase first.
fn delete_locked(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    k: Key,
    mut object: Value,
    grace: Option<u64>,
) -> Value {
    let on_node = object["spec"]["nodeName"].is_string();
    if k.resource != "pods" || !on_node || grace == Some(0) {
        return shared.commit(inner, "DELETED", k, object);
    }
    if object["metadata"]["deletionTimestamp"].is_string() {
        return object;
    }
    let grace = grace
        .or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_u64())
        .unwrap_or(30);
    object["metadata"]["deletionTimestamp"] = json!(now());
    object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    let stored = shared.commit(inner, "MODIFIED", k.clone(), object);
    let stop_after = shared
        .kubelet
        .as_ref()
        .map_or(Duration::ZERO, |kl| kl.stop_after)
        .min(Duration::from_secs(grace));
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(stop_after).await;
        let mut inner = shared.inner();
        if let Some(pod) = inner.objects.get(&k).cloned() {
            shared.commit(&mut inner, "DELETED", k, pod);
        }
    });
    stored
}

/// A namespace deletion as a real apiserver runs it: the namespace turns `Terminating`
/// (new content refused), its content is deleted (pods gracefully), and the namespace
/// itself goes once its content is gone and the finalize delay has passed.
fn terminate_namespace(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    k: Key,
    mut namespace: Value,
) -> Response {
    if namespace["metadata"]["deletionTimestamp"].is_string() {
        return axum::Json(namespace).into_response();
    }
    namespace["metadata"]["deletionTimestamp"] = json!(now());
    namespace["status"]["phase"] = json!("Terminating");
    let stored = shared.commit(inner, "MODIFIED", k.clone(), namespace);
    let contained: Vec<(Key, Value)> = inner
        .objects
        .iter()
        .filter(|(ok, _)| ok.namespace == k.name)
        .map(|(ok, o)| (ok.clone(), o.clone()))
        .collect();
    for (ok, o) in contained {
        delete_locked(shared, inner, ok, o, None);
    }
    let finalize_after = inner.namespace_finalize_after;
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(finalize_after).await;
        loop {
            {
                let mut inner = shared.inner();
                if !inner.objects.keys().any(|ok| ok.namespace == k.name) {
                    if let Some(ns) = inner.objects.get(&k).cloned() {
                        shared.commit(&mut inner, "DELETED", k, ns);
                    }
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    axum::Json(stored).into_response()
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn watch_stream(shared: Arc<Shared>, target: Target, query: BTreeMap<String, String>) -> Response {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(290), Duration::from_secs);
    let (api_version, kind, _) = resource_info(&target.resource).unwrap_or(("v1", "Status", false));
    let (backlog, mut live, expired) = {
        let inner = shared.inner();
        if from != 0 && from < inner.compacted {
            (Vec::new(), shared.changes.subscribe(), true)
        } else {
            let backlog: Vec<Bytes> = if from == 0 {
                scoped(&inner.objects, &target.resource, &target.namespace)
                    .filter(|(k, o)| selected(&target, &query, k, o))
                    .map(|(_, o)| event_line("ADDED", o))
                    .collect()
            } else {
                inner
                    .history
                    .iter()
                    .filter(|c| c.rv > from && selected(&target, &query, &c.key, &c.object))
                    .map(|c| event_line(c.kind, &c.object))
                    .collect()
            };
            (backlog, shared.changes.subscribe(), false)
        }
    };
    let mut restarts = shared.restarts.subscribe();
    let bookmark_every = shared.bookmark_every;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1024);
    tokio::spawn(async move {
        if expired {
            let gone = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410,
            });
            let _ = tx.send(Ok(event_line("ERROR", &gone))).await;
            return;
        }
        for line in backlog {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = tokio::time::interval(bookmark_every);
        restarts.borrow_and_update();
        loop {
            let line = tokio::select! {
                // A restart wins over pending changes: those are for the relist to find.
                biased;
                _ = restarts.changed() => return,
                change = live.recv() => match change {
                    Ok(c) if selected(&target, &query, &c.key, &c.object) && c.rv > from => event_line(c.kind, &c.object),
                    Ok(_) => continue,
                    // Too slow to follow: end the watch, the client resumes or relists.
                    Err(_) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    let rv = shared.inner().rv;
                    event_line("BOOKMARK", &json!({
                        "kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": rv.to_string()},
                    }))
                }
                _ = tokio::time::sleep_until(deadline) => return,
            };
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_follow_kubernetes_syntax() {
        let labels = json!({"heritage": "maestro", "version": "v1.0", "tier": "game"});
        for (selector, want) in [
            ("heritage=maestro", true),
            ("heritage==maestro,version=v1.0", true),
            ("heritage!=maestro", false),
            ("tier", true),
            ("!tier", false),
            ("!absent", true),
            ("version in (v1.0, v2.0)", true),
            ("version notin (v1.0)", false),
            ("version in (v2.0),heritage=maestro", false),
            ("", true),
        ] {
            assert_eq!(matches_selector(&labels, selector), want, "{selector}");
        }
    }

    /// A range finds exactly what a scan of every object filtered by resource and namespace
    /// finds, next to namespaces that share a prefix and resources around it.
    #[test]
    fn scoped_finds_what_a_full_scan_finds() {
        let mut objects = BTreeMap::new();
        for (resource, namespace, name) in [
            ("namespaces", "", "a"),
            ("pods", "", "cluster-scoped-oddity"),
            ("pods", "a", "p1"),
            ("pods", "a", "p2"),
            ("pods", "ab", "p1"),
            ("pods", "b", "p1"),
            ("secrets", "a", "p1"),
            ("podsx", "a", "p1"),
        ] {
            objects.insert(key(resource, namespace, name), json!(name));
        }
        for (resource, namespace) in [
            ("pods", "a"),
            ("pods", ""),
            ("pods", "ab"),
            ("pods", "c"),
            ("secrets", ""),
        ] {
            let scanned: Vec<&Key> = objects
                .keys()
                .filter(|k| {
                    k.resource == resource && (namespace.is_empty() || k.namespace == namespace)
                })
                .collect();
            let ranged: Vec<&Key> = scoped(&objects, resource, namespace)
                .map(|(k, _)| k)
                .collect();
            assert_eq!(ranged, scanned, "{resource} in {namespace:?}");
        }
    }
}
