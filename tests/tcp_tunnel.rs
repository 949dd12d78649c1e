//! TCP tunnelling over HTTP end to end (issue 9, BEHAVIOR T1-T7): the TCP proxy's
//! `tunneling_config` with both binaries at either end of a chain built from the example
//! configs in `configs/`, raw TCP clients and an echo target, and independent terminators
//! (raw sockets for HTTP/1.1, the `h2` crate for HTTP/2) that check the request byte for byte.

mod peers;
mod support;

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use peers::{runtime, RawConn, RawOrigin, IO_TIMEOUT};
use support::{echo_server, payload, Burrow, DRIVERS};

/// The three encapsulate/terminate pairs of `configs/`, and whether the tunnels multiplex.
const PAIRS: [(&str, &str, bool); 3] = [
    ("encapsulate_in_http1_connect.yaml", "terminate_http1_connect.yaml", false),
    ("encapsulate_in_http2_connect.yaml", "terminate_http2_connect.yaml", true),
    ("encapsulate_in_http2_post.yaml", "terminate_http2_post.yaml", true),
];

/// A terminating config of `configs/` on fresh ports, its service pointed at `target`:
/// (config, listener, admin port).
fn terminator(file: &str, target: SocketAddr) -> (String, SocketAddr, u16) {
    let (listen, admin) = peers::ports();
    let text = support::config(file)
        .replace("port_value: 9902", &format!("port_value: {admin}"))
        .replace("port_value: 10001", &format!("port_value: {listen}"))
        .replace("port_value: 19001", &format!("port_value: {}", target.port()));
    (text, SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

/// An encapsulating config of `configs/` on fresh ports, its cluster pointed at `next`:
/// (config, first listener, admin port).
fn encapsulator(file: &str, next: SocketAddr) -> (String, SocketAddr, u16) {
    let (listen, admin) = peers::ports();
    let text = support::config(file)
        .replace("port_value: 9903", &format!("port_value: {admin}"))
        .replace("port_value: 10000", &format!("port_value: {listen}"))
        .replace("port_value: 10001", &format!("port_value: {}", next.port()));
    (text, SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

/// `text` with every TCP proxy logging to a fresh file in `format` (a JSON object's text when
/// it starts with `{`): (config, log path).
fn with_access_log(text: &str, format: &str) -> (String, std::path::PathBuf) {
    let path = support::temp_file("", "log");
    let log_format = if format.starts_with('{') {
        format!("json_format: {format}")
    } else {
        format!("text_format_source: {{inline_string: {format:?}}}")
    };
    let logger = format!(
        "stat_prefix: tcp_stats\n          access_log:\n          - name: envoy.access_loggers.file\n            \
         typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              \
         path: {}\n              log_format: {{{log_format}}}\n",
        path.display()
    );
    (text.replace("stat_prefix: tcp_stats\n", &logger), path)
}

/// A relay in front of `target` that holds back what `target` says for `delay` (the answer
/// to a tunnel request comes late), passing everything else at once, FINs included.
fn delaying_relay(target: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(target) else { return };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || pipe(client, server, Duration::ZERO));
            thread::spawn(move || pipe(s2, c2, delay));
        }
    });
    addr
}

/// Copies `from` into `to` until EOF, then half-closes `to`; the first bytes wait `delay`.
fn pipe(mut from: TcpStream, to: TcpStream, delay: Duration) {
    let mut to = to;
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if first {
            thread::sleep(delay);
            first = false;
        }
        if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// `clients` raw TCP clients at once, each sending its own `len` bytes at once (long before
/// a tunnel can be up), half-closing, and returning what came back.
fn echo_clients(addr: SocketAddr, clients: usize, len: usize) {
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            thread::spawn(move || {
                let mut data = payload(len + i);
                data.drain(..i);
                let mut conn = RawConn::connect(addr);
                conn.send(&data);
                conn.shutdown_write();
                let back = conn.read_to_end();
                assert!(back == data, "client {i}: {} bytes back of {}", back.len(), data.len());
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

#[test]
fn early_bytes_cross_every_example_pair_with_either_binary_at_either_end() {
    let echo = echo_server();
    for (encap_file, term_file, multiplexed) in PAIRS {
        for (encap_driver, term_driver) in [(DRIVERS[0], DRIVERS[1]), (DRIVERS[1], DRIVERS[0])] {
            let what = format!("{encap_file} on {encap_driver} -> {term_file} on {term_driver}");
            let (text, term_addr, term_admin) = terminator(term_file, echo);
            let term = Burrow::start(term_driver, &text, term_admin);
            let relay = delaying_relay(term_addr, Duration::from_millis(300));
            let (text, addr, admin) = encapsulator(encap_file, relay);
            let encap = Burrow::start(encap_driver, &text, admin);
            echo_clients(addr, 3, 16 * 1024);
            assert_eq!(encap.stat("tcp.tcp_stats.downstream_cx_total"), 3, "{what}");
            assert_eq!(encap.stat("tcp.tcp_stats.downstream_cx_rx_bytes_total"), 3 * 16 * 1024, "{what}");
            assert_eq!(encap.stat("tcp.tcp_stats.downstream_cx_tx_bytes_total"), 3 * 16 * 1024, "{what}");
            let connections = if multiplexed { 1 } else { 3 };
            assert_eq!(encap.stat("cluster.cluster_0.upstream_cx_total"), connections, "{what}");
            assert_eq!(encap.stat("cluster.cluster_0.upstream_rq_total"), 3, "{what}");
            assert_eq!(term.stat("cluster.service_google.upstream_cx_total"), 3, "{what}");
        }
    }
}

/// The HTTP/1.1 encapsulator's second listener names its target and adds `foo: bar`, which
/// the terminator's original-destination route follows.
#[test]
fn the_http1_pair_routes_a_tunnel_to_the_target_it_names() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (text, term_addr, term_admin) = terminator("terminate_http1_connect.yaml", echo_server());
        let term = Burrow::start(driver, &text, term_admin);
        let (text, _, admin) = encapsulator("encapsulate_in_http1_connect.yaml", term_addr);
        let second = support::free_port();
        let text = text
            .replace("port_value: 10002", &format!("port_value: {second}"))
            .replace("127.0.0.1:10003", &echo.to_string());
        let _encap = Burrow::start(driver, &text, admin);
        echo_clients(SocketAddr::from(([127, 0, 0, 1], second)), 2, 8 * 1024);
        assert_eq!(term.stat("cluster.local_original_dst.upstream_cx_total"), 2, "{driver}");
        assert_eq!(term.stat("cluster.service_google.upstream_cx_total"), 0, "{driver}");
    }
}

/// What a raw terminator saw of one tunnel: the request head, and whether any byte came
/// before it answered.
struct Seen {
    head: String,
    early: bool,
}

/// An HTTP/1.1 terminator on raw sockets: reads the tunnel request head, waits, checks that
/// nothing follows it before the answer, answers `status`, then echoes if it was a 2xx.
fn raw_terminator(status: &'static str) -> (RawOrigin, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let origin = RawOrigin::start(move |mut conn, _| {
        let head = conn.read_head();
        thread::sleep(Duration::from_millis(300));
        conn.stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let early = !conn.buffered().is_empty()
            || !matches!(conn.stream.read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock);
        conn.stream.set_nonblocking(false).unwrap();
        tx.lock().unwrap().send(Seen { head, early }).unwrap();
        conn.send(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes());
        if status.starts_with('2') {
            let data = conn.read_to_end();
            conn.send(&data);
            conn.shutdown_write();
        }
    });
    (origin, rx)
}

#[test]
fn an_http1_tunnel_request_is_exactly_connect_and_host_and_nothing_goes_before_the_answer() {
    for driver in DRIVERS {
        let (origin, seen) = raw_terminator("200 OK");
        let (text, addr, admin) = encapsulator("encapsulate_in_http1_connect.yaml", origin.addr);
        let second = support::free_port();
        let text = text.replace("port_value: 10002", &format!("port_value: {second}"));
        let _encap = Burrow::start(driver, &text, admin);
        echo_clients(addr, 1, 4096);
        let first = seen.recv_timeout(IO_TIMEOUT).unwrap();
        assert_eq!(first.head, "CONNECT host.com:443 HTTP/1.1\r\nhost: host.com:443\r\n\r\n", "{driver}");
        assert!(!first.early, "{driver}: bytes went upstream before the 200");
        echo_clients(SocketAddr::from(([127, 0, 0, 1], second)), 1, 4096);
        let second = seen.recv_timeout(IO_TIMEOUT).unwrap();
        assert_eq!(
            second.head, "CONNECT 127.0.0.1:10003 HTTP/1.1\r\nhost: 127.0.0.1:10003\r\nfoo: bar\r\n\r\n",
            "{driver}"
        );
        assert!(!second.early, "{driver}");
    }
}

/// Better than Envoy: a refused tunnel's status is counted under its code (and logged), and
/// the client is closed; with attempts to spare, the request is tried again first.
#[test]
fn a_refused_tunnel_closes_the_client_counts_the_status_and_retries() {
    for driver in DRIVERS {
        let (origin, seen) = raw_terminator("407 Proxy Authentication Required");
        let (text, addr, admin) = encapsulator("encapsulate_in_http1_connect.yaml", origin.addr);
        let text = text
            .replace("port_value: 10002", &format!("port_value: {}", support::free_port()))
            .replace("stat_prefix: tcp_stats\n          cluster: \"cluster_0\"\n          tunneling_config:\n            hostname: host.com:443", "stat_prefix: tcp_stats\n          cluster: \"cluster_0\"\n          max_connect_attempts: 3\n          tunneling_config:\n            hostname: host.com:443");
        assert!(text.contains("max_connect_attempts: 3"));
        let format = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_TRANSPORT_FAILURE_REASON% %BYTES_RECEIVED% %UPSTREAM_CLUSTER% %UPSTREAM_HOST%\n";
        let (text, log) = with_access_log(&text, format);
        let encap = Burrow::start(driver, &text, admin);
        let mut client = RawConn::connect(addr);
        client.send(b"hello");
        assert!(client.closed(), "{driver}: the client is closed");
        let lines = support::log_lines(&log, 1);
        assert_eq!(lines, [format!("0 UF tunnel_response:407 5 cluster_0 {}", origin.addr)], "{driver}");
        for _ in 0..3 {
            assert!(!seen.recv_timeout(IO_TIMEOUT).unwrap().early, "{driver}");
        }
        assert_eq!(encap.stat("tcp.tcp_stats.tunnel_response_407"), 3, "{driver}");
        assert_eq!(encap.stat("cluster.cluster_0.upstream_rq_407"), 3, "{driver}");
        assert_eq!(encap.stat("cluster.cluster_0.upstream_rq_retry"), 2, "{driver}");
        assert_eq!(encap.stat("cluster.cluster_0.upstream_cx_connect_attempts_exceeded"), 1, "{driver}");
        assert!(encap.stderr().contains("407"), "{driver}: the refusal is logged");
    }
}

/// What an HTTP/2 terminator saw of a tunnel request.
#[derive(Debug)]
struct H2Seen {
    method: String,
    authority: Option<String>,
    scheme: Option<String>,
    path: Option<String>,
    protocol: bool,
    headers: Vec<(String, String)>,
}

/// An HTTP/2 terminator on the `h2` crate: records each request, answers `status`, and
/// echoes the stream's bytes back if that is a 2xx; counts connections.
fn h2_terminator(
    status: u16,
) -> (SocketAddr, mpsc::Receiver<H2Seen>, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    h2_terminator_with_goaway(status, None)
}

/// [`h2_terminator`] that sends GOAWAY on each connection after `goaway_after` streams.
fn h2_terminator_with_goaway(
    status: u16,
    goaway_after: Option<usize>,
) -> (SocketAddr, mpsc::Receiver<H2Seen>, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    runtime().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut builder = h2::server::Builder::new();
                builder.enable_connect_protocol();
                let Ok(mut conn) = builder.handshake::<_, Bytes>(tcp).await else { return };
                let mut accepted = 0;
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    accepted += 1;
                    if goaway_after == Some(accepted) {
                        conn.graceful_shutdown();
                    }
                    let uri = request.uri();
                    let _ = tx.send(H2Seen {
                        method: request.method().to_string(),
                        authority: uri.authority().map(|a| a.to_string()),
                        scheme: uri.scheme_str().map(str::to_string),
                        path: uri.path_and_query().map(|p| p.to_string()),
                        protocol: request.extensions().get::<h2::ext::Protocol>().is_some(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                    });
                    tokio::spawn(async move {
                        let response = http::Response::builder().status(status).body(()).unwrap();
                        let ok = (200..300).contains(&status);
                        let Ok(mut send) = respond.send_response(response, !ok) else { return };
                        if !ok {
                            return;
                        }
                        let mut body = request.into_body();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            send.reserve_capacity(chunk.len());
                            if send.send_data(chunk, false).is_err() {
                                return;
                            }
                        }
                        let _ = send.send_data(Bytes::new(), true);
                    });
                }
            });
        }
    });
    (addr, rx, conns)
}

#[test]
fn an_http2_tunnel_request_is_connect_with_the_authority_and_the_added_header() {
    for driver in DRIVERS {
        let (origin, seen, conns) = h2_terminator(200);
        let (text, addr, admin) = encapsulator("encapsulate_in_http2_connect.yaml", origin);
        let encap = Burrow::start(driver, &text, admin);
        echo_clients(addr, 3, 64 * 1024);
        let mut requests: Vec<H2Seen> = (0..3).map(|_| seen.recv_timeout(IO_TIMEOUT).unwrap()).collect();
        let request = requests.pop().unwrap();
        assert_eq!(request.method, "CONNECT", "{driver}");
        assert_eq!(request.authority.as_deref(), Some("host.com:443"), "{driver}");
        assert_eq!(
            (request.scheme.as_deref(), request.path.as_deref(), request.protocol),
            (None, None, false)
        );
        assert_eq!(request.headers, [("original_dst_port".to_string(), addr.port().to_string())], "{driver}");
        assert_eq!(
            conns.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{driver}: one connection for 3 tunnels"
        );
        assert_eq!(encap.stat("cluster.cluster_0.upstream_cx_http2_total"), 1, "{driver}");
    }
}

#[test]
fn an_http2_post_tunnel_request_is_a_post_to_the_path() {
    for driver in DRIVERS {
        let (origin, seen, _) = h2_terminator(200);
        let (text, addr, admin) = encapsulator("encapsulate_in_http2_post.yaml", origin);
        let text = text.replace("use_post: true", "use_post: true\n            post_path: /tunnel");
        let _encap = Burrow::start(driver, &text, admin);
        echo_clients(addr, 1, 64 * 1024);
        let request = seen.recv_timeout(IO_TIMEOUT).unwrap();
        assert_eq!(request.method, "POST", "{driver}");
        assert_eq!(request.authority.as_deref(), Some("host.com:443"), "{driver}");
        assert_eq!((request.scheme.as_deref(), request.path.as_deref()), (Some("http"), Some("/tunnel")));
        assert!(!request.protocol, "{driver}");
    }
}

#[test]
fn a_refused_http2_tunnel_closes_the_client_and_counts_the_status() {
    for driver in DRIVERS {
        let (origin, _seen, _) = h2_terminator(403);
        let (text, addr, admin) = encapsulator("encapsulate_in_http2_connect.yaml", origin);
        let encap = Burrow::start(driver, &text, admin);
        let mut client = RawConn::connect(addr);
        client.send(b"hello");
        assert!(client.closed(), "{driver}: the client is closed");
        assert_eq!(encap.wait_stat("tcp.tcp_stats.tunnel_response_403", |n| n == 1), 1, "{driver}");
    }
}

/// Without `tunneling_config` the TCP proxy relays bytes to the cluster as they are, half-
/// closes included, and counts them.
#[test]
fn plain_tcp_proxy_relays_bytes_and_half_closes() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (text, addr, admin) = encapsulator("encapsulate_in_http1_connect.yaml", echo);
        let text = text
            .replace("port_value: 10002", &format!("port_value: {}", support::free_port()))
            .replace("          tunneling_config:\n            hostname: host.com:443\n", "");
        let (text, log) = with_access_log(
            &text,
            r#"{"rx": "%BYTES_RECEIVED%", "tx": "%BYTES_SENT%", "flags": "%RESPONSE_FLAGS%", "peer": "%DOWNSTREAM_REMOTE_ADDRESS%"}"#,
        );
        let proxy = Burrow::start(driver, &text, admin);
        let data = payload(512 * 1024);
        let mut conn = RawConn::connect(addr);
        conn.send(&data);
        conn.shutdown_write();
        assert!(conn.read_to_end() == data, "{driver}");
        assert_eq!(proxy.stat("tcp.tcp_stats.downstream_cx_rx_bytes_total"), data.len() as u64, "{driver}");
        assert_eq!(proxy.stat("cluster.cluster_0.upstream_cx_total"), 1, "{driver}");
        assert_eq!(proxy.wait_stat("cluster.cluster_0.upstream_cx_active", |n| n == 0), 0, "{driver}");
        let peer = conn.stream.local_addr().unwrap();
        let line = format!(r#"{{"flags":"-","peer":"{peer}","rx":524288,"tx":524288}}"#);
        assert_eq!(support::log_lines(&log, 1), [line], "{driver}");
    }
}

/// Envoy T8: an upstream GOAWAY drains its connection; the tunnels on it finish and the next
/// tunnel opens a new connection.
#[test]
fn an_upstream_goaway_drains_and_the_next_tunnel_opens_a_new_connection() {
    for driver in DRIVERS {
        let (origin, _seen, conns) = h2_terminator_with_goaway(200, Some(1));
        let (text, addr, admin) = encapsulator("encapsulate_in_http2_connect.yaml", origin);
        let encap = Burrow::start(driver, &text, admin);
        let mut first = RawConn::connect(addr);
        first.send(b"one");
        assert_eq!(first.read_exact(3), b"one", "{driver}");
        encap.wait_stat("cluster.cluster_0.upstream_cx_close_notify", |n| n >= 1);
        echo_clients(addr, 2, 4096);
        first.send(b"still");
        first.shutdown_write();
        assert_eq!(first.read_to_end(), b"still", "{driver}: the drained connection's tunnel finishes");
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2, "{driver}");
        assert_eq!(encap.stat("cluster.cluster_0.upstream_cx_http2_total"), 2, "{driver}");
    }
}

/// `idle_timeout` ends a tunnel with no byte either way for that long.
#[test]
fn an_idle_tunnel_is_closed_at_the_idle_timeout() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (text, term_addr, term_admin) = terminator("terminate_http2_connect.yaml", echo);
        let _term = Burrow::start(driver, &text, term_admin);
        let (text, addr, admin) = encapsulator("encapsulate_in_http2_connect.yaml", term_addr);
        let text = text
            .replace("stat_prefix: tcp_stats\n", "stat_prefix: tcp_stats\n          idle_timeout: 0.5s\n");
        let encap = Burrow::start(driver, &text, admin);
        let mut client = RawConn::connect(addr);
        client.send(b"ping");
        assert_eq!(client.read_exact(4), b"ping", "{driver}");
        assert!(client.closed(), "{driver}: closed once idle");
        assert_eq!(encap.stat("tcp.tcp_stats.idle_timeout"), 1, "{driver}");
    }
}

/// Envoy T11: 50 MB each way through an HTTP/2 tunnel chain (both binaries at both ends) while
/// the client first reads nothing: flow control holds the bytes back instead of buffering
/// them, every byte arrives, and the proxies stay small.
#[test]
fn fifty_megabytes_each_way_through_a_tunnel_chain_with_a_slow_reader() {
    const LEN: usize = 50 * 1024 * 1024;
    let echo = echo_server();
    let data = std::sync::Arc::new(payload(LEN));
    for (encap_driver, term_driver) in [(DRIVERS[0], DRIVERS[1]), (DRIVERS[1], DRIVERS[0])] {
        let (text, term_addr, term_admin) = terminator("terminate_http2_connect.yaml", echo);
        let term = Burrow::start(term_driver, &text, term_admin);
        let (text, addr, admin) = encapsulator("encapsulate_in_http2_connect.yaml", term_addr);
        let encap = Burrow::start(encap_driver, &text, admin);
        let mut client = RawConn::connect(addr);
        let writer = client.stream.try_clone().unwrap();
        let sent = data.clone();
        let write = thread::spawn(move || {
            let mut writer = writer;
            std::io::Write::write_all(&mut writer, &sent).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        // The client reads nothing for a while: everything in flight backs up.
        thread::sleep(Duration::from_secs(2));
        for (name, proxy) in [("encapsulator", &encap), ("terminator", &term)] {
            let rss = rss_kib(proxy.pid());
            assert!(
                rss < 64 * 1024,
                "{encap_driver}->{term_driver}: the {name} holds {rss} KiB with a slow reader"
            );
        }
        let back = client.read_to_end();
        write.join().unwrap();
        assert!(
            back.len() == LEN && back == *data,
            "{encap_driver}->{term_driver}: {} bytes back",
            back.len()
        );
        assert!(encap.stat("tcp.tcp_stats.downstream_flow_control_paused_reading_total") >= 1);
    }
}

/// A process's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Envoy T6/T7 over HTTP/1.1: the upstream half-closes first and the client still sends,
/// which the upstream still gets; the tunnel's connection is never used again.
#[test]
fn the_upstream_half_closes_first_and_the_client_still_sends() {
    for driver in DRIVERS {
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let origin = RawOrigin::start(move |mut conn, _| {
            conn.read_head();
            conn.send(b"HTTP/1.1 200 OK\r\n\r\nbye");
            conn.shutdown_write();
            let rest = conn.read_to_end();
            tx.lock().unwrap().send(rest).unwrap();
        });
        let (text, addr, admin) = encapsulator("encapsulate_in_http1_connect.yaml", origin.addr);
        let text = text.replace("port_value: 10002", &format!("port_value: {}", support::free_port()));
        let encap = Burrow::start(driver, &text, admin);
        for round in 1..=2 {
            let mut client = RawConn::connect(addr);
            assert_eq!(client.read_to_end(), b"bye", "{driver}: the upstream's bytes, then its FIN");
            client.send(b"after the upstream's FIN");
            client.shutdown_write();
            assert_eq!(rx.recv_timeout(IO_TIMEOUT).unwrap(), b"after the upstream's FIN", "{driver}");
            assert_eq!(origin.accepted(), round, "{driver}: a connection per tunnel");
        }
        assert_eq!(encap.wait_stat("cluster.cluster_0.upstream_cx_active", |n| n == 0), 0, "{driver}");
    }
}
