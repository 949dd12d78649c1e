//! The connection manager alone: an [`HttpConn`] on a [`Ctx`] with no `Proxy` around it. The
//! test plays the facade's part: it feeds connection and pool events and reads the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::codec::http1::{self, BodyKind, Limits};
use crate::config::Config;
use crate::downstream::client::{Client, Downstream};
use crate::downstream::conn::HttpConn;
use crate::downstream::ctx::{Ctx, Owner};
use crate::downstream::route::{self, RouteRequest};
use crate::downstream::router::{End, Stream};
use crate::io::{ConnId, Output, StreamRef};
use crate::shared::Shared;
use crate::transport::{Close, ConnEvent};
use crate::tunnel::Closes;
use crate::upstream::pool::PoolEvent;

const CONFIG: &str = r#"
static_resources:
  listeners:
  - name: proxy
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          upgrade_configs: [{ upgrade_type: websocket }]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/direct" }
                direct_response: { status: 200, body: { inline_string: "direct" } }
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.0.3, port_value: 80 } } }
"#;

/// A manager with one downstream connection, and what the wire saw per connection.
struct Harness {
    ctx: Ctx,
    conn: HttpConn,
    down: ConnId,
    now: Instant,
    written: Vec<(ConnId, Vec<u8>)>,
    connects: Vec<(ConnId, SocketAddr)>,
}

impl Harness {
    fn new() -> Harness {
        let config = Arc::new(Config::from_yaml(CONFIG).expect("test config"));
        let shared = Arc::new(Shared::new(&config));
        let now = burrow_sim::epoch();
        let mut ctx = Ctx::new(config, shared, now, SystemTime::UNIX_EPOCH, 7);
        ctx.draining = false;
        let down = ctx.wire.alloc();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let conn = HttpConn::new(&mut ctx, now, down, 0, peer, local);
        Harness { ctx, conn, down, now, written: Vec::new(), connects: Vec::new() }
    }

    /// Takes the wire's outputs: writes and connects are kept, the rest dropped.
    fn drain(&mut self) {
        while let Some(output) = self.ctx.wire.pop() {
            match output {
                Output::Write { conn, data } => self.bytes(conn).extend_from_slice(&data),
                Output::Connect { conn, addr } => self.connects.push((conn, addr)),
                _ => {}
            }
        }
    }

    fn bytes(&mut self, conn: ConnId) -> &mut Vec<u8> {
        if let Some(i) = self.written.iter().position(|(id, _)| *id == conn) {
            return &mut self.written[i].1;
        }
        self.written.push((conn, Vec::new()));
        &mut self.written.last_mut().unwrap().1
    }

    fn text(&mut self, conn: ConnId) -> String {
        self.drain();
        String::from_utf8_lossy(self.bytes(conn)).into_owned()
    }

    /// Sends a request the manager forwards: the pooled connection opened for it.
    fn forward(&mut self, request: &[u8]) -> ConnId {
        assert!(self.client(request).is_empty());
        self.drain();
        self.connects.last().expect("a connection was opened").0
    }

    fn client(&mut self, data: &[u8]) -> Closes {
        let event = ConnEvent::Data(Bytes::copy_from_slice(data));
        let closes = self.conn.on_downstream(&mut self.ctx, self.now, event);
        self.deliver();
        closes
    }

    /// An event on a pooled upstream connection, run through the pool as the proxy does, its
    /// stream events delivered to the connection.
    fn upstream(&mut self, up: ConnId, event: ConnEvent) -> Option<Close> {
        let now = self.now;
        let out = self.ctx.with_pool(0, now, |pools, cx| pools.on_event(up, event, cx));
        for (stream, event) in out.events {
            assert_eq!(stream.conn, self.down);
            let closes = self.conn.on_pool(&mut self.ctx, now, stream.stream, event);
            assert!(closes.is_empty(), "{closes:?}");
        }
        self.deliver();
        out.close
    }

    fn deliver(&mut self) {
        for (stream, event) in std::mem::take(&mut self.ctx.deferred) {
            let closes = self.conn.on_pool(&mut self.ctx, self.now, stream.stream, event);
            assert!(closes.is_empty(), "{closes:?}");
        }
    }

    fn stat(&self, name: &str) -> u64 {
        self.ctx.shared.stats.value(name).unwrap_or_else(|| panic!("no stat {name}"))
    }
}

#[test]
fn a_direct_response_is_answered_and_the_connection_kept() {
    let mut h = Harness::new();
    let closes = h.client(b"GET /direct HTTP/1.1\r\nhost: h\r\n\r\n");
    assert!(closes.is_empty());
    let reply = h.text(h.down);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\ndirect"), "{reply}");
    assert!(!reply.contains("connection: close"), "{reply}");
    assert!(h.conn.is_idle());
    assert_eq!(h.stat("http.ingress.downstream_rq_total"), 1);
    assert_eq!(h.stat("http.ingress.downstream_rq_active"), 0);
}

#[test]
fn pipelined_heads_are_answered_in_order_until_one_ends_the_connection() {
    let mut h = Harness::new();
    let closes = h.client(
        b"GET /direct HTTP/1.1\r\nhost: h\r\n\r\nGET /direct HTTP/1.1\r\n\r\nGET /direct HTTP/1.1\r\n",
    );
    assert_eq!(closes, [(h.down, Close::Flush)]);
    let reply = h.text(h.down);
    let first = reply.find("HTTP/1.1 200 OK").unwrap();
    let second = reply.find("HTTP/1.1 400 Bad Request").unwrap();
    assert!(first < second, "{reply}");
    assert!(reply.ends_with("missing required header: host"), "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 2, "the third head is never answered: {reply}");
    assert_eq!(h.stat("http.ingress.downstream_rq_total"), 2);
}

#[test]
fn an_upgrade_the_route_does_not_allow_is_refused_with_403() {
    let mut h = Harness::new();
    let closes = h.client(b"GET /ws HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: spdy/3\r\n\r\n");
    assert_eq!(closes, [(h.down, Close::Flush)]);
    assert!(h.text(h.down).starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert_eq!(h.stat("http.ingress.downstream_rq_ws_on_non_ws_route"), 1);
    assert_eq!(h.stat("http.ingress.downstream_cx_upgrades_total"), 0);
}

#[test]
fn a_bad_head_is_answered_with_its_status_and_closes() {
    let mut h = Harness::new();
    let closes = h.client(b"GET / HTTP/9.7\r\nhost: h\r\n\r\n");
    assert_eq!(closes, [(h.down, Close::Flush)]);
    assert!(h.text(h.down).starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert_eq!(h.stat("http.ingress.downstream_cx_protocol_error"), 1);
}

#[test]
fn a_proxied_request_waits_for_its_pooled_connection_then_relays_the_response() {
    let mut h = Harness::new();
    assert!(h.client(b"GET /a HTTP/1.1\r\nhost: h\r\n\r\n").is_empty());
    h.drain();
    let [(up, addr)] = h.connects[..] else { panic!("one connect: {:?}", h.connects) };
    assert_eq!(addr, "10.0.0.3:80".parse().unwrap());
    assert!(matches!(h.ctx.adopted[..], [(id, Owner::Pool { cluster: 0 })] if id == up));
    assert!(h.text(up).is_empty(), "nothing is written before the connection is up");
    assert_eq!(h.upstream(up, ConnEvent::Connected), None);
    let sent = h.text(up);
    assert!(sent.starts_with("GET /a HTTP/1.1\r\nhost: h\r\n"), "{sent}");
    assert!(h.text(h.down).is_empty());
    h.now += Duration::from_millis(3);
    let response = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    assert_eq!(h.upstream(up, ConnEvent::Data(response)), None);
    let reply = h.text(h.down);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("x-envoy-upstream-service-time: 3\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nok"), "{reply}");
    assert!(h.conn.is_idle());
    assert_eq!(h.stat("cluster.backend.upstream_rq_completed"), 1);
    assert_eq!(h.stat("cluster.backend.upstream_cx_active"), 1, "kept for the next request");
}

#[test]
fn a_response_cut_by_its_upstream_ends_the_downstream_with_a_reset() {
    let mut h = Harness::new();
    let up = h.forward(b"GET /a HTTP/1.1\r\nhost: h\r\n\r\n");
    h.upstream(up, ConnEvent::Connected);
    let partial = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\npart");
    h.upstream(up, ConnEvent::Data(partial));
    let now = h.now;
    let out = h.ctx.with_pool(0, now, |pools, cx| pools.on_event(up, ConnEvent::Closed, cx));
    let mut closes = Vec::new();
    for (stream, event) in out.events {
        closes.extend(h.conn.on_pool(&mut h.ctx, now, stream.stream, event));
    }
    assert_eq!(closes, [(h.down, Close::FlushThenReset)]);
    assert!(h.text(h.down).ends_with("\r\n\r\npart"));
}

#[test]
fn a_body_split_across_reads_goes_upstream_after_its_head_as_it_arrives() {
    let mut h = Harness::new();
    let up = h.forward(b"POST /a HTTP/1.1\r\nhost: h\r\ncontent-length: 6\r\n\r\nab");
    h.upstream(up, ConnEvent::Connected);
    let sent = h.text(up);
    assert!(sent.starts_with("POST /a HTTP/1.1\r\n"), "{sent}");
    assert!(sent.ends_with("\r\n\r\nab"), "what came with the head follows it: {sent}");
    assert!(h.client(b"cd").is_empty());
    assert!(h.client(b"ef").is_empty());
    assert!(h.text(up).ends_with("\r\n\r\nabcdef"));
    let response = Bytes::from_static(b"HTTP/1.1 204 No Content\r\n\r\n");
    h.upstream(up, ConnEvent::Data(response));
    assert!(h.text(h.down).starts_with("HTTP/1.1 204 No Content\r\n"));
    assert!(h.conn.is_idle());
}

#[test]
fn thousands_of_pipelined_requests_are_answered_in_order_in_one_pass() {
    let mut h = Harness::new();
    let mut requests = Vec::new();
    for i in 0..3000 {
        requests.extend_from_slice(format!("GET /direct/{i} HTTP/1.1\r\nhost: h\r\n\r\n").as_bytes());
    }
    assert!(h.client(&requests).is_empty());
    let replies = h.text(h.down);
    assert_eq!(replies.matches("HTTP/1.1 200 OK\r\n").count(), 3000);
    assert_eq!(h.stat("http.ingress.downstream_rq_total"), 3000);
    assert_eq!(h.stat("http.ingress.downstream_rq_active"), 0);
    assert!(h.conn.is_idle());
}

#[test]
fn a_request_read_whole_holds_up_the_next_one_and_reading() {
    let mut h = Harness::new();
    let up = h.forward(b"GET /a HTTP/1.1\r\nhost: h\r\n\r\nGET /direct HTTP/1.1\r\nhost: h\r\n\r\n");
    assert!(h.ctx.wire.read_paused(h.down), "the second head waits, and so does reading");
    h.upstream(up, ConnEvent::Connected);
    assert!(h.text(h.down).is_empty(), "no answer before the first one's");
    let response = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst");
    h.upstream(up, ConnEvent::Data(response));
    let replies = h.text(h.down);
    let first = replies.find("\r\n\r\nfirst").expect("the proxied answer");
    let second = replies.find("\r\n\r\ndirect").expect("then the direct one");
    assert!(first < second, "{replies}");
    assert!(!h.ctx.wire.read_paused(h.down));
    assert!(h.conn.is_idle());
}

/// The forwarding machine alone: a [`Stream`] fed its request's events and the pool's by the
/// test, with no connection manager around it.
#[test]
fn a_stream_alone_is_bound_sends_its_request_and_ends_complete_with_its_response() {
    let mut h = Harness::new();
    let mut client = Client::http1(&h.ctx.config, h.down, 0, "127.0.0.1:40001".parse().unwrap());
    let raw = b"POST /s HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\n";
    let (head, _) = http1::parse_request_head(raw, &Limits::default()).unwrap().expect("a whole head");
    let header = |name: &str| head.headers.get(name);
    let request = RouteRequest { method: "POST", authority: b"h", path: Some(b"/s"), header: &header };
    let index = route::select_index(&client.hcm(&h.ctx.config).route_config, &request).expect("routed");
    let (id, addr, now) = (StreamRef { conn: h.down, stream: 1 }, "10.0.0.3:80".parse().unwrap(), h.now);
    let mut stream =
        Stream::start(&mut client, &mut h.ctx, now, id, head, BodyKind::Length(3), index, addr, false, true);
    assert!(stream.body_data(&mut client, &mut h.ctx, now, Bytes::from_static(b"abc")).is_none());
    assert!(stream.body_end(&mut client, &mut h.ctx, now).is_none());
    assert!(stream.go(&mut client, &mut h.ctx, now).is_none(), "waits for a connection");
    h.drain();
    let up = h.connects.last().expect("the pool opened a connection").0;
    assert!(h.text(up).is_empty());

    let mut out = h.ctx.with_pool(0, now, |pools, cx| pools.on_event(up, ConnEvent::Connected, cx));
    let (waiter, bound) = out.events.pop().expect("the stream is told");
    assert_eq!(waiter, id);
    assert!(matches!(bound, PoolEvent::Bound(conn) if conn == up));
    assert!(stream.on_pool(&mut client, &mut h.ctx, now, bound).is_none());
    let sent = h.text(up);
    assert!(sent.starts_with("POST /s HTTP/1.1\r\n"), "{sent}");
    assert!(sent.ends_with("\r\n\r\nabc"), "the body waited for the head: {sent}");

    let response = Bytes::from_static(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok");
    let mut out = h.ctx.with_pool(0, now, |pools, cx| pools.on_event(up, ConnEvent::Data(response), cx));
    assert!(matches!(out.events.pop(), Some((w, PoolEvent::Response(conn))) if w == id && conn == up));
    let mut ended = None;
    while let Some(event) = h.ctx.pools.poll_response(up, id) {
        assert!(ended.is_none(), "nothing after the end");
        ended = stream.on_response(&mut client, &mut h.ctx, now, event);
    }
    let ended = ended.expect("the response ended the stream");
    assert!(matches!(ended.end, End::Complete { close: false }));
    assert!(ended.up.is_none(), "the connection went back to the pool, kept");
    let reply = h.text(h.down);
    assert!(reply.starts_with("HTTP/1.1 201 Created\r\n") && reply.ends_with("\r\n\r\nok"), "{reply}");
}
