//! A tower-sessions app (axum, tower-sessions-redis-store on fred) with its
//! sessions in Redis through respseal, in RESP2 and RESP3.
//!
//! tower-sessions-redis-store has no key prefix: a session's key is its bare
//! id, 22 base64url characters. The rule is therefore a glob of 22 `?`
//! (any key of exactly 22 bytes), in a database kept for sessions.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use fred::prelude::*;
use fred::types::RespVersion;
use tower::ServiceExt;
use tower_sessions::{Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;

use common::*;

const SESSION_ID_GLOB: &str = "??????????????????????";

async fn count(session: Session) -> String {
    let n: u64 = session.get("views").await.expect("load").unwrap_or(0) + 1;
    session.insert("views", n).await.expect("insert");
    session.insert("canary", "CANARY-tower-sessions").await.expect("insert");
    format!("Counter: {n}")
}

fn tower_sessions_through_respseal(version: RespVersion) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = format!(
        "[[rule]]\npattern = \"{SESSION_ID_GLOB}\"\n[[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        key.display()
    );
    let proxy = Proxy::start_with_config(redis.port, &config, &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let session_key = rt.block_on(async {
        let mut config = Config::from_url(&format!("redis://127.0.0.1:{}/2", proxy.port)).expect("url");
        config.version = version;
        let pool = Builder::from_config(config).build_pool(2).expect("pool");
        pool.init().await.expect("connect");
        let app = Router::new().route("/", get(count)).layer(SessionManagerLayer::new(RedisStore::new(pool.clone())));
        let mut cookie: Option<String> = None;
        for n in 1..=5 {
            let mut req = Request::builder().uri("/");
            if let Some(c) = &cookie {
                req = req.header(header::COOKIE, c);
            }
            let resp = app.clone().oneshot(req.body(Body::empty()).expect("request")).await.expect("response");
            if let Some(set) = resp.headers().get(header::SET_COOKIE) {
                cookie = Some(set.to_str().expect("ascii").split(';').next().expect("cookie").to_string());
            }
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.expect("body");
            assert_eq!(body, format!("Counter: {n}").as_bytes());
        }
        let _ = pool.quit().await;
        cookie.expect("a session cookie").split_once('=').expect("id=value").1.to_string()
    });
    // In Redis: the session under its bare id, sealed; the canary nowhere.
    let mut d = redis.client();
    d.assert_cmd(&["SELECT", "2"], b"+OK\r\n");
    let raw = d.cmd(&["GET", &session_key]);
    assert!(contains(&raw, b"\x00RE\x01"), "session {session_key} not sealed: {}", show(&raw));
    assert!(!contains(&raw, b"CANARY-tower-sessions"), "{}", show(&raw));
    let ttl = d.cmd(&["TTL", &session_key]);
    assert!(ttl != b":-1\r\n" && ttl != b":-2\r\n", "EXAT kept: {}", show(&ttl));
}

#[test]
fn tower_sessions_resp2() {
    tower_sessions_through_respseal(RespVersion::RESP2);
}

#[test]
fn tower_sessions_resp3() {
    tower_sessions_through_respseal(RespVersion::RESP3);
}
