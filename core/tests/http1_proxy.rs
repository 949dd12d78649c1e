//! HTTP/1.1 request proxying through the whole core, on the virtual network.

mod support;

use std::time::Duration;

use burrow_core::{CloseKind, CloseReason, Input};
use support::{proxy_config, Net};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends a request from a new client and brings the upstream connection up.
fn request(net: &mut Net, bytes: &[u8]) -> (burrow_core::ConnId, burrow_core::ConnId) {
    let client = net.connect_client(0);
    net.send(client, bytes);
    let up = *net.upstreams().last().expect("an upstream connection");
    net.input(Input::Connected { conn: up });
    (client, up)
}

#[test]
fn get_is_rewritten_forwarded_and_its_response_relayed() {
    let mut net = Net::new(&proxy_config("", ""));
    let (client, up) = request(&mut net, b"GET /a?b=1 HTTP/1.1\r\nhost: example\r\nconnection: keep-alive, x-drop\r\nx-drop: 1\r\nte: trailers\r\nuser-agent: t\r\n\r\n");
    let head = text(&net.state(up).received);
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "GET /a?b=1 HTTP/1.1");
    assert_eq!(lines[1], "host: example");
    assert_eq!(lines[2], "te: trailers");
    assert_eq!(lines[3], "user-agent: t");
    assert_eq!(lines[4], "x-forwarded-proto: http");
    let id = lines[5].strip_prefix("x-request-id: ").expect("a request id");
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a version-4 UUID");
    assert_eq!(lines[6], "x-envoy-expected-rq-timeout-ms: 15000");
    assert_eq!(&lines[7..], ["", ""]);
    net.send(
        up,
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nserver: origin\r\nkeep-alive: timeout=5\r\n\r\nhello",
    );
    let reply = text(&net.state(client).received);
    assert_eq!(
        reply,
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-envoy-upstream-service-time: 0\r\nserver: envoy\r\n\r\nhello"
    );
    assert_eq!(net.stat("cluster.backend.upstream_rq_200"), 1);
    assert_eq!(net.stat("cluster.backend.upstream_rq_2xx"), 1);
    assert_eq!(net.stat("http.ingress.downstream_rq_2xx"), 1);
    assert_eq!(net.stat("cluster.backend.upstream_rq_active"), 0);
    assert!(net.state(client).closed.is_none(), "keep-alive");
}

#[test]
fn keep_alive_requests_reuse_one_upstream_connection() {
    let mut net = Net::new(&proxy_config("", ""));
    let (client, up) = request(&mut net, b"GET /1 HTTP/1.1\r\nhost: h\r\n\r\n");
    for n in 1..=5 {
        net.send(up, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        if n < 5 {
            net.send(client, format!("GET /{} HTTP/1.1\r\nhost: h\r\n\r\n", n + 1).as_bytes());
        }
    }
    assert_eq!(net.upstreams(), vec![up], "one upstream connection for all");
    assert_eq!(text(&net.state(client).received).matches("HTTP/1.1 200 OK").count(), 5);
    assert_eq!(net.stat("cluster.backend.upstream_cx_total"), 1);
    assert_eq!(net.stat("cluster.backend.upstream_rq_total"), 5);
}

#[test]
fn chunked_bodies_are_reframed_without_loss() {
    let mut net = Net::new(&proxy_config("", ""));
    let client = net.connect_client(0);
    net.send(client, b"POST /p HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
    let up = net.upstreams()[0];
    net.send(client, b"6;ext=1\r\n world\r\n0\r\n\r\n");
    net.input(Input::Connected { conn: up });
    let sent = text(&net.state(up).received);
    assert!(sent.contains("transfer-encoding: chunked\r\n"), "{sent}");
    assert!(sent.ends_with("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "{sent}");
    // A read-until-close response reaches the client re-chunked.
    net.send(up, b"HTTP/1.1 200 OK\r\n\r\npart one, ");
    net.send(up, b"part two");
    net.input(Input::ReadClosed { conn: up });
    let reply = text(&net.state(client).received);
    assert!(reply.contains("transfer-encoding: chunked\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\na\r\npart one, \r\n8\r\npart two\r\n0\r\n\r\n"), "{reply}");
    assert!(net.state(client).closed.is_none());
    assert_eq!(net.state(up).closed, Some(CloseKind::Flush));
}

#[test]
fn an_upstream_dying_before_the_response_gets_503_connection_termination() {
    let mut net = Net::new(&proxy_config("", ""));
    let (client, up) = request(&mut net, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    net.input(Input::Closed { conn: up, reason: CloseReason::Reset });
    let reply = text(&net.state(client).received);
    assert!(reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{reply}");
    assert!(reply.ends_with("reset reason: connection termination"), "{reply}");
    assert_eq!(net.stat("cluster.backend.upstream_cx_destroy_remote_with_active_rq"), 1);
    assert_eq!(net.stat("cluster.backend.upstream_rq_active"), 0);
    assert_eq!(net.stat("cluster.backend.circuit_breakers.default.remaining_rq"), 1024);
}

#[test]
fn route_timeout_answers_504_and_direct_responses_need_no_upstream() {
    let mut net = Net::new(&proxy_config("", ""));
    let (client, up) = request(&mut net, b"GET /api/x HTTP/1.1\r\nhost: h\r\n\r\n");
    let sent = text(&net.state(up).received);
    assert!(
        sent.starts_with("GET /v2/x HTTP/1.1\r\nhost: backend.internal\r\n")
            || sent.contains("host: backend.internal"),
        "{sent}"
    );
    assert!(sent.starts_with("GET /v2/x HTTP/1.1\r\n"), "{sent}");
    assert!(sent.contains("x-envoy-original-path: /api/x\r\n"), "{sent}");
    net.advance(Duration::from_millis(1999));
    assert!(net.state(client).received.is_empty());
    net.advance(Duration::from_millis(1));
    let reply = text(&net.state(client).received);
    assert!(reply.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{reply}");
    assert!(reply.ends_with("upstream request timeout"));
    assert_eq!(net.state(up).closed, Some(CloseKind::Abort));
    assert_eq!(net.stat("cluster.backend.upstream_rq_timeout"), 1);

    let client = net.connect_client(0);
    net.send(client, b"GET /direct HTTP/1.1\r\nhost: h\r\n\r\n");
    let reply = text(&net.state(client).received);
    assert!(
        reply.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 6\r\ncontent-type: text/plain\r\n"),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n\r\ndirect"));
}

#[test]
fn breakers_refuse_with_503_overloaded() {
    let breakers = "    circuit_breakers: { thresholds: [{ max_connections: 1, max_pending_requests: 1 }] }";
    let mut net = Net::new(&proxy_config("", breakers));
    let first = net.connect_client(0);
    net.send(first, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    let up = net.upstreams()[0];
    net.input(Input::Connected { conn: up });
    // The one connection is busy: the second request waits, the third finds the queue full.
    let second = net.connect_client(0);
    net.send(second, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    let third = net.connect_client(0);
    net.send(third, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    let reply = text(&net.state(third).received);
    assert!(reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{reply}");
    assert!(reply.contains("x-envoy-overloaded: true\r\n"), "{reply}");
    assert_eq!(net.upstreams().len(), 1, "max_connections 1");
    assert_eq!(net.stat("cluster.backend.upstream_rq_pending_overflow"), 1);
    assert_eq!(net.stat("cluster.backend.upstream_cx_overflow"), 1);
    assert_eq!(net.stat("cluster.backend.circuit_breakers.default.cx_open"), 1);
    // Both requests are served, one after the other, on the one connection.
    net.send(up, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    net.send(up, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    assert!(text(&net.state(first).received).starts_with("HTTP/1.1 200 OK"));
    assert!(text(&net.state(second).received).starts_with("HTTP/1.1 200 OK"));
    assert_eq!(net.stat("cluster.backend.upstream_rq_pending_total"), 2);
}

#[test]
fn an_upgrade_becomes_a_tunnel_after_101() {
    let mut net = Net::new(&proxy_config("", ""));
    let (client, up) =
        request(&mut net, b"GET /ws HTTP/1.1\r\nhost: h\r\nconnection: Upgrade\r\nupgrade: FOO\r\n\r\nearly");
    let sent = text(&net.state(up).received);
    assert!(sent.contains("connection: Upgrade\r\nupgrade: FOO\r\n"), "{sent}");
    assert!(!sent.contains("early"), "nothing of the tunnel goes before the 101");
    net.send(
        up,
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\nfrom origin",
    );
    let reply = text(&net.state(client).received);
    assert!(
        reply.starts_with("HTTP/1.1 101 Switching Protocols\r\nupgrade: foo\r\nconnection: upgrade\r\n"),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n\r\nfrom origin"), "{reply}");
    assert!(text(&net.state(up).received).ends_with("\r\n\r\nearly"));
    net.send(client, b"raw 7\r\nbytes");
    assert!(text(&net.state(up).received).ends_with("earlyraw 7\r\nbytes"));
    assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_active"), 1);
    assert_eq!(net.stat("http.ingress.downstream_rq_1xx"), 1);
    net.input(Input::ReadClosed { conn: client });
    net.input(Input::ReadClosed { conn: up });
    assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_active"), 0);
    assert_eq!(net.stat("cluster.backend.upstream_cx_active"), 0);
    assert_eq!(net.stat("cluster.backend.circuit_breakers.default.remaining_cx"), 1024);
}

#[test]
fn a_refused_upgrade_is_passed_down_and_both_close() {
    let mut net = Net::new(&proxy_config("", ""));
    let (client, up) = request(
        &mut net,
        b"GET /ws HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nearly",
    );
    net.send(up, b"HTTP/1.1 426 Upgrade Required\r\nupgrade: websocket\r\nconnection: upgrade\r\ncontent-length: 0\r\n\r\n");
    let reply = text(&net.state(client).received);
    assert!(reply.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{reply}");
    assert!(reply.contains("upgrade: websocket\r\n"), "{reply}");
    assert!(!text(&net.state(up).received).contains("early"));
    assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
    assert!(net.state(up).closed.is_some());
    assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_active"), 0);
}

#[test]
fn upgrades_not_enabled_are_refused_and_h2c_is_stripped() {
    let mut net = Net::new(&proxy_config("", ""));
    let client = net.connect_client(0);
    net.send(client, b"GET / HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: bar\r\n\r\n");
    assert!(text(&net.state(client).received).starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert_eq!(net.stat("http.ingress.downstream_rq_ws_on_non_ws_route"), 1);
    let (_, up) = request(&mut net, b"GET / HTTP/1.1\r\nhost: h\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAA\r\n\r\n");
    let sent = text(&net.state(up).received);
    assert!(!sent.to_ascii_lowercase().contains("upgrade"), "{sent}");
    assert!(!sent.to_ascii_lowercase().contains("http2-settings"), "{sent}");
}

/// `request_headers_timeout`: a head not complete within the timeout of its first byte is
/// answered `408` with Envoy's body and the connection closed, however steadily its bytes
/// trickle in (the stream idle timeout never fires for it); a head that completes in time is
/// served, and the clock restarts for the next head on the same connection.
#[test]
fn request_headers_timeout_answers_a_slow_head_408_and_closes() {
    let mut net = Net::new(&proxy_config("          request_headers_timeout: 2s", ""));
    let slow = net.connect_client(0);
    let head = b"GET /slow HTTP/1.1\r\nhost: h\r\n\r\n";
    // Idle before the first byte does not count.
    net.advance(Duration::from_secs(5));
    assert_eq!(net.state(slow).closed, None);
    for (i, byte) in head[..4].iter().enumerate() {
        if i > 0 {
            net.advance(Duration::from_millis(500));
        }
        net.send(slow, std::slice::from_ref(byte));
    }
    assert!(net.state(slow).received.is_empty(), "1.5 s in");
    net.advance(Duration::from_millis(499));
    assert!(net.state(slow).received.is_empty(), "1.999 s in");
    net.advance(Duration::from_millis(1));
    assert_eq!(
        text(&net.state(slow).received),
        "HTTP/1.1 408 Request Timeout\r\ncontent-length: 22\r\ncontent-type: text/plain\r\n\
         date: Tue, 14 Nov 2023 22:13:27 GMT\r\nserver: envoy\r\nconnection: close\r\n\r\nrequest header timeout"
    );
    assert_eq!(net.state(slow).closed, Some(CloseKind::Flush));
    assert!(net.upstreams().is_empty(), "nothing was forwarded");
    assert_eq!(net.stat("http.ingress.downstream_rq_header_timeout"), 1);
    assert_eq!(net.stat("http.ingress.downstream_rq_idle_timeout"), 0);
    assert_eq!(net.stat("http.ingress.downstream_rq_4xx"), 1);

    // A head completed in time is served; the next head on the connection gets its own 2 s.
    let (client, up) = request(&mut net, b"GET /1 HTTP/1.1\r\nhost: h\r\n\r\n");
    net.advance(Duration::from_secs(3));
    net.send(up, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    net.send(client, b"GET /2 HTTP/1.1\r\n");
    net.advance(Duration::from_millis(1900));
    net.send(client, b"host: h\r\n\r\n");
    net.advance(Duration::from_secs(3));
    assert_eq!(text(&net.state(up).received).matches("GET /").count(), 2);
    assert_eq!(net.state(client).closed, None);
    assert_eq!(net.stat("http.ingress.downstream_rq_header_timeout"), 1);
}

#[test]
fn request_headers_timeout_is_off_by_default_and_when_zero() {
    for extra in ["", "          request_headers_timeout: 0s"] {
        let mut net = Net::new(&proxy_config(extra, ""));
        let client = net.connect_client(0);
        net.send(client, b"GET / HTTP/1.1\r\n");
        for _ in 0..60 {
            net.send(client, b"x-a: b\r\n");
            net.advance(Duration::from_secs(1));
        }
        assert!(net.state(client).received.is_empty(), "{extra:?}");
        assert_eq!(net.state(client).closed, None, "{extra:?}");
    }
}

/// A 5 s stream idle timeout and a 3 s connection idle timeout.
const IDLE_TIMEOUTS: &str =
    "          stream_idle_timeout: 5s\n          common_http_protocol_options: { idle_timeout: 3s }";

/// The origin answers slowly: a chunked response with a byte every 3 s, ending after 12 s.
fn slow_response(net: &mut Net, up: burrow_core::ConnId) {
    net.send(up, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    for _ in 0..4 {
        net.advance(Duration::from_secs(3));
        net.send(up, b"1\r\nx\r\n");
    }
    net.send(up, b"0\r\n\r\n");
}

/// Simulator seeds 11324189567746360383:6:60 (http1) and 8994514618538099219:5:48 (upgrade),
/// generator seed 777: the start of a pipelined head read ahead during a long response was
/// timed from the previous head, so the moment the response ended the stream idle timeout
/// answered 408 to a request whose remaining bytes the proxy had not read yet. As in Envoy,
/// the next request's stream starts when the one before it ends.
#[test]
fn a_head_read_ahead_during_a_response_is_timed_from_the_end_of_that_response() {
    let mut net = Net::new(&proxy_config(IDLE_TIMEOUTS, ""));
    let (client, up) = request(&mut net, b"GET /slow HTTP/1.1\r\nhost: h\r\n\r\nPOST /next HT");
    assert!(net.state(client).paused, "the next request waits for this one");
    slow_response(&mut net, up);
    assert!(!net.state(client).paused, "reading again");
    net.advance(Duration::from_millis(4999));
    assert_eq!(net.state(client).closed, None, "{}", text(&net.state(client).received));
    net.send(client, b"TP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n");
    assert!(text(&net.state(up).received).contains("POST /next HTTP/1.1\r\n"));
    assert_eq!(net.stat("http.ingress.downstream_rq_idle_timeout"), 0);
}

/// The same head stalled for good gets its 408 a whole stream idle timeout after the
/// response before it ended.
#[test]
fn a_head_read_ahead_that_stalls_gets_408_after_the_stream_idle_timeout() {
    let mut net = Net::new(&proxy_config(IDLE_TIMEOUTS, ""));
    let (client, up) = request(&mut net, b"GET /slow HTTP/1.1\r\nhost: h\r\n\r\nPOST /next HT");
    slow_response(&mut net, up);
    net.advance(Duration::from_millis(4999));
    assert_eq!(net.state(client).closed, None);
    net.advance(Duration::from_millis(1));
    let reply = text(&net.state(client).received);
    assert!(reply.contains("HTTP/1.1 408 Request Timeout\r\n"), "{reply}");
    assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
    assert_eq!(net.stat("http.ingress.downstream_rq_idle_timeout"), 1);
}

/// The connection idle timeout runs from the end of the last response, not from its request.
#[test]
fn the_connection_idle_timeout_runs_from_the_end_of_the_last_response() {
    let mut net = Net::new(&proxy_config(IDLE_TIMEOUTS, ""));
    let (client, up) = request(&mut net, b"GET /slow HTTP/1.1\r\nhost: h\r\n\r\n");
    slow_response(&mut net, up);
    net.advance(Duration::from_millis(2999));
    assert_eq!(net.state(client).closed, None, "closed as idle right after a long response");
    net.advance(Duration::from_millis(1));
    assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
    assert_eq!(net.stat("http.ingress.downstream_cx_idle_timeout"), 1);
}

/// A client with a 1 KiB buffer limit that sends requests without reading their answers, up
/// to past the limit, then the start of one more head: (net, client, answers sent).
fn unread_answers_then_a_partial_head() -> (Net, burrow_core::ConnId, usize) {
    let config = proxy_config(IDLE_TIMEOUTS, "").replacen(
        "    filter_chains:",
        "    per_connection_buffer_limit_bytes: 1024\n    filter_chains:",
        1,
    );
    let mut net = Net::new(&config);
    net.auto_flush = false;
    let client = net.connect_client(0);
    let get = b"GET /direct HTTP/1.1\r\nhost: h\r\n\r\n";
    net.send(client, get);
    // Enough answers to pass the limit with the last one, then the start of one more head.
    let more = 1024 / net.state(client).received.len();
    net.send(client, &[get.repeat(more).as_slice(), b"GET /direct HT"].concat());
    (net, client, more)
}

/// A client that does not read its answers holds up the next head: that time is the proxy's,
/// and the head's stream idle timeout starts once reading resumes.
#[test]
fn a_head_held_up_by_unread_answers_is_timed_from_when_reading_resumes() {
    let (mut net, client, more) = unread_answers_then_a_partial_head();
    assert!(net.state(client).unflushed > 1024);
    assert!(net.state(client).paused, "answers past the limit pause reading");
    net.advance(Duration::from_secs(10));
    assert_eq!(net.state(client).closed, None);
    net.flush(client, usize::MAX);
    net.pump();
    net.flush(client, usize::MAX);
    net.pump();
    assert!(!net.state(client).paused);
    net.advance(Duration::from_millis(4999));
    assert_eq!(net.state(client).closed, None, "{}", text(&net.state(client).received));
    net.send(client, b"TP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(text(&net.state(client).received).matches("HTTP/1.1 200 OK\r\n").count(), more + 2);
    assert_eq!(net.stat("http.ingress.downstream_rq_idle_timeout"), 0);
}

/// The same held-up head stalled for good gets its 408 a stream idle timeout after reading
/// resumed (no timer was armed at all when reading resumed, and the head never timed out).
#[test]
fn a_head_held_up_by_unread_answers_that_stalls_gets_408() {
    let (mut net, client, _) = unread_answers_then_a_partial_head();
    assert!(net.state(client).paused);
    net.advance(Duration::from_secs(10));
    net.flush(client, usize::MAX);
    net.pump();
    assert!(!net.state(client).paused);
    net.advance(Duration::from_millis(4999));
    assert_eq!(net.state(client).closed, None);
    net.advance(Duration::from_millis(1));
    net.flush(client, usize::MAX);
    net.pump();
    let reply = text(&net.state(client).received);
    assert!(reply.ends_with("stream timeout"), "{reply}");
    assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
    assert_eq!(net.stat("http.ingress.downstream_rq_idle_timeout"), 1);
}

/// `proxy_config` with a second backend host (10.0.0.4:80; the hosts take turns) and the
/// given `max_connections`.
fn two_hosts_config(max_connections: u32) -> String {
    let one = "        - endpoint: { address: { socket_address: { address: 10.0.0.3, port_value: 80 } } }\n";
    let two = one.replace("10.0.0.3", "10.0.0.4");
    let breakers =
        format!("    circuit_breakers: {{ thresholds: [{{ max_connections: {max_connections} }}] }}");
    proxy_config("", &breakers).replace(one, &format!("{one}{two}"))
}

/// A new request on its own client; returns the client and the upstream it was sent to, if
/// a connection was opened for it.
fn get(net: &mut Net, path: &str) -> (burrow_core::ConnId, Option<burrow_core::ConnId>) {
    let before = net.upstreams();
    let client = net.connect_client(0);
    net.send(client, format!("GET {path} HTTP/1.1\r\nhost: h\r\n\r\n").as_bytes());
    let opened = net.upstreams().into_iter().find(|up| !before.contains(up));
    if let Some(up) = opened {
        net.input(Input::Connected { conn: up });
    }
    (client, opened)
}

/// Simulator finding `pending-request-starved` (generator seed 777): a connection closing
/// freed room under `max_connections`, but only requests pending on its own host were woken;
/// a request pending on the cluster's other host waited with room to spare.
#[test]
fn room_freed_on_one_host_goes_to_requests_pending_on_another() {
    let mut net = Net::new(&two_hosts_config(2));
    let (_, first) = get(&mut net, "/1");
    let (second_client, second) = get(&mut net, "/2");
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(net.state(first).target, net.state(second).target, "the hosts take turns");
    // The third request goes to the first host, whose one connection is busy: it waits.
    let (third_client, none) = get(&mut net, "/3");
    assert_eq!(none, None, "max_connections 2 reached");
    assert_eq!(net.stat("cluster.backend.upstream_rq_pending_active"), 1);
    // The second host's connection closes after its response: room for the first host.
    net.send(second, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    assert!(text(&net.state(second_client).received).starts_with("HTTP/1.1 200 OK\r\n"));
    let opened = *net.upstreams().last().unwrap();
    assert_ne!(opened, first);
    assert_eq!(net.state(opened).target, net.state(first).target, "a connection for the waiting request");
    net.input(Input::Connected { conn: opened });
    assert!(text(&net.state(opened).received).starts_with("GET /3 HTTP/1.1\r\n"));
    net.send(opened, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    assert!(text(&net.state(third_client).received).starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(net.stat("cluster.backend.upstream_rq_pending_active"), 0);
}

/// Envoy's rule behind the same finding: a host with no connection at all may open one even
/// when the cluster is at `max_connections` (here held by the other host's idle connection,
/// with no idle timeout to ever free it).
#[test]
fn a_host_without_connections_gets_one_past_max_connections() {
    let mut net = Net::new(&two_hosts_config(1));
    let (first_client, first) = get(&mut net, "/1");
    let first = first.unwrap();
    net.send(first, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    assert!(text(&net.state(first_client).received).starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(net.stat("cluster.backend.circuit_breakers.default.cx_open"), 1);
    let (client, opened) = get(&mut net, "/2");
    let opened = opened.expect("a connection to the host that has none");
    assert_ne!(net.state(opened).target, net.state(first).target);
    assert_eq!(net.stat("cluster.backend.upstream_cx_overflow"), 1);
    assert_eq!(net.stat("cluster.backend.upstream_cx_active"), 2);
    assert_eq!(net.stat("cluster.backend.circuit_breakers.default.remaining_cx"), 0);
    net.send(opened, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    assert!(text(&net.state(client).received).starts_with("HTTP/1.1 200 OK\r\n"));
    // The breaker counts both, and is back to its limit once they close.
    net.input(Input::ReadClosed { conn: first });
    assert_eq!(net.stat("cluster.backend.circuit_breakers.default.cx_open"), 1);
    net.input(Input::ReadClosed { conn: opened });
    assert_eq!(net.stat("cluster.backend.upstream_cx_active"), 0);
    assert_eq!(net.stat("cluster.backend.circuit_breakers.default.remaining_cx"), 1);
    assert_eq!(net.stat("cluster.backend.circuit_breakers.default.cx_open"), 0);
}

/// Simulator seeds 1998051697833150988:1:93 and 12655377121676542516:3:54 (upgrade suite,
/// generator seeds 424242 and 2024): after the origin refused an upgrade, the client's later
/// stream bytes were still held against the buffer filter's `max_request_bytes`; past it the
/// 413 could not be sent (the refusal was on its way) and the connection was cut mid-response.
/// What a client sends for a refused upgrade is dropped (Envoy U7), early or late.
#[test]
fn bytes_after_a_refused_upgrade_are_dropped_and_the_refusal_completes() {
    let buffer = "          - name: buf\n            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 100 }\n          - name: envoy.filters.http.router\n";
    let config = proxy_config("", "").replacen("          - name: envoy.filters.http.router\n", buffer, 1);
    let mut net = Net::new(&config);
    let (client, up) = request(
        &mut net,
        b"GET /ws HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nearly",
    );
    net.send(up, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst");
    net.send(client, &[7u8; 300]);
    assert_eq!(net.state(client).closed, None, "{}", text(&net.state(client).received));
    net.send(up, b"-half");
    let reply = text(&net.state(client).received);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nfirst-half"), "{reply}");
    assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
    assert!(!text(&net.state(up).received).contains("early"));
}

/// Simulator seed 13209030629184750696:6:72 (upgrade suite, generator seed 777 and four
/// others): a pooled connection retired while its request bytes were still unflushed keeps
/// its `max_connections` unit until its socket closes, and when it did close nothing woke the
/// request pending for that unit; it waited until some other connection came free.
#[test]
fn a_retired_connection_finishing_its_close_wakes_the_requests_pending_for_its_unit() {
    let breaker = "    circuit_breakers: { thresholds: [{ max_connections: 2 }] }";
    let mut net = Net::new(&proxy_config("", breaker));
    net.auto_flush = false;
    // One connection busy with a slow response, another retired while still flushing.
    let (_, busy) = request(&mut net, b"GET /slow HTTP/1.1\r\nhost: h\r\n\r\n");
    let (client, up) = request(&mut net, b"POST /a HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\n\r\nbody");
    assert_ne!(busy, up);
    assert!(text(&net.state(up).received).ends_with("body"));
    net.send(up, b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    assert!(text(&net.state(client).received).starts_with("HTTP/1.1 413 "));
    assert_eq!(net.state(up).closed, None, "still flushing");
    let third = net.connect_client(0);
    net.send(third, b"GET /b HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(net.upstreams().len(), 2, "both units are held: the request waits");
    assert_eq!(net.stat("cluster.backend.upstream_rq_pending_active"), 1);
    net.flush(up, usize::MAX);
    net.pump();
    assert!(net.state(up).closed.is_some());
    let upstreams = net.upstreams();
    assert_eq!(upstreams.len(), 2, "the freed unit opens a connection for the pending request");
    let next = upstreams.into_iter().find(|&c| c != busy).unwrap();
    net.input(Input::Connected { conn: next });
    assert!(text(&net.state(next).received).starts_with("GET /b HTTP/1.1\r\n"));
}

/// Simulator seed 7432127463409275595:7:97 (upgrade suite, generator seed 1): what a client
/// sent before the `101` goes upstream at the switch; past the cluster's buffer limit that
/// must leave the client unread, but the switch resumed reading it anyway and the next reads
/// queued on top.
#[test]
fn early_bytes_past_the_upstream_limit_keep_the_client_paused_after_the_101() {
    let mut net = Net::new(&proxy_config("", "    per_connection_buffer_limit_bytes: 1024"));
    net.auto_flush = false;
    let early = vec![b'e'; 3000];
    let head = b"GET /ws HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
    let (client, up) = request(&mut net, &[head.as_slice(), &early].concat());
    assert!(!net.state(client).paused);
    net.send(up, b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n");
    assert!(text(&net.state(client).received).starts_with("HTTP/1.1 101 "));
    assert!(text(&net.state(up).received).ends_with(std::str::from_utf8(&early).unwrap()));
    assert!(net.state(client).paused, "the early bytes fill the upstream's queue past its limit");
    net.flush(up, usize::MAX);
    net.pump();
    assert!(!net.state(client).paused, "read again once they drained");
}
