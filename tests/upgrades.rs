//! HTTP/1.1 upgrades end to end (issue 3; BEHAVIOR rows U1-U7, U10): WebSocket through a
//! tokio-tungstenite client and echo server, any upgrade token through raw origins, the
//! HCM/route enable table, refused upgrades, and the buffer filter in the chain an upgrade
//! uses. Both binaries, loopback only, byte-exact.

mod peers;
mod support;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peers::{head_header, request_path, Origin, RawConn, RawOrigin, WsEcho, IO_TIMEOUT};
use support::{Burrow, DRIVERS};
use tokio_tungstenite::tungstenite::Message;

/// The RFC 6455 example key and its accept value.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const ROUTER: &str = r#"{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#;

/// One listener of a generated config: an HCM on `port` named `stat_prefix`, with `hcm_extra`
/// (lines at the HCM's indentation, e.g. `upgrade_configs`) and `routes` (flow-style list
/// entries, one a line), all routes to the cluster `origin`.
struct Hcm<'a> {
    port: u16,
    stat_prefix: &'a str,
    hcm_extra: &'a str,
    routes: &'a [String],
}

/// A route entry: `prefix` to the origin, with route-level `upgrade_configs` (flow list, or "").
fn route(prefix: &str, upgrade_configs: &str) -> String {
    let upgrades = if upgrade_configs.is_empty() {
        String::new()
    } else {
        format!(", upgrade_configs: {upgrade_configs}")
    };
    format!("{{match: {{prefix: \"{prefix}\"}}, route: {{cluster: origin{upgrades}}}}}")
}

fn generated_config(admin: u16, listeners: &[Hcm<'_>], origin: SocketAddr) -> String {
    let mut text = format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}\n\
         static_resources:\n  listeners:\n"
    );
    for l in listeners {
        text += &format!(
            "  - name: {prefix}\n    address:\n      socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n    \
             filter_chains:\n    - filters:\n      - name: envoy.filters.network.http_connection_manager\n        \
             typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          \
             stat_prefix: {prefix}\n{extra}          route_config:\n            virtual_hosts:\n            \
             - name: all\n              domains: [\"*\"]\n              routes:\n",
            prefix = l.stat_prefix,
            port = l.port,
            extra = if l.hcm_extra.is_empty() { String::new() } else { format!("{}\n", l.hcm_extra) },
        );
        for r in l.routes {
            text += &format!("              - {r}\n");
        }
        text += &format!("          http_filters: [{ROUTER}]\n");
    }
    text += &format!(
        "  clusters:\n  - name: origin\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      \
         cluster_name: origin\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            \
         address:\n              socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
        origin.port()
    );
    text
}

/// One listener with `hcm_extra`, a catch-all route, to `origin`: (config, listener, admin).
fn simple_config(origin: SocketAddr, hcm_extra: &str) -> (String, SocketAddr, u16) {
    let (listen, admin) = peers::ports();
    let routes = [route("/", "")];
    let hcm = Hcm { port: listen, stat_prefix: "ingress_http", hcm_extra, routes: &routes };
    (generated_config(admin, &[hcm], origin), SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

fn http(name: &str) -> String {
    format!("http.ingress_http.{name}")
}

/// A WebSocket handshake request for `path` (raw bytes).
fn ws_handshake(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: ws.example\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: {WS_KEY}\r\n\r\n"
    )
}

/// A masked client text frame with a short payload.
fn masked_text_frame(text: &[u8]) -> Vec<u8> {
    assert!(text.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

// ---------------------------------------------------------------------------------------------

type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket session through the proxy; returns it and the handshake response.
async fn ws_connect(
    listen: SocketAddr,
    path: &str,
) -> (Client, tokio_tungstenite::tungstenite::handshake::client::Response) {
    let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
    let url = format!("ws://{listen}{path}");
    tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("handshake within the timeout")
        .expect("a WebSocket handshake through the proxy")
}

/// Sends each message and checks its echo, byte for byte.
async fn ws_exchange(driver: &str, ws: &mut Client, messages: &[Message]) {
    for message in messages {
        ws.send(message.clone()).await.unwrap();
        let echoed = loop {
            let next = tokio::time::timeout(IO_TIMEOUT, ws.next()).await.expect("an echo in time");
            match next.expect("the session is open").expect("a message") {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => break other,
            }
        };
        assert_eq!(echoed.is_text(), message.is_text(), "{driver}: message kind");
        assert!(echoed == *message, "{driver}: a {} byte message came back different", message.len());
    }
}

/// Closes the session and waits for the server's side of the close.
async fn ws_close(ws: &mut Client) {
    ws.close(None).await.unwrap();
    let drained =
        tokio::time::timeout(IO_TIMEOUT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    assert!(drained.is_ok(), "the session did not end after the close handshake");
}

fn messages() -> Vec<Message> {
    vec![
        Message::text("hello through burrow"),
        Message::binary(vec![0u8, 1, 2, 0xff, 0xfe]),
        Message::text(peers::text_payload(65_536)),
        Message::binary(peers::payload(1 << 20)),
        Message::text(peers::text_payload(1 << 20)),
        Message::binary(peers::payload(125)),
        Message::binary(peers::payload(126)),
        Message::binary(peers::payload(65_537)),
    ]
}

#[test]
fn websocket_sessions_exchange_text_and_binary_up_to_a_mebibyte() {
    let echo = WsEcho::start();
    let mut sessions_before = 0;
    for driver in DRIVERS {
        let (config, listen, admin) =
            simple_config(echo.addr, "          upgrade_configs: [{upgrade_type: websocket}]");
        let proxy = Burrow::start(driver, &config, admin);
        let rt = peers::runtime();

        let (mut first, response) = rt.block_on(ws_connect(listen, "/chat"));
        assert_eq!(response.status(), 101, "{driver}");
        assert_eq!(response.headers()["server"], "envoy", "{driver}");
        assert!(
            response.headers()["upgrade"].to_str().unwrap().eq_ignore_ascii_case("websocket"),
            "{driver}"
        );
        assert!(
            response.headers()["connection"].to_str().unwrap().eq_ignore_ascii_case("upgrade"),
            "{driver}"
        );
        assert!(!response.headers().contains_key("transfer-encoding"), "{driver}");
        rt.block_on(ws_exchange(driver, &mut first, &messages()));
        assert_eq!(proxy.wait_stat(&http("downstream_cx_upgrades_active"), |v| v == 1), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_cx_upgrades_total")), 1, "{driver}");

        // A second session beside the first.
        let (mut second, response) = rt.block_on(ws_connect(listen, "/other"));
        assert_eq!(response.status(), 101, "{driver}");
        rt.block_on(ws_exchange(driver, &mut second, &messages()[..3]));
        assert_eq!(proxy.stat(&http("downstream_cx_upgrades_active")), 2, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_cx_upgrades_total")), 2, "{driver}");
        // The first session still works while the second is open.
        rt.block_on(ws_exchange(driver, &mut first, &messages()[..2]));

        // The clients close: the close handshake, then the socket.
        rt.block_on(ws_close(&mut second));
        drop(second);
        proxy.wait_stat(&http("downstream_cx_upgrades_active"), |v| v == 1);
        rt.block_on(ws_close(&mut first));
        drop(first);
        proxy.wait_stat(&http("downstream_cx_upgrades_active"), |v| v == 0);

        assert_eq!(proxy.stat(&http("downstream_cx_upgrades_total")), 2, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_1xx")), 2, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_ws_on_non_ws_route")), 0, "{driver}");
        assert_eq!(proxy.stat("cluster.origin.upstream_cx_total"), 2, "{driver}");
        proxy.wait_stat("cluster.origin.upstream_cx_active", |v| v == 0);
        proxy.wait_stat(&http("downstream_cx_active"), |v| v == 0);
        assert_eq!(echo.sessions() - sessions_before, 2, "{driver}");
        sessions_before = echo.sessions();
    }
}

#[test]
fn upgrade_enable_table_hcm_and_route() {
    let echo = WsEcho::start();
    // Three connection managers: websocket enabled, disabled, not listed. Each has a route that
    // enables websocket (/rt), one that disables it (/rf) and one that says nothing (/rn).
    let routes = [
        route("/rt", "[{upgrade_type: websocket, enabled: true}]"),
        route("/rf", "[{upgrade_type: websocket, enabled: false}]"),
        route("/rn", ""),
    ];
    let cases: [(&str, &str, [u16; 3]); 3] = [
        ("hcm_t", "          upgrade_configs: [{upgrade_type: websocket, enabled: true}]", [101, 403, 101]),
        ("hcm_f", "          upgrade_configs: [{upgrade_type: websocket, enabled: false}]", [101, 403, 403]),
        ("hcm_none", "", [101, 403, 403]),
    ];
    for driver in DRIVERS {
        let admin = support::free_port();
        let ports: Vec<u16> = cases.iter().map(|_| support::free_port()).collect();
        let hcms: Vec<Hcm<'_>> = cases
            .iter()
            .zip(&ports)
            .map(|((prefix, extra, _), port)| Hcm {
                port: *port,
                stat_prefix: prefix,
                hcm_extra: extra,
                routes: &routes,
            })
            .collect();
        let config = generated_config(admin, &hcms, echo.addr);
        let proxy = Burrow::start(driver, &config, admin);
        for ((prefix, _, expected), port) in cases.iter().zip(&ports) {
            let listen = SocketAddr::from(([127, 0, 0, 1], *port));
            for (path, want) in ["/rt", "/rf", "/rn"].into_iter().zip(expected) {
                let cell = format!("{driver} {prefix} {path}");
                let mut client = RawConn::connect(listen);
                client.send(ws_handshake(path).as_bytes());
                let head = client.read_head();
                if *want == 101 {
                    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{cell}: {head}");
                    assert_eq!(
                        head_header(&head, "sec-websocket-accept").as_deref(),
                        Some(WS_ACCEPT),
                        "{cell}"
                    );
                    assert_eq!(head_header(&head, "server").as_deref(), Some("envoy"), "{cell}: {head}");
                    client.send(&masked_text_frame(b"cell"));
                    assert_eq!(client.read_exact(6), b"\x81\x04cell", "{cell}: the echo through the tunnel");
                } else {
                    assert!(
                        head.starts_with("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n"),
                        "{cell}: {head}"
                    );
                    assert_eq!(head_header(&head, "server").as_deref(), Some("envoy"), "{cell}: {head}");
                    assert!(client.closed(), "{cell}: the connection closes after the 403");
                }
            }
            let stat = |name: &str| proxy.stat(&format!("http.{prefix}.{name}"));
            let refused = expected.iter().filter(|s| **s == 403).count() as u64;
            let allowed = expected.iter().filter(|s| **s == 101).count() as u64;
            assert_eq!(stat("downstream_rq_ws_on_non_ws_route"), refused, "{driver} {prefix}");
            assert_eq!(stat("downstream_rq_4xx"), refused, "{driver} {prefix}");
            assert_eq!(stat("downstream_cx_upgrades_total"), allowed, "{driver} {prefix}");
            assert_eq!(stat("downstream_rq_1xx"), allowed, "{driver} {prefix}");
        }
    }
}

/// What a raw upgrade origin saw on one connection: the head, and every byte after it until EOF.
type Capture = (String, Vec<u8>);

/// An origin that answers `upgrade: foo` with a `101`, then `server-first`, then echoes the
/// tunnel until EOF (half-closing back); plain requests get `200 plain`. Each connection's
/// first head and tunnel bytes are reported on the channel.
fn foo_origin() -> (RawOrigin, mpsc::Receiver<Capture>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let origin = RawOrigin::start(move |mut conn, _| {
        while let Some(head) = conn.try_read_head() {
            if !head_header(&head, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("foo")) {
                let _ = tx.lock().unwrap().send((head, Vec::new()));
                conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain");
                continue;
            }
            conn.send(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: foo\r\n\r\nserver-first");
            let mut tunnel = Vec::new();
            let mut writer = conn.stream.try_clone().unwrap();
            let early = conn.buffered().to_vec();
            let rest = {
                use std::io::Write;
                writer.write_all(&early).unwrap();
                let mut all = early;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    use std::io::Read;
                    match conn.stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            all.extend_from_slice(&buf[..n]);
                            if writer.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                all
            };
            tunnel.extend(rest);
            let _ = writer.shutdown(std::net::Shutdown::Write);
            let _ = tx.lock().unwrap().send((head, tunnel));
            return;
        }
    });
    (origin, rx)
}

#[test]
fn any_upgrade_token_tunnels_raw_bytes_and_h2c_is_stripped() {
    let (origin, captures) = foo_origin();
    for driver in DRIVERS {
        let (config, listen, admin) =
            simple_config(origin.addr, "          upgrade_configs: [{upgrade_type: foo}]");
        let proxy = Burrow::start(driver, &config, admin);

        // The token matches case-insensitively; bytes sent with the head wait for the 101.
        let mut client = RawConn::connect(listen);
        client.send(b"GET /tunnel HTTP/1.1\r\nhost: a\r\nconnection: Upgrade\r\nupgrade: FOO\r\n\r\nearly");
        let head = client.read_head();
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{driver}: {head}");
        assert_eq!(head_header(&head, "upgrade").as_deref(), Some("foo"), "{driver}: {head}");
        assert!(
            head_header(&head, "connection").is_some_and(|c| c.eq_ignore_ascii_case("upgrade")),
            "{driver}"
        );
        assert_eq!(head_header(&head, "server").as_deref(), Some("envoy"), "{driver}: {head}");
        assert_eq!(head_header(&head, "transfer-encoding"), None, "{driver}: {head}");
        assert_eq!(client.read_exact(12), b"server-first", "{driver}");
        assert_eq!(client.read_exact(5), b"early", "{driver}: the early bytes, echoed");
        assert_eq!(proxy.wait_stat(&http("downstream_cx_upgrades_active"), |v| v == 1), 1);

        let data = peers::payload(1 << 20);
        let mut writer = client.stream.try_clone().unwrap();
        let sent = data.clone();
        let send = thread::spawn(move || {
            use std::io::Write;
            for piece in sent.chunks(10_007) {
                writer.write_all(piece).unwrap();
            }
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let echoed = client.read_to_end();
        send.join().unwrap();
        assert_eq!(echoed.len(), data.len(), "{driver}: echo length (no framing added)");
        assert!(echoed == data, "{driver}: the echo differs");
        let (up_head, tunnel) = captures.recv_timeout(IO_TIMEOUT).expect("the origin's capture");
        assert!(up_head.starts_with("GET /tunnel HTTP/1.1\r\n"), "{driver}: {up_head}");
        assert!(head_header(&up_head, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("foo")), "{up_head}");
        assert!(
            head_header(&up_head, "connection").is_some_and(|c| c.eq_ignore_ascii_case("upgrade")),
            "{up_head}"
        );
        assert_eq!(tunnel.len(), 5 + data.len(), "{driver}: bytes the origin got through the tunnel");
        assert!(
            tunnel[..5] == *b"early" && tunnel[5..] == data[..],
            "{driver}: tunnel bytes differ at the origin"
        );
        proxy.wait_stat(&http("downstream_cx_upgrades_active"), |v| v == 0);

        // U6: transfer-encoding on an upgrade request is dropped; the tunnel stays raw.
        let mut client = RawConn::connect(listen);
        client.send(b"POST /te HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: foo\r\ntransfer-encoding: chunked\r\n\r\n");
        let head = client.read_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{driver}: {head}");
        assert_eq!(client.read_exact(12), b"server-first", "{driver}");
        client.send(b"3\r\nabc");
        assert_eq!(client.read_exact(6), b"3\r\nabc", "{driver}: raw both ways");
        client.shutdown_write();
        assert!(client.read_to_end().is_empty(), "{driver}");
        let (up_head, tunnel) = captures.recv_timeout(IO_TIMEOUT).expect("the origin's capture");
        assert_eq!(head_header(&up_head, "transfer-encoding"), None, "{driver}: {up_head}");
        assert_eq!(tunnel, b"3\r\nabc", "{driver}");

        // U10: h2c is dropped and the request is plain HTTP/1.1, even with no h2c upgrade config.
        let mut client = RawConn::connect(listen);
        let reply = client.exchange(
            b"GET /h2c HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n\
              http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        );
        assert_eq!((reply.status, reply.text().as_str()), (200, "plain"), "{driver}: {}", reply.head);
        let (up_head, _) = captures.recv_timeout(IO_TIMEOUT).expect("the origin's capture");
        assert!(up_head.starts_with("GET /h2c HTTP/1.1\r\n"), "{driver}: {up_head}");
        for name in ["upgrade", "http2-settings", "connection"] {
            assert_eq!(head_header(&up_head, name), None, "{driver}: {name} reached the origin: {up_head}");
        }
        // And the client connection is an ordinary keep-alive one.
        let reply = client.exchange(b"GET /again HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(reply.status, 200, "{driver}");
        let _ = captures.recv_timeout(IO_TIMEOUT);

        assert_eq!(proxy.stat(&http("downstream_cx_upgrades_total")), 2, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_1xx")), 2, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_ws_on_non_ws_route")), 0, "{driver}");
    }
}

/// Envoy's WebsocketIntegrationTest.WebSocketConnectionUpstreamDisconnect: when the upstream
/// closes an upgraded connection, the client gets the last bytes and is disconnected, and the
/// upgrade is no longer active, without the client closing first.
#[test]
fn an_upgraded_tunnel_ends_when_the_upstream_disconnects() {
    let origin = RawOrigin::start(|mut conn, _| {
        let Some(_) = conn.try_read_head() else { return };
        conn.send(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n");
        assert_eq!(conn.read_exact(5), b"hello");
        conn.send(b"world");
        // Dropped: the origin closes its socket.
    });
    for driver in DRIVERS {
        let (config, listen, admin) =
            simple_config(origin.addr, "          upgrade_configs: [{upgrade_type: websocket}]");
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);
        client.send(ws_handshake("/ws").as_bytes());
        assert!(client.read_head().starts_with("HTTP/1.1 101 "), "{driver}");
        client.send(b"hello");
        assert_eq!(client.read_exact(5), b"world", "{driver}");
        assert!(client.closed(), "{driver}: EOF after the upstream closed");
        // The client has not closed its side: the proxy ends the connection itself.
        proxy.wait_stat(&http("downstream_cx_upgrades_active"), |v| v == 0);
        proxy.wait_stat(&http("downstream_cx_active"), |v| v == 0);
        proxy.wait_stat("cluster.origin.upstream_cx_active", |v| v == 0);
        assert_eq!(proxy.stat("cluster.origin.upstream_cx_destroy_remote"), 1, "{driver}");
        drop(client);
    }
}

/// U11: the route's `idle_timeout` applies to an upgraded stream: both sides are closed.
#[test]
fn route_idle_timeout_ends_an_idle_upgraded_stream() {
    let (origin, captures) = foo_origin();
    for driver in DRIVERS {
        let (listen, admin) = peers::ports();
        let routes = ["{match: {prefix: \"/\"}, route: {cluster: origin, idle_timeout: 0.3s}}".to_string()];
        let hcm = Hcm {
            port: listen,
            stat_prefix: "ingress_http",
            hcm_extra: "          upgrade_configs: [{upgrade_type: foo}]",
            routes: &routes,
        };
        let config = generated_config(admin, &[hcm], origin.addr);
        let listen = SocketAddr::from(([127, 0, 0, 1], listen));
        let proxy = Burrow::start(driver, &config, admin);
        let mut client = RawConn::connect(listen);
        client.send(b"GET /idle HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: foo\r\n\r\n");
        assert!(client.read_head().starts_with("HTTP/1.1 101 "), "{driver}");
        assert_eq!(client.read_exact(12), b"server-first", "{driver}");
        // Activity keeps it open past the timeout...
        for _ in 0..4 {
            thread::sleep(Duration::from_millis(150));
            client.send(b"ping");
            assert_eq!(client.read_exact(4), b"ping", "{driver}");
        }
        // ...silence ends it.
        let start = std::time::Instant::now();
        assert!(client.closed(), "{driver}: closed after the idle timeout");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
            "{driver}: {waited:?}"
        );
        let (_, tunnel) = captures.recv_timeout(IO_TIMEOUT).expect("the origin's side was closed too");
        assert_eq!(tunnel, b"pingpingpingping", "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_idle_timeout")), 1, "{driver}");
        proxy.wait_stat(&http("downstream_cx_upgrades_active"), |v| v == 0);
    }
}

#[test]
fn refused_upgrade_is_passed_down_then_both_connections_close() {
    // The origin refuses (426 or 200), then records what else arrives until the proxy closes.
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
    let tx = std::sync::Mutex::new(tx);
    let origin = RawOrigin::start(move |mut conn, _| {
        let Some(head) = conn.try_read_head() else { return };
        match request_path(&head) {
            "/refuse-426" => conn.send(
                b"HTTP/1.1 426 Upgrade Required\r\nupgrade: websocket\r\nconnection: Upgrade\r\ncontent-length: 12\r\n\r\nnot upgraded",
            ),
            _ => conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        }
        let rest = conn.read_to_end();
        let _ = tx.lock().unwrap().send((head, rest));
    });
    for driver in DRIVERS {
        let (config, listen, admin) =
            simple_config(origin.addr, "          upgrade_configs: [{upgrade_type: websocket}]");
        let proxy = Burrow::start(driver, &config, admin);
        for (path, status, body) in [("/refuse-426", 426, "not upgraded"), ("/refuse-200", 200, "ok")] {
            let mut client = RawConn::connect(listen);
            let mut request = ws_handshake(path).into_bytes();
            request.extend_from_slice(b"early payload that must not reach the origin");
            client.send(&request);
            let reply = client.read_response(false);
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (status, body),
                "{driver} {path}: {}",
                reply.head
            );
            assert_eq!(reply.header("server").as_deref(), Some("envoy"), "{driver}: {}", reply.head);
            if status == 426 {
                assert_eq!(reply.header("upgrade").as_deref(), Some("websocket"), "{driver}: {}", reply.head);
                assert!(
                    reply.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("upgrade")),
                    "{driver}: {}",
                    reply.head
                );
            }
            assert!(client.closed(), "{driver} {path}: the client connection closes after the refusal");
            let (up_head, rest) = rx.recv_timeout(IO_TIMEOUT).expect("the origin connection was closed");
            assert!(up_head.starts_with(&format!("GET {path} HTTP/1.1\r\n")), "{driver}: {up_head}");
            assert!(rest.is_empty(), "{driver} {path}: the origin got {:?}", String::from_utf8_lossy(&rest));
        }
        proxy.wait_stat(&http("downstream_cx_upgrades_active"), |v| v == 0);
        assert_eq!(proxy.stat(&http("downstream_cx_upgrades_total")), 2, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_4xx")), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_2xx")), 1, "{driver}");
        assert_eq!(proxy.stat(&http("downstream_rq_1xx")), 0, "{driver}");
        assert_eq!(proxy.wait_stat("cluster.origin.upstream_cx_destroy", |v| v >= 2), 2, "{driver}");
        proxy.wait_stat("cluster.origin.upstream_cx_active", |v| v == 0);
    }
}

// ---------------------------------------------------------------------------------------------
// The buffer filter and upgrades (U4, U5), on configs/websocket.yaml

/// `configs/websocket.yaml` on fresh ports, its cluster pointed at `origin`, the default chain's
/// buffer limit set to 1024: (config, listener, admin).
fn websocket_config(origin: SocketAddr) -> (String, SocketAddr, u16) {
    let (listen, admin) = peers::ports();
    let text = support::config("websocket.yaml");
    for needle in ["port_value: 9901", "port_value: 10000", "port_value: 8081", "max_request_bytes: 4096"] {
        assert_eq!(text.matches(needle).count(), 1, "{needle} in configs/websocket.yaml");
    }
    let text = text
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("port_value: 10000", &format!("port_value: {listen}"))
        .replace("port_value: 8081", &format!("port_value: {}", origin.port()))
        .replace("max_request_bytes: 4096", "max_request_bytes: 1024");
    (text, SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

fn ws_http(name: &str) -> String {
    format!("http.ingress_ws.{name}")
}

#[test]
fn websocket_through_a_default_chain_holding_the_buffer_filter_completes_and_warns() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let (config, listen, admin) = websocket_config(origin.addr);
        let proxy = Burrow::start(driver, &config, admin);
        // The start-up warning names the listener and the upgrade type, and gives the advice.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let stderr = loop {
            let stderr = proxy.stderr();
            if stderr.contains("upgrade type 'websocket'") || std::time::Instant::now() > deadline {
                break stderr;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let warning = stderr.lines().find(|l| l.contains("upgrade type 'websocket'")).unwrap_or_else(|| {
            panic!("{driver}: no start-up warning about websocket and the buffer filter in:\n{stderr}")
        });
        assert!(warning.contains("WARN"), "{driver}: {warning}");
        assert!(warning.contains("listener 'websocket_listener'"), "{driver}: {warning}");
        assert!(warning.contains("buffer filter"), "{driver}: {warning}");
        assert!(warning.contains("upgrade_configs[].filters"), "{driver}: {warning}");
        // foo has a chain of its own: no warning about it.
        assert!(!stderr.contains("upgrade type 'foo'"), "{driver}: {stderr}");

        let rt = peers::runtime();
        let (mut ws, response) = rt.block_on(ws_connect(listen, "/chat"));
        assert_eq!(response.status(), 101, "{driver}");
        assert_eq!(response.headers()["server"], "envoy", "{driver}");
        rt.block_on(ws_exchange(driver, &mut ws, &messages()));
        assert_eq!(proxy.stat(&ws_http("downstream_cx_upgrades_active")), 1, "{driver}");
        rt.block_on(ws_close(&mut ws));
        drop(ws);
        proxy.wait_stat(&ws_http("downstream_cx_upgrades_active"), |v| v == 0);
        assert_eq!(proxy.stat(&ws_http("downstream_cx_upgrades_total")), 1, "{driver}");
        assert_eq!(proxy.stat(&ws_http("downstream_rq_1xx")), 1, "{driver}");
        assert_eq!(proxy.stat("cluster.ws_service.upstream_cx_total"), 1, "{driver}");
    }
}

#[test]
fn buffer_filter_413_for_bodies_and_pre_upgrade_payloads_over_the_limit() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let (config, listen, admin) = websocket_config(origin.addr);
        let proxy = Burrow::start(driver, &config, admin);
        let seen_before = origin.seen().len();

        // A body over the default chain's 1024: 413, and the origin sees nothing.
        let mut client = RawConn::connect(listen);
        let mut request = b"POST /submit HTTP/1.1\r\nhost: a\r\ncontent-length: 2000\r\n\r\n".to_vec();
        request.extend(peers::payload(2000));
        client.send(&request);
        let reply = client.read_response(false);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (413, "Payload Too Large"),
            "{driver}: {}",
            reply.head
        );
        assert_eq!(reply.header("content-type").as_deref(), Some("text/plain"), "{driver}");
        assert!(client.closed(), "{driver}: closed after the 413");
        let mut status_lines = vec![reply.head.lines().next().unwrap().to_string()];

        // Within the limit, a chunked body is buffered and forwarded with its length.
        let mut client = RawConn::connect(listen);
        let body = peers::payload(1000);
        let mut request =
            b"POST /echo/buffered HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(300) {
            request.extend(format!("{:x}\r\n", piece.len()).bytes());
            request.extend_from_slice(piece);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let reply = client.exchange(&request);
        assert_eq!(reply.status, 200, "{driver}: {}", reply.head);
        assert!(reply.body == body, "{driver}: echo of the buffered body");
        let seen = &origin.wait_seen(seen_before + 1)[seen_before];
        assert_eq!(seen.uri, "/echo/buffered", "{driver}");
        assert_eq!(seen.header("content-length").as_deref(), Some("1000"), "{driver}");
        assert_eq!(seen.header("transfer-encoding"), None, "{driver}");
        assert!(seen.body == body, "{driver}");

        // U5: the route under /upload/ turns the buffer filter off: a big body streams through.
        let big = peers::payload(100_000);
        let mut request = b"POST /upload/file HTTP/1.1\r\nhost: a\r\ncontent-length: 100000\r\n\r\n".to_vec();
        request.extend_from_slice(&big);
        let reply = RawConn::connect(listen).exchange(&request);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "POST /upload/file"),
            "{driver}: {}",
            reply.head
        );
        let seen = &origin.wait_seen(seen_before + 2)[seen_before + 1];
        assert!(seen.body == big, "{driver}: the unbuffered body at the origin");

        // The custom chain of `foo` holds a buffer filter (1024): an upgrade sent together with
        // more than that before any 101 gets 413, and the origin never sees it.
        let mut client = RawConn::connect(listen);
        let mut request =
            b"GET /foo HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: foo\r\n\r\n".to_vec();
        request.extend(peers::payload(2000));
        client.send(&request);
        let reply = client.read_response(false);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (413, "Payload Too Large"),
            "{driver}: {}",
            reply.head
        );
        assert!(client.closed(), "{driver}: closed after the 413");
        status_lines.push(reply.head.lines().next().unwrap().to_string());
        // Within the limit, the early payload is forwarded after the 101.
        let mut client = RawConn::connect(listen);
        let early = peers::payload(500);
        let mut request =
            b"GET /foo HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: foo\r\n\r\n".to_vec();
        request.extend_from_slice(&early);
        client.send(&request);
        let head = client.read_head();
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{driver}: {head}");
        assert!(client.read_exact(500) == early, "{driver}: the early payload, echoed");
        client.send(b"after the 101, no limit");
        assert_eq!(client.read_exact(23), b"after the 101, no limit", "{driver}");
        drop(client);

        // The same cap applies to WebSocket on the default chain before its 101.
        let mut client = RawConn::connect(listen);
        let mut request = ws_handshake("/chat").into_bytes();
        request.extend(peers::payload(2000));
        client.send(&request);
        let reply = client.read_response(false);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (413, "Payload Too Large"),
            "{driver}: {}",
            reply.head
        );
        status_lines.push(reply.head.lines().next().unwrap().to_string());

        let seen = origin.seen();
        let paths: Vec<&str> = seen[seen_before..].iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(paths, ["/echo/buffered", "/upload/file", "/foo"], "{driver}: what reached the origin");
        assert_eq!(proxy.stat(&ws_http("downstream_rq_4xx")), 3, "{driver}");
        proxy.wait_stat(&ws_http("downstream_cx_upgrades_active"), |v| v == 0);
        // Envoy's reason phrase for 413 (Http::CodeUtility::toString) is "Payload Too Large".
        assert_eq!(status_lines, ["HTTP/1.1 413 Payload Too Large"; 3], "{driver}");
    }
}
