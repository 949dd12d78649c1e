//! The connection manager's access logs end to end (issue 9): both binaries, a file logger in
//! Envoy's default format and in JSON, for requests over HTTP/1.1 (a raw client) and HTTP/2
//! (the `h2` crate), answered by the origin or by the proxy itself.

mod peers;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use peers::{runtime, Origin, RawConn};
use support::{Burrow, DRIVERS};

/// `configs/http1_proxy.yaml` on fresh ports, pointed at `origin`, its connection manager
/// logging to a fresh file with `log_format` (absent: Envoy's default line), with `codec_type`.
fn config(origin: SocketAddr, codec: &str, log_format: Option<&str>) -> (String, SocketAddr, u16, PathBuf) {
    let (listen, admin) = peers::ports();
    let path = support::temp_file("", "log");
    let format = log_format.map_or_else(String::new, |f| format!("\n              log_format: {f}"));
    let logger = format!(
        "stat_prefix: ingress_http\n          access_log:\n          - name: envoy.access_loggers.file\n            \
         typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              \
         path: {}{format}\n",
        path.display()
    );
    let text = support::config("http1_proxy.yaml")
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("port_value: 10000", &format!("port_value: {listen}"))
        .replace("port_value: 8080", &format!("port_value: {}", origin.port()))
        .replace("codec_type: HTTP1", &format!("codec_type: {codec}"))
        .replace("stat_prefix: ingress_http\n", &logger);
    assert!(text.contains("access_log:"));
    (text, SocketAddr::from(([127, 0, 0, 1], listen)), admin, path)
}

/// Envoy's default line, split at its fields: the bracketed start time, the quoted request
/// line, then status, flags, bytes in, bytes out, duration, upstream service time and the four
/// quoted headers and the upstream host.
fn default_fields(line: &str) -> Vec<String> {
    let (time, rest) = line.strip_prefix('[').and_then(|l| l.split_once("] ")).expect("[START_TIME]");
    assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "start time {time:?}");
    let mut fields = Vec::new();
    let mut rest = rest;
    while !rest.is_empty() {
        let (field, tail) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote");
            (&quoted[..end], quoted[end + 1..].trim_start())
        } else {
            rest.split_once(' ').unwrap_or((rest, ""))
        };
        fields.push(field.to_string());
        rest = tail;
    }
    fields
}

#[test]
fn http1_requests_are_logged_in_envoys_default_format() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let (text, addr, admin, path) = config(origin.addr, "HTTP1", None);
        let _proxy = Burrow::start(driver, &text, admin);
        let mut client = RawConn::connect(addr);
        let ok = client.exchange(b"GET /some/path?q=1 HTTP/1.1\r\nhost: example.test\r\nuser-agent: probe/1\r\nx-request-id: rid-7\r\n\r\n");
        assert_eq!(ok.status, 200);
        let direct = client.exchange(b"GET /other HTTP/1.1\r\nhost: direct.example\r\n\r\n");
        assert_eq!(direct.status, 404);
        let lines = support::log_lines(&path, 2);
        let first = default_fields(&lines[0]);
        assert_eq!(first[0], "GET /some/path?q=1 HTTP/1.1", "{driver}: {lines:?}");
        assert_eq!(first[1..4], ["200", "-", "0"], "{driver}: {lines:?}");
        assert_eq!(first[4], ok.body.len().to_string(), "{driver}: bytes sent");
        assert!(first[5].parse::<u64>().is_ok() && first[6].parse::<u64>().is_ok(), "{driver}: {lines:?}");
        assert_eq!(
            first[7..],
            ["-", "probe/1", "rid-7", "example.test", &origin.addr.to_string()],
            "{driver}"
        );
        let second = default_fields(&lines[1]);
        assert_eq!(second[..5], ["GET /other HTTP/1.1", "404", "NR", "0", "0"], "{driver}: {lines:?}");
        assert_eq!(second[10..], ["direct.example", "-"], "{driver}: {lines:?}");
    }
}

#[test]
fn http2_streams_are_logged_in_json() {
    let origin = Origin::start();
    let format = r#"{json_format: {method: "%REQ(:METHOD)%", path: "%REQ(:PATH)%", proto: "%PROTOCOL%", code: "%RESPONSE_CODE%", rx: "%BYTES_RECEIVED%", cluster: "%UPSTREAM_CLUSTER%"}}"#;
    for driver in DRIVERS {
        let (text, addr, admin, path) = config(origin.addr, "AUTO", Some(format));
        let _proxy = Burrow::start(driver, &text, admin);
        runtime().block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (client, connection) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(connection);
            let mut client = client.ready().await.unwrap();
            let request = http::Request::post("http://example.test/upload").body(()).unwrap();
            let (response, mut body) = client.send_request(request, false).unwrap();
            body.send_data(Bytes::from_static(b"twelve bytes"), true).unwrap();
            let response = response.await.unwrap();
            assert_eq!(response.status(), 200);
            let mut data = response.into_body();
            while let Some(chunk) = data.data().await {
                chunk.unwrap();
            }
        });
        let line = &support::log_lines(&path, 1)[0];
        assert_eq!(
            line,
            r#"{"cluster":"service","code":200,"method":"POST","path":"/upload","proto":"HTTP/2","rx":12}"#,
            "{driver}"
        );
    }
}
