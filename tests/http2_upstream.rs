//! The HTTP/2 upstream pool end to end (issue 8, BEHAVIOR P4-P8): both binaries in front of an
//! origin built on the `h2` crate's server that counts its connections and the streams open on
//! each at once, with a small SETTINGS_MAX_CONCURRENT_STREAMS, `max_requests_per_connection`,
//! and a GOAWAY after every few requests.

mod peers;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use peers::{runtime, IO_TIMEOUT};
use support::{Burrow, DRIVERS};

/// An HTTP/2 origin: answers every request `200` with `conn <n>` after `delay`; records the
/// most streams each connection had open at once.
struct H2Origin {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    /// Per connection: (streams open now, most open at once, requests).
    streams: Arc<Mutex<Vec<(usize, usize, usize)>>>,
}

impl H2Origin {
    fn start(max_streams: u32, goaway_every: Option<usize>, delay: Duration) -> H2Origin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (conns.clone(), streams.clone());
        runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let n = count.fetch_add(1, Ordering::SeqCst);
                log.lock().unwrap().push((0, 0, 0));
                let log = log.clone();
                tokio::spawn(async move {
                    let mut builder = h2::server::Builder::new();
                    builder.max_concurrent_streams(max_streams);
                    let Ok(mut conn) = builder.handshake::<_, Bytes>(tcp).await else { return };
                    let mut accepted = 0;
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        accepted += 1;
                        {
                            let mut log = log.lock().unwrap();
                            let entry = &mut log[n];
                            entry.0 += 1;
                            entry.1 = entry.1.max(entry.0);
                            entry.2 += 1;
                        }
                        let log = log.clone();
                        tokio::spawn(async move {
                            let mut body = request.into_body();
                            while let Some(Ok(chunk)) = body.data().await {
                                let _ = body.flow_control().release_capacity(chunk.len());
                            }
                            tokio::time::sleep(delay).await;
                            log.lock().unwrap()[n].0 -= 1;
                            let body = Bytes::from(format!("conn {n}"));
                            let response = http::Response::builder()
                                .status(200)
                                .header("content-length", body.len())
                                .body(())
                                .unwrap();
                            if let Ok(mut send) = respond.send_response(response, false) {
                                let _ = send.send_data(body, true);
                            }
                        });
                        if goaway_every.is_some_and(|every| accepted == every) {
                            conn.graceful_shutdown();
                        }
                    }
                });
            }
        });
        H2Origin { addr, conns, streams }
    }

    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// The most streams any connection had open at once.
    fn max_streams(&self) -> usize {
        self.streams.lock().unwrap().iter().map(|s| s.1).max().unwrap_or(0)
    }
}

/// `configs/http2_upstream.yaml` on fresh ports, pointed at `origin`, then `edit`ed.
fn config(origin: SocketAddr, edit: impl Fn(String) -> String) -> (String, SocketAddr, u16) {
    let (listen, admin) = peers::ports();
    let text = support::config("http2_upstream.yaml")
        .replace("port_value: 9905", &format!("port_value: {admin}"))
        .replace("port_value: 10004", &format!("port_value: {listen}"))
        .replace("port_value: 8082", &format!("port_value: {}", origin.port()));
    (edit(text), SocketAddr::from(([127, 0, 0, 1], listen)), admin)
}

/// A GET through the proxy over HTTP/1.1 (a fresh connection): status and body.
async fn get(proxy: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, tcp.read_to_end(&mut response))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[test]
fn ten_requests_to_an_origin_allowing_two_streams_all_succeed_on_five_connections_or_more() {
    for (driver, limit) in DRIVERS.iter().flat_map(|d| [(d, None), (d, Some(100))]) {
        let origin = H2Origin::start(2, None, Duration::from_millis(200));
        let (text, listen, admin) = config(origin.addr, |t| match limit {
            None => t,
            Some(n) => t.replace(
                "http2_protocol_options: {}",
                &format!("http2_protocol_options: {{max_concurrent_streams: {n}}}"),
            ),
        });
        let burrow = Burrow::start(driver, &text, admin);
        let answers = runtime().block_on(async {
            let tasks: Vec<_> =
                (0..10).map(|i| tokio::spawn(async move { get(listen, &format!("/r{i}")).await })).collect();
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await.unwrap());
            }
            answers
        });
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{driver} (limit {limit:?}): {body}");
            assert!(body.starts_with("conn "), "{driver}: {body}");
        }
        assert!(origin.conns() >= 5, "{driver} (limit {limit:?}): {} connections", origin.conns());
        assert!(
            origin.max_streams() <= 2,
            "{driver} (limit {limit:?}): {} streams at once",
            origin.max_streams()
        );
        assert_eq!(burrow.try_stat("cluster.service.upstream_rq_503").unwrap_or(0), 0, "{driver}");
        assert_eq!(
            burrow.stat("cluster.service.upstream_cx_http2_total") as usize,
            origin.conns(),
            "{driver}"
        );
    }
}

#[test]
fn max_requests_per_connection_three_spreads_nine_requests_over_three_connections() {
    for driver in DRIVERS {
        let origin = H2Origin::start(100, None, Duration::ZERO);
        let (text, listen, admin) = config(origin.addr, |t| {
            t.replace(
                "          http2_protocol_options: {}\n",
                "          http2_protocol_options: {}\n        common_http_protocol_options: { max_requests_per_connection: 3 }\n",
            )
        });
        let burrow = Burrow::start(driver, &text, admin);
        let conns: Vec<String> = runtime().block_on(async {
            let mut conns = Vec::new();
            for i in 0..9 {
                let (status, body) = get(listen, &format!("/s{i}")).await;
                assert_eq!(status, 200, "{driver}: {body}");
                conns.push(body);
            }
            conns
        });
        assert_eq!(
            conns,
            ["conn 0", "conn 0", "conn 0", "conn 1", "conn 1", "conn 1", "conn 2", "conn 2", "conn 2"],
            "{driver}"
        );
        assert_eq!(burrow.stat("cluster.service.upstream_cx_max_requests"), 3, "{driver}");
    }
}

#[test]
fn an_origin_sending_goaway_after_every_two_requests_loses_none() {
    for driver in DRIVERS {
        let origin = H2Origin::start(100, Some(2), Duration::from_millis(20));
        let (text, listen, admin) = config(origin.addr, |t| t);
        let _burrow = Burrow::start(driver, &text, admin);
        let answers = runtime().block_on(async {
            let mut answers = Vec::new();
            for round in 0..4 {
                let tasks: Vec<_> = (0..5)
                    .map(|i| tokio::spawn(async move { get(listen, &format!("/g{round}-{i}")).await }))
                    .collect();
                for task in tasks {
                    answers.push(task.await.unwrap());
                }
            }
            answers
        });
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{driver}: {body}");
        }
        // Each burst of five goes out on one connection before its GOAWAY, which covers the
        // streams already sent; the next burst needs a new connection.
        assert!(origin.conns() >= 4, "{driver}: {} connections for 4 bursts", origin.conns());
    }
}
