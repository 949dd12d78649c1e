//! HTTP/2 downstream end to end (issue 8): both binaries, real sockets, the `h2` crate as an
//! independent client, a hyper origin and raw echo targets, byte-exact.

mod peers;
mod support;

use std::net::{Shutdown, SocketAddr};

use bytes::Bytes;
use peers::{runtime, Origin, IO_TIMEOUT};
use support::{echo_server, Burrow, DRIVERS};

/// `configs/http2_tunnels.yaml` on fresh ports: (config, listener, admin port).
fn config(echo: SocketAddr, web: SocketAddr) -> (String, SocketAddr, u16) {
    let (listen, admin) = peers::ports();
    let text = support::config("http2_tunnels.yaml")
        .replace("port_value: 9903", &format!("port_value: {admin}"))
        .replace("port_value: 10002", &format!("port_value: {listen}"))
        .replace("port_value: 19001", &format!("port_value: {}", echo.port()))
        .replace("port_value: 8080", &format!("port_value: {}", web.port()));
    (text, SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

type Client = h2::client::SendRequest<Bytes>;

/// A prior-knowledge h2c connection to `addr`.
async fn connect(addr: SocketAddr) -> Client {
    connect_watched(addr).await.0
}

/// [`connect`], and how the connection ended.
async fn connect_watched(addr: SocketAddr) -> (Client, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    (client, tokio::spawn(connection))
}

/// Reads a response body to its end: the bytes, and whether it ended with END_STREAM (not a
/// reset).
async fn read_body(mut body: h2::RecvStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                out.extend_from_slice(&chunk);
            }
            Err(_) => return (out, false),
        }
    }
    (out, true)
}

/// Opens a CONNECT stream to `authority`: its status, and the stream's two halves.
async fn open_connect(client: &mut Client, authority: &str) -> (u16, h2::SendStream<Bytes>, h2::RecvStream) {
    let request = http::Request::builder().method("CONNECT").uri(authority).body(()).unwrap();
    let mut ready = client.clone().ready().await.unwrap();
    let (response, send) = ready.send_request(request, false).unwrap();
    let response = tokio::time::timeout(IO_TIMEOUT, response).await.expect("a response in time").unwrap();
    let status = response.status().as_u16();
    (status, send, response.into_body())
}

/// Distinct bytes for tunnel `n`.
fn pattern(n: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(n)).collect()
}

/// Opens `count` CONNECT tunnels on `client` at once, each sending its own pattern of `size`
/// bytes with END_STREAM; each must come back whole and end with END_STREAM, not a reset.
async fn echo_tunnels(client: &Client, count: u8, size: usize) {
    let mut tunnels = Vec::new();
    for n in 0..count {
        let mut client = client.clone();
        tunnels.push(tokio::spawn(async move {
            let (status, mut send, body) = open_connect(&mut client, "echo.test:443").await;
            assert_eq!(status, 200, "tunnel {n}");
            let payload = pattern(n, size);
            send.send_data(Bytes::from(payload.clone()), true).unwrap();
            let (echoed, ended) =
                tokio::time::timeout(IO_TIMEOUT, read_body(body)).await.expect("echo in time");
            assert!(echoed == payload, "tunnel {n}: {} bytes back, not the {size} sent", echoed.len());
            assert!(ended, "tunnel {n} ends with END_STREAM, not a reset");
        }));
    }
    for tunnel in tunnels {
        tunnel.await.unwrap();
    }
}

#[test]
fn eight_connect_streams_on_one_connection_each_echo_256k_and_end_with_end_stream() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = config(echo, origin.addr);
        let burrow = Burrow::start(driver, &text, admin);
        runtime().block_on(async {
            let client = connect(listen).await;
            echo_tunnels(&client, 8, 256 * 1024).await;
        });
        assert_eq!(burrow.stat("http.ingress_http.downstream_cx_http2_total"), 1, "{driver}");
        assert_eq!(burrow.stat("http.ingress_http.downstream_cx_http1_total"), 0, "{driver}");
        assert_eq!(burrow.stat("http.ingress_http.downstream_cx_upgrades_total"), 8, "{driver}");
        assert_eq!(burrow.stat("cluster.echo_service.upstream_cx_total"), 8, "{driver}");
        burrow.wait_stat("http.ingress_http.downstream_rq_active", |v| v == 0);
    }
}

#[test]
fn an_unrouted_authority_gets_404_and_the_connection_goes_on() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = config(echo, origin.addr);
        let burrow = Burrow::start(driver, &text, admin);
        runtime().block_on(async {
            let mut client = connect(listen).await;
            let (status, _, body) = open_connect(&mut client, "nowhere.test:443").await;
            assert_eq!(status, 404, "{driver}");
            assert!(read_body(body).await.1, "the 404 ends its stream cleanly");
            let (status, mut send, body) = open_connect(&mut client, "echo.test:443").await;
            assert_eq!(status, 200, "{driver}: the same connection tunnels after the 404");
            send.send_data(Bytes::from_static(b"still here"), true).unwrap();
            assert_eq!(read_body(body).await, (b"still here".to_vec(), true));
        });
        assert_eq!(burrow.stat("http.ingress_http.downstream_rq_4xx"), 1, "{driver}");
    }
}

#[test]
fn requests_over_h2c_reach_an_http1_origin_and_come_back_whole() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = config(echo, origin.addr);
        let burrow = Burrow::start(driver, &text, admin);
        runtime().block_on(async {
            let client = connect(listen).await;
            let mut ready = client.ready().await.unwrap();
            let get = http::Request::builder().uri("http://web.test/hello?x=1").body(()).unwrap();
            let (response, _) = ready.send_request(get, true).unwrap();
            let response = response.await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["server"], "envoy");
            assert!(response.headers().get("connection").is_none());
            assert_eq!(read_body(response.into_body()).await, (b"GET /hello?x=1".to_vec(), true));

            // A body with no content-length goes upstream chunked and comes back whole.
            let body = pattern(7, 300 * 1024);
            let post = http::Request::builder().method("POST").uri("http://web.test/echo").body(()).unwrap();
            let mut ready = ready.ready().await.unwrap();
            let (response, mut send) = ready.send_request(post, false).unwrap();
            send.send_data(Bytes::from(body.clone()), true).unwrap();
            let response = response.await.unwrap();
            assert_eq!(response.status(), 200);
            let (echoed, ended) = read_body(response.into_body()).await;
            assert!(ended && echoed == body, "{} bytes back", echoed.len());
        });
        let seen = origin.wait_seen(2);
        let get = &seen[seen.len() - 2];
        assert_eq!((get.method.as_str(), get.uri.as_str()), ("GET", "/hello?x=1"));
        assert_eq!(get.header("host").as_deref(), Some("web.test"));
        assert_eq!(burrow.stat("http.ingress_http.downstream_rq_http2_total"), 2, "{driver}");
    }
}

#[test]
fn a_rapid_reset_client_is_cut_off_while_a_client_beside_it_sees_no_error() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = config(echo, origin.addr);
        let burrow = Burrow::start(driver, &text, admin);
        runtime().block_on(async {
            let attacker = tokio::spawn(async move {
                let (mut client, connection) = connect_watched(listen).await;
                for _ in 0..20_000u32 {
                    let request = http::Request::builder().uri("http://web.test/slow").body(()).unwrap();
                    let Ok(ready) = client.ready().await else { break };
                    client = ready;
                    let Ok((_, mut send)) = client.send_request(request, true) else { break };
                    send.send_reset(h2::Reason::CANCEL);
                }
                connection.await.unwrap()
            });
            let normal = tokio::spawn(async move {
                let mut client = connect(listen).await;
                for n in 0..50 {
                    let request =
                        http::Request::builder().uri(format!("http://web.test/n{n}")).body(()).unwrap();
                    client = client.ready().await.expect("the normal client's connection stays up");
                    let (response, _) = client.send_request(request, true).unwrap();
                    let response = response.await.expect("the normal client gets its answers");
                    assert_eq!(response.status(), 200);
                    assert_eq!(
                        read_body(response.into_body()).await,
                        (format!("GET /n{n}").into_bytes(), true)
                    );
                }
            });
            let ended = tokio::time::timeout(IO_TIMEOUT, attacker).await.expect("cut off in time").unwrap();
            let error = ended.expect_err("the attacker's connection ends in an error");
            // The GOAWAY is written before the close, but the attacker's unread streams make
            // the kernel reset the socket, which may reach it first.
            let cut = error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || error.is_io();
            assert!(cut, "{driver}: {error}");
            tokio::time::timeout(IO_TIMEOUT, normal).await.expect("answered in time").unwrap();
        });
        // h2's own limit on streams reset before they are taken usually fires first here.
        assert_eq!(burrow.stat("http.ingress_http.http2.goaway_sent"), 1, "{driver}");
        let streams = burrow.stat("http.ingress_http.downstream_rq_http2_total");
        assert!(streams < 20_000 + 50, "{driver}: {streams} streams taken from the attacker and the client");
    }
}

#[test]
fn a_client_resetting_streams_after_they_went_upstream_is_cut_off_too() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = config(echo, origin.addr);
        let burrow = Burrow::start(driver, &text, admin);
        runtime().block_on(async {
            let (mut client, connection) = connect_watched(listen).await;
            for _ in 0..1_000 {
                let request = http::Request::builder()
                    .uri("http://web.test/slow")
                    .header("x-delay-ms", "2000")
                    .body(())
                    .unwrap();
                let Ok(ready) = client.ready().await else { break };
                client = ready;
                let Ok((_, mut send)) = client.send_request(request, true) else { break };
                // Late enough that the proxy has taken the stream and asked the origin.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                send.send_reset(h2::Reason::CANCEL);
            }
            let ended = tokio::time::timeout(IO_TIMEOUT, connection).await.expect("cut off in time").unwrap();
            assert!(ended.is_err(), "{driver}: the connection ends in an error");
        });
        assert_eq!(burrow.stat("http.ingress_http.downstream_rq_too_many_premature_resets"), 1, "{driver}");
        let streams = burrow.stat("http.ingress_http.downstream_rq_http2_total");
        assert!((100..1_000).contains(&streams), "{driver}: {streams} streams taken before the cut");
    }
}

/// A masked WebSocket text frame as a client sends it (RFC 6455 §5.2).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// An unmasked frame as a server sends it.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode, payload.len() as u8];
    frame.extend_from_slice(payload);
    frame
}

/// Reads from `body` until `want` bytes came (or the stream ended).
async fn read_exact(body: &mut h2::RecvStream, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < want {
        let Some(Ok(chunk)) = body.data().await else { break };
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

#[test]
fn three_websockets_over_extended_connect_reach_an_http1_origin_on_one_connection() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = config(echo, origin.addr);
        let burrow = Burrow::start(driver, &text, admin);
        let before = origin.seen().len();
        runtime().block_on(async {
            let client = connect(listen).await;
            let mut sessions = Vec::new();
            for n in 0..3u8 {
                let client = client.clone();
                sessions.push(tokio::spawn(async move {
                    let mut request = http::Request::builder()
                        .method("CONNECT")
                        .uri(format!("http://web.test/chat/{n}"))
                        .header("sec-websocket-version", "13")
                        .body(())
                        .unwrap();
                    request.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
                    let mut ready = client.ready().await.unwrap();
                    // The proxy's SETTINGS may still be on their way.
                    let deadline = std::time::Instant::now() + IO_TIMEOUT;
                    while !ready.is_extended_connect_protocol_enabled() {
                        assert!(std::time::Instant::now() < deadline, "SETTINGS_ENABLE_CONNECT_PROTOCOL");
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    let (response, mut send) = ready.send_request(request, false).unwrap();
                    let response =
                        tokio::time::timeout(IO_TIMEOUT, response).await.expect("in time").unwrap();
                    assert_eq!(response.status(), 200, "session {n}: the 101 comes back as 200");
                    assert!(response.headers().contains_key("sec-websocket-accept"));
                    assert!(response.headers().get("upgrade").is_none());
                    let mut body = response.into_body();
                    let message = format!("hello from {n}");
                    send.send_data(Bytes::from(client_frame(1, message.as_bytes())), false).unwrap();
                    let want = server_frame(1, message.as_bytes());
                    assert_eq!(read_exact(&mut body, want.len()).await, want, "session {n}: echoed");
                    // A clean close: the origin answers the close frame and closes, and the
                    // stream ends with END_STREAM, not a reset.
                    send.send_data(Bytes::from(client_frame(8, &[0x03, 0xe8])), false).unwrap();
                    let close = server_frame(8, &[0x03, 0xe8]);
                    assert_eq!(
                        read_exact(&mut body, close.len()).await,
                        close,
                        "session {n}: close answered"
                    );
                    let (rest, ended) =
                        tokio::time::timeout(IO_TIMEOUT, read_body(body)).await.expect("in time");
                    assert!(rest.is_empty() && ended, "session {n}: END_STREAM after the close");
                }));
            }
            for session in sessions {
                session.await.unwrap();
            }
        });
        let seen = origin.seen();
        let handshakes: Vec<_> = seen[before..].iter().filter(|s| s.uri.starts_with("/chat/")).collect();
        assert_eq!(handshakes.len(), 3, "{driver}");
        for handshake in handshakes {
            assert_eq!(handshake.method, "GET");
            assert_eq!(handshake.header("upgrade").as_deref(), Some("websocket"));
            let key = handshake.header("sec-websocket-key").expect("a key was added for the origin");
            assert_eq!(key.len(), 24, "{key}");
        }
        assert_eq!(burrow.stat("http.ingress_http.downstream_cx_upgrades_total"), 3, "{driver}");
        assert_eq!(burrow.stat("http.ingress_http.downstream_rq_1xx"), 3, "{driver}");
        burrow.wait_stat("http.ingress_http.downstream_cx_upgrades_active", |v| v == 0);
    }
}

/// `configs/proxy_connect.yaml` on fresh ports, passing CONNECTs on to `next`: (config, listener,
/// admin port).
fn proxy_mode_config(next: SocketAddr) -> (String, SocketAddr, u16) {
    let (listen, admin) = peers::ports();
    let text = support::config("proxy_connect.yaml")
        .replace("port_value: 9904", &format!("port_value: {admin}"))
        .replace("port_value: 10003", &format!("port_value: {listen}"))
        .replace("port_value: 10002", &format!("port_value: {}", next.port()));
    (text, SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

#[test]
fn connect_proxy_mode_carries_tunnels_through_a_second_burrow_that_terminates_them() {
    use std::io::{Read, Write};
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, terminator, admin) = config(echo, origin.addr);
        let second = Burrow::start(driver, &text, admin);
        let (text, first_listen, admin) = proxy_mode_config(terminator);
        let first = Burrow::start(driver, &text, admin);

        // An HTTP/1.1 client: CONNECT, the 200 relayed from the terminator, then the echo.
        let mut tcp = std::net::TcpStream::connect(first_listen).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.write_all(b"CONNECT echo.test:443 HTTP/1.1\r\nhost: echo.test:443\r\n\r\nearly ").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tcp.read(&mut byte).unwrap(), 1, "{driver}: the answer ended early: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{driver}: {head}");
        tcp.write_all(b"and late").unwrap();
        tcp.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        tcp.read_to_end(&mut echoed).unwrap();
        assert_eq!(echoed, b"early and late", "{driver}");

        // An HTTP/2 client: the same through a CONNECT stream.
        runtime().block_on(async {
            let mut client = connect(first_listen).await;
            let (status, mut send, body) = open_connect(&mut client, "echo.test:443").await;
            assert_eq!(status, 200, "{driver}");
            let payload = pattern(3, 100 * 1024);
            send.send_data(Bytes::from(payload.clone()), true).unwrap();
            let (got, _) = tokio::time::timeout(IO_TIMEOUT, read_body(body)).await.expect("echo in time");
            assert!(got == payload, "{driver}: {} bytes back", got.len());
        });
        assert_eq!(first.stat("http.ingress_http.downstream_cx_upgrades_total"), 2, "{driver}");
        assert_eq!(first.stat("cluster.next_proxy.upstream_rq_total"), 2, "{driver}");
        assert_eq!(second.stat("http.ingress_http.downstream_cx_upgrades_total"), 2, "{driver}");
        assert_eq!(second.stat("cluster.echo_service.upstream_cx_total"), 2, "{driver}");
    }
}

#[test]
fn sigterm_sends_goaway_and_lets_open_streams_finish_before_exiting() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = config(echo, origin.addr);
        let mut burrow = Burrow::start_with_drain(driver, &text, admin, 30);
        runtime().block_on(async {
            let (mut client, connection) = connect_watched(listen).await;
            let (status, mut send, mut body) = open_connect(&mut client, "echo.test:443").await;
            assert_eq!(status, 200, "{driver}");
            burrow.signal(libc::SIGTERM);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            // GOAWAY: no new stream is taken...
            let refused = match client.clone().ready().await {
                Err(_) => true,
                Ok(mut ready) => {
                    let request =
                        http::Request::builder().method("CONNECT").uri("echo.test:443").body(()).unwrap();
                    match ready.send_request(request, false) {
                        Err(_) => true,
                        Ok((response, _)) => {
                            tokio::time::timeout(IO_TIMEOUT, response).await.expect("in time").is_err()
                        }
                    }
                }
            };
            assert!(refused, "{driver}: a new stream was taken after GOAWAY");
            // ...while the open one goes on to its end.
            send.send_data(Bytes::from_static(b"after the goaway"), true).unwrap();
            let got = read_exact(&mut body, 16).await;
            assert_eq!(got, b"after the goaway", "{driver}");
            let (rest, ended) = tokio::time::timeout(IO_TIMEOUT, read_body(body)).await.expect("in time");
            assert!(rest.is_empty() && ended, "{driver}: the open stream ends with END_STREAM");
            let _ = tokio::time::timeout(IO_TIMEOUT, connection).await.expect("the connection closes");
        });
        let status =
            burrow.wait_exit(std::time::Duration::from_secs(10)).expect("exit once the stream ended");
        assert!(status.success(), "{driver}: {status}");
    }
}

#[test]
fn a_post_on_an_allow_post_route_is_terminated_into_tcp_and_not_counted_as_an_upgrade() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = config(echo, origin.addr);
        let burrow = Burrow::start(driver, &text, admin);
        runtime().block_on(async {
            let client = connect(listen).await;
            let mut ready = client.ready().await.unwrap();
            let post = http::Request::builder().method("POST").uri("http://tunnel.test/").body(()).unwrap();
            let (response, mut send) = ready.send_request(post, false).unwrap();
            let response = tokio::time::timeout(IO_TIMEOUT, response).await.expect("in time").unwrap();
            assert_eq!(response.status(), 200, "{driver}");
            let payload = pattern(9, 64 * 1024);
            send.send_data(Bytes::from(payload.clone()), true).unwrap();
            let (got, ended) =
                tokio::time::timeout(IO_TIMEOUT, read_body(response.into_body())).await.expect("in time");
            assert!(got == payload && ended, "{driver}: {} bytes back", got.len());
        });
        assert_eq!(burrow.stat("cluster.echo_service.upstream_cx_total"), 1, "{driver}");
        assert_eq!(burrow.stat("http.ingress_http.downstream_cx_upgrades_total"), 0, "{driver}");
    }
}

/// The HTTP/2 CONNECT config with PINGs every 200 ms, to be answered within 200 ms.
fn keepalive_config(echo: SocketAddr, web: SocketAddr) -> (String, SocketAddr, u16) {
    let (text, listen, admin) = config(echo, web);
    let text = text.replace(
        "            allow_connect: true\n",
        "            allow_connect: true\n            connection_keepalive: { interval: 0.2s, timeout: 0.2s }\n",
    );
    assert!(text.contains("connection_keepalive"));
    (text, listen, admin)
}

#[test]
fn keepalive_pings_close_a_client_that_does_not_answer_and_spare_one_that_does() {
    use std::io::{Read, Write};
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, listen, admin) = keepalive_config(echo, origin.addr);
        let burrow = Burrow::start(driver, &text, admin);
        // A client that says its preface and then reads without answering anything.
        let mut mute = std::net::TcpStream::connect(listen).unwrap();
        mute.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        mute.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match mute.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => assert!(started.elapsed() < IO_TIMEOUT, "{driver}: never closed"),
            }
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "{driver}: closed late");
        burrow.wait_stat("http.ingress_http.http2.keepalive_timeout", |v| v == 1);

        // The h2 crate's client answers every PING: its idle tunnel outlives many intervals.
        runtime().block_on(async {
            let mut client = connect(listen).await;
            let (status, mut send, body) = open_connect(&mut client, "echo.test:443").await;
            assert_eq!(status, 200, "{driver}");
            tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
            send.send_data(Bytes::from_static(b"still alive"), true).unwrap();
            assert_eq!(read_body(body).await, (b"still alive".to_vec(), true), "{driver}");
        });
        assert_eq!(burrow.stat("http.ingress_http.http2.keepalive_timeout"), 1, "{driver}");
    }
}

#[test]
fn connect_proxy_mode_passes_tunnels_on_as_http2_connect_streams_on_one_pooled_connection() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, terminator, admin) = config(echo, origin.addr);
        let second = Burrow::start(driver, &text, admin);
        let (text, first_listen, admin) = proxy_mode_config(terminator);
        // The next proxy is reached over HTTP/2 (prior knowledge).
        let text =
            text.replace("  - name: next_proxy\n", "  - name: next_proxy\n    http2_protocol_options: {}\n");
        let first = Burrow::start(driver, &text, admin);
        runtime().block_on(async {
            let client = connect(first_listen).await;
            echo_tunnels(&client, 3, 64 * 1024).await;
        });
        assert_eq!(
            first.stat("cluster.next_proxy.upstream_cx_http2_total"),
            1,
            "{driver}: one pooled connection"
        );
        assert_eq!(first.stat("cluster.next_proxy.upstream_rq_total"), 3, "{driver}");
        assert_eq!(second.stat("http.ingress_http.downstream_cx_http2_total"), 1, "{driver}");
        assert_eq!(second.stat("cluster.echo_service.upstream_cx_total"), 3, "{driver}");
        first.wait_stat("http.ingress_http.downstream_cx_upgrades_active", |v| v == 0);
    }
}

/// A WebSocket session over extended CONNECT through the first burrow, which passes it on as
/// extended CONNECT over its pooled HTTP/2 connection to the second, which turns it into the
/// HTTP/1.1 upgrade the origin speaks.
#[test]
fn a_websocket_over_http2_goes_on_as_extended_connect_to_an_http2_upstream() {
    let echo = echo_server();
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, second_listen, admin) = config(echo, origin.addr);
        let second = Burrow::start(driver, &text, admin);
        let (listen, admin) = peers::ports();
        let text = support::config("http2_upstream.yaml")
            .replace("port_value: 9905", &format!("port_value: {admin}"))
            .replace("port_value: 10004", &format!("port_value: {listen}"))
            .replace("port_value: 8082", &format!("port_value: {}", second_listen.port()))
            .replace(
                "          stat_prefix: ingress_http\n",
                "          stat_prefix: ingress_http\n          http2_protocol_options: { allow_connect: true }\n          upgrade_configs: [{ upgrade_type: websocket }]\n",
            );
        let first = Burrow::start(driver, &text, admin);
        let first_listen = SocketAddr::from(([127, 0, 0, 1], listen));
        runtime().block_on(async {
            let client = connect(first_listen).await;
            let mut request = http::Request::builder()
                .method("CONNECT")
                .uri("http://web.test/chat/through")
                .header("sec-websocket-version", "13")
                .body(())
                .unwrap();
            request.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
            let mut ready = client.ready().await.unwrap();
            let deadline = std::time::Instant::now() + IO_TIMEOUT;
            while !ready.is_extended_connect_protocol_enabled() {
                assert!(std::time::Instant::now() < deadline, "SETTINGS_ENABLE_CONNECT_PROTOCOL");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let (response, mut send) = ready.send_request(request, false).unwrap();
            let response = tokio::time::timeout(IO_TIMEOUT, response).await.expect("in time").unwrap();
            assert_eq!(response.status(), 200, "{driver}");
            let mut body = response.into_body();
            send.send_data(Bytes::from(client_frame(1, b"through two")), false).unwrap();
            let want = server_frame(1, b"through two");
            assert_eq!(read_exact(&mut body, want.len()).await, want, "{driver}: echoed");
        });
        assert_eq!(first.stat("cluster.service.upstream_cx_http2_total"), 1, "{driver}");
        assert_eq!(second.stat("http.ingress_http.downstream_cx_upgrades_total"), 1, "{driver}");
        let seen = origin.seen();
        let handshake =
            seen.iter().rev().find(|s| s.uri == "/chat/through").expect("the origin saw the handshake");
        assert_eq!(handshake.header("upgrade").as_deref(), Some("websocket"), "{driver}");
    }
}
