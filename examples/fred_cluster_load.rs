//! How much CPU fred itself spends per request against a Redis Cluster:
//! the data path respseal did not choose (bench/cluster.sh runs it beside
//! respseal). CLIENTS tasks share one fred cluster client, each with DEPTH
//! SETs or GETs of 100-byte values in flight on random keys, for REQUESTS
//! requests in all; prints requests per second and the process's CPU time
//! per request.
//!
//!   cargo run --release --example fred_cluster_load -- HOST:PORT [CLIENTS] [DEPTH] [REQUESTS]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use fred::prelude::*;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default().split(' ').collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
    // CLK_TCK is 100 on Linux.
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:7000".into());
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let depth: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1);
    let total: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let (host, port) = seed.rsplit_once(':').expect("HOST:PORT");
        let config = Config {
            server: ServerConfig::Clustered {
                hosts: vec![Server::new(host, port.parse().expect("a port"))],
                policy: Default::default(),
            },
            ..Default::default()
        };
        let client = Client::new(config, None, None, None);
        client.init().await.expect("fred connects to the cluster");
        let value = "x".repeat(100);
        for op in ["SET", "GET"] {
            let left = Arc::new(AtomicU64::new(total));
            let (t0, c0) = (Instant::now(), cpu_seconds());
            let mut tasks = Vec::new();
            for c in 0..clients {
                let (client, left, value) = (client.clone(), Arc::clone(&left), value.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = c as u64 * 7919;
                    loop {
                        // What was left before this batch took its share (past
                        // zero it wraps to more than `total`: done).
                        let before = left.fetch_sub(depth as u64, Ordering::Relaxed);
                        if before == 0 || before > total {
                            return;
                        }
                        let want = (depth as u64).min(before);
                        let batch = (0..want).map(|_| {
                            n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                            let key = format!("key:{:012}", (n >> 33) % 100_000);
                            let (client, value) = (client.clone(), value.clone());
                            async move {
                                if op == "SET" {
                                    let _: () = client.set(key, value, None, None, false).await.expect("SET");
                                } else {
                                    let _: fred::types::Value = client.get(key).await.expect("GET");
                                }
                            }
                        });
                        futures::future::join_all(batch).await;
                    }
                }));
            }
            for t in tasks {
                t.await.expect("a task");
            }
            let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
            println!(
                "fred {op} depth {depth}: {:.0} rps, {:.1} us CPU per request",
                total as f64 / secs,
                cpu * 1e6 / total as f64
            );
        }
        let _ = client.quit().await;
    });
}
