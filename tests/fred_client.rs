//! fred, a Rust Redis client, through respseal in RESP2 and RESP3: its own
//! handshake (HELLO, SELECT from the URL), sealed and plain values, MGET,
//! a pipeline, a transaction and pub/sub.

mod common;

use std::time::Duration;

use common::*;
use fred::prelude::*;
use fred::types::RespVersion;

fn keyfile(dir: &std::path::Path) -> String {
    let path = dir.join("k.key");
    let path = path.to_str().expect("utf-8 path").to_string();
    let (status, _, err) = run_respseal(&["keygen", "--out", &path], &[], Duration::from_secs(10));
    assert!(status.success(), "{err}");
    path
}

fn fred_through_respseal(version: RespVersion, mode: &[&str]) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keyfile(dir.path());
    let mut args = vec!["--seal", "sess:*", "--key-file", key.as_str()];
    args.extend_from_slice(mode);
    let proxy = Proxy::start(redis.port, &args);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut config = Config::from_url(&format!("redis://127.0.0.1:{}/3", proxy.port)).expect("url");
        config.version = version.clone();
        let client = Builder::from_config(config).build().expect("client");
        tokio::time::timeout(Duration::from_secs(10), client.init()).await.expect("init in time").expect("init");

        let _: () = client.set("sess:f", "fred-value", Some(Expiration::EX(100)), None, false).await.expect("SET");
        let _: () = client.set("plain", "visible", None, None, false).await.expect("SET");
        let v: Option<String> = client.get("sess:f").await.expect("GET");
        assert_eq!(v.as_deref(), Some("fred-value"));
        let vs: Vec<Option<String>> = client.mget(vec!["sess:f", "plain", "sess:none"]).await.expect("MGET");
        assert_eq!(vs, vec![Some("fred-value".to_string()), Some("visible".to_string()), None]);

        let pipeline = client.pipeline();
        for i in 0..100 {
            let _: () = pipeline.set(format!("sess:p{i}"), format!("v{i}"), None, None, false).await.expect("queue");
            let _: () = pipeline.get(format!("sess:p{i}")).await.expect("queue");
        }
        let results: Vec<Value> = pipeline.all().await.expect("pipeline");
        for i in 0..100 {
            assert_eq!(results[2 * i + 1].as_str().as_deref(), Some(format!("v{i}").as_str()));
        }

        let trx = client.multi();
        let _: () = trx.set("sess:t", "in-tx", None, None, false).await.expect("queue");
        let _: () = trx.get("sess:t").await.expect("queue");
        let (_, got): ((), String) = trx.exec(true).await.expect("EXEC");
        assert_eq!(got, "in-tx");

        let subscriber = client.clone_new();
        subscriber.init().await.expect("subscriber init");
        let mut messages = subscriber.message_rx();
        subscriber.subscribe("news").await.expect("SUBSCRIBE");
        // fred's RESP2 SUBSCRIBE returns once written, not once confirmed:
        // publish until Redis counts the subscriber (against Redis itself too).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let receivers: i64 = client.publish("news", "hello").await.expect("PUBLISH");
            if receivers == 1 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the subscription never became active");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let msg = tokio::time::timeout(Duration::from_secs(5), messages.recv())
            .await
            .expect("message in time")
            .expect("message");
        assert_eq!(msg.channel.to_string(), "news");
        assert_eq!(msg.value.as_str().as_deref(), Some("hello"));
        subscriber.quit().await.expect("QUIT");
        client.quit().await.expect("QUIT");
    });
    // What Redis holds (database 3, from the URL) is sealed.
    let mut d = redis.client();
    d.assert_cmd(&["SELECT", "3"], b"+OK\r\n");
    let raw = d.cmd(&["GET", "sess:f"]);
    assert!(raw.windows(4).any(|w| w == b"\x00RE\x01"), "not sealed: {}", show(&raw));
    assert!(!raw.windows(10).any(|w| w == b"fred-value"));
    d.assert_cmd(&["GET", "plain"], b"$7\r\nvisible\r\n");
}

#[test]
fn fred_resp3_shared() {
    fred_through_respseal(RespVersion::RESP3, &[]);
}

#[test]
fn fred_resp2_shared() {
    fred_through_respseal(RespVersion::RESP2, &[]);
}

#[test]
fn fred_resp3_dedicated() {
    fred_through_respseal(RespVersion::RESP3, &["--dedicated"]);
}
