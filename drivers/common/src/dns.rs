//! Name resolution off the event loop.
//!
//! [`Resolver`] is a small pool of threads calling the system resolver (`getaddrinfo` through
//! std's `ToSocketAddrs`), for drivers without an async resolver of their own (mio). Answers go
//! back through a callback, which is expected to queue them and wake the worker.
//!
//! Answers carry every address of both families: the core applies the cluster's
//! `dns_lookup_family`.

use std::collections::VecDeque;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};

use burrow_core::QueryId;

/// The most threads one [`Resolver`] runs; each blocks in `getaddrinfo` for one query at a time.
const MAX_THREADS: usize = 4;

type Callback = dyn Fn(QueryId, Vec<IpAddr>) + Send + Sync;

/// A pool of resolver threads, started lazily (a worker that never resolves starts none).
/// Dropping it lets the threads exit once their current lookup returns; nobody waits for them.
pub struct Resolver {
    shared: Arc<Pool>,
}

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
    callback: Box<Callback>,
}

struct PoolState {
    jobs: VecDeque<(QueryId, String)>,
    threads: usize,
    idle: usize,
    closed: bool,
}

impl Resolver {
    /// `callback(query, addrs)` runs on a resolver thread for every answer (empty: no address).
    pub fn new(callback: impl Fn(QueryId, Vec<IpAddr>) + Send + Sync + 'static) -> Resolver {
        let state = PoolState { jobs: VecDeque::new(), threads: 0, idle: 0, closed: false };
        Resolver {
            shared: Arc::new(Pool {
                state: Mutex::new(state),
                work: Condvar::new(),
                callback: Box::new(callback),
            }),
        }
    }

    /// Queue a lookup of `host`; the answer comes through the callback.
    pub fn resolve(&self, query: QueryId, host: String) {
        let mut state = self.shared.state.lock().unwrap();
        state.jobs.push_back((query, host));
        if state.idle == 0 && state.threads < MAX_THREADS {
            state.threads += 1;
            let pool = self.shared.clone();
            let spawned = std::thread::Builder::new().name("burrow-dns".into()).spawn(move || pool.serve());
            if let Err(e) = spawned {
                state.threads -= 1;
                tracing::error!("cannot start a resolver thread: {e}");
                if state.threads == 0 {
                    // Nobody will ever take these jobs: answer them as failed lookups.
                    let jobs: Vec<_> = state.jobs.drain(..).collect();
                    drop(state);
                    for (query, _) in jobs {
                        (self.shared.callback)(query, Vec::new());
                    }
                }
            }
        } else {
            self.shared.work.notify_one();
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().closed = true;
        self.shared.work.notify_all();
    }
}

impl Pool {
    fn serve(&self) {
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some((query, host)) = state.jobs.pop_front() {
                drop(state);
                let addrs = lookup(&host);
                tracing::debug!(host, ?addrs, "resolved");
                (self.callback)(query, addrs);
                state = self.state.lock().unwrap();
            } else if state.closed {
                state.threads -= 1;
                return;
            } else {
                state.idle += 1;
                state = self.work.wait(state).unwrap();
                state.idle -= 1;
            }
        }
    }
}

/// Blocking lookup with the system resolver: every address, both families, in the resolver's
/// order; an empty list when the name does not resolve.
pub fn lookup(host: &str) -> Vec<IpAddr> {
    match (host, 0u16).to_socket_addrs() {
        Ok(addrs) => unique(addrs.map(|a| a.ip())),
        Err(e) => {
            tracing::debug!(host, "resolution failed: {e}");
            Vec::new()
        }
    }
}

/// A resolver's answer without repeats, in its order (`getaddrinfo` lists an address once
/// per socket type).
pub fn unique(addrs: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for addr in addrs {
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn answers_keep_both_families_in_order_without_repeats() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let c: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(unique([b, a, b, c, a]), [b, a, c]);
        assert_eq!(unique([]), Vec::<IpAddr>::new());
        // No family is dropped here, IPv6 included (the core decides).
        assert_eq!(lookup("::1"), ["::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(lookup("127.0.0.1"), ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn pool_answers_every_query() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let resolver = Resolver::new(move |q, addrs| tx.lock().unwrap().send((q, addrs)).unwrap());
        for i in 0..10 {
            resolver.resolve(QueryId(i), "127.0.0.1".into());
        }
        resolver.resolve(QueryId(99), "name.invalid".into());
        let mut got: Vec<_> = (0..11).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        got.sort();
        for (i, (q, addrs)) in got.iter().take(10).enumerate() {
            assert_eq!(*q, QueryId(i as u32));
            assert_eq!(addrs, &["127.0.0.1".parse::<IpAddr>().unwrap()]);
        }
        assert_eq!(got[10], (QueryId(99), Vec::new()));
    }
}
