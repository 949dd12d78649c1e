//! What workers share lands whole: stats updates from many threads, and circuit breakers taken
//! by workers at once never pass their limit together.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use burrow_core::config::Config;
use burrow_core::stats::Stats;
use burrow_core::{Input, ListenerId, Proxy, Shared};
use bytes::Bytes;

#[test]
fn updates_from_many_threads_all_land() {
    let stats = Arc::new(Stats::default());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = stats.counter("c");
            std::thread::spawn(move || (0..1000).for_each(|_| c.inc()))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(stats.value("c"), Some(4000));
}

/// Four workers, each with its own proxy on the same shared state, start 50 requests each
/// that never complete: exactly `max_requests` of the 200 get a unit, the rest overflow.
#[test]
fn workers_together_never_take_more_than_max_requests() {
    let breaker = "    circuit_breakers: { thresholds: [{ max_requests: 3, max_pending_requests: 1000 }] }";
    let config = Arc::new(Config::from_yaml(&support::proxy_config("", breaker)).expect("config"));
    let shared = Arc::new(Shared::new(&config));
    let peer: SocketAddr = "127.0.0.9:40000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:10000".parse().unwrap();
    std::thread::scope(|s| {
        for seed in 0..4 {
            let (config, shared) = (config.clone(), shared.clone());
            s.spawn(move || {
                let now = burrow_sim::epoch();
                let mut proxy = Proxy::new(config, shared, now, SystemTime::UNIX_EPOCH, seed);
                while proxy.poll_output().is_some() {}
                for _ in 0..50 {
                    let conn = proxy.accept(now, ListenerId(0), peer, local);
                    let data = Bytes::from_static(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
                    proxy.handle(now, Input::Data { conn, data });
                    while proxy.poll_output().is_some() {}
                }
            });
        }
    });
    let stat = |name: &str| shared.stats.value(&format!("cluster.backend.{name}")).unwrap();
    assert_eq!(stat("upstream_rq_active_overflow"), 197);
    assert_eq!(stat("circuit_breakers.default.rq_open"), 1);
    assert_eq!(stat("circuit_breakers.default.remaining_rq"), 0);
}
