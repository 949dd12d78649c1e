//! The CONNECT tunnel machine through the whole core, on the virtual network.

mod support;

use std::time::Duration;

use burrow_core::{CloseKind, CloseReason, Input};
use proptest::prelude::*;
use support::{terminate_config, Net};

const HEAD: &[u8] = b"CONNECT host.com:443 HTTP/1.1\r\nhost: other\r\n\r\n";
const OK_200: &str = "HTTP/1.1 200 OK\r\ndate: Tue, 14 Nov 2023 22:13:20 GMT\r\nserver: envoy\r\n\r\n";

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn answers_200_once_connected_and_forwards_early_bytes() {
    let mut net = Net::new(&terminate_config(1 << 20));
    let client = net.connect_client(0);
    net.send(client, &[HEAD, b"early"].concat());
    let up = net.upstreams()[0];
    assert_eq!(net.state(up).target, Some("10.0.0.2:443".parse().unwrap()));
    assert!(net.state(client).received.is_empty(), "no answer before the target is connected");
    assert!(net.state(up).received.is_empty(), "nothing streams before the tunnel is up");
    net.input(Input::Connected { conn: up });
    assert_eq!(text(&net.state(client).received), OK_200);
    assert_eq!(net.state(up).received, b"early");
    net.send(up, b"pong");
    assert_eq!(text(&net.state(client).received), format!("{OK_200}pong"));
    assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_total"), 1);
    assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_active"), 1);
    assert_eq!(net.stat("cluster.target.upstream_cx_total"), 1);
    assert_eq!(net.stat("http.ingress.downstream_rq_2xx"), 1);
}

#[test]
fn half_close_passes_both_ways_then_both_close() {
    let mut net = Net::new(&terminate_config(1 << 20));
    let client = net.connect_client(0);
    net.send(client, HEAD);
    let up = net.upstreams()[0];
    net.input(Input::Connected { conn: up });
    net.input(Input::ReadClosed { conn: client });
    assert!(net.state(up).shutdown, "client FIN reaches the target");
    assert!(net.state(up).closed.is_none());
    net.send(up, b"after the client's FIN");
    assert!(net.state(client).received.ends_with(b"after the client's FIN"));
    net.input(Input::ReadClosed { conn: up });
    assert!(net.state(client).shutdown);
    assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
    assert_eq!(net.state(up).closed, Some(CloseKind::Flush));
    assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_active"), 0);
    assert_eq!(net.stat("http.ingress.downstream_cx_active"), 0);
    assert_eq!(net.stat("cluster.target.upstream_cx_active"), 0);
}

#[test]
fn connect_failure_and_timeout_answer_503_with_envoys_text() {
    for timeout in [false, true] {
        let mut net = Net::new(&terminate_config(1 << 20));
        let client = net.connect_client(0);
        net.send(client, HEAD);
        let up = net.upstreams()[0];
        if timeout {
            net.advance(Duration::from_millis(999));
            assert!(net.state(client).received.is_empty());
            net.advance(Duration::from_millis(1));
        } else {
            net.input(Input::ConnectFailed { conn: up });
        }
        let reply = text(&net.state(client).received).to_string();
        let reason = if timeout { "connection timeout" } else { "remote connection failure" };
        assert!(reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{reply}");
        assert!(reply.contains("connection: close\r\n"));
        assert!(reply.ends_with(&format!("reset reason: {reason}")), "{reply}");
        assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
        assert_eq!(net.state(up).closed, Some(CloseKind::Abort));
        assert_eq!(net.stat("cluster.target.upstream_cx_connect_fail"), 1);
        assert_eq!(net.stat("cluster.target.upstream_cx_connect_timeout"), u64::from(timeout));
        assert_eq!(net.stat("http.ingress.downstream_rq_5xx"), 1);
        assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_total"), 1);
        assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_active"), 0);
    }
}

#[test]
fn upstream_reset_closes_the_client() {
    let mut net = Net::new(&terminate_config(1 << 20));
    let client = net.connect_client(0);
    net.send(client, HEAD);
    let up = net.upstreams()[0];
    net.input(Input::Connected { conn: up });
    net.send(up, b"last words");
    net.input(Input::Closed { conn: up, reason: CloseReason::Reset });
    assert!(net.state(client).received.ends_with(b"last words"));
    // The client learns the stream was cut: a reset after the bytes it was sent, not a FIN.
    assert_eq!(net.state(client).closed, Some(CloseKind::Abort));
    assert_eq!(net.stat("cluster.target.upstream_cx_destroy_remote"), 1);
}

/// A closing connection's bytes drain before its `Close`; one that stops draining is reset
/// after a second without progress, each flushed byte restarting the wait.
#[test]
fn a_close_waits_for_the_flush_within_a_deadline_of_no_progress() {
    let mut net = Net::new(&terminate_config(1 << 20));
    let client = net.connect_client(0);
    net.send(client, HEAD);
    let up = net.upstreams()[0];
    net.input(Input::Connected { conn: up });
    net.auto_flush = false;
    net.send(up, b"0123456789");
    net.input(Input::ReadClosed { conn: up });
    net.input(Input::ReadClosed { conn: client });
    assert!(net.state(client).shutdown, "the upstream's FIN is passed on");
    assert_eq!(net.state(client).closed, None, "still flushing");
    net.advance(Duration::from_millis(900));
    net.flush(client, 4);
    net.pump();
    assert_eq!(net.state(client).closed, None, "6 bytes still queued");
    net.advance(Duration::from_millis(900));
    assert_eq!(net.state(client).closed, None, "progress restarted the wait");
    net.advance(Duration::from_millis(200));
    assert_eq!(net.state(client).closed, Some(CloseKind::Abort), "stalled: reset");
}

#[test]
fn a_flushed_close_is_a_fin() {
    let mut net = Net::new(&terminate_config(1 << 20));
    let client = net.connect_client(0);
    net.send(client, HEAD);
    let up = net.upstreams()[0];
    net.input(Input::Connected { conn: up });
    net.auto_flush = false;
    net.send(up, b"0123456789");
    net.input(Input::ReadClosed { conn: up });
    net.input(Input::ReadClosed { conn: client });
    net.flush(client, usize::MAX);
    net.pump();
    assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
}

#[test]
fn a_slow_reader_pauses_the_writer_within_the_buffer_limit() {
    let limit = 64 * 1024;
    let mut net = Net::new(&terminate_config(limit));
    let client = net.connect_client(0);
    net.send(client, HEAD);
    let up = net.upstreams()[0];
    net.input(Input::Connected { conn: up });
    net.auto_flush = false;
    let chunk = vec![7u8; 16 * 1024];
    let mut sent = 0;
    while !net.state(client).paused {
        net.send(client, &chunk);
        sent += chunk.len();
        assert!(sent <= limit as usize + chunk.len(), "never paused");
    }
    assert!(net.state(up).unflushed <= limit as usize + chunk.len());
    net.flush(up, limit as usize / 4);
    net.pump();
    assert!(net.state(client).paused, "still above the low watermark");
    net.flush(up, usize::MAX);
    net.pump();
    assert!(!net.state(client).paused, "resumed once drained");
    assert_eq!(net.state(up).received.len(), sent);
}

#[derive(Clone, Debug)]
enum Step {
    ClientSends(usize),
    TargetSends(usize),
    Connect,
    FlushClient(usize),
    FlushTarget(usize),
    ClientFin,
    TargetFin,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1usize..3000).prop_map(Step::ClientSends),
        3 => (1usize..3000).prop_map(Step::TargetSends),
        1 => Just(Step::Connect),
        2 => (1usize..5000).prop_map(Step::FlushClient),
        2 => (1usize..5000).prop_map(Step::FlushTarget),
        1 => Just(Step::ClientFin),
        1 => Just(Step::TargetFin),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Whatever the read splits, the order of events and the flush pace, every byte crosses
    /// the tunnel once and in order, nothing crosses before the tunnel is up, a FIN is
    /// forwarded only after the bytes before it, and memory stays within the limit.
    #[test]
    fn tunnel_never_loses_duplicates_or_reorders(
        client_payload in proptest::collection::vec(any::<u8>(), 0..20_000),
        target_payload in proptest::collection::vec(any::<u8>(), 0..20_000),
        head_split in 1usize..HEAD.len(),
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let limit = 8 * 1024;
        let mut net = Net::new(&terminate_config(limit));
        net.auto_flush = false;
        let client = net.connect_client(0);
        net.send(client, &HEAD[..head_split]);
        net.send(client, &HEAD[head_split..]);
        let up = net.upstreams()[0];
        let (mut c_sent, mut t_sent) = (0, 0);
        let (mut connected, mut c_fin, mut t_fin) = (false, false, false);
        // After the generated steps, finish like well-behaved peers: connect, then send the
        // rest in bounded chunks while flushing, then half-close both ways.
        let rest = client_payload.len() / 2000 + target_payload.len() / 2000 + 2;
        let finish = [Step::Connect]
            .into_iter()
            .chain((0..rest).flat_map(|_| [Step::ClientSends(2000), Step::TargetSends(2000), Step::FlushClient(usize::MAX), Step::FlushTarget(usize::MAX)]))
            .chain([Step::ClientFin, Step::TargetFin]);
        for step in steps.into_iter().chain(finish) {
            match step {
                Step::ClientSends(n) if !c_fin && !net.state(client).paused && c_sent < client_payload.len() => {
                    let end = client_payload.len().min(c_sent.saturating_add(n));
                    net.send(client, &client_payload[c_sent..end]);
                    c_sent = end;
                }
                Step::TargetSends(n) if connected && !t_fin && !net.state(up).paused && t_sent < target_payload.len() => {
                    let end = target_payload.len().min(t_sent.saturating_add(n));
                    net.send(up, &target_payload[t_sent..end]);
                    t_sent = end;
                }
                Step::Connect if !connected => {
                    connected = true;
                    net.input(Input::Connected { conn: up });
                }
                Step::FlushClient(n) => { net.flush(client, n); net.pump(); }
                Step::FlushTarget(n) => { net.flush(up, n); net.pump(); }
                Step::ClientFin if !c_fin && c_sent == client_payload.len() => {
                    c_fin = true;
                    net.input(Input::ReadClosed { conn: client });
                }
                Step::TargetFin if connected && !t_fin && t_sent == target_payload.len() => {
                    t_fin = true;
                    net.input(Input::ReadClosed { conn: up });
                }
                _ => {}
            }
            // Invariants at every instant.
            let up_state = net.state(up);
            prop_assert!(connected || up_state.received.is_empty(), "bytes streamed before the tunnel was up");
            prop_assert_eq!(&up_state.received[..], &client_payload[..up_state.received.len()]);
            prop_assert_eq!(up_state.written_after_fin, 0);
            prop_assert!(up_state.unflushed <= limit as usize + 3000, "upstream queue {} over the limit", up_state.unflushed);
            let down = net.state(client);
            if connected {
                prop_assert!(down.received.starts_with(OK_200.as_bytes()));
                let body = &down.received[OK_200.len()..];
                prop_assert_eq!(body, &target_payload[..body.len()]);
            }
            prop_assert_eq!(down.written_after_fin, 0);
            prop_assert!(down.unflushed <= limit as usize + 3000);
            // Drain the queues whenever a side is paused with nothing else to do, as a reader would.
            if net.state(client).paused && c_sent < client_payload.len() { net.flush(up, usize::MAX); net.pump(); }
            if net.state(up).paused && t_sent < target_payload.len() { net.flush(client, usize::MAX); net.pump(); }
        }
        prop_assert_eq!(c_sent, client_payload.len());
        prop_assert_eq!(t_sent, target_payload.len());
        prop_assert_eq!(&net.state(up).received[..], &client_payload[..]);
        prop_assert_eq!(&net.state(client).received[OK_200.len()..], &target_payload[..]);
        prop_assert!(net.state(up).shutdown && net.state(client).shutdown);
        prop_assert_eq!(net.state(up).closed, Some(CloseKind::Flush));
        prop_assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
        prop_assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_active"), 0);
    }
}

/// `terminate_config` with the target cluster an ORIGINAL_DST by `:authority`: a CONNECT to
/// a name waits for the name's answer before connecting.
fn resolving_config(buffer_limit: u32) -> String {
    let base = terminate_config(buffer_limit);
    let (clusters, _) = base.split_once("    load_assignment:").unwrap();
    clusters.replace(
        "    connect_timeout: 1s\n",
        "    type: ORIGINAL_DST\n    lb_policy: CLUSTER_PROVIDED\n    original_dst_lb_config: { use_http_header: true, http_header_name: \":authority\" }\n    connect_timeout: 1s\n",
    )
}

/// Simulator seed `7448520501606981136:3:52` (connect suite): bytes read with the CONNECT
/// head, past the buffer limit, must pause reading while the name resolves, as a later read
/// would; they were kept without a pause and the next read queued on top of them.
#[test]
fn early_bytes_read_with_the_head_pause_reading_while_the_name_resolves() {
    let limit = 4096;
    let mut net = Net::new(&resolving_config(limit));
    net.auto_flush = false;
    let client = net.connect_client(0);
    let early: Vec<u8> = (0..3 * limit as usize).map(|i| i as u8).collect();
    net.send(client, &[b"CONNECT target.test:443 HTTP/1.1\r\nhost: x\r\n\r\n".as_slice(), &early].concat());
    assert_eq!(net.vnet.queries().len(), 1, "the name is resolved first");
    assert!(net.state(client).paused, "early bytes past the limit pause reading while resolving");
    // A read the driver had in flight is still taken, and nothing is lost.
    net.send(client, b"in flight");
    let (query, host) = net.take_resolve();
    assert_eq!(host, "target.test");
    net.input(Input::Resolved { query, addrs: vec!["10.0.0.7".parse().unwrap()] });
    let up = net.upstreams()[0];
    assert_eq!(net.state(up).target, Some("10.0.0.7:443".parse().unwrap()));
    assert!(net.state(client).paused, "still paused while connecting");
    net.input(Input::Connected { conn: up });
    assert_eq!(net.state(up).received, [early.as_slice(), b"in flight"].concat());
    assert!(net.state(client).paused, "the queue towards the target is over the limit");
    net.flush(up, usize::MAX);
    net.pump();
    assert!(!net.state(client).paused, "read again once the target took the early bytes");
    net.flush(client, usize::MAX);
    assert_eq!(text(&net.state(client).received), OK_200);
}
