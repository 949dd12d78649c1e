//! Bytes per second through an established CONNECT tunnel inside the core (no sockets): the
//! cost the core adds per chunk on the data path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use burrow_core::config::Config;
use burrow_core::{ConnId, Input, ListenerId, Output, Proxy, Shared};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CONFIG: &str = include_str!("../configs/terminate_http1_connect.yaml");

/// A proxy with one open tunnel: (proxy, client id, upstream id).
fn open_tunnel() -> (Proxy, ConnId, ConnId) {
    let config = Arc::new(Config::from_yaml(CONFIG).expect("config"));
    let shared = Arc::new(Shared::new(&config));
    let now = Instant::now();
    let mut proxy = Proxy::new(config, shared, now, SystemTime::now(), 1);
    while proxy.poll_output().is_some() {}
    let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:10001".parse().unwrap();
    let client = proxy.accept(now, ListenerId(0), peer, local);
    let head = Bytes::from_static(b"CONNECT 127.0.0.1:19001 HTTP/1.1\r\nfoo: bar\r\n\r\n");
    proxy.handle(now, Input::Data { conn: client, data: head });
    let mut upstream = None;
    while let Some(output) = proxy.poll_output() {
        if let Output::Connect { conn, .. } = output {
            upstream = Some(conn);
        }
    }
    let upstream = upstream.expect("the CONNECT opened an upstream connection");
    proxy.handle(now, Input::Connected { conn: upstream });
    while proxy.poll_output().is_some() {}
    (proxy, client, upstream)
}

fn tunnel(c: &mut Criterion) {
    let mut group = c.benchmark_group("tunnel");
    for size in [16 * 1024, 64 * 1024] {
        let (mut proxy, client, upstream) = open_tunnel();
        let chunk = Bytes::from(vec![0x5a; size]);
        let now = Instant::now();
        group.throughput(Throughput::Bytes(2 * size as u64));
        group.bench_function(format!("both_directions_{}k_chunks", size / 1024), |b| {
            b.iter(|| {
                proxy.handle(now, Input::Data { conn: client, data: chunk.clone() });
                proxy.handle(now, Input::Data { conn: upstream, data: chunk.clone() });
                while let Some(output) = proxy.poll_output() {
                    if let Output::Write { conn, data } = output {
                        proxy.handle(now, Input::Flushed { conn, bytes: data.len() });
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tunnel);
criterion_main!(benches);
