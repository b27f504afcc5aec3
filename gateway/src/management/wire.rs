//! Management answers as Maestro's grpc-gateway writes them: protojson of Maestro's
//! `api.v1` messages with `EmitUnpopulated` (every field present: `""`, `0`, `[]`, `{}`,
//! `null` for an unset message; proto3 `optional` fields only when set), `int64` as strings,
//! durations as `"30s"`, and by default nothing the message lacks, so a client generated
//! from Maestro's protos that rejects unknown fields decodes every answer.
//!
//! Our extensions (`seq`, `startedAt`, `error`, `roomTokenRequired`, …) stay in the answer
//! when the request asks for them with the `x-maestro-extensions: true` header (our CLI
//! sends it). The message shapes below are our transcription of Maestro's
//! `proto/api/v1/{messages,schedulers,operations}.proto` (names and kinds, no more).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value};

/// The request header that keeps our extensions in management answers.
pub const EXTENSIONS_HEADER: &str = "x-maestro-extensions";

/// A field's protobuf type, as far as protojson writes it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    Int32,
    /// Written as a JSON string.
    Int64,
    Uint32,
    Bool,
    Float,
    /// RFC 3339 text.
    Timestamp,
    /// `"<seconds>s"`.
    Duration,
    /// `google.protobuf.Struct`: any object.
    Struct,
    Message(&'static Message),
}

/// How many values a field holds, and whether protojson writes it when unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    /// Always written (a zero value, or `null` for a message).
    Single,
    /// proto3 `optional`: written only when set.
    Optional,
    Repeated,
    /// `map<string, kind>`.
    Map,
}

#[derive(Debug)]
pub struct Field {
    pub json: &'static str,
    pub kind: Kind,
    pub card: Card,
}

#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

const fn f(json: &'static str, kind: Kind) -> Field {
    Field {
        json,
        kind,
        card: Card::Single,
    }
}

const fn opt(json: &'static str, kind: Kind) -> Field {
    Field {
        json,
        kind,
        card: Card::Optional,
    }
}

const fn list(json: &'static str, kind: Kind) -> Field {
    Field {
        json,
        kind,
        card: Card::Repeated,
    }
}

const fn map(json: &'static str, kind: Kind) -> Field {
    Field {
        json,
        kind,
        card: Card::Map,
    }
}

use Kind::{Bool, Duration, Float, Int32, Int64, Str, Struct, Timestamp, Uint32};

const fn msg(m: &'static Message) -> Kind {
    Kind::Message(m)
}

pub static PORT_RANGE: Message = Message {
    name: "PortRange",
    fields: &[f("start", Int32), f("end", Int32)],
};
pub static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        f("name", Str),
        f("protocol", Str),
        f("port", Int32),
        f("hostPort", Int32),
        opt("hostPortRange", msg(&PORT_RANGE)),
    ],
};
pub static RESOURCES: Message = Message {
    name: "ContainerResources",
    fields: &[f("memory", Str), f("cpu", Str)],
};
static FIELD_REF: Message = Message {
    name: "ContainerEnvironmentValueFromFieldRef",
    fields: &[f("fieldPath", Str)],
};
static SECRET_KEY_REF: Message = Message {
    name: "ContainerEnvironmentValueFromSecretKeyRef",
    fields: &[f("name", Str), f("key", Str)],
};
static VALUE_FROM: Message = Message {
    name: "ContainerEnvironmentValueFrom",
    fields: &[
        opt("fieldRef", msg(&FIELD_REF)),
        opt("secretKeyRef", msg(&SECRET_KEY_REF)),
    ],
};
static ENVIRONMENT: Message = Message {
    name: "ContainerEnvironment",
    fields: &[
        f("name", Str),
        opt("value", Str),
        opt("valueFrom", msg(&VALUE_FROM)),
    ],
};
static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        f("name", Str),
        f("image", Str),
        f("imagePullPolicy", Str),
        list("command", Str),
        list("environment", msg(&ENVIRONMENT)),
        f("requests", msg(&RESOURCES)),
        f("limits", msg(&RESOURCES)),
        list("ports", msg(&CONTAINER_PORT)),
    ],
};
static SPEC: Message = Message {
    name: "Spec",
    fields: &[
        f("version", Str),
        f("terminationGracePeriod", Duration),
        list("containers", msg(&CONTAINER)),
        f("toleration", Str),
        f("affinity", Str),
        opt("restartPolicy", Str),
    ],
};
static ROOM_OCCUPANCY: Message = Message {
    name: "RoomOccupancy",
    fields: &[f("readyTarget", Float), opt("downThreshold", Float)],
};
static FIXED_BUFFER: Message = Message {
    name: "FixedBuffer",
    fields: &[opt("amount", Int32)],
};
static POLICY_PARAMETERS: Message = Message {
    name: "PolicyParameters",
    fields: &[
        opt("roomOccupancy", msg(&ROOM_OCCUPANCY)),
        opt("fixedBuffer", msg(&FIXED_BUFFER)),
    ],
};
static POLICY: Message = Message {
    name: "AutoscalingPolicy",
    fields: &[f("type", Str), f("parameters", msg(&POLICY_PARAMETERS))],
};
static AUTOSCALING: Message = Message {
    name: "Autoscaling",
    fields: &[
        f("enabled", Bool),
        f("min", Int32),
        f("max", Int32),
        f("policy", msg(&POLICY)),
        f("cooldown", Int32),
    ],
};
static FORWARDER_OPTIONS: Message = Message {
    name: "ForwarderOptions",
    fields: &[f("timeout", Int64), f("metadata", Struct)],
};
static FORWARDER: Message = Message {
    name: "Forwarder",
    fields: &[
        f("name", Str),
        f("enable", Bool),
        f("type", Str),
        f("address", Str),
        opt("options", msg(&FORWARDER_OPTIONS)),
    ],
};
static MATCH_ALLOCATION: Message = Message {
    name: "MatchAllocation",
    fields: &[f("maxMatches", Int32)],
};
pub static SCHEDULER: Message = Message {
    name: "Scheduler",
    fields: &[
        f("name", Str),
        f("game", Str),
        f("state", Str),
        f("portRange", msg(&PORT_RANGE)),
        f("createdAt", Timestamp),
        f("maxSurge", Str),
        f("roomsReplicas", Int32),
        f("spec", msg(&SPEC)),
        opt("autoscaling", msg(&AUTOSCALING)),
        list("forwarders", msg(&FORWARDER)),
        map("annotations", Str),
        map("labels", Str),
        opt("matchAllocation", msg(&MATCH_ALLOCATION)),
    ],
};
static SCHEDULER_WITHOUT_SPEC: Message = Message {
    name: "SchedulerWithoutSpec",
    fields: &[
        f("name", Str),
        f("game", Str),
        f("state", Str),
        f("version", Str),
        f("portRange", msg(&PORT_RANGE)),
        f("createdAt", Timestamp),
        f("maxSurge", Str),
        f("roomsReplicas", Int32),
        opt("matchAllocation", msg(&MATCH_ALLOCATION)),
    ],
};
static AUTOSCALING_INFO: Message = Message {
    name: "AutoscalingInfo",
    fields: &[
        f("enabled", Bool),
        f("min", Int32),
        f("max", Int32),
        f("cooldown", Int32),
    ],
};
static SCHEDULER_INFO: Message = Message {
    name: "SchedulerInfo",
    fields: &[
        f("name", Str),
        f("game", Str),
        f("state", Str),
        f("roomsReplicas", Int32),
        f("roomsReady", Int32),
        f("roomsOccupied", Int32),
        f("roomsPending", Int32),
        f("roomsTerminating", Int32),
        f("autoscaling", msg(&AUTOSCALING_INFO)),
        opt("matchAllocation", msg(&MATCH_ALLOCATION)),
    ],
};
static LEASE: Message = Message {
    name: "Lease",
    fields: &[f("ttl", Str)],
};
static OPERATION_EVENT: Message = Message {
    name: "OperationEvent",
    fields: &[f("createdAt", Timestamp), f("event", Str)],
};
static LIST_OPERATION_ITEM: Message = Message {
    name: "ListOperationItem",
    fields: &[
        f("id", Str),
        f("status", Str),
        f("definitionName", Str),
        opt("lease", msg(&LEASE)),
        f("schedulerName", Str),
        f("createdAt", Timestamp),
    ],
};
static OPERATION: Message = Message {
    name: "Operation",
    fields: &[
        f("id", Str),
        f("status", Str),
        f("definitionName", Str),
        opt("lease", msg(&LEASE)),
        f("schedulerName", Str),
        f("createdAt", Timestamp),
        f("input", Struct),
        list("executionHistory", msg(&OPERATION_EVENT)),
    ],
};
static SCHEDULER_VERSION: Message = Message {
    name: "SchedulerVersion",
    fields: &[
        f("version", Str),
        f("isActive", Bool),
        f("createdAt", Timestamp),
    ],
};

// The answers (`…Response`), one per endpoint.
/// `GetSchedulerResponse`, and `CreateSchedulerResponse`, the same one field.
pub static GET_SCHEDULER: Message = Message {
    name: "GetSchedulerResponse",
    fields: &[f("scheduler", msg(&SCHEDULER))],
};
pub static LIST_SCHEDULERS: Message = Message {
    name: "ListSchedulersResponse",
    fields: &[list("schedulers", msg(&SCHEDULER_WITHOUT_SPEC))],
};
pub static SCHEDULERS_INFO: Message = Message {
    name: "GetSchedulersInfoResponse",
    fields: &[list("schedulers", msg(&SCHEDULER_INFO))],
};
pub static VERSIONS: Message = Message {
    name: "GetSchedulerVersionsResponse",
    fields: &[list("versions", msg(&SCHEDULER_VERSION))],
};
/// What every change answers (`NewSchedulerVersionResponse`, `PatchSchedulerResponse`,
/// `SwitchActiveVersionResponse`, `DeleteSchedulerResponse`: the same one field).
pub static OPERATION_ACCEPTED: Message = Message {
    name: "NewSchedulerVersionResponse",
    fields: &[f("operationId", Str)],
};
pub static LIST_OPERATIONS: Message = Message {
    name: "ListOperationsResponse",
    fields: &[
        opt("page", Uint32),
        opt("pageSize", Uint32),
        opt("total", Uint32),
        list("operations", msg(&LIST_OPERATION_ITEM)),
    ],
};
pub static GET_OPERATION: Message = Message {
    name: "GetOperationResponse",
    fields: &[f("operation", msg(&OPERATION))],
};
pub static CANCEL_OPERATION: Message = Message {
    name: "CancelOperationResponse",
    fields: &[],
};

/// Marks an answer as the JSON of `message`, for [`shape_answers`].
#[derive(Debug, Clone, Copy)]
pub struct Shape(pub &'static Message);

/// Whether the request asked for our extensions.
pub fn wants_extensions(headers: &HeaderMap) -> bool {
    headers
        .get(EXTENSIONS_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1")
}

/// Rewrites `value` as protojson of `message` writes it; `keep` leaves fields the
/// message lacks (our extensions) in place.
pub fn conform(value: &mut Value, message: &Message, keep: bool) {
    let Value::Object(object) = value else {
        return;
    };
    if !keep {
        object.retain(|key, _| message.fields.iter().any(|f| f.json == key));
    }
    for field in message.fields {
        let present = object.get(field.json).is_some_and(|v| !v.is_null());
        if !present {
            match unpopulated(field) {
                Some(zero) => object.insert(field.json.to_string(), zero),
                None => object.remove(field.json),
            };
            continue;
        }
        let Some(slot) = object.get_mut(field.json) else {
            continue;
        };
        match field.card {
            Card::Single | Card::Optional => conform_value(slot, field.kind, keep),
            Card::Repeated => {
                if let Value::Array(items) = slot {
                    items
                        .iter_mut()
                        .for_each(|v| conform_value(v, field.kind, keep));
                }
            }
            Card::Map => {
                if let Value::Object(entries) = slot {
                    entries
                        .values_mut()
                        .for_each(|v| conform_value(v, field.kind, keep));
                }
            }
        }
    }
}

/// What protojson with `EmitUnpopulated` writes for an unset field (`None`: nothing).
fn unpopulated(field: &Field) -> Option<Value> {
    Some(match field.card {
        Card::Optional => return None,
        Card::Repeated => Value::Array(Vec::new()),
        Card::Map => Value::Object(Map::new()),
        Card::Single => match field.kind {
            Str => Value::String(String::new()),
            Int32 | Uint32 | Float => Value::from(0),
            Int64 => Value::String("0".into()),
            Bool => Value::Bool(false),
            Timestamp | Duration | Struct | Kind::Message(_) => Value::Null,
        },
    })
}

fn conform_value(value: &mut Value, kind: Kind, keep: bool) {
    match kind {
        Int64 => {
            if let Value::Number(n) = value {
                *value = Value::String(n.to_string());
            }
        }
        Duration => {
            if let Value::String(text) = value
                && let Ok(d) = maestro_core::time::parse_duration(text)
            {
                *value = Value::String(protojson_duration(d));
            }
        }
        Kind::Message(message) => conform(value, message, keep),
        Str | Int32 | Uint32 | Bool | Float | Timestamp | Struct => {}
    }
}

/// `google.protobuf.Duration` in protojson: seconds, with 3, 6 or 9 fractional digits when
/// there is a fraction (`"100s"`, `"1.500s"`).
fn protojson_duration(d: std::time::Duration) -> String {
    let nanos = d.subsec_nanos();
    match nanos {
        0 => format!("{}s", d.as_secs()),
        n if n % 1_000_000 == 0 => format!("{}.{:03}s", d.as_secs(), n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}.{:06}s", d.as_secs(), n / 1_000),
        n => format!("{}.{n:09}s", d.as_secs()),
    }
}

/// Writes every answer marked with a [`Shape`] as its Maestro message (see the module doc).
/// Answers without one (errors, dry runs, our own endpoints) pass as they are.
pub async fn shape_answers(request: Request, next: Next) -> Response {
    let keep = wants_extensions(request.headers());
    let response = next.run(request).await;
    let Some(Shape(message)) = response.extensions().get::<Shape>().copied() else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    // Our own answer, already in memory: no limit is needed beyond what it is.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    conform(&mut value, message, keep);
    let Ok(encoded) = serde_json::to_vec(&value) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(encoded))
}

#[cfg(test)]
mod tests;
