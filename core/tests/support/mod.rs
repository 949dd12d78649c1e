//! A virtual network for driving a [`Proxy`] in tests: it plays the driver's part with no
//! sockets, records what the proxy asked of each connection, and lets a test decide when
//! bytes arrive, when connects finish and when writes flush. This is the seed of the
//! simulator: it uses exactly the inputs and outputs a real driver uses.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use burrow_core::config::Config;
use burrow_core::{CloseKind, ConnId, Input, ListenerId, Output, Proxy, QueryId, Shared};
use bytes::Bytes;

/// The driver's view of one connection.
#[derive(Default, Debug)]
pub struct VConn {
    /// Everything the proxy wrote to this connection, in order.
    pub received: Vec<u8>,
    /// Written but not yet reported flushed.
    pub unflushed: usize,
    /// The proxy shut down its write side.
    pub fin: bool,
    pub closed: Option<CloseKind>,
    pub paused: bool,
    /// Where the proxy connected this connection to (upstream connections only).
    pub target: Option<SocketAddr>,
    /// Bytes written after the proxy shut the write side down (a bug if ever non-zero).
    pub written_after_fin: usize,
}

pub struct Net {
    pub proxy: Proxy,
    pub shared: Arc<Shared>,
    pub now: Instant,
    pub listeners: BTreeMap<ListenerId, SocketAddr>,
    pub conns: BTreeMap<ConnId, VConn>,
    /// Connections the proxy closed, with their final state (ids may be reused after).
    pub closed: Vec<(ConnId, VConn)>,
    pub resolves: Vec<(QueryId, String)>,
    /// Report every write as flushed at once (a fast reader); off = the test flushes.
    pub auto_flush: bool,
}

impl Net {
    pub fn new(yaml: &str) -> Net {
        let config = Arc::new(Config::from_yaml(yaml).expect("test config"));
        let shared = Arc::new(Shared::new(&config));
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let proxy = Proxy::new(config, shared.clone(), now, wall, 7);
        let mut net = Net {
            proxy,
            shared,
            now,
            listeners: BTreeMap::new(),
            conns: BTreeMap::new(),
            closed: Vec::new(),
            resolves: Vec::new(),
            auto_flush: true,
        };
        net.pump();
        net
    }

    /// Executes every pending output.
    pub fn pump(&mut self) {
        loop {
            let mut flushes = Vec::new();
            while let Some(output) = self.proxy.poll_output() {
                match output {
                    Output::Listen { listener, addr } => {
                        self.listeners.insert(listener, addr);
                    }
                    Output::Unlisten { listener } => {
                        self.listeners.remove(&listener);
                    }
                    Output::Connect { conn, addr } => {
                        let fresh = VConn { target: Some(addr), ..VConn::default() };
                        assert!(
                            self.conns.insert(conn, fresh).is_none(),
                            "connect reused a live id {conn:?}"
                        );
                    }
                    Output::Write { conn, data } => {
                        let c = self.live(conn);
                        if c.fin {
                            c.written_after_fin += data.len();
                        }
                        c.received.extend_from_slice(&data);
                        c.unflushed += data.len();
                        if self.auto_flush {
                            flushes.push(conn);
                        }
                    }
                    Output::Shutdown { conn } => self.live(conn).fin = true,
                    Output::Close { conn, kind } => {
                        let mut c = self.conns.remove(&conn).expect("close of an unknown id");
                        c.closed = Some(kind);
                        self.closed.push((conn, c));
                    }
                    Output::PauseRead { conn } => self.live(conn).paused = true,
                    Output::ResumeRead { conn } => self.live(conn).paused = false,
                    Output::Resolve { query, host } => self.resolves.push((query, host)),
                }
            }
            if flushes.is_empty() {
                return;
            }
            for conn in flushes {
                self.flush(conn, usize::MAX);
            }
        }
    }

    fn live(&mut self, conn: ConnId) -> &mut VConn {
        self.conns.get_mut(&conn).unwrap_or_else(|| panic!("output for an unknown id {conn:?}"))
    }

    /// Opens a client connection to listener `listener`.
    pub fn connect_client(&mut self, listener: u32) -> ConnId {
        let id = ListenerId(listener);
        let local = self.listeners[&id];
        let peer: SocketAddr = "127.0.0.9:40000".parse().unwrap();
        let conn = self.proxy.accept(self.now, id, peer, local);
        assert!(self.conns.insert(conn, VConn::default()).is_none(), "accept reused a live id");
        self.pump();
        conn
    }

    pub fn input(&mut self, input: Input) {
        self.proxy.handle(self.now, input);
        self.pump();
    }

    pub fn send(&mut self, conn: ConnId, data: &[u8]) {
        self.input(Input::Data { conn, data: Bytes::copy_from_slice(data) });
    }

    /// Reports up to `max` unflushed bytes of `conn` as written to the socket.
    pub fn flush(&mut self, conn: ConnId, max: usize) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let bytes = c.unflushed.min(max);
        if bytes == 0 {
            return;
        }
        c.unflushed -= bytes;
        self.proxy.handle(self.now, Input::Flushed { conn, bytes });
    }

    /// Moves the clock forward and fires what is due.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.proxy.poll_timeout().is_some_and(|at| at <= self.now) {
            self.proxy.handle_timeout(self.now);
        }
        self.pump();
    }

    /// The upstream connections opened so far and still live, in id order.
    pub fn upstreams(&self) -> Vec<ConnId> {
        self.conns.iter().filter(|(_, c)| c.target.is_some()).map(|(id, _)| *id).collect()
    }

    /// The connection's final state, live or closed.
    pub fn state(&self, conn: ConnId) -> &VConn {
        self.conns
            .get(&conn)
            .or_else(|| self.closed.iter().rev().find(|(id, _)| *id == conn).map(|(_, c)| c))
            .unwrap()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.shared.stats.value(name).unwrap_or_else(|| panic!("no stat {name}"))
    }
}

/// A terminating CONNECT proxy in Envoy's format: listener 0 on 127.0.0.1:10001, CONNECT
/// routes to the static cluster `target` at 10.0.0.2:443 (connect timeout 1 s), with the
/// given listener buffer limit.
pub fn terminate_config(buffer_limit: u32) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: terminate
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 10001 }} }}
    per_connection_buffer_limit_bytes: {buffer_limit}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          upgrade_configs: [{{ upgrade_type: CONNECT }}]
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ connect_matcher: {{}} }}
                route:
                  cluster: target
                  upgrade_configs: [{{ upgrade_type: CONNECT, connect_config: {{}} }}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: target
    connect_timeout: 1s
    per_connection_buffer_limit_bytes: {buffer_limit}
    load_assignment:
      cluster_name: target
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 10.0.0.2, port_value: 443 }} }} }}
"#
    )
}

/// A reverse proxy in Envoy's format: listener 0 on 127.0.0.1:10000 routes everything to
/// the static cluster `backend` at 10.0.0.3:80, `websocket` and `foo` upgrades enabled, with
/// `extra_hcm` and `extra_cluster` YAML lines spliced in (indented to fit).
pub fn proxy_config(extra_hcm: &str, extra_cluster: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: proxy
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 10000 }} }}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          upgrade_configs: [{{ upgrade_type: websocket }}, {{ upgrade_type: foo }}]
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/direct" }}
                direct_response: {{ status: 200, body: {{ inline_string: "direct" }} }}
              - match: {{ prefix: "/api/" }}
                route: {{ cluster: backend, prefix_rewrite: "/v2/", host_rewrite_literal: backend.internal, timeout: 2s }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend }}
{extra_hcm}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
{extra_cluster}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 10.0.0.3, port_value: 80 }} }} }}
"#
    )
}
