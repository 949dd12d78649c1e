//! Independent peers for the HTTP/1.1 proxying and upgrade tests: a hyper origin, raw
//! `std::net` origins for byte-exact control, a tokio-tungstenite WebSocket echo server, and a
//! raw HTTP/1.1 client connection. Every origin counts the connections it accepted. All on
//! loopback, every read bounded in time.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// Bound on any single read or write of a test peer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The runtime the async peers (hyper origin, WebSocket echo) run on, shared by the tests of
/// one test binary.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
    })
}

pub use crate::support::payload;

/// Printable text of `len` bytes (for WebSocket text messages).
pub fn text_payload(len: usize) -> String {
    payload(len).into_iter().map(|b| char::from(b'a' + b % 26)).collect()
}

/// Fresh ports for a config: `(listener, admin)`.
pub fn ports() -> (u16, u16) {
    (crate::support::free_port(), crate::support::free_port())
}

// ---------------------------------------------------------------------------------------------
// The hyper origin

/// One request as the hyper origin saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Index of the accepted connection it came on (0, 1, ...).
    pub conn: usize,
    pub method: String,
    /// The request target as received (path and query).
    pub uri: String,
    /// Header names lower-cased, in the order hyper gives them.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// A hyper HTTP/1.1 origin. Requests are answered by these rules:
/// - `x-delay-ms: N` waits N ms (after reading the whole body) before answering;
/// - `x-respond-status: N` answers with status N (default 200);
/// - `x-respond-close: 1` answers with `connection: close`;
/// - a path starting with `/echo` answers with the request body, others with `METHOD URI`;
/// - `connection: upgrade` + `upgrade: websocket` is answered with a `101` and a WebSocket echo
///   (tokio-tungstenite over hyper's upgraded connection); any other upgrade token with a `101`
///   naming it, then a raw echo of the tunnel bytes until EOF.
///
/// Every response carries `server: test-origin` and `x-origin-conn: <connection index>`.
pub struct Origin {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (accepted.clone(), seen.clone());
        runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let conn = count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, conn, log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Origin { addr, accepted, seen }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests seen so far, in the order they were complete.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until `n` requests were seen; returns them.
    pub fn wait_seen(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "the origin saw {} requests, not {n}: {seen:#?}", seen.len());
            thread::sleep(Duration::from_millis(5));
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    conn: usize,
    log: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let delay = header("x-delay-ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = header("x-respond-status").and_then(|v| v.parse::<u16>().ok()).unwrap_or(200);
    let close = header("x-respond-close").is_some();
    let upgrade = header("upgrade")
        .filter(|_| header("connection").is_some_and(|c| c.to_ascii_lowercase().contains("upgrade")));
    let websocket = upgrade.as_deref().is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let ws_key = header("sec-websocket-key");
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers: Vec<(String, Vec<u8>)> =
        req.headers().iter().map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec())).collect();

    if websocket {
        log.lock().unwrap().push(Seen { conn, method, uri, headers, body: Vec::new() });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
            ws_key.unwrap_or_default().as_bytes(),
        );
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            ws_echo_loop(ws).await;
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .header("server", "test-origin")
            .body(Full::new(Bytes::new()))
            .unwrap();
        return Ok(response);
    }

    if let Some(token) = upgrade {
        log.lock().unwrap().push(Seen { conn, method, uri, headers, body: Vec::new() });
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", token)
            .body(Full::new(Bytes::new()))
            .unwrap();
        return Ok(response);
    }

    let echo = req.uri().path().starts_with("/echo");
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let reply = if echo { Bytes::from(body.clone()) } else { Bytes::from(format!("{method} {uri}")) };
    log.lock().unwrap().push(Seen { conn, method, uri, headers, body });
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut response = Response::builder()
        .status(status)
        .header("server", "test-origin")
        .header("x-origin-conn", conn.to_string());
    if close {
        response = response.header("connection", "close");
    }
    Ok(response.body(Full::new(reply)).unwrap())
}

async fn ws_echo_loop<S>(mut ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    // Until the client's close frame has been answered (tungstenite queues the answer and
    // flushes it on the next read, which then ends the stream); then the socket is dropped.
    while let Some(Ok(message)) = ws.next().await {
        if matches!(message, Message::Text(_) | Message::Binary(_)) && ws.send(message).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A pure tokio-tungstenite WebSocket echo server

/// A WebSocket echo server (`tokio_tungstenite::accept_async`): echoes text and binary
/// messages until the client closes.
pub struct WsEcho {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Sessions whose handshake completed.
    sessions: Arc<AtomicUsize>,
}

impl WsEcho {
    pub fn start() -> WsEcho {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let sessions = Arc::new(AtomicUsize::new(0));
        let (count, done) = (accepted.clone(), sessions.clone());
        runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let done = done.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        done.fetch_add(1, Ordering::SeqCst);
                        ws_echo_loop(ws).await;
                    }
                });
            }
        });
        WsEcho { addr, accepted, sessions }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw origins

/// A raw `std::net` origin: runs `handler` on a thread for each accepted connection (with its
/// index), and counts them.
pub struct RawOrigin {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl RawOrigin {
    pub fn start(handler: impl Fn(RawConn, usize) + Send + Sync + 'static) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let handler = Arc::new(handler);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let index = count.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                thread::spawn(move || handler(RawConn::new(stream), index));
            }
        });
        RawOrigin { addr, accepted }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A TCP connection with a read buffer, for both raw origins and raw clients. Reads time out
/// after [`IO_TIMEOUT`].
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn new(stream: TcpStream) -> RawConn {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn { stream, buf: Vec::new() }
    }

    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::new(TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap())
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads more into the buffer; false on EOF (or a reset).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}; buffered so far: {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// A head through its blank line, or None on EOF before any byte of it.
    pub fn try_read_head(&mut self) -> Option<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Some(String::from_utf8(head).expect("a UTF-8 head"));
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "EOF inside a head: {:?}", String::from_utf8_lossy(&self.buf));
                return None;
            }
        }
    }

    pub fn read_head(&mut self) -> String {
        self.try_read_head().expect("EOF before a head")
    }

    pub fn read_exact(&mut self, len: usize) -> Vec<u8> {
        while self.buf.len() < len {
            assert!(self.fill(), "EOF after {} of {len} bytes", self.buf.len());
        }
        self.buf.drain(..len).collect()
    }

    /// Everything until EOF.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    /// Bytes read but not taken yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    fn read_line(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return String::from_utf8(line[..end].to_vec()).unwrap();
            }
            assert!(self.fill(), "EOF inside a line");
        }
    }

    /// A chunked body, decoded; also returns the number of chunks.
    pub fn read_chunked(&mut self) -> (Vec<u8>, usize) {
        let mut body = Vec::new();
        let mut chunks = 0;
        loop {
            let line = self.read_line();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                // No trailers expected: the blank line ends the body.
                assert_eq!(self.read_line(), "", "trailers after the last chunk");
                return (body, chunks);
            }
            chunks += 1;
            body.extend(self.read_exact(size));
            assert_eq!(self.read_exact(2), b"\r\n", "chunk not followed by CRLF");
        }
    }

    /// One response; `head_request` says it answers a HEAD (no body whatever the headers).
    pub fn read_response(&mut self, head_request: bool) -> Reply {
        let head = self.read_head();
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let reply = Reply { status, head, body: Vec::new(), chunked: false, chunks: 0 };
        let no_body = head_request || status / 100 == 1 || status == 204 || status == 304;
        if no_body {
            return reply;
        }
        if reply.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            let (body, chunks) = self.read_chunked();
            return Reply { body, chunked: true, chunks, ..reply };
        }
        if let Some(length) = reply.header("content-length") {
            let body = self.read_exact(length.parse().unwrap());
            return Reply { body, ..reply };
        }
        Reply { body: self.read_to_end(), ..reply }
    }

    /// Sends `request` and reads its response.
    pub fn exchange(&mut self, request: &[u8]) -> Reply {
        self.send(request);
        self.read_response(request.starts_with(b"HEAD "))
    }

    /// True once the peer has closed (EOF, or a reset) with nothing more to read.
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A response as a raw client read it.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// The head as received, through the blank line.
    pub head: String,
    /// Decoded if chunked.
    pub body: Vec<u8>,
    pub chunked: bool,
    pub chunks: usize,
}

impl Reply {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers().into_iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    pub fn count(&self, name: &str) -> usize {
        self.headers().iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count()
    }

    /// `(name, value)` pairs as received.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
                (n.to_string(), v.trim().to_string())
            })
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// The path of a request head (`METHOD PATH HTTP/1.1`).
pub fn request_path(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

/// A header value of a raw head (name case-insensitive).
pub fn head_header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Runs `f` on a thread and waits at most `timeout` for it; fails the test otherwise.
pub fn within<T: Send + 'static>(timeout: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| panic!("{what}: not done within {timeout:?}"))
}
