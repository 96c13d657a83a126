//! Where the master is, behind Redis Sentinel (`redis-sentinel://`).
//!
//! fred's [`SentinelClient`] talks to the sentinels (one client per
//! sentinel, each reconnecting on its own); respseal asks them, every
//! [`POLL`], for the address of the master of its service, as a client
//! following the Sentinel protocol does. When the answer changes (a
//! failover), the new address is stored and the *epoch* of the old master
//! ends: every backend connection opened under it watches its epoch's
//! token, so shared links drop their connection and reconnect to the new
//! master (their clients see only the commands in flight fail), and
//! dedicated links close their client, whose connection state lived on the
//! old master. A connection is only used once the server it reached says
//! it is a master (`ROLE`, checked in [`super::conn`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::clients::SentinelClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface, SentinelInterface};
use fred::types::config::{ConnectionConfig, ReconnectPolicy, SentinelConfig};
use tokio_util::sync::CancellationToken;

use super::cluster::host_port;
use super::url::SentinelTarget;

/// How often the sentinels are asked.
pub const POLL: Duration = Duration::from_millis(250);

/// The current master and its epoch.
pub struct Topology {
    state: Mutex<(Option<String>, CancellationToken)>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Topology(master: {:?})", self.master())
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology { state: Mutex::new((None, CancellationToken::new())) }
    }
}

impl Topology {
    /// The master's `host:port`, once a sentinel has named it.
    pub fn master(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone()
    }

    /// The current master's epoch: cancelled when it stops being the master.
    pub fn epoch(&self) -> CancellationToken {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }

    /// A sentinel named `addr` as the master. True if that is a change.
    pub fn switch(&self, addr: String) -> bool {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.0.as_deref() == Some(addr.as_str()) {
            return false;
        }
        let first = s.0.is_none();
        s.0 = Some(addr);
        s.1.cancel();
        s.1 = CancellationToken::new();
        if !first {
            metrics::counter!("respseal_backend_failovers_total").increment(1);
        }
        true
    }
}

/// Ask the sentinels for the master of `target.service` until `stop`.
pub async fn follow(
    topology: Arc<Topology>,
    target: SentinelTarget,
    username: Option<String>,
    password: Option<String>,
    tls: Option<crate::tls::BackendTls>,
    stop: CancellationToken,
) {
    // Per sentinel: one client asks, another listens for `+switch-master`
    // (a subscribed RESP2 connection can run nothing else).
    let make = |node: &String| -> Option<SentinelClient> {
        let (_, port) = node.rsplit_once(':')?;
        let config = SentinelConfig {
            host: super::url::host_of(node).to_string(),
            port: port.parse().ok()?,
            username: username.clone(),
            password: password.clone(),
            tls: tls.as_ref().map(|t| fred::types::config::TlsConnector::Rustls(t.connector()).into()),
        };
        let connection = ConnectionConfig {
            connection_timeout: Duration::from_secs(1),
            internal_command_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let client = SentinelClient::new(config, None, Some(connection), Some(ReconnectPolicy::new_constant(0, 500)));
        // The connection task runs on its own (and reconnects).
        drop(client.connect());
        Some(client)
    };
    let clients: Vec<SentinelClient> = target.nodes.iter().filter_map(make).collect();
    let listeners: Vec<SentinelClient> = target.nodes.iter().filter_map(make).collect();
    // `+switch-master` announces a failover at once; the poll below is the
    // fallback (a missed message, a sentinel that reconnected).
    for c in &listeners {
        let (c, topology, service, stop) = (c.clone(), Arc::clone(&topology), target.service.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rx = c.message_rx();
            if c.wait_for_connect().await.is_err() || c.subscribe("+switch-master").await.is_err() {
                return;
            }
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    m = rx.recv() => match m {
                        Ok(m) => m,
                        Err(_) => return,
                    },
                };
                // "<name> <old-ip> <old-port> <new-ip> <new-port>"
                let text = msg.value.as_string().unwrap_or_default();
                if let [name, _, _, ip, port] = text.split_whitespace().collect::<Vec<_>>()[..]
                    && name == service
                {
                    let addr = host_port(ip, port);
                    if topology.switch(addr.clone()) {
                        tracing::info!(master = %addr, %service, "failover announced by a sentinel");
                    }
                }
            }
        });
    }
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        for c in clients.iter().filter(|c| c.is_connected()) {
            let asked = tokio::time::timeout(
                Duration::from_secs(1),
                c.get_master_addr_by_name::<Option<Vec<String>>, _>(target.service.as_str()),
            )
            .await;
            if let Ok(Ok(Some(addr))) = asked
                && let [host, port] = addr.as_slice()
            {
                let addr = host_port(host, port);
                if topology.switch(addr.clone()) {
                    tracing::info!(master = %addr, service = %target.service, "master named by the sentinels");
                }
                break;
            }
        }
    }
    for c in clients.into_iter().chain(listeners) {
        let _ = c.quit().await;
    }
}
