//! CONNECT-tunnel benchmarks for `benches/compare_envoy.sh`. Each mode binds its own sink on
//! `--sink ADDR` and the `--sink-ports N - 1` ports after it (default 127.0.0.1:28190, 4 ports:
//! the endpoints of the proxy's CONNECT cluster) and, with `--proxy ADDR`, goes through the proxy
//! with `CONNECT <sink> HTTP/1.1`; without it, straight to the sink.
//!
//! ```sh
//! bench_tunnel throughput [--proxy ADDR] [--warmup S] [--secs S] [--pid PID]
//! bench_tunnel setups      --proxy ADDR  [--warmup S] [--secs S] [--conns N] [--sources N] [--pid PID]
//! bench_tunnel idle        --proxy ADDR   --pid PID   [--count K] [--settle S]
//! ```
//!
//! With `--h2 1`, `throughput` and `idle` tunnel over HTTP/2 instead: one prior-knowledge h2c
//! connection to the proxy, each tunnel a CONNECT stream on it (the `h2` crate's client).
//!
//! - `throughput`: one tunnel, one direction: a writer thread pushes 256 KiB writes, the sink
//!   thread reads and counts; bytes/s is what the sink received in the measured window (after
//!   the warm-up). Without `--proxy`: the raw loopback baseline to the same sink.
//! - `setups`: N concurrent loops of connect, CONNECT, read the `200`, close; set-ups/s in the
//!   window. The sink reads each upstream connection to EOF. The loops connect from 127.0.0.2,
//!   .3, ... (`--sources`), and the sink has several ports, so that connections in TIME_WAIT
//!   (tens of thousands a second) do not run the loopback out of ephemeral ports: the limit
//!   measured is the proxy's, not the kernel's port space.
//! - `idle`: open K tunnels (64 at a time), wait until the sink has accepted them all and
//!   `--settle` seconds more, and report the proxy's VmRSS growth per tunnel.
//!
//! With `--pid`, the proxy's CPU time (utime + stime of all its threads, from `/proc/PID/stat`)
//! over the measured window is reported too. Output: one line `RESULT key=value ...` on stdout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Opts {
    mode: String,
    proxy: Option<SocketAddr>,
    sink: SocketAddr,
    sink_ports: u16,
    sources: u8,
    warmup: f64,
    secs: f64,
    conns: usize,
    count: usize,
    settle: f64,
    pid: Option<u32>,
    h2: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_tunnel throughput|setups|idle [--proxy ADDR] [--sink ADDR] [--sink-ports N] \
         [--sources N] [--warmup S] [--secs S] [--conns N] [--count K] [--settle S] [--pid PID] [--h2 1]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let mut o = Opts {
        mode,
        proxy: None,
        sink: "127.0.0.1:28190".parse().unwrap(),
        sink_ports: 4,
        sources: 8,
        warmup: 1.0,
        secs: 5.0,
        conns: 32,
        count: 1000,
        settle: 1.0,
        pid: None,
        h2: false,
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--proxy" => o.proxy = Some(num(&flag, &value)),
            "--sink" => o.sink = num(&flag, &value),
            "--sink-ports" => o.sink_ports = num(&flag, &value),
            "--sources" => o.sources = num(&flag, &value),
            "--warmup" => o.warmup = num(&flag, &value),
            "--secs" => o.secs = num(&flag, &value),
            "--conns" => o.conns = num(&flag, &value),
            "--count" => o.count = num(&flag, &value),
            "--settle" => o.settle = num(&flag, &value),
            "--pid" => o.pid = Some(num(&flag, &value)),
            "--h2" => o.h2 = num::<u8>(&flag, &value) != 0,
            _ => usage(),
        }
    }
    o
}

fn num<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value.parse().unwrap_or_else(|_| {
        eprintln!("bad value for {flag}: {value}");
        usage()
    })
}

fn main() {
    let o = parse_opts();
    match o.mode.as_str() {
        "throughput" => throughput(&o),
        "setups" => setups(&o),
        "idle" => idle(&o),
        _ => usage(),
    }
    // Don't wait for sinks and writers to wind down: the proxy may not pass on half-closes.
    std::process::exit(0);
}

/// The proxy's CPU time so far, in microseconds: (utime, stime), all threads.
fn cpu_us(pid: u32) -> Option<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let hz = (unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64).max(1);
    let us = |ticks: &str| ticks.parse::<u64>().ok().map(|t| t * 1_000_000 / hz);
    Some(Cpu { user: us(f.get(11)?)?, sys: us(f.get(12)?)? })
}

#[derive(Clone, Copy)]
struct Cpu {
    user: u64,
    sys: u64,
}

/// ` proxy_cpu_s=.. proxy_user_s=.. proxy_sys_s=.. <per_name>=<total / per / 1e3^scale>`: the
/// proxy's CPU over a window, and per unit of work.
fn cpu_fields(c0: Option<Cpu>, c1: Option<Cpu>, per_name: &str, per: f64, unit_us: f64) -> String {
    let (Some(c0), Some(c1)) = (c0, c1) else { return String::new() };
    let (user, sys) = ((c1.user - c0.user) as f64, (c1.sys - c0.sys) as f64);
    format!(
        " proxy_cpu_s={:.2} proxy_user_s={:.2} proxy_sys_s={:.2} {per_name}={:.1}",
        (user + sys) / 1e6,
        user / 1e6,
        sys / 1e6,
        (user + sys) / unit_us / per.max(1e-9)
    )
}

/// The proxy's resident set, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The sink's listening addresses: `--sink` and the `--sink-ports - 1` ports after it.
fn sink_addrs(o: &Opts) -> Vec<SocketAddr> {
    (0..o.sink_ports.max(1)).map(|i| SocketAddr::new(o.sink.ip(), o.sink.port() + i)).collect()
}

fn connect_request(target: SocketAddr) -> Vec<u8> {
    format!("CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n").into_bytes()
}

/// Whether `head` (a complete response head) is a 2xx.
fn is_2xx(head: &[u8]) -> bool {
    head.len() >= 12 && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Opens the stream the benchmark writes to: straight to the sink, or a tunnel through the proxy.
fn open_blocking(o: &Opts) -> TcpStream {
    let Some(proxy) = o.proxy else {
        return TcpStream::connect(o.sink).expect("connect to sink");
    };
    let mut s = TcpStream::connect(proxy).expect("connect to proxy");
    s.set_nodelay(true).unwrap();
    s.write_all(&connect_request(o.sink)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).expect("read CONNECT response");
        assert!(n > 0, "proxy closed before answering the CONNECT");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf) {
            assert!(is_2xx(&buf[..end]), "CONNECT refused: {}", String::from_utf8_lossy(&buf));
            assert_eq!(end, buf.len(), "unexpected bytes after the CONNECT response");
            return s;
        }
    }
}

fn throughput(o: &Opts) {
    const CHUNK: usize = 256 * 1024;
    let received = Arc::new(AtomicU64::new(0));
    // The proxy may pick any of the sink's ports; the one tunnel lands on one of them.
    for addr in sink_addrs(o) {
        let listener = TcpListener::bind(addr).expect("bind sink");
        let rx = received.clone();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; CHUNK];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        rx.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = stop.clone();
    if o.h2 {
        let (proxy, target) = (o.proxy.unwrap_or_else(|| usage()), o.sink);
        std::thread::spawn(move || {
            runtime(1).block_on(async move {
                let client = h2_client(proxy).await;
                let (mut send, _recv) = h2_tunnel(client, target).await.expect("an HTTP/2 CONNECT tunnel");
                let buf = bytes::Bytes::from(vec![0x5au8; CHUNK]);
                while !stop_w.load(Ordering::Relaxed) {
                    send.reserve_capacity(CHUNK);
                    let Some(Ok(room)) = std::future::poll_fn(|cx| send.poll_capacity(cx)).await else {
                        return;
                    };
                    if send.send_data(buf.slice(..room.min(CHUNK)), false).is_err() {
                        return;
                    }
                }
            });
        });
    } else {
        let mut stream = open_blocking(o);
        std::thread::spawn(move || {
            let buf = vec![0x5au8; CHUNK];
            while !stop_w.load(Ordering::Relaxed) {
                if stream.write_all(&buf).is_err() {
                    return;
                }
            }
        });
    }
    std::thread::sleep(Duration::from_secs_f64(o.warmup));
    let (b0, t0, c0) = (received.load(Ordering::Relaxed), Instant::now(), o.pid.and_then(cpu_us));
    std::thread::sleep(Duration::from_secs_f64(o.secs));
    let (b1, t1, c1) = (received.load(Ordering::Relaxed), Instant::now(), o.pid.and_then(cpu_us));
    stop.store(true, Ordering::Relaxed);
    let bytes = b1 - b0;
    let secs = (t1 - t0).as_secs_f64();
    let mut line = format!(
        "RESULT mode=throughput bytes={bytes} secs={secs:.3} bytes_per_s={:.0} gb_per_s={:.3}",
        bytes as f64 / secs,
        bytes as f64 / secs / 1e9
    );
    line += &cpu_fields(c0, c1, "proxy_cpu_ms_per_gib", bytes as f64 / (1u64 << 30) as f64, 1e3);
    println!("{line}");
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime")
}

/// A sink that accepts everything and reads each connection to EOF; counts accepts.
async fn sink(listener: tokio::net::TcpListener, accepted: Arc<AtomicU64>) {
    use tokio::io::AsyncReadExt;
    loop {
        let Ok((mut s, _)) = listener.accept().await else { continue };
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
}

async fn bind_sinks(o: &Opts, accepted: Arc<AtomicU64>) {
    for addr in sink_addrs(o) {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind sink");
        tokio::spawn(sink(listener, accepted.clone()));
    }
}

/// The source address for client loop `i`: 127.0.0.2, .3, ... (`--sources` of them), so that
/// tens of thousands of connections a second in TIME_WAIT do not exhaust the loopback's
/// ephemeral ports (one 4-tuple space per source address). `None` with `--sources 0`.
fn source(o: &Opts, i: usize) -> Option<std::net::IpAddr> {
    (o.sources > 0).then(|| std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % o.sources as usize) as u8).into())
}

/// A connection to `to`, from `from` (the port chosen at connect time, per 4-tuple).
async fn connect_from(
    to: SocketAddr,
    from: Option<std::net::IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(from) = from else { return tokio::net::TcpStream::connect(to).await };
    use std::os::fd::AsRawFd;
    let socket = tokio::net::TcpSocket::new_v4()?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Connect to the proxy (from `from`), CONNECT to `target`, read the `200`: the open tunnel.
async fn open_tunnel(
    proxy: SocketAddr,
    from: Option<std::net::IpAddr>,
    request: &[u8],
) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(proxy, from).await?;
    s.set_nodelay(true)?;
    s.write_all(request).await?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        let n = s.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the CONNECT response"));
        }
        len += n;
        if let Some(end) = head_end(&buf[..len]) {
            if !is_2xx(&buf[..end]) {
                // Give the body (the proxy's reason) a moment to arrive.
                let more = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf[len..]));
                if let Ok(Ok(n)) = more.await {
                    len += n;
                }
                let text = String::from_utf8_lossy(&buf[..len]);
                return Err(std::io::Error::other(format!("CONNECT refused: {}", text.escape_debug())));
            }
            return Ok(s);
        }
        if len == buf.len() {
            return Err(std::io::Error::other("CONNECT response head too large"));
        }
    }
}

/// A prior-knowledge h2c connection to the proxy.
async fn h2_client(proxy: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(proxy).await.expect("connect to the proxy");
    tcp.set_nodelay(true).expect("nodelay");
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake(tcp)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    client
}

/// A CONNECT stream to `target` on `client`, once answered 2xx.
async fn h2_tunnel(
    client: h2::client::SendRequest<bytes::Bytes>,
    target: SocketAddr,
) -> Result<(h2::SendStream<bytes::Bytes>, h2::RecvStream), String> {
    let request = http::Request::builder().method("CONNECT").uri(target.to_string()).body(()).unwrap();
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let (response, send) = client.send_request(request, false).map_err(|e| e.to_string())?;
    let response = response.await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("CONNECT refused: {}", response.status()));
    }
    Ok((send, response.into_body()))
}

fn setups(o: &Opts) {
    let proxy = o.proxy.unwrap_or_else(|| usage());
    let rt = runtime(2);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let last_error: Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let request: Arc<[u8]> = connect_request(o.sink).into();
    rt.block_on(async {
        bind_sinks(o, Arc::new(AtomicU64::new(0))).await;
        for i in 0..o.conns {
            let (ok, failed, stop, request, last_error) =
                (ok.clone(), failed.clone(), stop.clone(), request.clone(), last_error.clone());
            let from = source(o, i);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = tokio::time::timeout(Duration::from_secs(5), open_tunnel(proxy, from, &request))
                        .await;
                    match r {
                        Ok(Ok(tunnel)) => {
                            drop(tunnel);
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(e)) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            *last_error.lock().unwrap() = Some(e.to_string());
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            *last_error.lock().unwrap() = Some("timed out".into());
                        }
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_secs_f64(o.warmup)).await;
        let (n0, f0, t0, c0) = (
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            Instant::now(),
            o.pid.and_then(cpu_us),
        );
        tokio::time::sleep(Duration::from_secs_f64(o.secs)).await;
        let (n1, f1, t1, c1) = (
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            Instant::now(),
            o.pid.and_then(cpu_us),
        );
        stop.store(true, Ordering::Relaxed);
        let n = n1 - n0;
        let secs = (t1 - t0).as_secs_f64();
        let mut line = format!(
            "RESULT mode=setups setups={n} failed={} secs={secs:.3} setups_per_s={:.0}",
            f1 - f0,
            n as f64 / secs
        );
        line += &cpu_fields(c0, c1, "proxy_cpu_us_per_setup", n as f64, 1.0);
        println!("{line}");
        if let Some(e) = last_error.lock().unwrap().take() {
            if f1 > f0 {
                eprintln!("bench_tunnel setups: last error: {e}");
            }
        }
    });
}

fn idle(o: &Opts) {
    let proxy = o.proxy.unwrap_or_else(|| usage());
    let pid = o.pid.unwrap_or_else(|| usage());
    let rt = runtime(2);
    let request: Arc<[u8]> = connect_request(o.sink).into();
    rt.block_on(async {
        let accepted = Arc::new(AtomicU64::new(0));
        bind_sinks(o, accepted.clone()).await;
        let rss0 = rss_kib(pid).expect("proxy's VmRSS");
        if o.h2 {
            // One connection, `count` CONNECT streams on it.
            let client = h2_client(proxy).await;
            let mut streams = Vec::with_capacity(o.count);
            for _ in 0..o.count {
                streams.push(h2_tunnel(client.clone(), o.sink).await.expect("an idle HTTP/2 tunnel"));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while accepted.load(Ordering::Relaxed) < o.count as u64 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;
            let rss1 = rss_kib(pid).expect("proxy's VmRSS");
            println!(
                "RESULT mode=idle h2=1 tunnels={} sink_accepted={} rss_before_kib={rss0} rss_after_kib={rss1} \
                 bytes_per_tunnel={:.0}",
                streams.len(),
                accepted.load(Ordering::Relaxed),
                (rss1 as f64 - rss0 as f64) * 1024.0 / streams.len() as f64
            );
            return;
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::with_capacity(o.count);
        for i in 0..o.count {
            let (permits, request) = (permits.clone(), request.clone());
            let from = source(o, i);
            tasks.push(tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                tokio::time::timeout(Duration::from_secs(10), open_tunnel(proxy, from, &request)).await
            }));
        }
        let mut tunnels = Vec::with_capacity(o.count);
        for t in tasks {
            match t.await.unwrap() {
                Ok(Ok(s)) => tunnels.push(s),
                Ok(Err(e)) => panic!("opening an idle tunnel: {e}"),
                Err(_) => panic!("opening an idle tunnel: timed out"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepted.load(Ordering::Relaxed) < o.count as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;
        let rss1 = rss_kib(pid).expect("proxy's VmRSS");
        println!(
            "RESULT mode=idle tunnels={} sink_accepted={} rss_before_kib={rss0} rss_after_kib={rss1} \
             bytes_per_tunnel={:.0}",
            tunnels.len(),
            accepted.load(Ordering::Relaxed),
            (rss1 as f64 - rss0 as f64) * 1024.0 / tunnels.len() as f64
        );
        drop(tunnels);
    });
}
