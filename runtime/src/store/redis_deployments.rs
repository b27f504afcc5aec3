//! The Redis store against the Redis a production runs, each a real redis-server on loopback:
//! an ACL user with a password (the default user off), TLS with a private CA, and a Redis
//! Cluster of three primaries and three replicas through a primary's crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro_core::{GameRoom, Timestamp, Version};
use maestro_testkit::redis_cluster::RedisCluster;
use maestro_testkit::tls_front::TestPki;
use maestro_testkit::{RedisServer, free_port, temp_dir};

use super::contract;
use super::{RedisRoomStore, RedisStoreConfig, RoomStore, StoreError};

fn store(url: &str, tls_ca: Option<&str>) -> RedisRoomStore {
    store_in(url, tls_ca, "maestro")
}

/// A store under its own key prefix: each contract case starts from an empty store.
fn store_in(url: &str, tls_ca: Option<&str>, prefix: &str) -> RedisRoomStore {
    let mut config = RedisStoreConfig::new(url);
    config.tls_ca = tls_ca.map(|pem| pem.as_bytes().to_vec());
    config.key_prefix = prefix.into();
    RedisRoomStore::connect(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_runs_the_contract() {
    let redis = RedisServer::start_with(&[
        "--user",
        "default",
        "off",
        "--user",
        "maestro",
        "on",
        ">s3cret-pass",
        "~*",
        "&*",
        "+@all",
    ])
    .await
    .unwrap();
    let port = redis.port();
    let good = format!("redis://maestro:s3cret-pass@127.0.0.1:{port}/");
    contract::insert_is_idempotent(&store_in(&good, None, "a")).await;
    contract::allocation_is_exclusive(Arc::new(store_in(&good, None, "b"))).await;

    let wrong = store(&format!("redis://maestro:guess@127.0.0.1:{port}/"), None);
    let err = wrong.health().await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.to_lowercase().contains("authentication")),
        "{err}"
    );
    let anonymous = store(&format!("redis://127.0.0.1:{port}/"), None);
    assert!(
        anonymous.get("s1", "r1").await.is_err(),
        "the default user is off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_runs_the_contract() {
    let pki = TestPki::generate().unwrap();
    let dir = temp_dir("redis-tls");
    let file = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (cert, key, ca) = (
        file("server.pem", &pki.server_cert_pem),
        file("server.key", &pki.server_key_pem),
        file("ca.pem", &pki.ca_pem),
    );
    let tls_port = free_port().to_string();
    let _redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ])
    .await
    .unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    contract::insert_is_idempotent(&store_in(&url, Some(&pki.ca_pem), "a")).await;
    contract::stale_rooms_and_counts(&store_in(&url, Some(&pki.ca_pem), "b")).await;
    // The system's roots do not know the private CA: refused, not sent in the clear.
    let untrusted = store(&url, None);
    assert!(untrusted.health().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_runs_the_contract_and_survives_a_primary_crash() {
    let mut cluster = RedisCluster::start().await.unwrap();
    let url = cluster.url();
    contract::insert_is_idempotent(&store_in(&url, None, "a")).await;
    contract::ping_then_instance_composes_status(&store_in(&url, None, "b")).await;
    contract::stale_rooms_and_counts(&store_in(&url, None, "c")).await;
    contract::allocation_is_exclusive(Arc::new(store_in(&url, None, "d"))).await;
    let store = store(&url, None);

    // The primary holding scheduler `fo` crashes once its writes reached a replica.
    let t = Timestamp::from_unix_millis;
    store
        .insert_if_absent(GameRoom::new("r1", "fo", Version::FIRST, 1, t(1)))
        .await
        .unwrap();
    let primary = cluster.primary_of("{fo}").unwrap();
    cluster.replicate(primary).await.unwrap();
    cluster.kill(primary);
    let crashed = Instant::now();
    let mut failures = 0;
    loop {
        match store.get("fo", "r1").await {
            Ok(Some(room)) => {
                assert_eq!(room.id, "r1");
                break;
            }
            Ok(None) => panic!("the room was lost in the failover"),
            Err(e) => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                failures += 1;
            }
        }
        assert!(
            crashed.elapsed() < Duration::from_secs(60),
            "no failover within a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "cluster: reads came back {:?} after the primary's crash ({failures} failed reads)",
        crashed.elapsed()
    );
    assert_ne!(cluster.primary_of("{fo}").unwrap(), primary);
    // Writes go to the promoted replica.
    store
        .insert_if_absent(GameRoom::new("r2", "fo", Version::FIRST, 1, t(2)))
        .await
        .unwrap();
    assert_eq!(store.list("fo").await.unwrap().len(), 2);
}
