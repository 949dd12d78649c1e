//! Property tests of the TCP proxy's tunnel over HTTP/1.1 CONNECT, driven through the whole
//! proxy: arbitrary interleavings of the client's bytes, FIN and reset, the upstream's
//! answer (2xx, refusal, close) and its bytes, with flushes held back, never lose, duplicate
//! or reorder a byte and never send one upstream before the 2xx.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;

use crate::config::Config;
use crate::io::{ConnId, Input, ListenerId, Output};
use crate::{Proxy, Shared};

const CONFIG: &str = r#"
static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    per_connection_buffer_limit_bytes: 64
    filter_chains:
    - filters:
      - name: tcp
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: t
          cluster: up
          tunneling_config: {hostname: "target:443"}
  clusters:
  - name: up
    per_connection_buffer_limit_bytes: 64
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http_protocol_options: {}}
    load_assignment: {endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}}]}]}
"#;

const HEAD: &[u8] = b"CONNECT target:443 HTTP/1.1\r\nhost: target:443\r\n\r\n";

#[derive(Clone, Debug)]
enum Op {
    /// The client sends these bytes (held by the "kernel" while its reading is paused).
    DownData(Vec<u8>),
    DownFin,
    DownReset,
    /// The upstream connection comes up.
    UpConnected,
    /// The upstream answers the CONNECT with this status.
    Answer(u16),
    /// The upstream closes (before or after its answer).
    UpFin,
    /// The upstream sends bytes (after a 2xx only; ignored before).
    UpData(Vec<u8>),
    /// Every queued write reaches its socket.
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 1..40).prop_map(Op::DownData),
        1 => Just(Op::DownFin),
        1 => Just(Op::DownReset),
        2 => Just(Op::UpConnected),
        2 => prop_oneof![Just(200u16), Just(204), Just(407), Just(503)].prop_map(Op::Answer),
        1 => Just(Op::UpFin),
        2 => prop::collection::vec(any::<u8>(), 1..40).prop_map(Op::UpData),
        3 => Just(Op::Flush),
    ]
}

/// The world around one proxied connection, as a driver and both peers see it.
struct Rig {
    proxy: Proxy,
    now: Instant,
    down: ConnId,
    up: Option<ConnId>,
    down_paused: bool,
    /// Client bytes the "kernel" holds while reading is paused.
    down_pending: Vec<u8>,
    /// Client bytes the proxy has read, in order.
    down_sent: Vec<u8>,
    down_fin: bool,
    /// What the upstream received, head included, and whether it was past the head when a
    /// byte came before the answer.
    up_received: Vec<u8>,
    answered: Option<u16>,
    up_shutdown: bool,
    /// Upstream bytes sent after the 2xx, and what the client received.
    up_sent: Vec<u8>,
    down_received: Vec<u8>,
    down_closed: bool,
    up_closed: bool,
    /// Writes not yet reported flushed.
    unflushed: Vec<(ConnId, usize)>,
    early_byte: bool,
}

impl Rig {
    fn new() -> Rig {
        let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
        let shared = Arc::new(Shared::new(&config));
        let now = burrow_sim::epoch();
        let mut proxy = Proxy::new(config, shared, now, SystemTime::UNIX_EPOCH, 3);
        while proxy.poll_output().is_some() {}
        let down = proxy.accept(
            now,
            ListenerId(0),
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:10000".parse().unwrap(),
        );
        let mut rig = Rig {
            proxy,
            now,
            down,
            up: None,
            down_paused: false,
            down_pending: Vec::new(),
            down_sent: Vec::new(),
            down_fin: false,
            up_received: Vec::new(),
            answered: None,
            up_shutdown: false,
            up_sent: Vec::new(),
            down_received: Vec::new(),
            down_closed: false,
            up_closed: false,
            unflushed: Vec::new(),
            early_byte: false,
        };
        rig.outputs();
        rig
    }

    fn input(&mut self, input: Input) {
        self.proxy.handle(self.now, input);
        self.outputs();
    }

    fn outputs(&mut self) {
        while let Some(output) = self.proxy.poll_output() {
            match output {
                Output::Connect { conn, .. } => self.up = Some(conn),
                Output::Write { conn, data } if Some(conn) == self.up => {
                    self.up_received.extend_from_slice(&data);
                    let past_head = self.up_received.len() > HEAD.len();
                    if past_head && !self.answered.is_some_and(|s| (200..300).contains(&s)) {
                        self.early_byte = true;
                    }
                    self.unflushed.push((conn, data.len()));
                }
                Output::Write { conn, data } if conn == self.down => {
                    self.down_received.extend_from_slice(&data);
                    self.unflushed.push((conn, data.len()));
                }
                Output::Shutdown { conn } if Some(conn) == self.up => self.up_shutdown = true,
                Output::Close { conn, .. } if conn == self.down => self.down_closed = true,
                Output::Close { conn, .. } if Some(conn) == self.up => self.up_closed = true,
                Output::PauseRead { conn } if conn == self.down => self.down_paused = true,
                Output::ResumeRead { conn } if conn == self.down => self.down_paused = false,
                _ => {}
            }
        }
        if !self.down_paused && !self.down_pending.is_empty() && !self.down_closed {
            let data = std::mem::take(&mut self.down_pending);
            self.down_sent.extend_from_slice(&data);
            self.input(Input::Data { conn: self.down, data: Bytes::from(data) });
        }
    }

    fn apply(&mut self, op: Op) {
        self.now += Duration::from_millis(1);
        let live = !self.down_closed;
        match op {
            Op::DownData(data) if live && !self.down_fin => {
                self.down_pending.extend_from_slice(&data);
                self.outputs();
            }
            Op::DownFin if live && !self.down_fin && self.down_pending.is_empty() => {
                self.down_fin = true;
                self.input(Input::ReadClosed { conn: self.down });
            }
            Op::DownReset if live => {
                self.down_closed = true;
                self.input(Input::Closed { conn: self.down, reason: crate::CloseReason::Reset });
            }
            Op::UpConnected => {
                if let (Some(up), false) = (self.up, self.up_closed) {
                    self.input(Input::Connected { conn: up });
                }
            }
            Op::Answer(status) if self.answered.is_none() && self.up_received.len() >= HEAD.len() => {
                let up = self.up.expect("a head went to it");
                if self.up_closed {
                    return;
                }
                self.answered = Some(status);
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                self.input(Input::Data { conn: up, data: Bytes::from(answer) });
            }
            Op::UpFin => {
                if let (Some(up), false) = (self.up, self.up_closed) {
                    self.input(Input::ReadClosed { conn: up });
                }
            }
            Op::UpData(data) if self.answered.is_some_and(|s| (200..300).contains(&s)) && !self.up_closed => {
                let up = self.up.expect("answered");
                self.up_sent.extend_from_slice(&data);
                self.input(Input::Data { conn: up, data: Bytes::from(data) });
            }
            Op::Flush => {
                for (conn, bytes) in std::mem::take(&mut self.unflushed) {
                    self.input(Input::Flushed { conn, bytes });
                }
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn tunnel_bytes_are_exact_and_never_early(ops in prop::collection::vec(op(), 1..60)) {
        let mut rig = Rig::new();
        for op in ops {
            rig.apply(op);
        }
        prop_assert!(!rig.early_byte, "a byte went upstream before the 2xx");
        let received = &rig.up_received;
        if !received.is_empty() {
            prop_assert!(received.starts_with(HEAD), "the head first: {:?}", String::from_utf8_lossy(received));
            let tunnel = &received[HEAD.len()..];
            prop_assert!(rig.down_sent.starts_with(tunnel), "upstream got what the client sent, in order");
            let open = rig.answered.is_some_and(|s| (200..300).contains(&s));
            if open && !rig.down_closed && rig.down_fin {
                prop_assert_eq!(tunnel, &rig.down_sent[..], "every byte once the client finished");
                prop_assert!(rig.up_shutdown, "the FIN follows the bytes");
            }
            if rig.answered.is_some_and(|s| !(200..300).contains(&s)) {
                prop_assert!(tunnel.is_empty(), "nothing goes through a refused tunnel");
                prop_assert!(rig.down_closed, "a refused tunnel closes the client");
            }
        }
        prop_assert!(rig.up_sent.starts_with(&rig.down_received), "the client gets the upstream's bytes in order");
        if !rig.down_closed {
            prop_assert_eq!(&rig.down_received, &rig.up_sent, "nothing held back from an open client");
        }
    }
}
