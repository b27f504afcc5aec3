use super::*;
use crate::room_env::ENV_ROOMS_API;
use maestro_core::scheduler::{ContainerPort, PortRange};
use std::path::Path;

fn scheduler(name: &str, command: &[&str]) -> Scheduler {
    let mut s = Scheduler::with_command(name, "g", command);
    s.port_range = Some(PortRange {
        start: 41000,
        end: 41001,
    });
    s.spec.termination_grace_period = "5s".into();
    s.spec.containers[0].ports = vec![ContainerPort {
        name: "game".into(),
        protocol: "udp".into(),
        port: 7777,
        host_port: 0,
        host_port_range: None,
    }];
    s
}

fn runtime(dir: &Path) -> ProcessRuntime {
    ProcessRuntime::new(ProcessRuntimeConfig {
        rooms_api: crate::RoomsApiEndpoints {
            http_url: "http://127.0.0.1:1".into(),
            ..Default::default()
        },
        extra_path: vec![],
        log_dir: dir.to_path_buf(),
    })
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maestro-rt-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn rooms_get_the_pod_environment_and_are_idempotent() {
    let dir = temp_dir("env");
    let rt = runtime(&dir);
    let mut events = rt.watch();
    let s = scheduler("envs", &["sh", "-c", "env; sleep 30"]);
    let first = rt.create_room(&s, Version::FIRST, "envs-a").await.unwrap();
    let again = rt.create_room(&s, Version::FIRST, "envs-a").await.unwrap();
    assert_eq!(first, again, "second create returns the same room");
    assert_eq!(rt.pids().len(), 1, "no second process");
    assert_eq!(first.status, InstanceStatus::Ready);
    assert_eq!(first.address.as_ref().unwrap().ports[0].port, 41000);
    assert!(matches!(
        events.next().await,
        Some(RuntimeEvent::Upserted(_))
    ));

    // The env dump lands in the room's log.
    let log = dir.join("envs").join("envs-a.log");
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(ENV_ROOMS_API) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for expected in [
        "MAESTRO_SCHEDULER_NAME=envs",
        "MAESTRO_ROOM_ID=envs-a",
        "MAESTRO_ROOM_VERSION=v1.0.0",
        "MAESTRO_ROOMS_API_URL=http://127.0.0.1:1",
        "MAESTRO_PORT_GAME=41000",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }

    // Ports do not collide between live rooms; the range is then exhausted.
    let second = rt.create_room(&s, Version::FIRST, "envs-b").await.unwrap();
    assert_eq!(second.address.unwrap().ports[0].port, 41001);
    let err = rt
        .create_room(&s, Version::FIRST, "envs-c")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");

    let pids = rt.pids();
    rt.delete_room("envs", "envs-a", Duration::from_secs(2))
        .await
        .unwrap();
    rt.delete_room("envs", "envs-a", Duration::from_secs(2))
        .await
        .unwrap();
    rt.shutdown(Duration::from_secs(2)).await;
    assert!(rt.list_all_rooms().await.unwrap().is_empty());
    for pid in pids {
        assert!(!process_alive(pid), "pid {pid} survived");
    }
}

#[tokio::test]
async fn a_room_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = temp_dir("term");
    let rt = runtime(&dir);
    let s = scheduler("stubborn", &["sh", "-c", "trap '' TERM; sleep 30"]);
    rt.create_room(&s, Version::FIRST, "stubborn-a")
        .await
        .unwrap();
    let pid = rt.pids()[0];
    tokio::time::sleep(Duration::from_millis(200)).await; // let the trap install
    let started = std::time::Instant::now();
    rt.delete_room("stubborn", "stubborn-a", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!process_alive(pid));
}

#[tokio::test]
async fn a_crashed_room_reports_error_and_can_still_be_deleted() {
    let dir = temp_dir("crash");
    let rt = runtime(&dir);
    let mut events = rt.watch();
    let s = scheduler(
        "crashy",
        &[
            "sh",
            "-c",
            "echo starting; echo 'cannot bind 7777' >&2; exit 3",
        ],
    );
    rt.create_room(&s, Version::FIRST, "crashy-a")
        .await
        .unwrap();
    let mut saw_error = false;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), events.next()).await {
        if let RuntimeEvent::Upserted(i) = event
            && i.status == InstanceStatus::Error
        {
            saw_error = true;
            break;
        }
    }
    assert!(saw_error);
    assert_eq!(
        rt.list_rooms("crashy").await.unwrap()[0].status,
        InstanceStatus::Error
    );
    // What an operator needs to act: how it ended, what it said last, where the rest is.
    let why = rt.failure_reason("crashy", "crashy-a").await.unwrap();
    let log = dir.join("crashy").join("crashy-a.log");
    assert!(why.contains("exit status: 3"), "{why}");
    assert!(why.contains("\"cannot bind 7777\""), "{why}");
    assert!(why.contains(&log.display().to_string()), "{why}");
    assert_eq!(rt.failure_reason("crashy", "no-such-room").await, None);
    rt.delete_room("crashy", "crashy-a", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(rt.list_rooms("crashy").await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_specs_are_not_retryable() {
    let dir = temp_dir("bad");
    let rt = runtime(&dir);
    let no_cmd = scheduler("nocmd", &[]);
    assert!(
        !rt.create_room(&no_cmd, Version::FIRST, "x")
            .await
            .unwrap_err()
            .is_retryable()
    );
    let missing = scheduler("missing", &["/nonexistent/program"]);
    assert!(
        !rt.create_room(&missing, Version::FIRST, "x")
            .await
            .unwrap_err()
            .is_retryable()
    );
}

/// A runtime started on the folder of one that died (here: still running, as its rooms
/// outlive it) takes its live rooms over with their ports and pids: creating one again
/// starts nothing, a new room gets another port, and deleting an adopted room stops its
/// process. A record whose process is gone is dropped.
#[tokio::test]
async fn a_restarted_runtime_adopts_live_rooms_and_drops_dead_ones() {
    let dir = temp_dir("adopt");
    let old = runtime(&dir);
    let s = scheduler("adopt", &["sleep", "30"]);
    let live = old
        .create_room(&s, Version::FIRST, "adopt-a")
        .await
        .unwrap();
    let pid = old.pids()[0];
    let gone = old
        .create_room(&s, Version::FIRST, "adopt-b")
        .await
        .unwrap();
    // A record left by a room that died while nobody watched it.
    let dead = adopt::RoomRecord {
        pid: u32::MAX,
        start_ticks: 1,
        version: Version::FIRST,
        ports: gone.address.clone().unwrap().ports,
    };
    old.delete_room("adopt", "adopt-b", Duration::from_secs(1))
        .await
        .unwrap();
    adopt::write_record(&dir.join("adopt"), "adopt-b", &dead).unwrap();

    let new = runtime(&dir);
    assert_eq!(new.adopt(), 1);
    assert_eq!(new.pids(), vec![pid], "the same process, not a new one");
    assert_eq!(new.list_rooms("adopt").await.unwrap(), vec![live.clone()]);
    assert!(!adopt::record_path(&dir.join("adopt"), "adopt-b").exists());
    let again = new
        .create_room(&s, Version::FIRST, "adopt-a")
        .await
        .unwrap();
    assert_eq!(again, live);
    assert_eq!(new.pids(), vec![pid]);
    let other = new
        .create_room(&s, Version::FIRST, "adopt-c")
        .await
        .unwrap();
    assert_ne!(
        other.address.unwrap().ports,
        live.address.unwrap().ports,
        "an adopted room's port is taken"
    );
    new.delete_room("adopt", "adopt-a", Duration::from_secs(2))
        .await
        .unwrap();
    assert!(!process_alive(pid), "an adopted room stops on delete");
    new.shutdown(Duration::from_secs(2)).await;
    old.shutdown(Duration::from_secs(2)).await;
}
