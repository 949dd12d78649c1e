//! Scenarios: a suite, a seed and two size knobs make one whole run (config, servers, DNS,
//! clients and the network's fault profile). Shrinking `clients` and `scale` keeps each
//! remaining client's own choices, because every client draws from its own forked generator.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::ledger::Ledger;
use crate::peers::{
    BodyPlan, ConnectClient, ConnectPlan, EchoMode, EchoTarget, Ending, H2ConnectClient, H2ConnectPlan,
    H2TunnelPlan, HttpClient, HttpOrigin, HttpPlan, OriginProfile, ReqPlan,
};
use crate::report::{Notes, Tally};
use crate::rng::Rng;
use crate::world::{DnsRule, NetProfile, Server, World};

mod tcp_proxy;

/// A feature under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// CONNECT over HTTP/1.1, terminated into raw TCP.
    Connect,
    /// HTTP/1.1 requests through the upstream pool.
    Http1,
    /// HTTP/1.1 upgrades (101 then a tunnel, or a refusal).
    Upgrade,
    /// CONNECT over HTTP/2, several tunnels on each client connection, terminated into TCP.
    H2Connect,
    /// The TCP proxy: raw TCP clients forwarded to echo targets, or tunnelled through
    /// HTTP/1.1 CONNECT to terminators (`tunneling_config`).
    TcpProxy,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::Connect => "connect",
            Suite::Http1 => "http1",
            Suite::Upgrade => "upgrade",
            Suite::H2Connect => "h2_connect",
            Suite::TcpProxy => "tcp_proxy",
        }
    }

    pub fn parse(s: &str) -> Option<Suite> {
        [Suite::Connect, Suite::Http1, Suite::Upgrade, Suite::H2Connect, Suite::TcpProxy]
            .into_iter()
            .find(|x| x.name() == s)
    }
}

/// One run: replayable from its [`Scenario::key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub suite: Suite,
    pub seed: u64,
    /// How many clients (1..=8).
    pub clients: u32,
    /// How big payloads and request counts get (1..=100).
    pub scale: u32,
}

impl Scenario {
    /// The scenario a bare seed names (the size knobs drawn from the seed).
    pub fn from_seed(suite: Suite, seed: u64) -> Scenario {
        let mut r = Rng::new(seed ^ 0x5eed);
        Scenario { suite, seed, clients: r.range(1, 8) as u32, scale: r.range(1, 100) as u32 }
    }

    /// `seed:clients:scale`, what `BURROW_SIM_SEED` takes.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.seed, self.clients, self.scale)
    }

    /// Parses a `BURROW_SIM_SEED` value: `seed` or `seed:clients:scale`.
    pub fn parse(suite: Suite, s: &str) -> Option<Scenario> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let num = |p: &str| -> Option<u64> {
            let p = p.trim();
            match p.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => p.parse().ok(),
            }
        };
        match parts.as_slice() {
            [seed] => Some(Scenario::from_seed(suite, num(seed)?)),
            [seed, clients, scale] => Some(Scenario {
                suite,
                seed: num(seed)?,
                clients: num(clients)?.clamp(1, 64) as u32,
                scale: num(scale)?.clamp(1, 1000) as u32,
            }),
            _ => None,
        }
    }
}

/// What a run produced.
pub struct Outcome {
    pub notes: Notes,
    pub tally: Tally,
    pub trace_hash: u64,
    pub trace: Vec<String>,
    pub summary: String,
}

/// Runs one scenario to the end and checks it.
pub fn run(scenario: &Scenario, keep_trace: bool) -> Outcome {
    run_at(scenario, keep_trace, Instant::now())
}

/// [`run`] with virtual time zero at `base` (the determinism check varies it).
pub fn run_at(scenario: &Scenario, keep_trace: bool, base: Instant) -> Outcome {
    let mut world = build(scenario, keep_trace, base);
    world.run();
    world.finish();
    let summary = format!("{}\n{}", world.describe(), world.tally);
    Outcome {
        notes: std::mem::take(&mut world.notes),
        tally: world.tally.clone(),
        trace_hash: world.trace.hash(),
        trace: world.trace.lines().to_vec(),
        summary,
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn addr(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(a, b, c, d), port)
}

/// The IPv6 twin of `10.b.c.d`: `fd00::b:c:d`.
fn ip6(b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, b.into(), c.into(), d.into()))
}

/// Envoy's `dns_lookup_family` values; empty: the field left out (`AUTO`).
const FAMILIES: [&str; 6] = ["", "AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"];

fn family_line(family: &str) -> String {
    if family.is_empty() {
        String::new()
    } else {
        format!("    dns_lookup_family: {family}\n")
    }
}

/// Durations as Envoy writes them.
fn secs(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

/// A timeout knob: `None` keeps Envoy's default, `Some(ZERO)` disables.
fn timeout(r: &mut Rng, calm: bool, short: (u64, u64)) -> Option<Duration> {
    match r.below(if calm { 2 } else { 4 }) {
        0 => None,
        1 => Some(Duration::from_secs(r.range(60, 600))),
        2 => Some(Duration::ZERO),
        _ => Some(Duration::from_millis(r.range(short.0, short.1))),
    }
}

/// The timeout a knob stands for: Envoy's default when unset, none when zero.
fn effective(knob: Option<Duration>, default_secs: u64) -> Option<Duration> {
    match knob {
        None => Some(Duration::from_secs(default_secs)),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    }
}

fn buffer_limit(r: &mut Rng) -> u32 {
    *r.pick(&[1024, 4096, 16 * 1024, 64 * 1024, 1 << 20])
}

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const BUFFER: &str = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";
const HPO: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The listener at 127.0.0.1:10000 with the given connection-manager body.
fn listener(limit: u32, hcm_extra: &str, routes: &str, filters: &str) -> String {
    format!(
        "static_resources:\n  listeners:\n{}  clusters:\n",
        hcm_listener("front", 10000, limit, hcm_extra, routes, filters)
    )
}

/// An HTTP connection manager listener on 127.0.0.1 (its name is its stat prefix).
fn hcm_listener(name: &str, port: u16, limit: u32, hcm_extra: &str, routes: &str, filters: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    per_connection_buffer_limit_bytes: {limit}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": {HCM}
          stat_prefix: {name}
{hcm_extra}          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config: {{ "@type": {ROUTER} }}
"#
    )
}

struct ClusterYaml<'a> {
    name: &'a str,
    kind: &'a str,
    connect_timeout: Duration,
    limit: u32,
    breakers: Option<(u32, u32, u32)>,
    endpoints: Vec<(String, u16)>,
    extra: String,
}

fn cluster(c: &ClusterYaml<'_>) -> String {
    let mut y = format!(
        "  - name: {}\n    type: {}\n    connect_timeout: {}\n    per_connection_buffer_limit_bytes: {}\n",
        c.name,
        c.kind,
        secs(c.connect_timeout),
        c.limit
    );
    if let Some((cx, pending, rq)) = c.breakers {
        let _ = writeln!(
            y,
            "    circuit_breakers: {{ thresholds: [{{ max_connections: {cx}, max_pending_requests: {pending}, max_requests: {rq} }}] }}"
        );
    }
    y.push_str(&c.extra);
    if c.kind == "ORIGINAL_DST" {
        y.push_str("    lb_policy: CLUSTER_PROVIDED\n    original_dst_lb_config: { use_http_header: true, http_header_name: \":authority\" }\n");
    } else {
        let _ = writeln!(
            y,
            "    load_assignment:\n      cluster_name: {}\n      endpoints:\n      - lb_endpoints:",
            c.name
        );
        for (host, port) in &c.endpoints {
            let _ = writeln!(
                y,
                "        - endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }}"
            );
        }
    }
    y
}

/// A cluster's `typed_extension_protocol_options` for HTTP/1.1 upstreams, with these
/// `common_http_protocol_options`.
fn http1_options(common: &[String]) -> String {
    format!(
        "    typed_extension_protocol_options:\n      {HPO}:\n        \"@type\": type.googleapis.com/{HPO}\n        explicit_http_config: {{ http_protocol_options: {{}} }}\n        common_http_protocol_options: {{ {} }}\n",
        common.join(", ")
    )
}

fn connect_route(cluster: &str) -> String {
    format!(
        "                route: {{ cluster: {cluster}, upgrade_configs: [{{ upgrade_type: CONNECT, connect_config: {{}} }}] }}\n"
    )
}

/// Builds the world for a scenario.
pub fn build(s: &Scenario, keep_trace: bool, base: Instant) -> World {
    let root = Rng::new(s.seed);
    let mut r = root.fork(0xc0f1);
    let calm = r.chance(150);
    let mut net = if calm { NetProfile::calm() } else { faulty_net(&mut r) };
    let mut world = match s.suite {
        Suite::Connect | Suite::H2Connect => {
            build_connect(s, &root, &mut r, calm, &mut net, keep_trace, base)
        }
        Suite::Http1 | Suite::Upgrade => build_http(s, &root, &mut r, calm, &mut net, keep_trace, base),
        Suite::TcpProxy => tcp_proxy::build(s, &root, &mut r, calm, &net, keep_trace, base),
    };
    world.ledger = Ledger { calm, ..Ledger::default() };
    world.trace.note(world.now(), || format!("scenario {:?} calm={calm} net={:?}", s, world.net));
    world
}

fn faulty_net(r: &mut Rng) -> NetProfile {
    NetProfile {
        read_max: *r.pick(&[64, 512, 4096, 16 * 1024, 64 * 1024]),
        tiny_reads: r.range(0, 300) as u32,
        latency_us: (0, *r.pick(&[100, 2_000, 20_000, 200_000])),
        slow_reader: *r.pick(&[0, 100, 300]),
        refuse: *r.pick(&[0, 0, 30, 150]),
        blackhole: *r.pick(&[0, 0, 20, 80]),
        slow_connect: *r.pick(&[0, 50, 200]),
    }
}

fn build_connect(
    s: &Scenario,
    root: &Rng,
    r: &mut Rng,
    calm: bool,
    net: &mut NetProfile,
    keep_trace: bool,
    base: Instant,
) -> World {
    let down_limit = buffer_limit(r);
    let up_limit = buffer_limit(r);
    let idle = timeout(r, calm, (500, 20_000));
    let stream_idle = effective(idle, 300);
    let h2 = s.suite == Suite::H2Connect;
    let mut hcm = String::from("          upgrade_configs: [{ upgrade_type: CONNECT }]\n");
    if h2 {
        // AUTO: the clients' preface picks HTTP/2. The windows are small so that flow control
        // and paused streams are reached with the simulator's payload sizes.
        hcm.push_str("          codec_type: AUTO\n");
        hcm.push_str("          http2_protocol_options: { allow_connect: true, initial_stream_window_size: 65535, initial_connection_window_size: 131072 }\n");
    }
    if let Some(idle) = idle {
        let _ = writeln!(hcm, "          stream_idle_timeout: {}", secs(idle));
    }
    let routes = format!(
        "              - match: {{ connect_matcher: {{}}, headers: [{{ name: x-sim-odst, string_match: {{ exact: \"1\" }} }}] }}\n{}              - match: {{ connect_matcher: {{}} }}\n{}",
        connect_route("odst"),
        connect_route("target")
    );
    let mut yaml = listener(down_limit, &hcm, &routes, "");
    let connect_timeout = Duration::from_millis(*r.pick(&[250, 1000, 5000]));
    let breakers = if !calm && r.chance(300) {
        Some((r.range(1, u64::from(s.clients)) as u32, 1024, 1024))
    } else {
        None
    };
    let target_kind = *r.pick(&["STATIC", "STATIC", "STATIC", "LOGICAL_DNS", "STRICT_DNS"]);
    let endpoints: Vec<(String, u16)> = if target_kind == "STATIC" {
        (0..r.range(1, 3)).map(|i| (format!("10.0.0.{}", 2 + i), 443)).collect()
    } else {
        vec![("target.sim".to_string(), 443)]
    };
    // Address families come from their own generator, so the rest of a seed's draws stay.
    let mut families = root.fork(0xfa31);
    let mut extra = String::new();
    if target_kind != "STATIC" {
        let _ =
            writeln!(extra, "    dns_refresh_rate: {}", secs(Duration::from_millis(r.range(200, 10_000))));
        extra.push_str(&family_line(families.pick::<&str>(&FAMILIES)));
    }
    yaml.push_str(&cluster(&ClusterYaml {
        name: "target",
        kind: target_kind,
        connect_timeout,
        limit: up_limit,
        breakers,
        endpoints,
        extra,
    }));
    yaml.push_str(&cluster(&ClusterYaml {
        name: "odst",
        kind: "ORIGINAL_DST",
        connect_timeout,
        limit: up_limit,
        breakers: None,
        endpoints: Vec::new(),
        extra: family_line(families.pick::<&str>(&FAMILIES)),
    }));
    let seed = r.next_u64();
    let mut world = World::new(&yaml, seed, base, net.clone(), keep_trace);
    world.trace.note(world.now(), || format!("config:\n{yaml}"));

    let banner = r.chance(200);
    let echo_faults = if calm { 0 } else { *r.pick(&[0, 50, 200]) };
    let slow_write = if calm { 0 } else { *r.pick(&[0, 50, 200]) };
    let echo = |refuse: u32, blackhole: u32| echo_server(banner, echo_faults, slow_write, refuse, blackhole);
    // Every echo target listens on its IPv4 address and on its IPv6 twin.
    for i in 0..3 {
        world.add_server(addr(10, 0, 0, 2 + i, 443), echo(0, 0));
        world.add_server(SocketAddr::new(ip6(0, 0, 2 + i), 443), echo(0, 0));
    }
    for i in 1..=4 {
        for port in [443, 8443] {
            world.add_server(addr(10, 9, 0, i, port), echo(0, 0));
            world.add_server(SocketAddr::new(ip6(9, 0, i), port), echo(0, 0));
        }
    }
    world.add_server(addr(10, 9, 0, 8, 443), echo(0, 1000));
    // DNS: the target name, and names for original-destination CONNECTs. Answers mix both
    // families (in either order, with repeats) for the clusters' `dns_lookup_family` to
    // choose from; a name every family must reach in a calm run has both.
    let target_rule = if calm {
        DnsRule::Answer(vec![ip6(0, 0, 2), ip(10, 0, 0, 2)])
    } else {
        match r.below(10) {
            0 => DnsRule::Slow(vec![ip(10, 0, 0, 3), ip6(0, 0, 3)]),
            // The first answer has no IPv6 address: `V6_ONLY` finds nothing in it.
            1 => DnsRule::Rotate(vec![
                vec![ip(10, 0, 0, 2)],
                vec![],
                vec![ip6(0, 0, 3), ip(10, 0, 0, 3), ip(10, 0, 0, 4), ip6(0, 0, 4)],
            ]),
            2 if r.chance(300) => DnsRule::Never,
            _ => DnsRule::Answer(vec![ip(10, 0, 0, 2), ip6(0, 0, 4), ip(10, 0, 0, 4), ip(10, 0, 0, 2)]),
        }
    };
    world.add_dns("target.sim", target_rule);
    world.add_dns("echo1.sim", DnsRule::Answer(vec![ip(10, 9, 0, 1), ip6(9, 0, 1)]));
    world.add_dns(
        "echo2.sim",
        DnsRule::Answer(vec![ip6(9, 0, 2), ip(10, 9, 0, 2), ip(10, 9, 0, 3), ip6(9, 0, 3), ip(10, 9, 0, 2)]),
    );
    world.add_dns("nx.sim", DnsRule::Fail);
    world.add_dns("black.sim", DnsRule::Never);
    // IPv6 only: `V4_ONLY` finds nothing.
    world.add_dns("slow.sim", DnsRule::Slow(vec![ip6(9, 0, 4)]));

    let good = ["10.9.0.1:443", "10.9.0.2:8443", "echo1.sim:443", "echo2.sim:443", "ECHO1.sim:8443"];
    let bad = ["nx.sim:443", "black.sim:443", "slow.sim:443", "10.9.0.9:443", "10.9.0.8:443", "[::1]:1"];
    let client_faults = if calm { 0 } else { *r.pick(&[0, 50, 150]) };
    if h2 {
        add_h2_clients(s, root, &mut world, &good, &bad, calm, banner, client_faults);
        return world;
    }
    for c in 0..s.clients {
        let mut cr = root.fork(0xc11e_0000 + u64::from(c));
        let id = (u64::from(c) + 1) << 40 | (s.seed & 0xffff) << 24;
        let odst = cr.chance(400);
        let authority = if odst {
            if !calm && cr.chance(300) {
                cr.pick(&bad).to_string()
            } else {
                cr.pick(&good).to_string()
            }
        } else {
            "target.sim:443".to_string()
        };
        let mut headers = Vec::new();
        if odst {
            headers.push(("x-sim-odst".to_string(), "1".to_string()));
        }
        if cr.chance(300) {
            headers.push(("user-agent".to_string(), "sim".to_string()));
        }
        let payload = cr.size(s.scale as usize * 2560) as u64;
        let total = super::peers::HEADER + payload;
        let early = match cr.below(4) {
            0 | 1 => 0,
            2 => cr.range(super::peers::HEADER, total),
            _ => total,
        };
        let fin_early = early == total && cr.chance(500);
        let ending = if cr.chance(client_faults) {
            let at = cr.range(0, total);
            if cr.chance(500) {
                Ending::Reset(at)
            } else {
                Ending::Close(at)
            }
        } else {
            Ending::Fin
        };
        let split_head = (!calm && cr.chance(100))
            .then(|| (cr.usize(1, 40), Duration::from_millis(*cr.pick(&[1, 50, 2_000, 30_000]))));
        let pace = super::peers::pace(&mut cr, if calm { 0 } else { 100 });
        let plan = ConnectPlan {
            id,
            authority,
            headers,
            payload,
            early,
            fin_early,
            split_head,
            ending,
            banner,
            pace,
            calm,
            stream_idle,
        };
        let at = Duration::from_micros(cr.range(0, 2_000_000));
        world.add_client(at, 0, Box::new(ConnectClient::new(plan, cr.fork(7))));
    }
    world
}

/// A connection's own generator, drawn from the world's peer generator as a server accepts it.
fn peer_rng(rng: &mut Rng) -> Rng {
    let own = rng.fork(rng.clone().next_u64());
    rng.next_u64();
    own
}

/// Echo targets (after a banner if `banner`): by `faults` per mille a connection half-closes,
/// resets or closes after some bytes instead. `refuse` and `blackhole` add to the network's.
fn echo_server(banner: bool, faults: u32, slow_write: u32, refuse: u32, blackhole: u32) -> Server {
    Server {
        factory: Box::new(move |rng: &mut Rng| {
            let mut own = peer_rng(rng);
            let mode = if own.chance(faults) {
                let n = own.range(0, 40_000);
                match own.below(3) {
                    0 => EchoMode::FinAfter(n),
                    1 => EchoMode::ResetAfter(n),
                    _ => EchoMode::CloseAfter(n),
                }
            } else {
                EchoMode::Echo
            };
            Box::new(EchoTarget::new(own, mode, banner, slow_write))
        }),
        refuse,
        blackhole,
    }
}

/// HTTP/2 clients for the CONNECT suite: each opens one to four tunnels on its connection, to
/// the cluster or (original destination) to an authority, and ends each with END_STREAM or
/// a reset.
#[allow(clippy::too_many_arguments)]
fn add_h2_clients(
    s: &Scenario,
    root: &Rng,
    world: &mut World,
    good: &[&str],
    bad: &[&str],
    calm: bool,
    banner: bool,
    client_faults: u32,
) {
    for c in 0..s.clients {
        let mut cr = root.fork(0x4232_0000 + u64::from(c));
        let tunnels = (0..cr.range(1, 4))
            .map(|n| {
                let id = (u64::from(c) + 1) << 40 | (n + 1) << 32 | (s.seed & 0xffff) << 16;
                let odst = cr.chance(400);
                let authority = match odst {
                    true if !calm && cr.chance(300) => cr.pick(bad).to_string(),
                    true => cr.pick(good).to_string(),
                    false => "target.sim:443".to_string(),
                };
                let payload = cr.size(s.scale as usize * 2560) as u64;
                let total = crate::peers::HEADER + payload;
                let ending =
                    if cr.chance(client_faults) { Ending::Reset(cr.range(0, total)) } else { Ending::Fin };
                H2TunnelPlan { id, authority, odst, payload, ending }
            })
            .collect();
        let plan = H2ConnectPlan { tunnels, banner, calm };
        let at = Duration::from_micros(cr.range(0, 2_000_000));
        world.add_client(at, 0, Box::new(H2ConnectClient::new(plan)));
    }
}

fn build_http(
    s: &Scenario,
    root: &Rng,
    r: &mut Rng,
    calm: bool,
    net: &mut NetProfile,
    keep_trace: bool,
    base: Instant,
) -> World {
    let upgrade_suite = s.suite == Suite::Upgrade;
    let down_limit = buffer_limit(r);
    let up_limit = buffer_limit(r);
    let mut hcm = String::new();
    let stream_idle_knob = timeout(r, calm, (500, 20_000));
    let stream_idle = effective(stream_idle_knob, 300);
    if let Some(t) = stream_idle_knob {
        let _ = writeln!(hcm, "          stream_idle_timeout: {}", secs(t));
    }
    if let Some(t) = timeout(r, calm, (200, 10_000)) {
        let _ = writeln!(hcm, "          common_http_protocol_options: {{ idle_timeout: {} }}", secs(t));
    }
    if upgrade_suite || r.chance(300) {
        hcm.push_str("          upgrade_configs: [{ upgrade_type: websocket }]\n");
    }
    let mut route = String::from("                route: { cluster: origin");
    if let Some(t) = timeout(r, calm, (200, 20_000)) {
        let _ = write!(route, ", timeout: {}", secs(t));
    }
    if r.chance(200) {
        if let Some(t) = timeout(r, calm, (500, 20_000)) {
            let _ = write!(route, ", idle_timeout: {}", secs(t));
        }
    }
    route.push_str(" }\n");
    let routes = format!("              - match: {{ prefix: \"/\" }}\n{route}");
    let buffer = (!calm && r.chance(200)).then(|| r.range(256, 256 * 1024));
    let filters = match buffer {
        Some(max) => format!("          - name: buf\n            typed_config: {{ \"@type\": {BUFFER}, max_request_bytes: {max} }}\n"),
        None => String::new(),
    };
    let mut yaml = listener(down_limit, &hcm, &routes, &filters);
    let hosts = r.range(1, 3) as u8;
    let breakers = if !calm && r.chance(500) {
        Some((r.range(1, 4) as u32, r.range(1, 8) as u32, r.range(1, 16) as u32))
    } else {
        None
    };
    let mut common = Vec::new();
    if r.chance(300) {
        common.push(format!("max_requests_per_connection: {}", r.range(1, 5)));
    }
    match r.below(3) {
        0 => {}
        1 => common.push("idle_timeout: 0s".to_string()),
        _ => common.push(format!("idle_timeout: {}", secs(Duration::from_millis(r.range(100, 30_000))))),
    }
    let extra = http1_options(&common);
    yaml.push_str(&cluster(&ClusterYaml {
        name: "origin",
        kind: "STATIC",
        connect_timeout: Duration::from_millis(*r.pick(&[250, 1000, 5000])),
        limit: up_limit,
        breakers,
        endpoints: (1..=hosts).map(|i| (format!("10.0.1.{i}"), 80)).collect(),
        extra,
    }));
    let seed = r.next_u64();
    let mut world = World::new(&yaml, seed, base, net.clone(), keep_trace);
    world.trace.note(world.now(), || format!("config:\n{yaml}"));

    let profile = if calm {
        OriginProfile {
            chunked: 350,
            until_close: 150,
            close: 100,
            max_body: u64::from(s.scale) * 2000,
            think_us: (0, 5_000),
            ..OriginProfile::default()
        }
    } else {
        let f = *r.pick(&[0u32, 20, 60, 150]);
        OriginProfile {
            reset_before: f / 2,
            reset_mid: f / 2,
            fin_mid: f / 2,
            stall: f / 4,
            garbage: f / 4,
            early_response: f,
            close: r.range(0, 400) as u32,
            until_close: r.range(0, 300) as u32,
            chunked: 350,
            refuse_upgrade: if upgrade_suite { r.range(0, 400) as u32 } else { 0 },
            slow_write: f,
            max_body: u64::from(s.scale) * 2000,
            think_us: (0, *r.pick(&[1_000, 50_000, 2_000_000])),
            idle_close_ms: r.chance(500).then(|| (r.range(10, 500), r.range(500, 60_000))),
            echo_faults: f,
        }
    };
    for i in 1..=hosts {
        let p = profile.clone();
        let (refuse, blackhole) =
            if !calm && r.chance(150) { (r.range(0, 500) as u32, r.range(0, 200) as u32) } else { (0, 0) };
        world.add_server(
            addr(10, 0, 1, i, 80),
            Server {
                factory: Box::new(move |rng: &mut Rng| Box::new(HttpOrigin::new(peer_rng(rng), p.clone()))),
                refuse,
                blackhole,
            },
        );
    }

    let client_faults = if calm { 0 } else { *r.pick(&[0, 20, 80]) };
    for c in 0..s.clients {
        let mut cr = root.fork(0xc11e_0000 + u64::from(c));
        let cid = (u64::from(c) + 1) << 40 | (s.seed & 0xffff) << 24;
        let n = cr.range(1, 1 + u64::from(s.scale) / 12);
        let pipeline = cr.chance(150);
        let mut requests = Vec::new();
        for k in 0..n {
            let rid = cid | k;
            let last = k + 1 == n;
            let upgrade = (upgrade_suite && last).then(|| {
                let len = cr.size(s.scale as usize * 1500) as u64;
                let total = super::peers::HEADER + len;
                let early = if cr.chance(300) { cr.range(super::peers::HEADER, total) } else { 0 };
                let ending = if cr.chance(client_faults) {
                    let at = cr.range(0, total);
                    if cr.chance(500) {
                        Ending::Reset(at)
                    } else {
                        Ending::Close(at)
                    }
                } else {
                    Ending::Fin
                };
                (len, early, ending)
            });
            let method =
                if upgrade.is_some() { "GET" } else { *cr.pick(&["GET", "GET", "POST", "PUT", "DELETE"]) };
            let body = if upgrade.is_some() || method == "GET" && cr.chance(800) {
                BodyPlan::None
            } else {
                let len = cr.size(s.scale as usize * 1000) as u64;
                match cr.below(3) {
                    0 => BodyPlan::Length(len),
                    1 => BodyPlan::Chunked(len, cr.range(1, 6) as u32),
                    _ if len == 0 => BodyPlan::None,
                    _ => BodyPlan::Length(len),
                }
            };
            let body = match (buffer, body) {
                (Some(max), BodyPlan::Length(n) | BodyPlan::Chunked(n, _)) if calm && n > max => {
                    BodyPlan::Length(max)
                }
                (_, b) => b,
            };
            requests.push(ReqPlan {
                rid,
                method,
                path: format!("/sim/{c}/{k}"),
                host: "origin.sim".to_string(),
                body,
                expect_continue: !pipeline && cr.chance(100),
                close: last && cr.chance(300),
                upgrade,
                reset_at: cr.chance(client_faults).then(|| cr.range(0, 400 + body.len())),
                stall: (!calm && cr.chance(50))
                    .then(|| (cr.usize(1, 30), Duration::from_millis(*cr.pick(&[10, 1_000, 20_000])))),
                think: {
                    let max = *cr.pick(&[100, 10_000, 3_000_000]);
                    Duration::from_micros(cr.range(0, max))
                },
            });
        }
        let plan = HttpPlan {
            cid,
            requests,
            pipeline,
            half_close_after_last: cr.chance(150),
            linger: Duration::from_millis(*cr.pick(&[0, 1, 100, 5_000, 120_000])),
            pace: super::peers::pace(&mut cr, if calm { 0 } else { 100 }),
            calm,
            stream_idle,
        };
        let at = Duration::from_micros(cr.range(0, 2_000_000));
        world.add_client(at, 0, Box::new(HttpClient::new(plan, cr.fork(7))));
    }
    world
}
