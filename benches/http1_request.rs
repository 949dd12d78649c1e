//! One proxied HTTP/1.1 request through the core (no sockets): request head in, upstream head
//! out, response head and body in, response out, on a kept-alive client and pooled upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use burrow_core::config::Config;
use burrow_core::{ConnId, Input, ListenerId, Output, Proxy, Shared};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CONFIG: &str = include_str!("../configs/reverse_proxy.yaml");
const REQUEST: &[u8] =
    b"GET /index.html HTTP/1.1\r\nhost: example.com\r\nuser-agent: bench\r\naccept: */*\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\ndate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\nhello, world\n";

/// Drains outputs, acknowledging writes; returns the upstream connection if one was opened.
fn pump(proxy: &mut Proxy, now: Instant) -> Option<ConnId> {
    let mut opened = None;
    while let Some(output) = proxy.poll_output() {
        match output {
            Output::Write { conn, data } => proxy.handle(now, Input::Flushed { conn, bytes: data.len() }),
            Output::Connect { conn, .. } => opened = Some(conn),
            _ => {}
        }
    }
    opened
}

fn request(c: &mut Criterion) {
    let config = Arc::new(Config::from_yaml(CONFIG).expect("config"));
    let shared = Arc::new(Shared::new(&config));
    let now = Instant::now();
    let mut proxy = Proxy::new(config, shared, now, SystemTime::now(), 1);
    pump(&mut proxy, now);
    let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:10000".parse().unwrap();
    let client = proxy.accept(now, ListenerId(0), peer, local);
    // Warm up: the first request opens the pooled connection.
    proxy.handle(now, Input::Data { conn: client, data: Bytes::from_static(REQUEST) });
    let upstream = pump(&mut proxy, now).expect("an upstream connection");
    proxy.handle(now, Input::Connected { conn: upstream });
    pump(&mut proxy, now);
    proxy.handle(now, Input::Data { conn: upstream, data: Bytes::from_static(RESPONSE) });
    pump(&mut proxy, now);

    let mut group = c.benchmark_group("http1");
    group.throughput(Throughput::Elements(1));
    group.bench_function("proxied_request_keep_alive", |b| {
        b.iter(|| {
            proxy.handle(now, Input::Data { conn: client, data: Bytes::from_static(REQUEST) });
            pump(&mut proxy, now);
            proxy.handle(now, Input::Data { conn: upstream, data: Bytes::from_static(RESPONSE) });
            pump(&mut proxy, now);
        })
    });
    group.finish();
}

criterion_group!(benches, request);
criterion_main!(benches);
