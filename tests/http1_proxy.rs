//! HTTP/1.1 reverse proxying end to end (issue 3; BEHAVIOR rows P1-P3): both binaries, real
//! sockets, independent peers (a hyper origin and raw `std::net` origins that count their
//! connections, raw and hyper clients), byte-exact.

mod peers;
mod support;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use peers::{request_path, Origin, RawConn, RawOrigin, Reply, IO_TIMEOUT};
use support::{Burrow, DRIVERS};

const CONNECTION_TERMINATION: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
const OVERFLOW: &str = "upstream connect error or disconnect/reset before headers. reset reason: overflow";

/// `configs/http1_proxy.yaml` on fresh ports, its cluster pointed at `origin`, then `edit`ed:
/// (config, listener address, admin port).
fn proxy_config(origin: SocketAddr, edit: impl Fn(String) -> String) -> (String, SocketAddr, u16) {
    let (listen, admin) = peers::ports();
    let text = support::config("http1_proxy.yaml");
    for needle in ["port_value: 9901", "port_value: 10000", "port_value: 8080"] {
        assert_eq!(text.matches(needle).count(), 1, "{needle} in configs/http1_proxy.yaml");
    }
    let text = text
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("port_value: 10000", &format!("port_value: {listen}"))
        .replace("port_value: 8080", &format!("port_value: {}", origin.port()));
    let edited = edit(text.clone());
    (edited, SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

/// `text` with `from` (which must occur exactly once) replaced by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} once in the config");
    text.replace(from, to)
}

fn cluster(name: &str) -> String {
    format!("cluster.service.{name}")
}

fn http(name: &str) -> String {
    format!("http.ingress_http.{name}")
}

/// The `server` header of a proxied or local response is Envoy's, once.
fn assert_envoy_server(driver: &str, reply: &Reply) {
    assert_eq!(reply.count("server"), 1, "{driver}: {}", reply.head);
    assert_eq!(reply.header("server").as_deref(), Some("envoy"), "{driver}: {}", reply.head);
}

#[test]
fn keep_alive_requests_reuse_one_upstream_connection() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;

    let origin = Origin::start();
    let mut previous = 0;
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let proxy = Burrow::start(driver, &config, admin);
        peers::runtime().block_on(async {
            let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn);
            for i in 0..200 {
                let request = hyper::Request::get(format!("/keep-alive/{i}?q={i}"))
                    .header("host", "example.test")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                tokio::time::timeout(IO_TIMEOUT, sender.ready()).await.unwrap().unwrap();
                let response =
                    tokio::time::timeout(IO_TIMEOUT, sender.send_request(request)).await.unwrap().unwrap();
                assert_eq!(response.status(), 200, "{driver}: request {i}");
                assert_eq!(response.headers()["server"], "envoy", "{driver}");
                assert_eq!(
                    response.headers()["x-origin-conn"],
                    previous.to_string().as_str(),
                    "{driver}: {i}"
                );
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, format!("GET /keep-alive/{i}?q={i}").as_bytes(), "{driver}: request {i}");
            }
        });
        assert_eq!(origin.accepted(), previous + 1, "{driver}: one upstream connection for 200 requests");
        assert_eq!(proxy.stat(&cluster("upstream_cx_total")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_http1_total")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_active")), 1, "{driver}: idle in the pool");
        assert_eq!(proxy.stat(&cluster("upstream_rq_total")), 200, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_200")), 200, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_2xx")), 200, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_cx_total")), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_total")), 200, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_2xx")), 200, "{driver}");
        previous = origin.accepted();
    }
}

#[test]
fn max_requests_per_connection_closes_after_n_requests() {
    let origin = Origin::start();
    for driver in DRIVERS {
        // Typed HttpProtocolOptions: 9 requests, 3 per connection -> 3 connections.
        let before = origin.accepted();
        let (config, listen, admin) = proxy_config(origin.addr, |t| {
            replace_once(&t, "max_requests_per_connection: 1000", "max_requests_per_connection: 3")
        });
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);
        let mut conns = Vec::new();
        for i in 0..9 {
            let reply = client.exchange(format!("GET /n/{i} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes());
            assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
            assert_eq!(reply.text(), format!("GET /n/{i}"), "{driver}");
            conns.push(reply.header("x-origin-conn").unwrap().parse::<usize>().unwrap() - before);
        }
        assert_eq!(conns, [0, 0, 0, 1, 1, 1, 2, 2, 2], "{driver}: upstream connection of each request");
        assert_eq!(origin.accepted() - before, 3, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_total")), 3, "{driver}");
        assert_eq!(proxy.wait_stat(&cluster("upstream_cx_max_requests"), |v| v >= 3), 3, "{driver}");
        proxy.wait_stat(&cluster("upstream_cx_active"), |v| v == 0);
        assert_eq!(proxy.stat(&cluster("upstream_rq_total")), 9, "{driver}");
        drop(proxy);

        // The legacy cluster field: 4 requests, 2 per connection -> 2 connections.
        let before = origin.accepted();
        let (config, listen, admin) = proxy_config(origin.addr, |t| {
            let t = replace_once(&t, "          max_requests_per_connection: 1000\n", "");
            replace_once(
                &t,
                "    circuit_breakers:\n",
                "    max_requests_per_connection: 2\n    circuit_breakers:\n",
            )
        });
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);
        for i in 0..4 {
            let reply = client.exchange(format!("GET /legacy/{i} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes());
            assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
        }
        assert_eq!(origin.accepted() - before, 2, "{driver}: legacy max_requests_per_connection");
        assert_eq!(proxy.stat(&cluster("upstream_cx_total")), 2, "{driver}");
        assert_eq!(proxy.wait_stat(&cluster("upstream_cx_max_requests"), |v| v >= 2), 2, "{driver}");
    }
}

#[test]
fn upstream_connection_close_proxy_connection_close_and_http10_end_reuse() {
    // A raw origin that keeps every connection open whatever it answers: only the proxy's
    // pool decides whether a connection is used again.
    let origin = RawOrigin::start(|mut conn, _| {
        while let Some(head) = conn.try_read_head() {
            let reply: &[u8] = match request_path(&head) {
                "/close" => b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                "/proxy-close" => {
                    b"HTTP/1.1 200 OK\r\nproxy-connection: close\r\ncontent-length: 2\r\n\r\nok"
                }
                "/http10" => b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            };
            conn.send(reply);
        }
    });
    let mut before = 0;
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);
        for (path, times) in [("/keep", 4), ("/close", 2), ("/proxy-close", 2), ("/http10", 2)] {
            for _ in 0..times {
                let reply = client.exchange(format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes());
                assert_eq!((reply.status, reply.text().as_str()), (200, "ok"), "{driver}: {}", reply.head);
                assert_eq!(
                    reply.header("connection"),
                    None,
                    "{driver}: the client's connection stays: {}",
                    reply.head
                );
                assert_eq!(reply.header("proxy-connection"), None, "{driver}: {}", reply.head);
            }
        }
        // The four /keep share one connection; the first /close ends it, and each of the other
        // five answers that end reuse needed a fresh connection.
        assert_eq!(origin.accepted() - before, 6, "{driver}: connections the origin accepted");
        assert_eq!(proxy.stat(&cluster("upstream_cx_total")), 6, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_total")), 10, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_cx_total")), 1, "{driver}");
        before = origin.accepted();
    }
}

#[test]
fn circuit_breakers_refuse_beyond_one_connection_and_one_pending_request() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let before = origin.accepted();
        let (config, listen, admin) = proxy_config(origin.addr, |t| {
            let t = replace_once(&t, "max_connections: 1024", "max_connections: 1");
            replace_once(&t, "max_pending_requests: 1024", "max_pending_requests: 1")
        });
        let proxy = Burrow::start(driver, &config, admin);
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.remaining_cx")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.remaining_pending")), 1, "{driver}");

        let (tx, rx) = mpsc::channel::<(usize, Reply, Duration)>();
        let send = |i: usize| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut client = RawConn::connect(listen);
                let start = Instant::now();
                let reply = client.exchange(
                    format!("GET /slow-origin/{i} HTTP/1.1\r\nhost: a\r\nx-delay-ms: 500\r\n\r\n").as_bytes(),
                );
                let _ = tx.send((i, reply, start.elapsed()));
            });
        };
        // The first request holds the only connection for 500 ms...
        send(0);
        proxy.wait_stat(&cluster("upstream_rq_active"), |v| v == 1);
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.cx_open")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.remaining_cx")), 0, "{driver}");
        // ...then four at once: one waits as pending, three are refused at once.
        for i in 1..5 {
            send(i);
        }
        let mut replies = Vec::new();
        for _ in 0..3 {
            replies.push(rx.recv_timeout(IO_TIMEOUT).expect("a reply"));
        }
        for (i, reply, elapsed) in &replies {
            assert_eq!(reply.status, 503, "{driver}: request {i} answered first: {}", reply.head);
            assert!(
                *elapsed < Duration::from_millis(400),
                "{driver}: an overflow is refused at once: {elapsed:?}"
            );
        }
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.rq_pending_open")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.remaining_pending")), 0, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_pending_active")), 1, "{driver}");
        for _ in 0..2 {
            replies.push(rx.recv_timeout(IO_TIMEOUT).expect("a reply"));
        }
        let ok: Vec<_> = replies.iter().filter(|(_, r, _)| r.status == 200).collect();
        let refused: Vec<_> = replies.iter().filter(|(_, r, _)| r.status == 503).collect();
        assert_eq!((ok.len(), refused.len()), (2, 3), "{driver}: {replies:#?}");
        for (i, reply, _) in &ok {
            assert_eq!(reply.text(), format!("GET /slow-origin/{i}"), "{driver}");
        }
        for (_, reply, _) in &refused {
            assert_eq!(
                reply.header("x-envoy-overloaded").as_deref(),
                Some("true"),
                "{driver}: {}",
                reply.head
            );
            assert_eq!(
                reply.header("content-type").as_deref(),
                Some("text/plain"),
                "{driver}: {}",
                reply.head
            );
            assert_eq!(reply.text(), OVERFLOW, "{driver}");
            assert_envoy_server(driver, reply);
        }
        // The pending request waited for the first one's connection.
        let slowest = replies.iter().filter(|(_, r, _)| r.status == 200).map(|(_, _, e)| *e).max().unwrap();
        assert!(slowest >= Duration::from_millis(900), "{driver}: served one after the other: {slowest:?}");

        assert_eq!(origin.accepted() - before, 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_total")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_pending_overflow")), refused.len() as u64, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_overflow")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_pending_total")), 2, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_total")), 2, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_active_overflow")), 0, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_5xx")), 3, "{driver}");
        proxy.wait_stat(&cluster("circuit_breakers.default.rq_pending_open"), |v| v == 0);
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.remaining_pending")), 1, "{driver}");
    }
}

#[test]
fn max_requests_breaker_refuses_the_extra_request() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let (config, listen, admin) =
            proxy_config(origin.addr, |t| replace_once(&t, "max_requests: 1024", "max_requests: 1"));
        let proxy = Burrow::start(driver, &config, admin);
        let first = thread::spawn(move || {
            RawConn::connect(listen).exchange(b"GET /held HTTP/1.1\r\nhost: a\r\nx-delay-ms: 500\r\n\r\n")
        });
        proxy.wait_stat(&cluster("upstream_rq_active"), |v| v == 1);
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.rq_open")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.remaining_rq")), 0, "{driver}");
        let reply = RawConn::connect(listen).exchange(b"GET /extra HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.status, 503, "{driver}: {}", reply.head);
        assert_eq!(reply.header("x-envoy-overloaded").as_deref(), Some("true"), "{driver}: {}", reply.head);
        assert_eq!(first.join().unwrap().status, 200, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_active_overflow")), 1, "{driver}");
        assert_eq!(proxy.wait_stat(&cluster("circuit_breakers.default.remaining_rq"), |v| v == 1), 1);
    }
}

/// Envoy's router charges the answers it makes up for an upstream failure to the cluster's
/// response-code stats as if the upstream had sent them (`Filter::chargeUpstreamAbort` ->
/// `chargeUpstreamCode`): overflow and connection termination count as `upstream_rq_503`, the
/// route timeout as `upstream_rq_504` (P1 lists `upstream_rq_503` for the overflow [lab]).
#[test]
fn local_answers_for_upstream_failures_count_in_the_cluster_code_stats() {
    let origin = RawOrigin::start(|mut conn, _| {
        while let Some(head) = conn.try_read_head() {
            match request_path(&head) {
                "/die" => return,
                "/slow/x" => thread::sleep(Duration::from_millis(1500)),
                "/held" => thread::sleep(Duration::from_millis(500)),
                _ => {}
            }
            conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    for driver in DRIVERS {
        let (config, listen, admin) =
            proxy_config(origin.addr, |t| replace_once(&t, "max_requests: 1024", "max_requests: 1"));
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);
        let reply = client.exchange(b"GET /die HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!((reply.status, reply.text().as_str()), (503, CONNECTION_TERMINATION), "{driver}");
        let reply = client.exchange(b"GET /slow/x HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.status, 504, "{driver}: {}", reply.head);
        let held = thread::spawn(move || {
            RawConn::connect(listen).exchange(b"GET /held HTTP/1.1\r\nhost: a\r\n\r\n")
        });
        proxy.wait_stat(&cluster("upstream_rq_active"), |v| v == 1);
        let reply = RawConn::connect(listen).exchange(b"GET /extra HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.header("x-envoy-overloaded").as_deref(), Some("true"), "{driver}: {}", reply.head);
        assert_eq!(held.join().unwrap().status, 200, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_5xx")), 3, "{driver}");
        let stats = proxy.stats();
        let code = |name: &str| support::parse_stat(&stats, &cluster(name));
        assert_eq!(
            [
                code("upstream_rq_503"),
                code("upstream_rq_504"),
                code("upstream_rq_5xx"),
                code("upstream_rq_200")
            ],
            [Some(2), Some(1), Some(3), Some(1)],
            "{driver}: upstream_rq_503, _504, _5xx, _200 in:\n{stats}"
        );
    }
}

#[test]
fn a_dying_upstream_connection_fails_only_its_request() {
    // The origin closes the connection of /die without an answer; everything else is answered
    // after 400 ms, so the other requests are in flight on their own connections meanwhile.
    let origin = RawOrigin::start(|mut conn, _| {
        while let Some(head) = conn.try_read_head() {
            if request_path(&head) == "/die" {
                thread::sleep(Duration::from_millis(150));
                return;
            }
            thread::sleep(Duration::from_millis(400));
            conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    let mut before = 0;
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let proxy = Burrow::start(driver, &config, admin);
        let clients: Vec<_> = ["/a", "/die", "/b"]
            .into_iter()
            .map(|path| {
                thread::spawn(move || {
                    let mut client = RawConn::connect(listen);
                    let reply = client.exchange(format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes());
                    (path, reply, client)
                })
            })
            .collect();
        for handle in clients {
            let (path, reply, mut client) = handle.join().unwrap();
            if path == "/die" {
                assert!(
                    reply.head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                    "{driver}: {}",
                    reply.head
                );
                assert_eq!(reply.text(), CONNECTION_TERMINATION, "{driver}");
                assert_eq!(reply.header("content-type").as_deref(), Some("text/plain"), "{driver}");
                assert_eq!(reply.header("content-length"), Some(CONNECTION_TERMINATION.len().to_string()));
                assert_envoy_server(driver, &reply);
                // Only that request failed: its client connection carries the next one.
                let next = client.exchange(b"GET /after HTTP/1.1\r\nhost: a\r\n\r\n");
                assert_eq!((next.status, next.text().as_str()), (200, "ok"), "{driver}: {}", next.head);
            } else {
                assert_eq!(
                    (reply.status, reply.text().as_str()),
                    (200, "ok"),
                    "{driver} {path}: {}",
                    reply.head
                );
            }
        }
        // Three at once; /after (sent once /a was answered) reuses an idle one.
        assert_eq!(origin.accepted() - before, 3, "{driver}: connections the origin accepted");
        assert_eq!(proxy.stat(&cluster("upstream_cx_total")), 3, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_destroy_remote_with_active_rq")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_destroy_with_active_rq")), 1, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_destroy_local_with_active_rq")), 0, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_5xx")), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_2xx")), 3, "{driver}");
        before = origin.accepted();
    }
}

#[test]
fn request_bodies_content_length_and_chunked_arrive_byte_exact() {
    let origin = Origin::start();
    let body = peers::payload(1 << 20);
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let proxy = Burrow::start(driver, &config, admin);
        let seen_before = origin.seen().len();
        let mut client = RawConn::connect(listen);

        // Content-length, written in pieces while the response is read on this thread.
        let mut writer = client.stream.try_clone().unwrap();
        let sent = body.clone();
        let send = thread::spawn(move || {
            use std::io::Write;
            write!(writer, "POST /echo/cl HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n", sent.len())
                .unwrap();
            for piece in sent.chunks(65_521) {
                writer.write_all(piece).unwrap();
            }
        });
        let reply = client.read_response(false);
        send.join().unwrap();
        assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
        assert_eq!(reply.header("content-length"), Some(body.len().to_string()), "{driver}: {}", reply.head);
        assert!(reply.body == body, "{driver}: the echoed content-length body differs");

        // Chunked, in chunks of varied sizes, on the same connection.
        let mut writer = client.stream.try_clone().unwrap();
        let sent = body.clone();
        let send = thread::spawn(move || {
            use std::io::Write;
            writer
                .write_all(b"POST /echo/chunked HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap();
            let mut rest = &sent[..];
            let mut size = 1;
            while !rest.is_empty() {
                let n = size.min(rest.len());
                write!(writer, "{n:x}\r\n").unwrap();
                writer.write_all(&rest[..n]).unwrap();
                writer.write_all(b"\r\n").unwrap();
                rest = &rest[n..];
                size = size * 3 + 7;
            }
            writer.write_all(b"0\r\n\r\n").unwrap();
        });
        let reply = client.read_response(false);
        send.join().unwrap();
        assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
        assert!(reply.body == body, "{driver}: the echoed chunked body differs");

        let seen = origin.wait_seen(seen_before + 2);
        let (cl, chunked) = (&seen[seen_before], &seen[seen_before + 1]);
        assert_eq!((cl.method.as_str(), cl.uri.as_str()), ("POST", "/echo/cl"), "{driver}");
        assert!(cl.body == body, "{driver}: the origin's content-length body differs");
        assert_eq!(cl.header("content-length"), Some(body.len().to_string()), "{driver}");
        assert_eq!(cl.header("transfer-encoding"), None, "{driver}");
        assert_eq!(chunked.uri, "/echo/chunked", "{driver}");
        assert!(chunked.body == body, "{driver}: the origin's chunked body differs");
        assert_eq!(chunked.header("transfer-encoding").as_deref(), Some("chunked"), "{driver}");
        assert_eq!(chunked.header("content-length"), None, "{driver}");
        assert_eq!(chunked.conn, cl.conn, "{driver}: both on one upstream connection");
        assert!(proxy.stat(&cluster("upstream_cx_tx_bytes_total")) >= 2 * body.len() as u64, "{driver}");
    }
}

#[test]
fn responses_chunked_until_close_head_204_304_keep_their_framing() {
    let origin = RawOrigin::start(|mut conn, _| {
        while let Some(head) = conn.try_read_head() {
            let head_request = head.starts_with("HEAD ");
            match request_path(&head) {
                "/chunked" => {
                    conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
                    thread::sleep(Duration::from_millis(20));
                    conn.send(b"7\r\n, world\r\n0\r\n\r\n");
                }
                "/until-close" => {
                    conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nread until ");
                    thread::sleep(Duration::from_millis(20));
                    conn.send(b"the origin closes");
                    return;
                }
                "/head" if head_request => {
                    conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: text/plain\r\n\r\n")
                }
                "/no-content" => conn.send(b"HTTP/1.1 204 No Content\r\nx-kind: 204\r\n\r\n"),
                "/not-modified" => conn.send(b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n"),
                _ => conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext"),
            }
        }
    });
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);

        let reply = client.exchange(b"GET /chunked HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
        assert!(reply.chunked, "{driver}: chunked to the client: {}", reply.head);
        assert_eq!(reply.text(), "hello, world", "{driver}");
        assert_eq!(reply.header("content-length"), None, "{driver}");

        let reply = client.exchange(b"HEAD /head HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
        assert_eq!(reply.header("content-length").as_deref(), Some("11"), "{driver}: {}", reply.head);
        assert_eq!(reply.header("transfer-encoding"), None, "{driver}: {}", reply.head);

        let reply = client.exchange(b"GET /no-content HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(reply.head.starts_with("HTTP/1.1 204 No Content\r\n"), "{driver}: {}", reply.head);
        assert_eq!(reply.header("x-kind").as_deref(), Some("204"), "{driver}");
        assert_eq!(reply.header("transfer-encoding"), None, "{driver}: {}", reply.head);

        let reply = client.exchange(b"GET /not-modified HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(reply.head.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{driver}: {}", reply.head);
        assert_eq!(reply.header("etag").as_deref(), Some("\"v1\""), "{driver}");
        assert_eq!(reply.header("transfer-encoding"), None, "{driver}: {}", reply.head);

        // Nothing was sent after the bodiless responses: the next response starts right away.
        let reply = client.exchange(b"GET /next HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!((reply.status, reply.text().as_str()), (200, "next"), "{driver}: {}", reply.head);

        // A response delimited by the origin's close is re-chunked, and the client connection
        // stays open for more.
        let reply = client.exchange(b"GET /until-close HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
        assert!(reply.chunked, "{driver}: re-chunked: {}", reply.head);
        assert_eq!(reply.text(), "read until the origin closes", "{driver}");
        assert_eq!(reply.header("connection"), None, "{driver}: {}", reply.head);
        let reply = client.exchange(b"GET /after HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!((reply.status, reply.text().as_str()), (200, "next"), "{driver}: {}", reply.head);
        assert!(client.buffered().is_empty(), "{driver}: stray bytes {:?}", client.buffered());

        assert_eq!(proxy.stat(&cluster("upstream_cx_total")), 2, "{driver}: the close ended one connection");
        assert_eq!(proxy.stat(&http("downstream_cx_total")), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_2xx")), 6, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_3xx")), 1, "{driver}");
    }
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let _proxy = Burrow::start(driver, &config, admin);
        let seen_before = origin.seen().len();
        let mut client = RawConn::connect(listen);
        client.send(
            b"POST /echo/expect HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        );
        assert_eq!(client.read_head(), "HTTP/1.1 100 Continue\r\n\r\n", "{driver}");
        client.send(b"hello");
        let reply = client.read_response(false);
        assert_eq!((reply.status, reply.text().as_str()), (200, "hello"), "{driver}: {}", reply.head);
        let seen = &origin.wait_seen(seen_before + 1)[seen_before];
        assert_eq!(seen.header("expect"), None, "{driver}: expect is not forwarded: {seen:?}");
        assert_eq!(seen.body, b"hello", "{driver}");
    }
}

/// `8-4-4-4-12` lower-case hex, version 4, variant 10xx.
fn is_uuid4(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        && parts[2].starts_with('4')
        && parts[3].starts_with(['8', '9', 'a', 'b'])
}

#[test]
fn hop_by_hop_headers_are_removed_and_proxy_headers_added() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let _proxy = Burrow::start(driver, &config, admin);
        let seen_before = origin.seen().len();
        let mut client = RawConn::connect(listen);
        let reply = client.exchange(
            b"GET /hop HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\n\
              Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nX-App: kept\r\n\r\n",
        );
        assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
        assert_envoy_server(driver, &reply);
        assert!(
            reply.header("x-envoy-upstream-service-time").is_some_and(|t| t.parse::<u64>().is_ok()),
            "{driver}: {}",
            reply.head
        );
        assert_eq!(reply.header("connection"), None, "{driver}: {}", reply.head);
        let seen = &origin.wait_seen(seen_before + 1)[seen_before];
        for name in ["connection", "keep-alive", "proxy-connection", "te", "x-private", "upgrade"] {
            assert_eq!(seen.header(name), None, "{driver}: {name} reached the origin: {seen:#?}");
        }
        assert_eq!(seen.header("host").as_deref(), Some("example.test"), "{driver}");
        assert_eq!(seen.header("x-app").as_deref(), Some("kept"), "{driver}");
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"), "{driver}");
        assert_eq!(seen.header("x-envoy-expected-rq-timeout-ms").as_deref(), Some("15000"), "{driver}");
        let id = seen.header("x-request-id").expect("x-request-id added");
        assert!(is_uuid4(&id), "{driver}: x-request-id {id:?} is not a v4 UUID");
        assert_eq!(seen.count("x-request-id"), 1, "{driver}");

        // A request id the client brought is kept, and a second request gets a fresh one.
        let reply = client.exchange(b"GET /hop2 HTTP/1.1\r\nhost: a\r\nx-request-id: client-chosen\r\n\r\n");
        assert_eq!(reply.status, 200, "{driver}");
        let reply = client.exchange(b"GET /hop3 HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.status, 200, "{driver}");
        let seen = origin.wait_seen(seen_before + 3);
        assert_eq!(
            seen[seen_before + 1].header("x-request-id").as_deref(),
            Some("client-chosen"),
            "{driver}"
        );
        assert_eq!(seen[seen_before + 1].count("x-request-id"), 1, "{driver}");
        let third = seen[seen_before + 2].header("x-request-id").unwrap();
        assert!(is_uuid4(&third) && third != id, "{driver}: {third} after {id}");
    }
}

#[test]
fn routing_404_direct_response_rewrites_and_route_timeout() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let proxy = Burrow::start(driver, &config, admin);
        let seen_before = origin.seen().len();
        let mut client = RawConn::connect(listen);

        // No route on that virtual host: 404, empty body; the connection stays usable.
        let reply = client.exchange(b"GET /other HTTP/1.1\r\nhost: direct.example\r\n\r\n");
        assert!(
            reply.head.starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"),
            "{driver}: {}",
            reply.head
        );
        assert_envoy_server(driver, &reply);

        // direct_response: answered by the proxy, text/plain.
        let reply = client.exchange(b"GET /hello HTTP/1.1\r\nhost: direct.example\r\n\r\n");
        assert!(reply.head.starts_with("HTTP/1.1 200 OK\r\n"), "{driver}: {}", reply.head);
        assert_eq!(reply.text(), "hello from burrow\n", "{driver}");
        assert_eq!(reply.header("content-length").as_deref(), Some("18"), "{driver}");
        assert_eq!(reply.header("content-type").as_deref(), Some("text/plain"), "{driver}");
        assert_envoy_server(driver, &reply);

        // prefix_rewrite + host_rewrite_literal.
        let reply = client.exchange(b"GET /api/users?id=7 HTTP/1.1\r\nhost: public.example\r\n\r\n");
        assert_eq!((reply.status, reply.text().as_str()), (200, "GET /v1/users?id=7"), "{driver}");
        let seen = &origin.wait_seen(seen_before + 1)[seen_before];
        assert_eq!(seen.uri, "/v1/users?id=7", "{driver}");
        assert_eq!(seen.header("host").as_deref(), Some("backend.internal"), "{driver}");
        assert_eq!(seen.header("x-envoy-original-path").as_deref(), Some("/api/users?id=7"), "{driver}");
        assert_eq!(
            origin.seen().len(),
            seen_before + 1,
            "{driver}: the 404 and direct response stayed local"
        );

        // The route timeout: 504 after 0.5 s from a slow origin.
        let start = Instant::now();
        let reply = client.exchange(b"GET /slow/x HTTP/1.1\r\nhost: a\r\nx-delay-ms: 3000\r\n\r\n");
        let elapsed = start.elapsed();
        assert!(reply.head.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{driver}: {}", reply.head);
        assert_eq!(reply.text(), "upstream request timeout", "{driver}");
        assert_eq!(reply.header("content-type").as_deref(), Some("text/plain"), "{driver}");
        assert_envoy_server(driver, &reply);
        assert!(
            elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(2500),
            "{driver}: 504 after {elapsed:?}"
        );
        let seen = &origin.wait_seen(seen_before + 2)[seen_before + 1];
        assert_eq!(seen.header("x-envoy-expected-rq-timeout-ms").as_deref(), Some("500"), "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_timeout")), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_4xx")), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_5xx")), 1, "{driver}");
        // The client connection outlives the 504 and is served again.
        let reply = client.exchange(b"GET /fine HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!((reply.status, reply.text().as_str()), (200, "GET /fine"), "{driver}: {}", reply.head);
    }
}

#[test]
fn connect_failure_fails_the_pending_requests_with_503() {
    // A port nothing listens on: each connect attempt is refused at once.
    let closed = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(closed, |t| t);
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);
        let reply = client.exchange(b"GET /nowhere HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(reply.head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{driver}: {}", reply.head);
        assert!(
            reply.text().starts_with(
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
            ),
            "{driver}: {}",
            reply.text()
        );
        assert_envoy_server(driver, &reply);
        // The client connection carries on.
        let reply = client.exchange(b"GET /nowhere/again HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.status, 503, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_connect_fail")), 2, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_rq_pending_failure_eject")), 2, "{driver}");
        assert_eq!(proxy.stat(&cluster("upstream_cx_active")), 0, "{driver}");
        assert_eq!(proxy.stat(&cluster("circuit_breakers.default.remaining_cx")), 1024, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_5xx")), 2, "{driver}");
    }
}

/// Raises this process's soft open-file limit to at least `want` (within the hard limit); the
/// proxy processes it starts inherit it.
fn raise_fd_limit(want: libc::rlim_t) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0, "getrlimit");
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
        }
    }
    assert!(limit.rlim_cur >= want, "open-file limit {} below {want}", limit.rlim_cur);
}

/// What one slowloris client saw: every byte it received until EOF, how many bytes of its head
/// it had sent, and how long after its first byte the answer started.
struct SlowOutcome {
    received: Vec<u8>,
    sent: usize,
    answered_after: Duration,
}

/// Connects and sends `head` one byte at a time, a byte a second, until anything arrives; then
/// reads to EOF. The second byte goes 0.5 s after the first, so that no byte is in flight when
/// the proxy's 2 s timer fires and closes the socket: closing a socket with unread bytes makes
/// the kernel send a reset, which a client may see before the answer (burrow has no lingering
/// close yet, unlike Envoy's delayed close).
async fn slowloris(addr: SocketAddr, head: &'static [u8]) -> Result<SlowOutcome, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.write_all(&head[..1]).await.map_err(|e| format!("write: {e}"))?;
    let first = tokio::time::Instant::now();
    let mut next = first + Duration::from_millis(500);
    let mut sent = 1;
    let mut received = Vec::new();
    let mut answered_after = None;
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            biased;
            read = tcp.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    answered_after.get_or_insert_with(|| first.elapsed());
                    received.extend_from_slice(&buf[..n]);
                }
                Err(e) => return Err(format!("read after {sent} bytes sent: {e}")),
            },
            () = tokio::time::sleep_until(next), if received.is_empty() && sent < head.len() => {
                tcp.write_all(&head[sent..=sent]).await.map_err(|e| format!("write: {e}"))?;
                sent += 1;
                next += Duration::from_secs(1);
            }
        }
    }
    let answered_after = answered_after.ok_or("EOF without an answer")?;
    Ok(SlowOutcome { received, sent, answered_after })
}

/// Envoy's slowloris defence, `request_headers_timeout: 2s`: 1,000 clients each trickling their
/// request head a byte a second all get exactly Envoy's `408` (body `request header timeout`)
/// about 2 s after their first byte, and their connections closed, while a normal client on
/// the same proxy keeps making keep-alive requests that all succeed.
#[test]
fn request_headers_timeout_cuts_off_a_thousand_slow_clients() {
    const SLOW: usize = 1000;
    const NORMAL_REQUESTS: usize = 12;
    const HEAD: &[u8] = b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n";
    raise_fd_limit(4 * SLOW as libc::rlim_t);
    let origin = Origin::start();
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| {
            replace_once(
                &t,
                "          codec_type: HTTP1\n",
                "          codec_type: HTTP1\n          request_headers_timeout: 2s\n",
            )
        });
        let proxy = Burrow::start(driver, &config, admin);
        let started = Instant::now();
        let before = origin.seen().len();

        // The slow clients, one task set on the peers' runtime, started at once.
        let mut slow = tokio::task::JoinSet::new();
        for i in 0..SLOW {
            let client = async move { (i, tokio::time::timeout(IO_TIMEOUT, slowloris(listen, HEAD)).await) };
            slow.spawn_on(client, peers::runtime().handle());
        }
        // A normal keep-alive client alongside, for as long as the slow ones are trickling.
        let normal = thread::spawn(move || {
            let mut client = RawConn::connect(listen);
            let mut bodies = Vec::new();
            for i in 0..NORMAL_REQUESTS {
                let reply =
                    client.exchange(format!("GET /normal/{i} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes());
                bodies.push((reply.status, reply.text(), reply.header("connection")));
                thread::sleep(Duration::from_millis(250));
            }
            bodies
        });

        let mut outcomes: Vec<_> = peers::runtime().block_on(async {
            let mut outcomes = Vec::with_capacity(SLOW);
            while let Some(joined) = slow.join_next().await {
                outcomes.push(joined.expect("slow client task"));
            }
            outcomes
        });
        outcomes.sort_by_key(|(i, _)| *i);
        assert_eq!(outcomes.len(), SLOW);
        for (i, outcome) in outcomes {
            let outcome = outcome
                .unwrap_or_else(|_| panic!("{driver}: slow client {i} not answered within {IO_TIMEOUT:?}"))
                .unwrap_or_else(|e| panic!("{driver}: slow client {i}: {e}"));
            let text = String::from_utf8_lossy(&outcome.received);
            let (head, body) =
                text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{driver}: {i}: {text:?}"));
            let lines: Vec<&str> = head.split("\r\n").collect();
            assert_eq!(lines.len(), 6, "{driver}: slow client {i}: {text:?}");
            assert_eq!(
                lines[..3],
                ["HTTP/1.1 408 Request Timeout", "content-length: 22", "content-type: text/plain"]
            );
            assert!(lines[3].starts_with("date: ") && lines[3].ends_with(" GMT"), "{driver}: {text:?}");
            assert_eq!(lines[4..], ["server: envoy", "connection: close"], "{driver}: {text:?}");
            assert_eq!(body, "request header timeout", "{driver}: slow client {i}: exactly one response");
            assert!((2..=4).contains(&outcome.sent), "{driver}: slow client {i} sent {} bytes", outcome.sent);
            assert!(
                outcome.answered_after >= Duration::from_millis(1900),
                "{driver}: slow client {i} answered after {:?}",
                outcome.answered_after
            );
        }

        let replies = normal.join().expect("normal client");
        for (i, (status, body, connection)) in replies.into_iter().enumerate() {
            assert_eq!(
                (status, body.as_str()),
                (200, format!("GET /normal/{i}").as_str()),
                "{driver}: request {i}"
            );
            assert_eq!(connection, None, "{driver}: request {i} kept alive");
        }
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(15), "{driver}: took {elapsed:?}");
        assert_eq!(
            origin.seen().len() - before,
            NORMAL_REQUESTS,
            "{driver}: no slow head reached the origin"
        );
        assert_eq!(proxy.stat(&http("downstream_rq_header_timeout")), SLOW as u64, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_idle_timeout")), 0, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_4xx")), SLOW as u64, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_2xx")), NORMAL_REQUESTS as u64, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_cx_total")), SLOW as u64 + 1, "{driver}");
        // Every slow connection is gone, and the normal client has hung up too.
        proxy.wait_stat(&http("downstream_cx_active"), |v| v == 0);
    }
}

/// `GET / HTTP/9.7`: Envoy takes any version but HTTP/1.1 for HTTP/1.0, so this gets the
/// same `426 Upgrade Required` as HTTP/1.0 (not a 400), byte-exact but for the date, and the
/// connection closes.
#[test]
fn an_unknown_http_version_gets_426_upgrade_required() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let (config, listen, admin) = proxy_config(origin.addr, |t| t);
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);
        client.send(b"GET / HTTP/9.7\r\nhost: a\r\n\r\n");
        let reply = String::from_utf8(client.read_to_end()).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{driver}: {reply:?}"));
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 426 Upgrade Required", "{driver}: {reply:?}");
        assert_eq!(lines[1..3], ["content-length: 16", "content-type: text/plain"], "{driver}: {reply:?}");
        assert!(lines[3].starts_with("date: "), "{driver}: {reply:?}");
        assert_eq!(lines[4..], ["server: envoy", "connection: close"], "{driver}: {reply:?}");
        assert_eq!(body, "Upgrade Required", "{driver}");
        assert_eq!(origin.accepted(), 0, "{driver}: nothing forwarded");
        assert_eq!(proxy.stat(&http("downstream_rq_4xx")), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_cx_protocol_error")), 1, "{driver}");
    }
}
