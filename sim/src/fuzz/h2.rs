//! `h2_downstream`: raw bytes into a downstream HTTP/2 connection of the core, after the
//! client preface, read in pieces whose sizes the input picks. Upstreams answer like simple
//! peers (a pooled request gets a small response, a WebSocket handshake its `101`, a tunnel its
//! bytes echoed), so streams reach forwarding, tunnels and upgrades. The core must never
//! panic, must keep the driver contract, and once the client is gone nothing may be left.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use burrow_core::config::Config;
use burrow_core::stats::Stats;
use burrow_core::{CloseReason, ConnId, Input, ListenerId, Output, Proxy, Shared};
use bytes::Bytes;

use crate::check::Checker;

/// One HTTP/2 listener with every path an HTTP/2 stream can take, and small limits.
pub const H2_DOWNSTREAM_CONFIG: &str = r#"
static_resources:
  listeners:
  - name: front
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    per_connection_buffer_limit_bytes: 4096
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          codec_type: HTTP2
          stream_idle_timeout: 5s
          http2_protocol_options: { allow_connect: true, max_concurrent_streams: 16, initial_stream_window_size: 65535 }
          upgrade_configs: [{ upgrade_type: CONNECT }, { upgrade_type: websocket }]
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { connect_matcher: {} }
                route: { cluster: target, upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }] }
              - match: { prefix: "/direct" }
                direct_response: { status: 200, body: { inline_string: direct } }
              - match: { prefix: "/" }
                route: { cluster: origin, timeout: 2s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: target
    connect_timeout: 1s
    per_connection_buffer_limit_bytes: 4096
    load_assignment:
      cluster_name: target
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.2.1, port_value: 443 } } } }] }]
  - name: origin
    connect_timeout: 1s
    per_connection_buffer_limit_bytes: 4096
    circuit_breakers: { thresholds: [{ max_connections: 4, max_pending_requests: 4, max_requests: 8 }] }
    load_assignment:
      cluster_name: origin
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.1.1, port_value: 80 } } } }] }]
"#;

/// What every HTTP/2 client sends first: the preface and an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

pub fn h2_downstream(data: &[u8]) {
    h2_downstream_stats(data);
}

/// [`h2_downstream`], returning the proxy's stats at the end (the corpus test checks that
/// the seeds reach forwarding, tunnels and upgrades).
pub fn h2_downstream_stats(data: &[u8]) -> Stats {
    static CONFIG: OnceLock<Arc<Config>> = OnceLock::new();
    let config = CONFIG
        .get_or_init(|| Arc::new(Config::from_yaml(H2_DOWNSTREAM_CONFIG).expect("the fuzz config")))
        .clone();
    let shared = Arc::new(Shared::new(&config));
    let mut run = Run {
        proxy: Proxy::new(config, shared.clone(), Instant::now(), SystemTime::UNIX_EPOCH, 7),
        now: Instant::now(),
        checker: Checker::new(4096 + 64 * 1024),
        upstreams: BTreeMap::new(),
    };
    run.pump();
    let peer = SocketAddr::from(([10, 200, 0, 1], 40_000));
    let local = SocketAddr::from(([127, 0, 0, 1], 10_000));
    let client = run.proxy.accept(run.now, ListenerId(0), peer, local);
    run.checker.accepted(client);
    run.pump();
    run.input(Input::Data { conn: client, data: Bytes::from_static(PREFACE) });
    // The first byte sizes the reads; the rest is the client's bytes.
    let (size, bytes) = data.split_first().map_or((1, &[][..]), |(s, rest)| (usize::from(*s) + 1, rest));
    for piece in bytes.chunks(size) {
        if !run.checker.is_live(client) {
            break;
        }
        run.input(Input::Data { conn: client, data: Bytes::copy_from_slice(piece) });
        run.now += Duration::from_millis(100);
        run.timeout();
    }
    // The client goes away, then every upstream; every deadline passes.
    if run.checker.is_live(client) {
        run.input(Input::Closed { conn: client, reason: CloseReason::Reset });
    }
    for conn in run.checker.live().collect::<Vec<_>>() {
        run.input(Input::Closed { conn, reason: CloseReason::Reset });
    }
    run.now += Duration::from_secs(3600);
    run.timeout();
    assert_eq!(run.checker.live_count(), 0, "ids still live once every peer went away");
    for name in [
        "http.front.downstream_cx_active",
        "http.front.downstream_rq_active",
        "http.front.downstream_cx_upgrades_active",
        "http.front.http2.streams_active",
        "cluster.origin.upstream_cx_active",
        "cluster.origin.upstream_rq_active",
        "cluster.target.upstream_cx_active",
    ] {
        let v = shared.stats.value(name).unwrap_or(0);
        assert_eq!(v, 0, "{name} = {v} once every connection is gone");
    }
    drop(run);
    match Arc::try_unwrap(shared) {
        Ok(shared) => shared.stats,
        Err(_) => unreachable!("the proxy is gone"),
    }
}

struct Run {
    proxy: Proxy,
    now: Instant,
    checker: Checker,
    /// Upstream connections, and whether each has answered (a pooled connection answers once
    /// per request head it reads; a tunnel echoes).
    upstreams: BTreeMap<ConnId, Upstream>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Upstream {
    Connecting,
    /// Reads HTTP/1.1 requests (the pool's), or tunnel bytes (anything else), which it echoes.
    Open,
}

impl Run {
    fn input(&mut self, input: Input) {
        self.checker.input(&input);
        self.proxy.handle(self.now, input);
        self.pump();
    }

    fn pump(&mut self) {
        let mut replies = Vec::new();
        while let Some(output) = self.proxy.poll_output() {
            self.checker.output(&output);
            if let Some(v) = self.checker.violations.first() {
                panic!("invariant broken by {output:?}: {v}");
            }
            match output {
                Output::Connect { conn, .. } => {
                    self.upstreams.insert(conn, Upstream::Connecting);
                    replies.push(Input::Connected { conn });
                }
                Output::Write { conn, data } => {
                    replies.push(Input::Flushed { conn, bytes: data.len() });
                    if self.upstreams.get(&conn) == Some(&Upstream::Open) {
                        replies.push(Input::Data { conn, data: answer(&data) });
                    }
                }
                Output::Close { conn, .. } => {
                    self.upstreams.remove(&conn);
                }
                _ => {}
            }
        }
        for reply in replies {
            if let Input::Connected { conn } = reply {
                self.upstreams.insert(conn, Upstream::Open);
            }
            let live = match &reply {
                Input::Data { conn, .. } | Input::Flushed { conn, .. } | Input::Connected { conn } => {
                    self.checker.is_live(*conn)
                }
                _ => true,
            };
            if live {
                self.input(reply);
            }
        }
    }

    fn timeout(&mut self) {
        if self.proxy.poll_timeout().is_some_and(|at| at <= self.now) {
            self.proxy.handle_timeout(self.now);
            self.pump();
        }
    }
}

/// An upstream's answer to what it read: a `101` to a WebSocket handshake, a small response
/// to any other request head, the bytes themselves otherwise (a tunnel's echo).
fn answer(data: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(data).to_ascii_lowercase();
    if text.contains(" http/1.1\r\n") && text.contains("upgrade: websocket") {
        Bytes::from_static(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        )
    } else if text.contains(" http/1.1\r\n") {
        Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    } else {
        Bytes::copy_from_slice(data)
    }
}
