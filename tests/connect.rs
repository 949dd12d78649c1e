//! HTTP/1.1 CONNECT termination end to end: both binaries, real sockets, independent peers
//! (raw `std::net` sockets and hyper's client), byte-exact.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use support::{echo_server, payload, Burrow, DRIVERS};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A port nothing listens on.
fn closed_port() -> u16 {
    support::free_port()
}

/// `configs/terminate_http1_connect.yaml` on fresh ports: (config, listener, admin port).
fn terminate_config(echo: SocketAddr) -> (String, SocketAddr, u16) {
    let (listen, admin) = (support::free_port(), support::free_port());
    let config = support::config("terminate_http1_connect.yaml")
        .replace("port_value: 9902", &format!("port_value: {admin}"))
        .replace("port_value: 10001", &format!("port_value: {listen}"))
        .replace("port_value: 19001", &format!("port_value: {}", echo.port()));
    (config, SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

fn client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads a response head (through the blank line) byte by byte, leaving the body unread.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "EOF inside a response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn read_exact_len(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).unwrap();
    buf
}

fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    rest
}

#[test]
fn tunnel_echoes_a_mebibyte_byte_exact_with_early_data_and_half_close() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (config, listen, admin) = terminate_config(echo);
        let mut proxy = Burrow::start(driver, &config, admin);
        let mut stream = client(listen);
        // The head and the first tunnel bytes in one write: early data is forwarded.
        stream.write_all(b"CONNECT anything.test:443 HTTP/1.1\r\nhost: ignored\r\n\r\nearly").unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{driver}: {head}");
        let names: Vec<&str> =
            head.lines().skip(1).filter(|l| !l.is_empty()).map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(names, ["date", "server"], "{driver}: only date and server: {head}");
        assert_eq!(read_exact_len(&mut stream, 5), b"early", "{driver}");

        let data = payload(1 << 20);
        let mut writer = stream.try_clone().unwrap();
        let sent = data.clone();
        let send = thread::spawn(move || {
            for chunk in sent.chunks(7919) {
                writer.write_all(chunk).unwrap();
            }
            // Half-close: the echo server sees EOF, finishes echoing and closes its side.
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let echoed = read_to_end(&mut stream);
        send.join().unwrap();
        assert_eq!(echoed.len(), data.len(), "{driver}: echo length");
        assert!(echoed == data, "{driver}: echoed bytes differ");

        proxy.wait_stat("http.ingress_http.downstream_cx_upgrades_active", |v| v == 0);
        assert_eq!(proxy.stat("http.ingress_http.downstream_cx_upgrades_total"), 1, "{driver}");
        assert_eq!(proxy.stat("http.ingress_http.downstream_rq_2xx"), 1, "{driver}");
        assert_eq!(proxy.stat("cluster.service_google.upstream_cx_total"), 1, "{driver}");
        assert_eq!(proxy.stat("cluster.service_google.upstream_cx_active"), 0, "{driver}");
        assert_eq!(proxy.stat("http.ingress_http.downstream_cx_active"), 0, "{driver}");
        assert!(proxy.terminate().success(), "{driver}");
    }
}

#[test]
fn original_destination_route_reaches_the_authority_and_failures_get_503() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (config, listen, admin) = terminate_config(echo);
        let proxy = Burrow::start(driver, &config, admin);

        // `foo: bar` selects the original-destination route: the tunnel goes to the authority.
        let target = echo_server();
        let mut stream = client(listen);
        write!(stream, "CONNECT {target} HTTP/1.1\r\nfoo: bar\r\n\r\n").unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 200 OK\r\n"), "{driver}");
        stream.write_all(b"via original dst").unwrap();
        assert_eq!(read_exact_len(&mut stream, 16), b"via original dst", "{driver}");
        drop(stream);

        let mut stream = client(listen);
        write!(stream, "CONNECT 127.0.0.1:{} HTTP/1.1\r\nfoo: bar\r\n\r\n", closed_port()).unwrap();
        let reply = String::from_utf8(read_to_end(&mut stream)).unwrap();
        assert!(reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{driver}: {reply}");
        assert!(reply.contains("connection: close\r\n"), "{driver}: {reply}");
        assert!(
            reply.ends_with(
                "\r\n\r\nupstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
            ),
            "{driver}: {reply}"
        );
        assert_eq!(proxy.stat("cluster.local_original_dst.upstream_cx_connect_fail"), 1, "{driver}");
        assert_eq!(proxy.stat("cluster.local_original_dst.upstream_cx_total"), 2, "{driver}");
        assert_eq!(proxy.stat("http.ingress_http.downstream_rq_5xx"), 1, "{driver}");
        assert_eq!(proxy.stat("http.ingress_http.downstream_cx_upgrades_total"), 2, "{driver}");
    }
}

/// Names go through the driver's resolver (every address of both families) and the core's
/// `dns_lookup_family`: the LOGICAL_DNS cluster's endpoint and an original-destination
/// authority are both `localhost`, used under `V4_ONLY` (the echo servers listen on
/// 127.0.0.1, whatever IPv6 addresses `localhost` may also have here).
#[test]
fn names_resolve_in_the_driver_and_the_cluster_picks_the_family() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (config, listen, admin) = terminate_config(echo);
        let endpoint = format!("address: 127.0.0.1, port_value: {}", echo.port());
        assert!(config.contains(&endpoint));
        let config =
            config.replace(&endpoint, &format!("address: localhost, port_value: {}", echo.port())).replace(
                "  - name: local_original_dst\n",
                "  - name: local_original_dst\n    dns_lookup_family: V4_ONLY\n",
            );
        assert!(config.matches("dns_lookup_family: V4_ONLY").count() == 2, "{config}");
        let proxy = Burrow::start(driver, &config, admin);

        let mut stream = client(listen);
        stream.write_all(b"CONNECT anything:1 HTTP/1.1\r\n\r\n").unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 200 OK\r\n"), "{driver}");
        stream.write_all(b"via the DNS cluster").unwrap();
        assert_eq!(read_exact_len(&mut stream, 19), b"via the DNS cluster", "{driver}");
        drop(stream);

        let target = echo_server();
        let mut stream = client(listen);
        write!(stream, "CONNECT localhost:{} HTTP/1.1\r\nfoo: bar\r\n\r\n", target.port()).unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 200 OK\r\n"), "{driver}");
        stream.write_all(b"via a resolved authority").unwrap();
        assert_eq!(read_exact_len(&mut stream, 24), b"via a resolved authority", "{driver}");
        drop(stream);

        assert_eq!(proxy.stat("cluster.service_google.upstream_cx_total"), 1, "{driver}");
        assert_eq!(proxy.stat("cluster.local_original_dst.upstream_cx_total"), 1, "{driver}");
        assert_eq!(proxy.stat("cluster.local_original_dst.upstream_cx_connect_fail"), 0, "{driver}");
    }
}

#[test]
fn refusals_403_404_400_and_the_stats_they_move() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (config, listen, admin) = terminate_config(echo);
        let proxy = Burrow::start(driver, &config, admin);

        // A plain GET where only CONNECT routes exist: 404, and the connection stays usable.
        let mut stream = client(listen);
        stream.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"), "{driver}: {head}");
        stream.write_all(b"CONNECT a:1 HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc").unwrap();
        let reply = String::from_utf8(read_to_end(&mut stream)).unwrap();
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{driver}: {reply}");
        assert!(reply.contains("connection: close\r\n"), "{driver}: {reply}");

        let mut stream = client(listen);
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let reply = String::from_utf8(read_to_end(&mut stream)).unwrap();
        assert!(reply.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{driver}: {reply}");

        assert_eq!(proxy.stat("http.ingress_http.downstream_rq_4xx"), 3, "{driver}");
        assert_eq!(proxy.stat("http.ingress_http.downstream_cx_upgrades_total"), 0, "{driver}");
        assert_eq!(proxy.stat("http.ingress_http.downstream_cx_protocol_error"), 2, "{driver}");
    }

    // CONNECT with no upgrade config anywhere is refused.
    for driver in DRIVERS {
        let (config, listen, admin) = terminate_config(echo);
        let config = config.replace("          upgrade_configs:\n          - upgrade_type: CONNECT\n", "");
        let config = config.replace(
            "                  upgrade_configs:\n                  - upgrade_type: CONNECT\n                    connect_config: {}\n",
            "",
        );
        assert!(!config.contains("upgrade_type"), "{config}");
        let proxy = Burrow::start(driver, &config, admin);
        let mut stream = client(listen);
        stream.write_all(b"CONNECT a:1 HTTP/1.1\r\n\r\n").unwrap();
        let reply = String::from_utf8(read_to_end(&mut stream)).unwrap();
        assert!(reply.starts_with("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n"), "{driver}: {reply}");
        assert_eq!(proxy.stat("http.ingress_http.downstream_rq_ws_on_non_ws_route"), 1, "{driver}");
    }
}

#[test]
fn hyper_client_tunnels_through_connect() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let echo = echo_server();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for driver in DRIVERS {
        let (config, listen, admin) = terminate_config(echo);
        let _proxy = Burrow::start(driver, &config, admin);
        runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn.with_upgrades());
            let request = hyper::Request::connect("example.test:443").body(Empty::<Bytes>::new()).unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200, "{driver}");
            assert_eq!(response.headers()["server"], "envoy", "{driver}");
            let mut upgraded = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
            let message = payload(100_000);
            upgraded.write_all(&message).await.unwrap();
            let mut echoed = vec![0u8; message.len()];
            tokio::time::timeout(IO_TIMEOUT, upgraded.read_exact(&mut echoed)).await.unwrap().unwrap();
            assert!(echoed == message, "{driver}: echo differs");
        });
    }
}

#[test]
fn sigterm_drains_open_tunnels_then_exits_zero() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (config, listen, admin) = terminate_config(echo);
        let mut proxy = Burrow::start_with_drain(driver, &config, admin, 30);
        let mut stream = client(listen);
        stream.write_all(b"CONNECT a:1 HTTP/1.1\r\n\r\n").unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 200 OK"), "{driver}");
        proxy.signal(libc::SIGTERM);
        // Listeners stop accepting, the open tunnel keeps working.
        thread::sleep(Duration::from_millis(200));
        assert!(
            TcpStream::connect_timeout(&listen, Duration::from_secs(1)).is_err(),
            "{driver}: still accepting"
        );
        stream.write_all(b"still open").unwrap();
        assert_eq!(read_exact_len(&mut stream, 10), b"still open", "{driver}");
        assert!(proxy.wait_exit(Duration::from_millis(300)).is_none(), "{driver}: exited with a tunnel open");
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut stream), b"", "{driver}");
        let status = proxy.wait_exit(Duration::from_secs(10)).expect("exit after the last tunnel closed");
        assert!(status.success(), "{driver}: {status}");
    }
}

#[test]
fn admin_serves_envoy_stat_formats_and_readiness() {
    let echo = echo_server();
    for driver in DRIVERS {
        let (config, listen, admin) = terminate_config(echo);
        let proxy = Burrow::start(driver, &config, admin);
        let mut stream = client(listen);
        stream.write_all(b"CONNECT a:1 HTTP/1.1\r\n\r\n").unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 200 OK"), "{driver}");
        proxy.wait_stat("http.ingress_http.downstream_cx_upgrades_active", |v| v == 1);

        let (status, json) = proxy.admin_get("/stats?format=json");
        assert_eq!(status, 200, "{driver}");
        assert!(json.starts_with("{\"stats\":["), "{driver}: {json}");
        assert!(
            json.contains("{\"name\":\"http.ingress_http.downstream_cx_upgrades_total\",\"value\":1}"),
            "{driver}"
        );

        let (status, prometheus) = proxy.admin_get("/stats/prometheus");
        assert_eq!(status, 200, "{driver}");
        assert!(prometheus.contains("# TYPE envoy_http_downstream_cx_upgrades_active gauge\n"), "{driver}");
        assert!(
            prometheus
                .contains("envoy_http_downstream_cx_upgrades_active{envoy_http_conn_manager_prefix=\"ingress_http\"} 1\n"),
            "{driver}: {prometheus}"
        );
        assert!(
            prometheus.contains("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"service_google\"} 1\n"),
            "{driver}"
        );
        assert_eq!(proxy.admin_get("/ready"), (200, "LIVE\n".to_string()), "{driver}");
        assert_eq!(proxy.admin_get("/no_such_page").0, 404, "{driver}");
    }
}
