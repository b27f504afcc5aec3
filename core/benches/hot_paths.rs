//! Criterion suite for the hot pure code: each group measures Maestro's function (`maestro`)
//! and a baseline doing the least the same input needs (`baseline`), so `docs/benchmarks.md`
//! can show ratios. CI runs it with `--quick`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use maestro_core::autoscaling::{Fleet, decide};
use maestro_core::{GameRoom, InstanceStatus, PingStatus, Scheduler, Timestamp, Version};
use maestro_proto::http::PingRequest;
use maestro_proto::rooms::UpdateRoomWithPingRequest;
use prost::Message;
use serde_json::{Value, json};

fn document() -> String {
    json!({
        "name": "bench-game", "game": "bench", "maxSurge": "10%", "roomsReplicas": 10,
        "portRange": {"start": 40000, "end": 41000},
        "autoscaling": {"enabled": true, "min": 1, "max": 1000, "cooldown": 60,
            "policy": {"type": "roomOccupancy",
                       "parameters": {"roomOccupancy": {"readyTarget": 0.5, "downThreshold": 0.9}}}},
        "spec": {"terminationGracePeriod": "30s", "containers": [{
            "name": "room", "image": "example/game-room:1.2.3", "imagePullPolicy": "IfNotPresent",
            "command": ["/game-room", "--port", "7777"],
            "environment": [{"name": "MODE", "value": "ranked"}],
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
            "ports": [{"name": "game", "protocol": "udp", "port": 7777}]}]}
    })
    .to_string()
}

const PING: &[u8] = br#"{"status":"occupied","timestamp":1764100000,"runningMatches":1,"metadata":{"region":"eu"}}"#;

fn scheduler_document(c: &mut Criterion) {
    let doc = document();
    let mut group = c.benchmark_group("scheduler_document");
    group.bench_function("maestro", |b| {
        b.iter(|| {
            let scheduler: Scheduler = serde_json::from_str(black_box(&doc)).unwrap();
            scheduler.validate().unwrap();
            scheduler
        })
    });
    group.bench_function("baseline", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(&doc)).unwrap())
    });
    group.finish();
}

fn ping_json(c: &mut Criterion) {
    let mut group = c.benchmark_group("ping_json");
    group.bench_function("maestro", |b| {
        b.iter(|| serde_json::from_slice::<PingRequest>(black_box(PING)).unwrap())
    });
    group.bench_function("baseline", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(PING)).unwrap())
    });
    group.finish();
}

fn ping_protobuf(c: &mut Criterion) {
    let bytes = UpdateRoomWithPingRequest {
        scheduler_name: "bench-game".into(),
        room_name: "bench-game-0a1b2c3d".into(),
        status: "occupied".into(),
        timestamp: 1_764_100_000,
        metadata: None,
        running_matches: 1,
    }
    .encode_to_vec();
    let mut group = c.benchmark_group("ping_protobuf");
    group.bench_function("maestro", |b| {
        b.iter(|| UpdateRoomWithPingRequest::decode(black_box(bytes.as_slice())).unwrap())
    });
    // The same message as JSON, decoded into a JSON value.
    group.bench_function("baseline", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(PING)).unwrap())
    });
    group.finish();
}

fn room(i: u32) -> GameRoom {
    let now = Timestamp::from_unix_millis(1_764_100_000_000);
    let mut room = GameRoom::new(
        format!("bench-game-{i:08}"),
        "bench-game",
        Version::FIRST,
        1,
        now,
    );
    room.apply_instance(InstanceStatus::Ready, now);
    room.apply_ping(
        if i.is_multiple_of(2) {
            PingStatus::Occupied
        } else {
            PingStatus::Ready
        },
        i % 2,
        None,
        now,
    );
    room
}

fn status_mapping(c: &mut Criterion) {
    let base = room(1);
    let now = Timestamp::from_unix_millis(1_764_100_001_000);
    let mut group = c.benchmark_group("status_mapping");
    group.bench_function("maestro", |b| {
        b.iter(|| {
            let mut room = black_box(&base).clone();
            room.apply_ping(PingStatus::Occupied, 1, None, now);
            room
        })
    });
    group.bench_function("baseline", |b| b.iter(|| black_box(&base).clone()));
    group.finish();
}

fn autoscaler(c: &mut Criterion) {
    let scheduler: Scheduler = serde_json::from_str(&document()).unwrap();
    let autoscaling = scheduler.autoscaling.clone().unwrap();
    let rooms: Vec<GameRoom> = (0..1000).map(room).collect();
    let mut group = c.benchmark_group("autoscaler_1000_rooms");
    group.bench_function("maestro", |b| {
        b.iter(|| decide(&autoscaling, 1, Fleet::of_rooms(black_box(&rooms)), None).unwrap())
    });
    // Reading the same rooms once: the least any decision over them costs.
    group.bench_function("baseline", |b| {
        b.iter(|| {
            black_box(&rooms)
                .iter()
                .map(|r| u64::from(r.running_matches))
                .sum::<u64>()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    scheduler_document,
    ping_json,
    ping_protobuf,
    status_mapping,
    autoscaler
);
criterion_main!(benches);
