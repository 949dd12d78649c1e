//! What the HTTP/1.1 connection manager answers before any tunnel exists.

mod support;

use burrow_core::{CloseKind, Input};
use support::{terminate_config, Net};

fn reply_to(config: &str, request: &[u8]) -> (String, Option<CloseKind>, Net) {
    let mut net = Net::new(config);
    let client = net.connect_client(0);
    net.send(client, request);
    let state = net.state(client);
    (String::from_utf8(state.received.clone()).unwrap(), state.closed, net)
}

fn status_line(reply: &str) -> &str {
    reply.split("\r\n").next().unwrap()
}

#[test]
fn connect_is_refused_unless_an_upgrade_config_enables_it() {
    let off = terminate_config(1 << 20)
        .replace("upgrade_configs: [{ upgrade_type: CONNECT }]", "upgrade_configs: []")
        .replace("upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }]", "upgrade_configs: []");
    let (reply, closed, net) = reply_to(&off, b"CONNECT a:1 HTTP/1.1\r\n\r\n");
    assert_eq!(status_line(&reply), "HTTP/1.1 403 Forbidden");
    assert!(reply.contains("content-length: 0\r\n"));
    assert_eq!(closed, Some(CloseKind::Flush));
    assert_eq!(net.stat("http.ingress.downstream_rq_ws_on_non_ws_route"), 1);
    assert_eq!(net.stat("http.ingress.downstream_rq_4xx"), 1);
    assert_eq!(net.stat("http.ingress.downstream_cx_upgrades_total"), 0);
}

#[test]
fn the_route_table_decides_over_the_connection_manager() {
    let base = terminate_config(1 << 20);
    let route_off = base.replace("connect_config: {} }]", "enabled: false, connect_config: {} }]");
    let (reply, ..) = reply_to(&route_off, b"CONNECT a:1 HTTP/1.1\r\n\r\n");
    assert_eq!(status_line(&reply), "HTTP/1.1 403 Forbidden");
    let hcm_off = base.replace("[{ upgrade_type: CONNECT }]", "[{ upgrade_type: CONNECT, enabled: false }]");
    let (reply, closed, net) = reply_to(&hcm_off, b"CONNECT a:1 HTTP/1.1\r\n\r\n");
    assert_eq!(reply, "", "allowed by the route: connecting, no answer yet");
    assert_eq!(closed, None);
    assert_eq!(net.upstreams().len(), 1);
}

#[test]
fn plain_requests_to_connect_only_routes_get_404_and_keep_alive() {
    let mut net = Net::new(&terminate_config(1 << 20));
    let client = net.connect_client(0);
    net.send(client, b"GET / HTTP/1.1\r\nhost: a\r\n\r\nGET /again HTTP/1.1\r\nhost: a\r\n\r\n");
    let reply = String::from_utf8(net.state(client).received.clone()).unwrap();
    assert_eq!(reply.matches("HTTP/1.1 404 Not Found\r\n").count(), 2, "{reply}");
    assert!(!reply.contains("connection: close"));
    assert_eq!(net.state(client).closed, None);
    assert_eq!(net.stat("http.ingress.downstream_rq_total"), 2);
    assert_eq!(net.stat("http.ingress.downstream_rq_4xx"), 2);
}

#[test]
fn malformed_requests_get_envoys_status_and_close_only_their_connection() {
    let cases: [(&[u8], &str); 6] = [
        (b"CONNECT a:1 HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello", "HTTP/1.1 400 Bad Request"),
        (b"CONNECT /path HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 426 Upgrade Required"),
        (b"GET\x01 / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (b"GET / HTTP/1.1\r\nhost: a\r\nx-big: ", "HTTP/1.1 431 Request Header Fields Too Large"),
    ];
    for (request, status) in cases {
        let mut net = Net::new(&terminate_config(1 << 20));
        let bystander = net.connect_client(0);
        net.send(bystander, b"CONNECT a:1 HTTP/1.1\r\n\r\n");
        let client = net.connect_client(0);
        net.send(client, request);
        if status.contains("431") {
            net.send(client, &vec![b'x'; 61 * 1024]);
        }
        let reply = String::from_utf8(net.state(client).received.clone()).unwrap();
        assert_eq!(status_line(&reply), status, "for {:?}", String::from_utf8_lossy(request));
        assert!(reply.contains("connection: close\r\n"));
        assert_eq!(net.state(client).closed, Some(CloseKind::Flush));
        assert_eq!(net.state(bystander).closed, None, "another connection was harmed");
    }
}

#[test]
fn original_destination_connects_to_the_authority_and_resolves_names() {
    let config = include_str!("../../configs/default.yaml");
    let mut net = Net::new(config);
    let client = net.connect_client(0);
    net.send(client, b"CONNECT 127.0.0.1:8080 HTTP/1.1\r\n\r\n");
    let up = net.upstreams()[0];
    assert_eq!(net.state(up).target, Some("127.0.0.1:8080".parse().unwrap()));

    let named = net.connect_client(0);
    net.send(named, b"CONNECT localhost:9000 HTTP/1.1\r\n\r\nearly");
    let (query, host) = net.take_resolve();
    assert_eq!(host, "localhost");
    net.input(Input::Resolved { query, addrs: vec!["127.0.0.1".parse().unwrap()] });
    let up = *net.upstreams().last().unwrap();
    assert_eq!(net.state(up).target, Some("127.0.0.1:9000".parse().unwrap()));
    net.input(Input::Connected { conn: up });
    assert_eq!(net.state(up).received, b"early");

    let unresolved = net.connect_client(0);
    net.send(unresolved, b"CONNECT nowhere.test:80 HTTP/1.1\r\n\r\n");
    let (query, _) = net.take_resolve();
    net.input(Input::Resolved { query, addrs: vec![] });
    let reply = String::from_utf8(net.state(unresolved).received.clone()).unwrap();
    assert_eq!(status_line(&reply), "HTTP/1.1 503 Service Unavailable");
    assert!(reply.ends_with("no healthy upstream"));
}

/// The driver answers with every address of both families; the cluster's
/// `dns_lookup_family` decides which one a CONNECT to a name goes to.
#[test]
fn original_destination_names_follow_the_clusters_dns_lookup_family() {
    let answer: Vec<std::net::IpAddr> = ["fd00::1", "10.0.0.1", "fd00::2", "10.0.0.1", "10.0.0.2"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let cases = [
        ("", "[fd00::1]:443"),
        ("AUTO", "[fd00::1]:443"),
        ("V4_ONLY", "10.0.0.1:443"),
        ("V6_ONLY", "[fd00::1]:443"),
        ("V4_PREFERRED", "10.0.0.1:443"),
        ("ALL", "10.0.0.1:443"),
    ];
    let base = include_str!("../../configs/default.yaml");
    for (family, want) in cases {
        let config = if family.is_empty() {
            base.to_string()
        } else {
            base.replace(
                "    lb_policy: CLUSTER_PROVIDED\n",
                &format!("    lb_policy: CLUSTER_PROVIDED\n    dns_lookup_family: {family}\n"),
            )
        };
        assert!(family.is_empty() || config.contains(family), "the family line was not spliced in");
        let mut net = Net::new(&config);
        let client = net.connect_client(0);
        net.send(client, b"CONNECT both.test:443 HTTP/1.1\r\n\r\n");
        let (query, host) = net.take_resolve();
        assert_eq!(host, "both.test");
        net.input(Input::Resolved { query, addrs: answer.clone() });
        let up = *net.upstreams().last().unwrap();
        assert_eq!(net.state(up).target, Some(want.parse().unwrap()), "{family}");

        // An answer with nothing of an allowed family is no answer.
        let only: &[&str] = match family {
            "V4_ONLY" => &["fd00::1"],
            "V6_ONLY" => &["10.0.0.1"],
            _ => continue,
        };
        let unresolved = net.connect_client(0);
        net.send(unresolved, b"CONNECT other.test:443 HTTP/1.1\r\n\r\n");
        let (query, _) = net.take_resolve();
        net.input(Input::Resolved { query, addrs: only.iter().map(|a| a.parse().unwrap()).collect() });
        let reply = String::from_utf8(net.state(unresolved).received.clone()).unwrap();
        assert_eq!(status_line(&reply), "HTTP/1.1 503 Service Unavailable", "{family}");
        assert_eq!(net.stat("cluster.original_destination.upstream_cx_none_healthy"), 1, "{family}");
    }
}

#[test]
fn admin_serves_stats_and_readiness() {
    let config = include_str!("../../configs/default.yaml");
    let mut net = Net::new(config);
    let admin = net.connect_client(1);
    net.send(admin, b"GET /ready HTTP/1.1\r\nhost: a\r\n\r\nGET /stats HTTP/1.1\r\nhost: a\r\n\r\n");
    let reply = String::from_utf8(net.state(admin).received.clone()).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("\r\n\r\nLIVE\n"));
    assert!(reply.contains("http.forward_proxy.downstream_cx_total: 0\n"));
    assert!(reply.contains("cluster.original_destination.upstream_cx_total: 0\n"));
}

/// Envoy's codecs take any `HTTP/D.D` version but 1.1 for HTTP/1.0: `HTTP/9.7` gets the same
/// 426 as HTTP/1.0 (not a 400), and the connection closes.
#[test]
fn an_unknown_http_version_gets_426_upgrade_required() {
    let (reply, closed, net) = reply_to(&terminate_config(1 << 20), b"GET / HTTP/9.7\r\nhost: a\r\n\r\n");
    assert_eq!(
        reply,
        "HTTP/1.1 426 Upgrade Required\r\ncontent-length: 16\r\ncontent-type: text/plain\r\n\
         date: Tue, 14 Nov 2023 22:13:20 GMT\r\nserver: envoy\r\nconnection: close\r\n\r\nUpgrade Required"
    );
    assert_eq!(closed, Some(CloseKind::Flush));
    assert_eq!(net.stat("http.ingress.downstream_rq_4xx"), 1);
    assert_eq!(net.stat("http.ingress.downstream_cx_protocol_error"), 1);

    // Not shaped HTTP/D.D: malformed.
    let (reply, ..) = reply_to(&terminate_config(1 << 20), b"GET / HTTP/10.0\r\nhost: a\r\n\r\n");
    assert_eq!(status_line(&reply), "HTTP/1.1 400 Bad Request");
}
