//! respseal in front of Redis Cluster (`redis-cluster://`): three masters
//! on loopback, `redis-server --cluster-enabled yes`, joined with
//! `redis-cli --cluster create`. respseal presents one standalone endpoint:
//! commands are routed by slot, multi-key commands across slots are split,
//! SCAN walks every master, transactions stay in a slot, and a resharding
//! (`redis-cli --cluster reshard`) during an express-session workload is
//! followed without failed requests.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Three masters joined into a cluster covering every slot.
struct TestCluster {
    /// Every node's port (masters first when there are replicas).
    ports: Vec<u16>,
    nodes: Vec<Reaped>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    fn start(password: Option<&str>) -> TestCluster {
        TestCluster::start_with(password, None, false)
    }

    /// With `pki`: the nodes speak TLS only (clients and cluster bus). With
    /// `replicas`: six nodes, a replica for each master.
    fn start_with(password: Option<&str>, pki: Option<&Pki>, replicas: bool) -> TestCluster {
        let c = TestCluster::spawn(password, pki, replicas);
        c.form(password, pki, replicas);
        c
    }

    /// The nodes, each answering PING, not formed into a cluster yet.
    fn spawn(password: Option<&str>, pki: Option<&Pki>, replicas: bool) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..if replicas { 6 } else { 3 }).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for &p in &ports {
            let node_dir = dir.path().join(p.to_string());
            std::fs::create_dir(&node_dir).expect("node dir");
            let mut cmd = Command::new("redis-server");
            match pki {
                None => cmd.args(["--port", &p.to_string()]),
                Some(pki) => cmd
                    .args(["--port", "0", "--tls-port", &p.to_string(), "--tls-cluster", "yes"])
                    .args(["--tls-replication", "yes", "--tls-ca-cert-file", &pki.path("ca.crt")])
                    .args(["--tls-cert-file", &pki.path("server.crt"), "--tls-key-file", &pki.path("server.key")]),
            };
            cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                // The bus port is not left to port + 10000 (past 65535 for a high free port).
                .args(["--cluster-port", &free_port().to_string()])
                .args(["--cluster-node-timeout", "3000"]);
            if let Some(pw) = password {
                cmd.args(["--requirepass", pw, "--masterauth", pw]);
            }
            let child =
                cmd.current_dir(&node_dir).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("redis-server");
            nodes.push(Reaped(child));
            wait_until("a cluster node answers", START_TIMEOUT, || match pki {
                None => ask(p, password, &["PING"]).filter(|r| r == b"+PONG\r\n").map(|_| ()),
                Some(pki) => (tls_cli(pki, p, &["PING"], Some("client")) == "PONG").then_some(()),
            });
        }
        TestCluster { ports, nodes, _dir: dir }
    }

    /// `redis-cli --cluster create` over the nodes, then wait until it is ok.
    fn form(&self, password: Option<&str>, pki: Option<&Pki>, replicas: bool) {
        let ports = &self.ports;
        let mut create = Command::new("redis-cli");
        if let Some(pki) = pki {
            create.args(["--tls", "--cacert", &pki.path("ca.crt")]);
            create.args(["--cert", &pki.path("client.crt"), "--key", &pki.path("client.key")]);
        }
        if let Some(pw) = password {
            create.args(["-a", pw, "--no-auth-warning"]);
        }
        create.arg("--cluster").arg("create");
        for p in ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        if replicas {
            create.args(["--cluster-replicas", "1"]);
            // A replica promotes itself however long ago it last heard from its master.
            cmd_all_nodes(ports, &["CONFIG", "SET", "cluster-replica-validity-factor", "0"]);
        }
        let out = create.arg("--cluster-yes").output().expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let c = self;
        if replicas {
            wait_until("every replica is in sync", Duration::from_secs(30), || {
                let synced = c
                    .ports
                    .iter()
                    .filter(|&&p| {
                        ask(p, None, &["INFO", "replication"]).is_some_and(|r| contains(&r, b"master_link_status:up"))
                    })
                    .count();
                (synced == 3).then_some(())
            });
        }
        match pki {
            None => c.wait_stable(password),
            Some(pki) => wait_until("the TLS cluster is ok", Duration::from_secs(30), || {
                c.ports
                    .iter()
                    .all(|&p| tls_cli(pki, p, &["CLUSTER", "INFO"], Some("client")).contains("cluster_state:ok"))
                    .then_some(())
            }),
        }
    }

    /// Every node says the cluster is ok and knows the three masters.
    fn wait_stable(&self, password: Option<&str>) {
        wait_until("the cluster is ok on every node", Duration::from_secs(30), || {
            self.ports
                .iter()
                .all(|&p| {
                    ask(p, password, &["CLUSTER", "INFO"]).is_some_and(|r| {
                        contains(&r, b"cluster_state:ok")
                            && contains(&r, format!("cluster_known_nodes:{}", self.ports.len()).as_bytes())
                    })
                })
                .then_some(())
        });
    }

    fn url(&self) -> String {
        format!("redis-cluster://127.0.0.1:{},127.0.0.1:{}", self.ports[0], self.ports[1])
    }

    /// The port of the master holding `key` now (asked of the nodes: the
    /// one that does not answer MOVED).
    fn owner(&self, key: &str) -> u16 {
        for &p in &self.ports {
            match ask(p, None, &["TYPE", key]) {
                // A replica answers MOVED too; a stopped node not at all.
                Some(r) if !r.starts_with(b"-MOVED") => return p,
                _ => {}
            }
        }
        panic!("no node owns {key}");
    }

    /// `GET key` straight from its master.
    fn raw_get(&self, key: &str) -> Vec<u8> {
        ask(self.owner(key), None, &["GET", key]).expect("the owner answers")
    }

    fn node_id(&self, port: u16) -> String {
        bulk_text(&ask(port, None, &["CLUSTER", "MYID"]).expect("MYID"))
    }
}

/// One command on a new connection (after AUTH with `password`).
fn ask(port: u16, password: Option<&str>, args: &[&str]) -> Option<Vec<u8>> {
    let mut c = Client::try_connect(port).ok()?;
    if let Some(p) = password {
        c.send_cmd(&["AUTH", p]);
        c.try_read_frame(Duration::from_secs(2)).ok()?;
    }
    c.send_cmd(args);
    c.try_read_frame(Duration::from_secs(2)).ok()
}

fn sealing_config(cluster: &TestCluster, key: &Path, extra: &str) -> String {
    format!(
        "backend = \"{}\"\n{extra}\n[[rule]]\npattern = \"sess:*\"\n[[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        cluster.url(),
        key.display()
    )
}

/// Keys spread over every master (sessions with random-looking ids).
fn names(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}-{}", i * 7919 % 1013)).collect()
}

/// Every key a client's ordinary SCAN loop sees, with how often.
fn scan_all(c: &mut Client, pattern: &str, count: &str) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let reply = c.cmd(&["SCAN", &cursor, "MATCH", pattern, "COUNT", count]);
        let text = String::from_utf8_lossy(&reply).into_owned();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "*2", "{text}");
        cursor = lines[2].to_string();
        seen.extend(lines[4..].iter().filter(|l| !l.is_empty() && !l.starts_with(['$', '*'])).map(|l| l.to_string()));
        pages += 1;
        assert!(pages < 10_000, "SCAN does not end");
        if cursor == "0" {
            return seen;
        }
    }
}

#[test]
fn one_standalone_endpoint_in_front_of_a_cluster() {
    let cluster = TestCluster::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let proxy = Proxy::launch(Launch { config: Some(&sealing_config(&cluster, &key, "")), ..Default::default() });
    let mut c = proxy.client();

    // Routed by slot and sealed on the master that holds the key.
    let sessions = names(60, "sess:");
    let owners: BTreeSet<u16> = sessions.iter().map(|k| cluster.owner(k)).collect();
    assert_eq!(owners.len(), 3, "the keys are spread over the three masters");
    for k in &sessions {
        c.assert_cmd(&["SET", k, &format!("{{\"user\":\"{k}@example.com\"}}")], b"+OK\r\n");
    }
    for k in sessions.iter().take(10) {
        let raw = cluster.raw_get(k);
        assert!(contains(&raw, b"\x00RE\x01") && !contains(&raw, b"example.com"), "sealed: {}", show(&raw));
        assert_eq!(bulk_text(&c.cmd(&["GET", k])), format!("{{\"user\":\"{k}@example.com\"}}"));
    }
    // A second respseal with the same configuration shares nothing with the
    // first but the keyring: it opens what the first sealed.
    let second = Proxy::launch(Launch { config: Some(&sealing_config(&cluster, &key, "")), ..Default::default() });
    assert_eq!(
        bulk_text(&second.client().cmd(&["GET", &sessions[9]])),
        format!("{{\"user\":\"{}@example.com\"}}", sessions[9])
    );
    drop(second);
    // A sealed value copied into another key does not open there.
    let stolen = cluster.raw_get(&sessions[0]);
    let payload = stolen[stolen.iter().position(|&b| b == b'\n').expect("a bulk") + 1..stolen.len() - 2].to_vec();
    let copy = "sess:copied-by-hand".to_string();
    let mut owner = Client::connect(cluster.owner(&copy));
    assert_bytes(&owner.cmd(&[b"SET".to_vec(), copy.as_bytes().to_vec(), payload]), b"+OK\r\n");

    // Multi-key commands across slots: split and put back together.
    let pick: [&str; 4] = [&sessions[0], "sess:missing", &sessions[1], &sessions[2]];
    let mut mget = vec!["MGET"];
    mget.extend(pick);
    let reply = c.cmd(&mget);
    let text = String::from_utf8_lossy(&reply).into_owned();
    assert!(text.starts_with("*4\r\n"), "{text}");
    let values: Vec<&str> = text.split("\r\n").filter(|l| l.starts_with('{') || *l == "$-1").collect();
    assert_eq!(values.len(), 4, "{text}");
    assert_eq!(values[1], "$-1", "a missing key stays in its place: {text}");
    assert!(
        values[0].contains(sessions[0].as_str())
            && values[2].contains(sessions[1].as_str())
            && values[3].contains(sessions[2].as_str()),
        "{text}"
    );
    c.assert_cmd(&["MSET", "sess:m-a", "1", "sess:m-b", "2", "sess:m-c", "3", "plain:x", "4"], b"+OK\r\n");
    assert!(contains(&cluster.raw_get("sess:m-b"), b"\x00RE\x01"), "MSET seals each value");
    assert_eq!(cluster.raw_get("plain:x"), b"$1\r\n4\r\n");
    c.assert_cmd(&["MGET", "sess:m-a", "sess:m-b", "sess:m-c"], b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n");
    c.assert_cmd(&["EXISTS", "sess:m-a", "sess:m-b", "sess:m-a", "nope"], b":3\r\n");
    c.assert_cmd(&["TOUCH", "sess:m-a", "sess:m-b", "nope"], b":2\r\n");
    c.assert_cmd(&["DEL", "sess:m-a", "sess:m-b", "nope"], b":2\r\n");
    c.assert_cmd(&["UNLINK", "sess:m-c", "plain:x"], b":2\r\n");
    // Not splittable: Redis's own CROSSSLOT error.
    assert_line_prefix(&c.cmd(&["SUNIONSTORE", "d", "a", "b"]), b"-CROSSSLOT");
    assert_line_prefix(&c.cmd(&["MSETNX", "a", "1", "b", "2"]), b"-CROSSSLOT");

    // SCAN walks every master: each key exactly once, to cursor 0.
    let seen = scan_all(&mut c, "sess:*", "5");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), unique.len(), "no key repeated across masters");
    let mut want: BTreeSet<String> = sessions.iter().cloned().collect();
    want.insert(copy.clone());
    assert_eq!(unique.into_iter().cloned().collect::<BTreeSet<_>>(), want);
    c.assert_cmd(&["DBSIZE"], format!(":{}\r\n", sessions.len() + 1).as_bytes());
    assert!(c.cmd(&["KEYS", "sess:*"]).starts_with(format!("*{}\r\n", sessions.len() + 1).as_bytes()));
    // The copy does not open under another name (the default policy: nil).
    c.assert_cmd(&["GET", &copy], b"$-1\r\n");

    // A standalone face: cluster commands answer as on a standalone server.
    c.assert_cmd(&["CLUSTER", "INFO"], b"-ERR This instance has cluster support disabled\r\n");
    c.assert_cmd(&["READONLY"], b"-ERR This instance has cluster support disabled\r\n");
    let info = bulk_text(&c.cmd(&["INFO", "cluster"]));
    assert!(info.contains("cluster_enabled:0"), "{info}");

    // Transactions within a slot (hash tags), a clear error across slots.
    let mut t = proxy.client();
    t.assert_cmd(&["WATCH", "sess:{u1}a"], b"+OK\r\n");
    t.assert_cmd(&["MULTI"], b"+OK\r\n");
    t.assert_cmd(&["SET", "sess:{u1}a", "one"], b"+QUEUED\r\n");
    t.assert_cmd(&["SET", "sess:{u1}b", "two"], b"+QUEUED\r\n");
    t.assert_cmd(&["EXEC"], b"*2\r\n+OK\r\n+OK\r\n");
    c.assert_cmd(&["MGET", "sess:{u1}a", "sess:{u1}b"], b"*2\r\n$3\r\none\r\n$3\r\ntwo\r\n");
    let other = (0..100)
        .map(|i| format!("sess:{{u{i}}}x"))
        .find(|k| cluster.owner(k) != cluster.owner("sess:{u1}a"))
        .expect("a key elsewhere");
    t.assert_cmd(&["MULTI"], b"+OK\r\n");
    t.assert_cmd(&["SET", "sess:{u1}a", "three"], b"+QUEUED\r\n");
    assert_line_prefix(&t.cmd(&["SET", &other, "x"]), b"-CROSSSLOT");
    assert_line_prefix(&t.cmd(&["EXEC"]), b"-EXECABORT");
    c.assert_cmd(&["GET", "sess:{u1}a"], b"$3\r\none\r\n");
    // After the transaction the connection reaches every node again.
    t.assert_cmd(&["SET", &other, "elsewhere"], b"+OK\r\n");
    t.assert_cmd(&["GET", &other], b"$9\r\nelsewhere\r\n");

    // A transaction whose first command names its node (no WATCH before),
    // on each master; an empty one.
    for port in cluster.ports.clone() {
        let k = (0..200).map(|i| format!("sess:{{t{i}}}")).find(|k| cluster.owner(k) == port).expect("a key there");
        let mut fresh = proxy.client();
        fresh.assert_cmd(&["MULTI"], b"+OK\r\n");
        fresh.assert_cmd(&["SET", &k, "in-multi"], b"+QUEUED\r\n");
        fresh.assert_cmd(&["GET", &k], b"+QUEUED\r\n");
        fresh.assert_cmd(&["EXEC"], b"*2\r\n+OK\r\n$8\r\nin-multi\r\n");
        fresh.assert_cmd(&["MULTI"], b"+OK\r\n");
        fresh.assert_cmd(&["EXEC"], b"*0\r\n");
        fresh.assert_cmd(&["MULTI"], b"+OK\r\n");
        fresh.assert_cmd(&["PING"], b"+QUEUED\r\n");
        fresh.assert_cmd(&["DISCARD"], b"+OK\r\n");
    }

    // RENAME and COPY of sealed keys within a slot; across slots refused.
    c.assert_cmd(&["RENAME", "sess:{u1}a", "sess:{u1}renamed"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:{u1}renamed"], b"$3\r\none\r\n");
    c.assert_cmd(&["COPY", "sess:{u1}renamed", "sess:{u1}copied"], b":1\r\n");
    c.assert_cmd(&["GET", "sess:{u1}copied"], b"$3\r\none\r\n");
    assert_line_prefix(&c.cmd(&["RENAME", "sess:{u1}renamed", &other]), b"-CROSSSLOT");

    // Blocking commands and pub/sub.
    let list = "jobs:{q}";
    let mut blocked = proxy.client();
    blocked.send_cmd(&["BLPOP", list, "10"]);
    let mut pusher = proxy.client();
    wait_until("the BLPOP is waiting", Duration::from_secs(5), || {
        let r = ask(cluster.owner(list), None, &["CLIENT", "LIST"])?;
        contains(&r, b"cmd=blpop").then_some(())
    });
    pusher.assert_cmd(&["RPUSH", list, "job-1"], b":1\r\n");
    assert_eq!(blocked.read_frame(), b"*2\r\n$8\r\njobs:{q}\r\n$5\r\njob-1\r\n");
    // The unblocked client goes on with keys on any master.
    for k in sessions.iter().take(6) {
        assert!(bulk_text(&blocked.cmd(&["GET", k])).contains("example.com"));
    }
    let mut sub = proxy.client();
    sub.assert_cmd(&["SUBSCRIBE", "news"], b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    // The cluster bus carries the message to every node; PUBLISH counts the
    // subscribers of the node it reached, as in Redis Cluster.
    assert_line_prefix(&c.cmd(&["PUBLISH", "news", "hello"]), b":");
    assert_eq!(sub.read_frame(), b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");

    // RESP3 clients too.
    let mut r3 = proxy.client();
    r3.hello3();
    assert_eq!(bulk_text(&r3.cmd(&["GET", &sessions[5]])), format!("{{\"user\":\"{}@example.com\"}}", sessions[5]));
    let reply = r3.cmd(&["MGET", &sessions[5], "sess:missing"]);
    assert!(reply.starts_with(b"*2\r\n") && reply.ends_with(b"_\r\n"), "{}", show(&reply));
    c.assert_cmd(&["FLUSHALL"], b"+OK\r\n");
    c.assert_cmd(&["DBSIZE"], b":0\r\n");
}

/// connect-redis's RedisStore (node-redis 6, RESP3): length, ids, all and
/// clear walk the whole cluster through respseal's SCAN.
#[test]
fn connect_redis_store_methods_on_a_cluster() {
    let cluster = TestCluster::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let proxy = Proxy::launch(Launch { config: Some(&sealing_config(&cluster, &key, "")), ..Default::default() });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/clients/node/store-methods.mjs"))
        .args(["--port", &proxy.port.to_string(), "--sessions", "60"])
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}{}\nrespseal's log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
}

/// A cluster with a password: respseal (and fred, for the slot map) log in
/// with the URL's credentials, which never reach the log.
#[test]
fn a_cluster_with_a_password() {
    let pw = "cluster-secret-pw";
    let cluster = TestCluster::start(Some(pw));
    let proxy = Proxy::launch(Launch {
        backend: Some(format!("redis-cluster://:{pw}@127.0.0.1:{}", cluster.ports[0])),
        ..Default::default()
    });
    let mut c = proxy.client();
    for k in names(20, "k") {
        c.assert_cmd(&["SET", &k, "v"], b"+OK\r\n");
    }
    c.assert_cmd(&["DBSIZE"], b":20\r\n");
    assert!(!proxy.log().contains(pw), "the password is not logged");
}

/// Slots move (`redis-cli --cluster reshard`) while the express-session
/// example runs through respseal: MOVED and ASK are followed, and no
/// request fails.
#[test]
fn a_resharding_during_an_express_session_workload() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cluster = TestCluster::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let admin = free_port();
    let config = sealing_config(&cluster, &key, &format!("admin_listen = \"127.0.0.1:{admin}\""));
    let proxy = Proxy::launch(Launch { config: Some(&config), ..Default::default() });
    let app_port = free_port();
    let app_log = dir.path().join("app.log");
    let log = std::fs::File::create(&app_log).expect("log");
    let _app = Reaped(
        Command::new("node")
            .arg(root.join("examples/express-session/app.js"))
            .env("PORT", app_port.to_string())
            .env("REDIS_URL", format!("redis://127.0.0.1:{}", proxy.port))
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("node"),
    );
    wait_until("the app answers", Duration::from_secs(20), || {
        http_get(app_port, "/").ok().filter(|(s, _)| *s == 200).map(|_| ())
    });
    let load = SessionLoad::start(dir.path(), "reshard", app_port, 32, 150);
    load.run_for(100);
    // Move a third of the first master's slots to the second, and back half.
    let (a, b) = (cluster.ports[0], cluster.ports[1]);
    for (from, to, slots) in [(a, b, "2000"), (b, a, "1000")] {
        let moved = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{a}")])
            .args(["--cluster-from", &cluster.node_id(from), "--cluster-to", &cluster.node_id(to)])
            .args(["--cluster-slots", slots, "--cluster-yes", "--cluster-pipeline", "10"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli --cluster reshard");
        assert!(moved.success(), "reshard");
    }
    cluster.wait_stable(None);
    // The load goes on after the resharding.
    load.run_for(200);
    let result = load.finish();
    println!("through respseal during a resharding: {result}");
    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    let redirects: f64 = ["moved", "ask"]
        .iter()
        .map(|k| metric(&metrics, &format!("respseal_cluster_redirects_total{{kind=\"{k}\"}}")))
        .sum();
    println!("redirects followed: {redirects}");
    assert!(json_number(&result, "requests") >= 300.0, "{result}");
    assert_eq!(json_number(&result, "errors"), 0.0, "no request fails: {result}\n{}", proxy.log());
    assert_eq!(json_number(&result, "lost"), 0.0, "no session write is lost: {result}");
    assert!(metric(&metrics, "respseal_cluster_map_changes_total") >= 1.0, "the new slot map was read");
}

/// `rediss-cluster://`: the nodes speak TLS only (client certificates
/// required); respseal reaches them, and fred reads the slot map, with the
/// `[backend_tls]` settings.
#[test]
fn a_cluster_over_tls() {
    let pki = Pki::new();
    let cluster = TestCluster::start_with(None, Some(&pki), false);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = format!(
        "backend = \"rediss-cluster://127.0.0.1:{}\"\n[backend_tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [[rule]]\npattern = \"sess:*\"\n[[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        cluster.ports[0],
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
        key.display()
    );
    let proxy = Proxy::launch(Launch { config: Some(&config), ..Default::default() });
    let mut c = proxy.client();
    let sessions = names(30, "sess:");
    for k in &sessions {
        c.assert_cmd(&["SET", k, "tls-session-canary"], b"+OK\r\n");
    }
    c.assert_cmd(&["DBSIZE"], b":30\r\n");
    for k in sessions.iter().take(5) {
        c.assert_cmd(&["GET", k], b"$18\r\ntls-session-canary\r\n");
    }
    let mut on_nodes = 0;
    for &p in &cluster.ports {
        let n: usize = tls_cli(&pki, p, &["DBSIZE"], Some("client")).parse().expect("a count");
        assert!(n > 0, "every master holds some of the keys");
        on_nodes += n;
        let dump = tls_cli(&pki, p, &["--scan", "--pattern", "sess:*"], Some("client"));
        let first = dump.lines().next().expect("a key").to_string();
        assert!(!tls_cli(&pki, p, &["GET", &first], Some("client")).contains("canary"), "sealed on node {p}");
    }
    assert_eq!(on_nodes, 30);
    // SIGHUP reloads the backend certificates: the slot-map follower
    // (fred) starts again with them, and the map it reads still routes.
    proxy.sighup();
    wait_until("the follower restarts with the reloaded certificates", Duration::from_secs(10), || {
        proxy.log().contains("the topology follower reconnects").then_some(())
    });
    for k in sessions.iter().skip(25) {
        c.assert_cmd(&["GET", k], b"$18\r\ntls-session-canary\r\n");
    }
    c.assert_cmd(&["SET", "sess:after-reload", "x"], b"+OK\r\n");
}

/// The operator commands behind a cluster work on every master: inspect
/// counts every key, check samples each master, rewrap re-seals them all
/// under a new primary key while respseal keeps serving.
#[test]
fn inspect_check_and_rewrap_walk_every_master() {
    let cluster = TestCluster::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, _) = keygen(dir.path(), "old.key");
    let (new, new_id) = keygen(dir.path(), "new.key");
    // Step one of a rotation: the new key is known, as decrypt-only.
    let serving = format!(
        "backend = \"{}\"\n[[rule]]\npattern = \"sess:*\"\n[[key]]\nfile = \"{}\"\nstate = \"primary\"\n\
         [[key]]\nfile = \"{}\"\nstate = \"decrypt-only\"\n",
        cluster.url(),
        old.display(),
        new.display()
    );
    let proxy = Proxy::launch(Launch { config: Some(&serving), ..Default::default() });
    let mut c = proxy.client();
    let sessions = names(45, "sess:");
    for k in &sessions {
        c.assert_cmd(&["SET", k, "value-before-rotation"], b"+OK\r\n");
    }
    let conf = |text: String| write_file(dir.path(), "c.toml", &text).to_str().expect("utf-8").to_string();
    let first = conf(sealing_config(&cluster, &old, ""));
    let (status, out, err) = run_respseal(&["inspect", "--config", &first], &[], Duration::from_secs(30));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("45 keys: 45 sealed"), "{out}");
    let (status, out, err) =
        run_respseal(&["check", "--config", &first, "--sample", "5"], &[], Duration::from_secs(30));
    assert!(status.success() && out.contains("sample: 15 sealed values opened, 0 failed"), "{out}{err}");
    let rotated = format!(
        "backend = \"{}\"\n[[rule]]\npattern = \"sess:*\"\n[[key]]\nfile = \"{}\"\nstate = \"decrypt-only\"\n\
         [[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        cluster.url(),
        old.display(),
        new.display()
    );
    let second = conf(rotated);
    let (status, out, err) = run_respseal(&["rewrap", "--config", &second], &[], Duration::from_secs(60));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("scanned 45, rewrapped 45"), "{out}");
    let (_, out, _) = run_respseal(&["inspect", "--config", &second], &[], Duration::from_secs(30));
    assert_eq!(out.matches(&format!("key={new_id}")).count(), 45, "{out}");
    c.assert_cmd(&["GET", &sessions[7]], b"$21\r\nvalue-before-rotation\r\n");
}

/// A master is killed under a pipelined load through respseal: its slots
/// fail until the cluster promotes its replica, the other masters' keys
/// keep working meanwhile, and respseal follows the new master (MOVED and
/// its own re-read of the slot map) without a restart.
#[test]
fn a_killed_master_is_replaced_without_a_restart() {
    let mut cluster = TestCluster::start_with(None, None, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let proxy = Proxy::launch(Launch { config: Some(&sealing_config(&cluster, &key, "")), ..Default::default() });
    let mut c = proxy.client();
    let sessions = names(60, "sess:");
    for k in &sessions {
        c.assert_cmd(&["SET", k, "survives-a-failover"], b"+OK\r\n");
    }
    let victim = cluster.owner(&sessions[0]);
    // Every write reached the victim's replica before it dies.
    let _ = ask(victim, None, &["WAIT", "1", "5000"]);
    let survivor = sessions.iter().find(|k| cluster.owner(k) != victim).expect("a key elsewhere").clone();
    let index = cluster.ports.iter().position(|&p| p == victim).expect("the victim");
    // A pipeline in flight when it dies: every request gets an answer.
    let mut pipelined = proxy.client();
    for k in sessions.iter().take(30) {
        pipelined.send_cmd(&["GET", k]);
    }
    cluster.nodes[index].kill();
    for _ in 0..30 {
        let r = pipelined.read_frame();
        assert!(r.starts_with(b"$") || r.starts_with(b"-"), "an answer for each request: {}", show(&r));
    }
    // The other masters serve at once.
    let mut other = proxy.client();
    other.assert_cmd(&["GET", &survivor], b"$19\r\nsurvives-a-failover\r\n");
    // The replica takes over; respseal follows.
    let last = std::cell::RefCell::new(Vec::new());
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(40) {
        let got = Client::try_connect(proxy.port).ok().and_then(|mut c| {
            c.send_cmd(&["GET", &sessions[0]]);
            c.try_read_frame(Duration::from_secs(3)).ok()
        });
        if got.as_deref() == Some(b"$19\r\nsurvives-a-failover\r\n") {
            break;
        }
        *last.borrow_mut() = got.unwrap_or_default();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "the victim's keys are not served again: last reply {}; the cluster says {}\nrespseal's log:\n{}",
        show(&last.borrow()),
        show(&ask(survivor_port(&cluster, victim), None, &["CLUSTER", "NODES"]).unwrap_or_default()),
        proxy.log()
    );
    let mut after = proxy.client();
    for k in &sessions {
        after.assert_cmd(&["GET", k], b"$19\r\nsurvives-a-failover\r\n");
    }
    after.assert_cmd(&["SET", &sessions[0], "written-after"], b"+OK\r\n");
    after.assert_cmd(&["DBSIZE"], b":60\r\n");
}

/// A node other than `victim`.
/// A BLPOP waiting on one master when its slot moves to another: Redis
/// answers it `MOVED`, and respseal sends it again on the new master
/// instead of passing the redirect on, so the client gets the element
/// pushed afterwards, as from one standalone server.
#[test]
fn a_blocked_command_follows_its_slot_to_another_master() {
    let cluster = TestCluster::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let proxy = Proxy::launch(Launch { config: Some(&sealing_config(&cluster, &key, "")), ..Default::default() });
    let list = "jobs:queue";
    let from = cluster.owner(list);
    let to = *cluster.ports.iter().find(|&&p| p != from).expect("another master");
    let slot = String::from_utf8_lossy(&ask(from, None, &["CLUSTER", "KEYSLOT", list]).expect("KEYSLOT"))
        .trim()
        .trim_start_matches(':')
        .to_string();
    let blocked =
        |port: u16| ask(port, None, &["INFO", "clients"]).is_some_and(|r| contains(&r, b"blocked_clients:1\r\n"));
    let mut waiter = proxy.client();
    waiter.send_cmd(&["BLPOP", list, "30"]);
    wait_until("the BLPOP waits on its master", Duration::from_secs(10), || blocked(from).then_some(()));
    // The slot (its list does not exist yet: no keys to migrate) moves.
    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    ask(to, None, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]).expect("IMPORTING");
    ask(from, None, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]).expect("MIGRATING");
    for &p in &cluster.ports {
        ask(p, None, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]).expect("NODE");
    }
    wait_until("the BLPOP waits on the new master", Duration::from_secs(10), || blocked(to).then_some(()));
    assert!(!blocked(from), "still waiting on the old master");
    proxy.client().assert_cmd(&["RPUSH", list, "job-1"], b":1\r\n");
    assert_bytes(&waiter.read_frame(), &frame_of(&[list, "job-1"], -1));
    waiter.assert_cmd(&["PING"], b"+PONG\r\n");
}

/// Sharded pub/sub through one endpoint: SSUBSCRIBE pins the session to
/// its channel's master and SPUBLISH goes there, for channels on each of
/// the three masters, with the messages sealed (a channel rule) on the way
/// through Redis. A subscriber on one node asking for a channel on another
/// gets CROSSSLOT, and after SUNSUBSCRIBE it can move.
#[test]
fn sharded_pub_sub_goes_to_each_channels_master() {
    let cluster = TestCluster::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = sealing_config(&cluster, &key, "") + "[[rule]]\nchannel = \"events:*\"\n";
    let proxy = Proxy::launch(Launch { config: Some(&config), ..Default::default() });
    // One channel per master.
    let mut channels: Vec<(u16, String)> = Vec::new();
    for i in 0.. {
        let ch = format!("events:{i}");
        let owner = cluster.owner(&ch);
        if !channels.iter().any(|(o, _)| *o == owner) {
            channels.push((owner, ch));
        }
        if channels.len() == 3 {
            break;
        }
    }
    let mut publisher = proxy.client();
    for (owner, ch) in &channels {
        let mut sub = proxy.client();
        sub.send_cmd(&["SSUBSCRIBE", ch]);
        assert_bytes(&sub.read_frame(), &frame_of(&["ssubscribe", ch], 1));
        // Redis sees the subscription on the channel's master, and the
        // message there is ciphertext.
        let mut raw = Client::connect(*owner);
        raw.send_cmd(&["SSUBSCRIBE", ch]);
        raw.read_frame();
        publisher.assert_cmd(&["SPUBLISH", ch, "user alice logged out"], b":2\r\n");
        assert_bytes(&sub.read_frame(), &frame_of(&["smessage", ch, "user alice logged out"], -1));
        let sealed = raw.read_frame();
        assert!(contains(&sealed, b"\x00RE\x01") && !contains(&sealed, b"alice"), "{}", show(&sealed));
    }
    // One connection, channels on two masters: the second is refused with
    // Redis's own error; after SUNSUBSCRIBE the session moves.
    let mut sub = proxy.client();
    sub.send_cmd(&["SSUBSCRIBE", &channels[0].1]);
    sub.read_frame();
    sub.send_cmd(&["SSUBSCRIBE", &channels[1].1]);
    assert_line_prefix(&sub.read_frame(), b"-CROSSSLOT");
    sub.send_cmd(&["SUNSUBSCRIBE"]);
    assert_bytes(&sub.read_frame(), &frame_of(&["sunsubscribe", &channels[0].1], 0));
    sub.send_cmd(&["SSUBSCRIBE", &channels[1].1]);
    assert_bytes(&sub.read_frame(), &frame_of(&["ssubscribe", &channels[1].1], 1));
    publisher.assert_cmd(&["SPUBLISH", &channels[1].1, "moved"], b":1\r\n");
    assert_bytes(&sub.read_frame(), &frame_of(&["smessage", &channels[1].1, "moved"], -1));
}

/// A RESP2 push: the words as bulk strings, then the count (`n >= 0`).
fn frame_of(words: &[&str], n: i64) -> Vec<u8> {
    let mut v = format!("*{}\r\n", words.len() + usize::from(n >= 0)).into_bytes();
    for w in words {
        v.extend(bulk(w.as_bytes()));
    }
    if n >= 0 {
        v.extend(format!(":{n}\r\n").into_bytes());
    }
    v
}

/// A pipeline across the masters that the client writes without reading
/// replies: the cluster router (its per-session collector included) keeps
/// the standalone bounds (32 MiB of replies waiting for the client, then
/// `max_inflight`), so the writer stalls and respseal's memory stays within
/// them; reading then brings every reply, in order.
#[test]
fn an_unread_pipeline_across_masters_stalls_the_writer_and_loses_nothing() {
    let cluster = TestCluster::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = sealing_config(&cluster, &key, "[limits]\nmax_inflight = 64\n");
    let proxy = Proxy::launch(Launch { config: Some(&config), ..Default::default() });
    let mut c = proxy.client();
    // 5,000 keys of 4 KiB on every master, then 20,000 `SET key value GET`
    // (80 MB of requests, as much in replies: more than the sockets hold).
    let keys = names(5_000, "big:");
    // Value n: its number, padded to 4 KiB. Line i writes value 5,000 + i
    // to key i % 5,000 and gets back the one before: value i.
    let val = |n: usize| format!("{n:08}{}", "v".repeat(4088));
    let fill: Vec<u8> = keys.iter().enumerate().flat_map(|(j, k)| resp(&["SET", k, &val(j)])).collect();
    c.writer().write_all(&fill).expect("fill");
    for _ in &keys {
        assert_bytes(&c.read_frame(), b"+OK\r\n");
    }
    let (_, rss_before) = memory(proxy.pid());
    let mut w = c.writer();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&progress);
    let lines: Vec<Vec<u8>> = (0..20_000).map(|i| resp(&["SET", &keys[i % 5_000], &val(5_000 + i), "GET"])).collect();
    let writer = std::thread::spawn(move || {
        for (i, line) in lines.iter().enumerate() {
            if w.write_all(line).is_err() {
                break;
            }
            seen.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut last, mut still) = (usize::MAX, 0);
    while still < 5 {
        assert!(!writer.is_finished(), "respseal took 80 MB of requests nobody read the replies of");
        assert!(std::time::Instant::now() < deadline, "the writer neither stalled nor finished");
        let now = progress.load(std::sync::atomic::Ordering::Relaxed);
        still = if now == last { still + 1 } else { 0 };
        last = now;
        // The polling interval.
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, rss_stalled) = memory(proxy.pid());
    println!("stalled after {last} requests; respseal RSS {rss_before} -> {rss_stalled}");
    assert!(last < 15_000, "{last} of 20,000 requests accepted before stalling");
    assert!(
        rss_stalled < rss_before + (48 << 20),
        "respseal grew from {rss_before} to {rss_stalled} bytes with the pipeline stalled"
    );
    for i in 0..20_000 {
        assert_bytes(&c.read_frame(), &bulk(val(i).as_bytes()));
    }
    writer.join().expect("writer");
    for j in [0, 2_499, 4_999] {
        assert_eq!(bulk_text(&c.cmd(&["GET", &keys[j]])), val(20_000 + j));
    }
}

/// The sealing boundary of `tests/boundary.rs`, through the cluster router:
/// every command Redis's `COMMAND DOCS` knows, with a sealed name and a
/// canary in every position (every name in one slot, so that multi-key
/// lines reach Redis), and afterwards no `sess:*` key on any master holds
/// anything but envelopes. Strings and hash fields (`fields = "*"`) both.
#[test]
fn the_sealing_boundary_holds_through_the_cluster_router() {
    let cluster = TestCluster::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let masters: Vec<String> = cluster.ports.iter().map(u16::to_string).collect();
    for (extra, flags) in [("", &["--cluster"][..]), ("fields = \"*\"\n", &["--cluster", "--hash"][..])] {
        let config = sealing_config(&cluster, &key, "")
            .replace("pattern = \"sess:*\"\n", &format!("pattern = \"sess:*\"\n{extra}"));
        let proxy = Proxy::launch(Launch { config: Some(&config), ..Default::default() });
        boundary_check(proxy.port, &masters.join(","), flags);
        proxy.client().assert_cmd(&["PING"], b"+PONG\r\n");
    }
}

fn survivor_port(cluster: &TestCluster, victim: u16) -> u16 {
    *cluster.ports.iter().find(|&&p| p != victim).expect("another node")
}

fn cmd_all_nodes(ports: &[u16], args: &[&str]) {
    for &p in ports {
        assert_eq!(ask(p, None, args).as_deref(), Some(&b"+OK\r\n"[..]), "{args:?} on {p}");
    }
}

/// respseal started before its cluster is formed (the usual start order
/// under compose or Kubernetes): `/readyz` says why it is not ready, and
/// once the cluster is created respseal learns the slot map and serves,
/// without a restart.
#[test]
fn a_cluster_formed_after_respseal_started_is_served() {
    let cluster = TestCluster::spawn(None, None, false);
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let proxy = Proxy::launch(Launch {
        backend: Some(cluster.url()),
        args: &["--admin-listen", &admin_addr],
        ..Default::default()
    });
    let (status, body) = http_get(admin, "/readyz").expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("slot map"), "{body}");
    cluster.form(None, None, false);
    let mut c = proxy.client();
    wait_until("respseal serves the new cluster", Duration::from_secs(30), || {
        (c.cmd(&["SET", "late:k", "v"]) == b"+OK\r\n").then_some(())
    });
    c.assert_cmd(&["GET", "late:k"], b"$1\r\nv\r\n");
    wait_until("readyz turns 200", Duration::from_secs(10), || {
        http_get(admin, "/readyz").ok().filter(|(s, _)| *s == 200)
    });
}
