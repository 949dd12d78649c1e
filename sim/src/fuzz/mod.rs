//! Fuzz target bodies, shared by `fuzz/fuzz_targets/*` and the corpus replay tests
//! (`core/tests/fuzz_corpus_*.rs`), so every input a fuzzer keeps stays covered on stable.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use burrow_core::config::Config;
use burrow_core::{CloseReason, ConnId, Input, ListenerId, Output, Proxy, QueryId, Shared};
use bytes::Bytes;

use crate::check::Checker;
use crate::vnet::{Executed, VConn, VirtualNet};

mod h2;

pub use h2::{h2_downstream, h2_downstream_stats, H2_DOWNSTREAM_CONFIG};

/// Runs `target` on every file of a corpus or regressions directory (dot-files skipped),
/// printing each path; returns how many ran. The fuzz-corpus tests of burrow-core share it.
pub fn replay_dir(dir: &std::path::Path, mut target: impl FnMut(&[u8])) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        println!("{}", path.display());
        target(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        count += 1;
    }
    count
}

/// `config_yaml`: any UTF-8 text through the config loader. It must never panic; a config it
/// accepts must start a proxy; a refusal must say something.
pub fn config_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_yaml(text) {
        Ok(config) => {
            let _ = config.warnings();
            let config = Arc::new(config);
            let shared = Arc::new(Shared::new(&config));
            let mut proxy = Proxy::new(config, shared, Instant::now(), SystemTime::UNIX_EPOCH, 1);
            while proxy.poll_output().is_some() {}
            let _ = proxy.poll_timeout();
        }
        Err(error) => assert!(!error.to_string().is_empty(), "an empty config error"),
    }
}

/// The fixed config of `proxy_inputs`: every feature on one listener with small limits (so
/// the fuzzer reaches breakers and watermarks), a DNS cluster (so start-up waits for an
/// answer), and the admin listener.
pub const PROXY_INPUTS_CONFIG: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
static_resources:
  listeners:
  - name: front
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    per_connection_buffer_limit_bytes: 1024
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          stream_idle_timeout: 5s
          common_http_protocol_options: { idle_timeout: 20s }
          upgrade_configs: [{ upgrade_type: CONNECT }, { upgrade_type: websocket }]
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { connect_matcher: {}, headers: [{ name: x-odst, string_match: { exact: "1" } }] }
                route: { cluster: odst, upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }] }
              - match: { connect_matcher: {} }
                route: { cluster: target, upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }] }
              - match: { prefix: "/buffered" }
                route: { cluster: origin, timeout: 3s }
                typed_per_filter_config:
                  buf: { "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: false }
              - match: { prefix: "/direct" }
                direct_response: { status: 200, body: { inline_string: direct } }
              - match: { prefix: "/" }
                route: { cluster: origin, timeout: 2s }
          http_filters:
          - name: buf
            disabled: true
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 2048 }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: target
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 3s
    connect_timeout: 1s
    per_connection_buffer_limit_bytes: 2048
    circuit_breakers: { thresholds: [{ max_connections: 2 }] }
    load_assignment:
      cluster_name: target
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: target.test, port_value: 443 } } } }] }]
  - name: odst
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
    original_dst_lb_config: { use_http_header: true, http_header_name: ":authority" }
  - name: origin
    connect_timeout: 1s
    per_connection_buffer_limit_bytes: 1024
    circuit_breakers: { thresholds: [{ max_connections: 2, max_pending_requests: 2, max_requests: 3 }] }
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http_protocol_options: {} }
        common_http_protocol_options: { max_requests_per_connection: 2, idle_timeout: 4s }
    load_assignment:
      cluster_name: origin
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.1.1, port_value: 80 } } } }, { endpoint: { address: { socket_address: { address: 10.0.1.2, port_value: 80 } } } }] }]
"#;

/// Pieces of protocol the fuzzer can splice in with one byte, so it reaches deep states
/// (tunnels, pooled responses, upgrades) without guessing whole heads.
const WORDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
    b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello",
    b"POST /buffered HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n",
    b"PUT /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"CONNECT 10.9.0.1:443 HTTP/1.1\r\nhost: x\r\nx-odst: 1\r\n\r\n",
    b"CONNECT name.test:80 HTTP/1.1\r\nx-odst: 1\r\n\r\n",
    b"CONNECT t:443 HTTP/1.1\r\n\r\nearly",
    b"GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    b"GET /direct HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    b"GET /stats HTTP/1.1\r\nhost: a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
    b"HTTP/1.1 503 Nope\r\ncontent-length: 0\r\n\r\n",
    b"\r\n",
    b"\x00\xff garbage\r\n\r\n",
    b"x",
];

/// What the fuzz driver has told the core about a connection.
#[derive(Debug, Default, Clone, Copy)]
struct DriverConn {
    connecting: bool,
    read_closed: bool,
    /// The driver reported the connection gone (or its connect failed): no more inputs.
    gone: bool,
}

/// A byte cursor that yields zeros once the input is spent.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let from = self.at.min(self.data.len());
        let to = (self.at + n).min(self.data.len());
        self.at += n;
        &self.data[from..to]
    }
}

/// The driver of `proxy_inputs`: plays a driver that keeps the contract (inputs only for live
/// ids, connect results only for pending connects, `Flushed` only for what was written,
/// nothing read from a paused connection) while the fuzzer picks which input comes next.
struct Driver {
    proxy: Proxy,
    shared: Arc<Shared>,
    base: Instant,
    now: Duration,
    checker: Checker,
    /// Live connections only: a record is forgotten at its `Close`.
    net: VirtualNet<DriverConn>,
    /// Ids the core has closed (for stale inputs, which the contract says are ignored).
    closed: Vec<ConnId>,
    /// `BURROW_FUZZ_TRACE=1`: print every input and output (to triage a crash input).
    trace: Option<crate::trace::Trace>,
}

impl Driver {
    fn new() -> Driver {
        // Parsed once: the YAML loader would otherwise dominate every run.
        static CONFIG: std::sync::OnceLock<Arc<Config>> = std::sync::OnceLock::new();
        let config = CONFIG
            .get_or_init(|| Arc::new(Config::from_yaml(PROXY_INPUTS_CONFIG).expect("the fuzz config")))
            .clone();
        let shared = Arc::new(Shared::new(&config));
        let base = Instant::now();
        let proxy = Proxy::new(config, shared.clone(), base, SystemTime::UNIX_EPOCH, 7);
        let mut d = Driver {
            proxy,
            shared,
            base,
            now: Duration::ZERO,
            checker: Checker::new(2048 + 4096 + 4096),
            net: VirtualNet::new(),
            closed: Vec::new(),
            trace: std::env::var("BURROW_FUZZ_TRACE").is_ok().then(|| crate::trace::Trace::new(true)),
        };
        d.pump();
        d
    }

    fn pump(&mut self) {
        while let Some(output) = self.proxy.poll_output() {
            if let Some(t) = &mut self.trace {
                t.output(self.now, &output);
                eprintln!("{}", t.lines().last().unwrap());
            }
            self.checker.output(&output);
            if let Some(v) = self.checker.violations.first() {
                let shown = match &output {
                    Output::Write { conn, data } => {
                        format!(
                            "Write {{ conn: {conn:?}, {} bytes: {} }}",
                            data.len(),
                            crate::http::preview(data)
                        )
                    }
                    other => format!("{other:?}"),
                };
                panic!("invariant broken by {shown}: {v}");
            }
            match self.net.execute(output) {
                Executed::Connect { key, conn, .. } => {
                    self.net[key].connecting = true;
                    self.closed.retain(|c| *c != conn);
                }
                Executed::Close { key, conn, .. } => {
                    self.net.forget(key);
                    self.closed.push(conn);
                }
                // The rest is the shared bookkeeping's; a refused output failed the checker above.
                _ => {}
            }
        }
        self.check_gauges();
    }

    fn input(&mut self, input: Input) {
        if let Some(t) = &mut self.trace {
            t.input(self.now, &input);
            eprintln!("{}", t.lines().last().unwrap());
        }
        self.checker.input(&input);
        self.proxy.handle(self.base + self.now, input);
        self.pump();
    }

    fn check_gauges(&self) {
        for (name, max) in [
            ("cluster.origin.upstream_cx_active", 2),
            ("cluster.origin.upstream_rq_active", 3),
            ("cluster.origin.upstream_rq_pending_active", 2),
            ("cluster.target.upstream_cx_active", 2),
            ("http.front.downstream_cx_active", u64::from(u32::MAX)),
            ("http.front.downstream_rq_active", u64::from(u32::MAX)),
            ("http.front.downstream_cx_upgrades_active", u64::from(u32::MAX)),
        ] {
            let v = self.shared.stats.value(name).unwrap_or(0);
            assert!(v <= max, "{name} = {v}, over its limit {max} (or below zero)");
        }
    }

    /// Live connections the driver may still report on, filtered.
    fn pick(&self, b: u8, want: impl Fn(&VConn<DriverConn>) -> bool) -> Option<ConnId> {
        let ids: Vec<ConnId> =
            self.net.live().filter(|(_, c)| !c.gone && want(c)).map(|(_, c)| c.id).collect();
        (!ids.is_empty()).then(|| ids[b as usize % ids.len()])
    }

    fn step(&mut self, cur: &mut Cursor<'_>) {
        let op = cur.byte();
        let arg = cur.byte();
        match op % 13 {
            0 => {
                let listeners: Vec<(ListenerId, SocketAddr)> = self.net.listeners().collect();
                if listeners.is_empty() {
                    return;
                }
                let (listener, local) = listeners[arg as usize % listeners.len()];
                let peer = SocketAddr::new(IpAddr::from([10, 200, 0, arg]), 40_000);
                let conn = self.proxy.accept(self.base + self.now, listener, peer, local);
                if let Some(t) = &mut self.trace {
                    t.accept(self.now, listener, conn);
                    eprintln!("{}", t.lines().last().unwrap());
                }
                // Listener 1 is the admin's: its responses are written whole.
                self.checker.accepted_on(conn, listener.0 == 1);
                if let Some(v) = self.checker.violations.first() {
                    panic!("accept: {v}");
                }
                self.net.accept(conn, DriverConn::default()).expect("the checker passed it");
                self.closed.retain(|c| *c != conn);
                self.pump();
            }
            1 | 2 => {
                let Some(conn) = self.pick(arg, |c| !c.connecting && !c.read_closed && !c.paused) else {
                    return;
                };
                let sel = cur.byte();
                let data = if sel < 200 {
                    WORDS[sel as usize % WORDS.len()].to_vec()
                } else {
                    let n = cur.byte() as usize * 16 + 1;
                    cur.bytes(n).to_vec()
                };
                if !data.is_empty() {
                    self.input(Input::Data { conn, data: Bytes::from(data) });
                }
            }
            3 => {
                if let Some(conn) = self.pick(arg, |c| !c.connecting && !c.read_closed && !c.paused) {
                    self.net.conn_mut(conn).unwrap().read_closed = true;
                    self.input(Input::ReadClosed { conn });
                }
            }
            4 => {
                if let Some(conn) = self.pick(arg, |c| !c.connecting) {
                    self.net.conn_mut(conn).unwrap().gone = true;
                    let reason =
                        if cur.byte() & 1 == 0 { CloseReason::Reset } else { CloseReason::WriteError };
                    self.input(Input::Closed { conn, reason });
                }
            }
            5 => {
                if let Some(conn) = self.pick(arg, |c| c.connecting) {
                    self.net.conn_mut(conn).unwrap().connecting = false;
                    self.input(Input::Connected { conn });
                }
            }
            6 => {
                if let Some(conn) = self.pick(arg, |c| c.connecting) {
                    self.net.conn_mut(conn).unwrap().gone = true;
                    self.input(Input::ConnectFailed { conn });
                }
            }
            7 => {
                if let Some(conn) = self.pick(arg, |c| c.unflushed > 0) {
                    let c = self.net.conn_mut(conn).unwrap();
                    let bytes = if cur.byte() < 128 { c.unflushed } else { (c.unflushed / 2).max(1) };
                    c.take(bytes);
                    self.input(Input::Flushed { conn, bytes });
                }
            }
            8 => {
                self.now += Duration::from_millis(u64::from(arg) * u64::from(arg) * 4);
                self.timeout();
            }
            9 => {
                let outstanding = self.net.queries().len();
                if outstanding == 0 {
                    return;
                }
                let (query, _) = self.net.take_query(arg as usize % outstanding);
                // Resolvers answer with both families: `target` (V4_ONLY) keeps the IPv4
                // addresses, `odst` (AUTO) the IPv6 one.
                let addrs = match cur.byte() % 3 {
                    0 => Vec::new(),
                    1 => vec![IpAddr::from([10, 9, 0, 1])],
                    _ => vec![
                        IpAddr::from([0xfd00, 0, 0, 0, 0, 9, 0, 2]),
                        IpAddr::from([10, 9, 0, 2]),
                        IpAddr::from([10, 9, 0, 3]),
                        IpAddr::from([10, 9, 0, 2]),
                    ],
                };
                self.input(Input::Resolved { query, addrs });
            }
            10 => {
                // Stale inputs for ids the core has closed (and not reused): ignored.
                if self.closed.is_empty() {
                    return;
                }
                let conn = self.closed[arg as usize % self.closed.len()];
                let input = match cur.byte() % 4 {
                    0 => Input::Data { conn, data: Bytes::from_static(b"stale") },
                    1 => Input::ReadClosed { conn },
                    2 => Input::Flushed { conn, bytes: 1 },
                    _ => Input::Closed { conn, reason: CloseReason::Reset },
                };
                self.input(input);
            }
            11 => {
                if arg < 16 {
                    self.proxy.shutdown(self.base + self.now, Duration::from_millis(u64::from(arg) * 500));
                    self.pump();
                }
            }
            _ => {
                // An answer to a query the core no longer waits for.
                let query = QueryId(u32::from(arg) + 1000);
                self.input(Input::Resolved { query, addrs: vec![IpAddr::from([10, 9, 0, 1])] });
            }
        }
    }

    fn timeout(&mut self) {
        let now = self.base + self.now;
        if self.proxy.poll_timeout().is_some_and(|at| at <= now) {
            self.proxy.handle_timeout(now);
            self.pump();
            assert!(
                self.proxy.poll_timeout().is_none_or(|at| at > now),
                "an expired deadline survived handle_timeout"
            );
        }
    }

    /// Ends every connection the way a driver would see peers vanish, lets every timer run,
    /// and checks that nothing is left: no live id, every gauge back at rest.
    fn wind_down(&mut self) {
        for _ in 0..8 {
            let ids: Vec<(ConnId, DriverConn)> = self.net.live().map(|(_, c)| (c.id, c.ext)).collect();
            for (conn, c) in ids {
                if c.gone || self.net.key(conn).is_none() {
                    continue;
                }
                self.net.conn_mut(conn).unwrap().gone = true;
                if c.connecting {
                    self.input(Input::ConnectFailed { conn });
                } else {
                    self.input(Input::Closed { conn, reason: CloseReason::Reset });
                }
            }
            for (query, _) in self.net.take_queries() {
                self.input(Input::Resolved { query, addrs: Vec::new() });
            }
            self.now += Duration::from_secs(3600);
            self.timeout();
            if self.net.live_count() == 0 {
                break;
            }
        }
        assert_eq!(
            self.checker.live_count(),
            0,
            "ids still live after every peer went away: {:?}",
            self.net.live().map(|(_, c)| c.id).collect::<Vec<_>>()
        );
        for name in [
            "cluster.origin.upstream_cx_active",
            "cluster.origin.upstream_rq_active",
            "cluster.origin.upstream_rq_pending_active",
            "cluster.target.upstream_cx_active",
            "cluster.odst.upstream_cx_active",
            "http.front.downstream_cx_active",
            "http.front.downstream_rq_active",
            "http.front.downstream_cx_upgrades_active",
        ] {
            let v = self.shared.stats.value(name).unwrap_or(0);
            assert_eq!(v, 0, "{name} = {v} once every connection is gone");
        }
        for (name, max) in [
            ("cluster.origin.circuit_breakers.default.remaining_cx", 2),
            ("cluster.origin.circuit_breakers.default.remaining_pending", 2),
            ("cluster.origin.circuit_breakers.default.remaining_rq", 3),
            ("cluster.target.circuit_breakers.default.remaining_cx", 2),
        ] {
            let v = self.shared.stats.value(name).unwrap_or(0);
            assert_eq!(v, max, "{name} = {v} once every connection is gone");
        }
    }
}

/// `proxy_inputs`: bytes become a sequence of driver inputs into a `Proxy` on
/// [`PROXY_INPUTS_CONFIG`]. Never panics unless the core does or breaks an id, write,
/// buffer or gauge invariant; at the end every connection goes away and nothing may leak.
pub fn proxy_inputs(data: &[u8]) {
    proxy_inputs_stats(data);
}

/// [`proxy_inputs`], returning the proxy's stats at the end (the corpus tests check that the
/// seeds reach tunnels, pools and upgrades).
pub fn proxy_inputs_stats(data: &[u8]) -> burrow_core::stats::Stats {
    let mut driver = Driver::new();
    let mut cur = Cursor { data, at: 0 };
    let mut steps = 0;
    while !cur.done() && steps < 4096 {
        driver.step(&mut cur);
        steps += 1;
    }
    driver.wind_down();
    let Driver { shared, proxy, .. } = driver;
    drop(proxy);
    match Arc::try_unwrap(shared) {
        Ok(shared) => shared.stats,
        Err(_) => unreachable!("the proxy is gone"),
    }
}
