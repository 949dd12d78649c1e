//! The TCP proxy suite's scenarios: three TCP proxy listeners, one forwarding each client's
//! connection to echo targets over a connection of its own (10000, cluster `echo`), one
//! tunnelling it through HTTP/1.1 CONNECT to terminators (10001, cluster `terminators`,
//! `tunneling_config`), and one tunnelling it to the proxy's own CONNECT-terminating HTTP
//! listener (10002 to 10003, cluster `loop`), which takes it on to echo targets (cluster
//! `chain_echo`): an encapsulating proxy in front of a terminating one, with the network's
//! faults on the hop between them. Each TCP proxy listener has its own `max_connect_attempts`,
//! idle timeout and sometimes a maximum duration. Raw clients pick a listener by the
//! scenario's mix.

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{
    addr, buffer_limit, cluster, connect_route, echo_server, hcm_listener, http1_options, peer_rng, secs,
    timeout, ClusterYaml, Scenario,
};
use crate::peers::{
    pace, Ending, RawClient, RawPlan, Terminator, TerminatorProfile, HEADER, PEER_FORMAT, PEER_HEADER,
};
use crate::rng::Rng;
use crate::world::{NetProfile, Server, World};

const TCP_PROXY: &str = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// What the scenario drew for one listener.
struct Knobs {
    attempts: u32,
    yaml: String,
}

/// `max_connect_attempts`, `idle_timeout` and `max_downstream_connection_duration`.
fn knobs(r: &mut Rng, calm: bool) -> Knobs {
    let attempts = r.range(1, 3) as u32;
    let mut yaml = format!("          max_connect_attempts: {attempts}\n");
    if let Some(idle) = timeout(r, calm, (500, 20_000)) {
        let _ = writeln!(yaml, "          idle_timeout: {}", secs(idle));
    }
    if !calm && r.chance(100) {
        let max = Duration::from_millis(r.range(2_000, 120_000));
        let _ = writeln!(yaml, "          max_downstream_connection_duration: {}", secs(max));
    }
    Knobs { attempts, yaml }
}

fn tcp_listener(name: &str, port: u16, limit: u32, cluster: &str, knobs: &Knobs, tunneling: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    per_connection_buffer_limit_bytes: {limit}
    filter_chains:
    - filters:
      - name: tcp
        typed_config:
          "@type": {TCP_PROXY}
          stat_prefix: {name}
          cluster: {cluster}
{}{tunneling}"#,
        knobs.yaml
    )
}

/// Builds the world for a TCP proxy scenario.
pub(super) fn build(
    s: &Scenario,
    root: &Rng,
    r: &mut Rng,
    calm: bool,
    net: &NetProfile,
    keep_trace: bool,
    base: Instant,
) -> World {
    let down_limit = buffer_limit(r);
    let up_limit = buffer_limit(r);
    let plain = knobs(r, calm);
    let tunnel = knobs(r, calm);
    let chain = knobs(r, calm);
    let mut term_hcm = String::from("          upgrade_configs: [{ upgrade_type: CONNECT }]\n");
    if let Some(idle) = timeout(r, calm, (500, 20_000)) {
        let _ = writeln!(term_hcm, "          stream_idle_timeout: {}", secs(idle));
    }

    // The tunnel request: its authority, and headers_to_add with the client's address among
    // them (how terminators tell clients apart before any tunnel byte).
    let hostname = *r.pick(&["target.sim:443", "host.com:443", "10.9.0.1:8443", "[fd00::9:0:1]:443"]);
    let mut headers: Vec<(&str, &str)> =
        [("foo", "bar"), ("x-sim-extra", "1"), ("proxy-authorization", "Basic c2ltOnNpbQ==")]
            .into_iter()
            .filter(|_| r.chance(300))
            .collect();
    headers.insert(r.usize(0, headers.len()), (PEER_HEADER, PEER_FORMAT));
    let mut tunneling = format!(
        "          tunneling_config:\n            hostname: \"{hostname}\"\n            headers_to_add:\n"
    );
    let mut head = format!("CONNECT {hostname} HTTP/1.1\r\nhost: {hostname}\r\n");
    for (name, value) in &headers {
        let _ = writeln!(tunneling, "            - header: {{ key: {name}, value: \"{value}\" }}");
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");

    let mut yaml = String::from("static_resources:\n  listeners:\n");
    yaml.push_str(&tcp_listener("plain", 10000, down_limit, "echo", &plain, ""));
    yaml.push_str(&tcp_listener("tunnel", 10001, down_limit, "terminators", &tunnel, &tunneling));
    yaml.push_str(&tcp_listener("chain", 10002, down_limit, "loop", &chain, &tunneling));
    let routes =
        format!("              - match: {{ connect_matcher: {{}} }}\n{}", connect_route("chain_echo"));
    yaml.push_str(&hcm_listener("term", 10003, down_limit, &term_hcm, &routes, ""));
    yaml.push_str("  clusters:\n");
    let connect_timeout = Duration::from_millis(*r.pick(&[250, 1000, 5000]));
    let breakers = |r: &mut Rng| {
        (!calm && r.chance(150)).then(|| {
            let n = r.range(1, u64::from(s.clients)) as u32;
            (n, r.range(1, 8) as u32, n)
        })
    };
    let targets = r.range(1, 3) as u8;
    let echo_breakers = breakers(r);
    yaml.push_str(&cluster(&ClusterYaml {
        name: "echo",
        kind: "STATIC",
        connect_timeout,
        limit: up_limit,
        breakers: echo_breakers,
        endpoints: (0..targets).map(|i| (format!("10.0.0.{}", 2 + i), 443)).collect(),
        extra: String::new(),
    }));
    let terminators = r.range(1, 3) as u8;
    let mut common = Vec::new();
    if r.chance(300) {
        common.push(format!("idle_timeout: {}", secs(Duration::from_millis(r.range(100, 30_000)))));
    }
    let term_breakers = breakers(r);
    yaml.push_str(&cluster(&ClusterYaml {
        name: "terminators",
        kind: "STATIC",
        connect_timeout,
        limit: up_limit,
        breakers: term_breakers,
        endpoints: (1..=terminators).map(|i| (format!("10.0.2.{i}"), 80)).collect(),
        extra: http1_options(&common),
    }));
    yaml.push_str(&cluster(&ClusterYaml {
        name: "loop",
        kind: "STATIC",
        connect_timeout,
        limit: up_limit,
        breakers: None,
        endpoints: vec![("127.0.0.1".to_string(), 10003)],
        extra: http1_options(&common),
    }));
    yaml.push_str(&cluster(&ClusterYaml {
        name: "chain_echo",
        kind: "STATIC",
        connect_timeout,
        limit: up_limit,
        breakers: None,
        endpoints: (0..targets).map(|i| (format!("10.0.3.{}", 2 + i), 443)).collect(),
        extra: String::new(),
    }));
    let seed = r.next_u64();
    let mut world = World::new(&yaml, seed, base, net.clone(), keep_trace);
    world.trace.note(world.now(), || format!("config:\n{yaml}"));

    let banner = r.chance(200);
    let echo_faults = if calm { 0 } else { *r.pick(&[0, 50, 200]) };
    let slow_write = if calm { 0 } else { *r.pick(&[0, 50, 200]) };
    for i in 0..3 {
        world.add_server(addr(10, 0, 0, 2 + i, 443), echo_server(banner, echo_faults, slow_write, 0, 0));
        world.add_server(addr(10, 0, 3, 2 + i, 443), echo_server(banner, echo_faults, slow_write, 0, 0));
    }
    // Refusals and hang-ups are attempts that fail in calm runs too: a tunnel must still open
    // while it has attempts left.
    let profile = Rc::new(TerminatorProfile {
        head,
        refuse: *r.pick(&[0, 50, 200, 500]),
        hang_up: *r.pick(&[0, 30, 100]),
        never: if calm { 0 } else { *r.pick(&[0, 0, 20]) },
        think_us: (0, *r.pick(&[1_000, 50_000, 500_000])),
        slow: if calm { 0 } else { *r.pick(&[0, 50]) },
        keep_alive: *r.pick(&[0, 500]),
        banner,
        echo_faults,
        slow_write,
    });
    for i in 1..=3 {
        let p = profile.clone();
        world.add_server(
            addr(10, 0, 2, i, 80),
            Server {
                factory: Box::new(move |rng: &mut Rng| Box::new(Terminator::new(peer_rng(rng), p.clone()))),
                refuse: 0,
                blackhole: 0,
            },
        );
    }

    // Shares of plain, tunnelled and chained clients.
    let mix = *r.pick(&[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1], [1, 2, 2]]);
    let client_faults = if calm { 0 } else { *r.pick(&[0, 50, 150]) };
    for c in 0..s.clients {
        let mut cr = root.fork(0xc11e_0000 + u64::from(c));
        let id = (u64::from(c) + 1) << 40 | (s.seed & 0xffff) << 24;
        let listener = cr.weighted(&mix);
        let knobs = [&plain, &tunnel, &chain][listener];
        let payload = cr.size(s.scale as usize * 2560) as u64;
        let total = HEADER + payload;
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
        let think = if cr.chance(150) {
            Duration::from_millis(*cr.pick(&[1, 100, 2_000, 30_000]))
        } else {
            Duration::ZERO
        };
        let plan = RawPlan {
            id,
            payload,
            ending,
            banner,
            wait_banner: banner && cr.chance(300),
            think,
            pace: pace(&mut cr, if calm { 0 } else { 100 }),
            max_attempts: knobs.attempts,
        };
        let at = Duration::from_micros(cr.range(0, 2_000_000));
        world.add_client(at, listener as u32, Box::new(RawClient::new(plan, cr.fork(7))));
    }
    world
}
