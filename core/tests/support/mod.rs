//! A virtual network for driving a [`Proxy`] in tests: it plays the driver's part with no
//! sockets (the simulator's [`VirtualNet`] executes the outputs), records what the proxy
//! wrote to each connection, and lets a test decide when bytes arrive, when connects finish
//! and when writes flush.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use burrow_core::config::Config;
use burrow_core::{ConnId, Input, ListenerId, Proxy, QueryId, Shared};
use burrow_sim::vnet::{Executed, VirtualNet};
use bytes::Bytes;

/// What a test looks at beyond the driver's own record of a connection.
#[derive(Default, Debug)]
pub struct Received {
    /// Everything the proxy wrote to this connection, in order (flushed or not).
    pub received: Vec<u8>,
}

/// The driver's view of one connection.
pub type VConn = burrow_sim::vnet::VConn<Received>;

pub struct Net {
    pub proxy: Proxy,
    pub shared: Arc<Shared>,
    pub now: Instant,
    pub vnet: VirtualNet<Received>,
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
        let mut net = Net { proxy, shared, now, vnet: VirtualNet::new(), auto_flush: true };
        net.pump();
        net
    }

    /// Executes every pending output.
    pub fn pump(&mut self) {
        loop {
            let mut flushes = Vec::new();
            while let Some(output) = self.proxy.poll_output() {
                match self.vnet.execute(output) {
                    Executed::Write { key, conn, data } => {
                        self.vnet[key].received.extend_from_slice(&data);
                        if self.auto_flush {
                            flushes.push(conn);
                        }
                    }
                    Executed::Refused(misuse) => panic!("{misuse}"),
                    _ => {}
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

    /// Opens a client connection to listener `listener`.
    pub fn connect_client(&mut self, listener: u32) -> ConnId {
        let id = ListenerId(listener);
        let local = self.vnet.listener(id).expect("a bound listener");
        let peer: SocketAddr = "127.0.0.9:40000".parse().unwrap();
        let conn = self.proxy.accept(self.now, id, peer, local);
        self.vnet.accept(conn, Received::default()).unwrap_or_else(|misuse| panic!("{misuse}"));
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
        let Some(c) = self.vnet.conn_mut(conn) else { return };
        let bytes = c.take(max).len();
        if bytes == 0 {
            return;
        }
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

    /// The latest name resolution the proxy asked for and nobody answered yet.
    pub fn take_resolve(&mut self) -> (QueryId, String) {
        let last = self.vnet.queries().len().checked_sub(1).expect("an outstanding query");
        self.vnet.take_query(last)
    }

    /// The upstream connections opened so far and still live, in id order.
    pub fn upstreams(&self) -> Vec<ConnId> {
        self.vnet.live().filter(|(_, c)| c.target.is_some()).map(|(_, c)| c.id).collect()
    }

    /// The connection's final state, live or closed.
    pub fn state(&self, conn: ConnId) -> &VConn {
        self.vnet.latest(conn).unwrap()
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
