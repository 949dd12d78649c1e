//! A fast HTTP/1.1 origin for benchmarks (`benches/compare_envoy.sh`): every request on a
//! kept-alive connection gets the same small `200`. Pipelined requests are answered in order in
//! one write; `content-length` request bodies are skipped; `connection: close` (or anything it
//! cannot parse, such as a chunked body) ends the connection.
//!
//! ```sh
//! cargo run --release --example bench_origin -- [ADDR] [THREADS]   # default 127.0.0.1:28180 1
//! ```
//!
//! Hand-rolled on a tokio current-thread runtime (THREADS > 1: a multi-thread one) so the origin
//! costs little CPU next to the proxy under test: no header map, no date formatting.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nhello, world\n";
const RESPONSE_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\nconnection: close\r\n\r\nhello, world\n";

/// Heads larger than this are refused (the connection is closed).
const MAX_HEAD: usize = 64 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr =
        args.next().unwrap_or_else(|| "127.0.0.1:28180".into()).parse().expect("ADDR: ip:port");
    let threads: usize = args.next().map_or(1, |t| t.parse().expect("THREADS: a number"));
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_io().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_io().build()
    }
    .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("bench_origin listening on {addr}");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream));
        }
    });
}

/// What one complete request in the buffer amounts to.
enum Parsed {
    /// A whole request (head and body) of this many bytes; `true` if it asked to close.
    Request(usize, bool),
    Incomplete,
    Invalid,
}

async fn serve(mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(4 * 1024);
    loop {
        let mut used = 0;
        let mut close = false;
        loop {
            match parse(&buf[used..]) {
                Parsed::Request(n, c) => {
                    used += n;
                    if c {
                        out.extend_from_slice(RESPONSE_CLOSE);
                        close = true;
                        break;
                    }
                    out.extend_from_slice(RESPONSE);
                }
                Parsed::Incomplete => break,
                Parsed::Invalid => return,
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close || buf.len() > MAX_HEAD {
            return;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn parse(buf: &[u8]) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else { return Parsed::Incomplete };
    let head = &buf[..end + 4];
    let mut body = 0usize;
    let mut close = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) else {
                return Parsed::Invalid;
            };
            body = n;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Parsed::Invalid;
        } else if name.eq_ignore_ascii_case(b"connection") && value.eq_ignore_ascii_case(b"close") {
            close = true;
        }
    }
    let total = head.len() + body;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    Parsed::Request(total, close)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = v {
        v = rest;
    }
    v
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
