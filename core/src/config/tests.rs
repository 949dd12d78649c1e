use std::net::SocketAddr;
use std::time::Duration;

use super::*;

/// Envoy's `configs/terminate_http1_connect.yaml`, with the admin block of the older copies
/// (its access log sent to /dev/null: burrow writes none).
const TERMINATE_HTTP1_CONNECT: &str = r#"
admin:
  access_log_path: /dev/null
  address:
    socket_address:
      protocol: TCP
      address: 127.0.0.1
      port_value: 9902
static_resources:
  listeners:
  - name: listener_0
    address:
      socket_address:
        protocol: TCP
        address: 127.0.0.1
        port_value: 10001
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: local_service
              domains:
              - "*"
              routes:
              - match:
                  connect_matcher:
                    {}
                  headers:
                  - name: foo
                    string_match:
                      exact: bar
                route:
                  cluster: local_original_dst
                  upgrade_configs:
                  - upgrade_type: CONNECT
                    connect_config:
                      {}
              - match:
                  connect_matcher:
                    {}
                route:
                  cluster: service_google
                  upgrade_configs:
                  - upgrade_type: CONNECT
                    connect_config:
                      {}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          http_protocol_options: {}
          upgrade_configs:
          - upgrade_type: CONNECT
  clusters:
  - name: service_google
    connect_timeout: 0.25s
    type: LOGICAL_DNS
    dns_lookup_family: V4_ONLY
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: service_google
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: www.google.com
                port_value: 443
  - name: local_original_dst
    connect_timeout: 0.25s
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    original_dst_lb_config:
      use_http_header: true
      http_header_name: ":authority"
"#;

fn hcm_of(config: &Config) -> &HttpConnectionManager {
    let NetworkFilter::HttpConnectionManager(h) = &config.listeners[0].filter;
    h
}

fn router() -> HttpFilter {
    HttpFilter { name: "envoy.filters.http.router".into(), kind: HttpFilterKind::Router, disabled: false }
}

/// A route target with Envoy's defaults for everything but the cluster and upgrades.
fn target(cluster: usize, upgrade_configs: Vec<RouteUpgradeConfig>) -> RouteTarget {
    RouteTarget {
        cluster,
        upgrade_configs,
        prefix_rewrite: None,
        host_rewrite_literal: None,
        timeout: Some(Duration::from_secs(15)),
        idle_timeout: None,
    }
}

fn parse(text: &str) -> Config {
    Config::from_yaml(text).unwrap_or_else(|e| panic!("{e}"))
}

/// The error for `text`, as `path: message`.
fn error(text: &str) -> String {
    Config::from_yaml(text).expect_err("config should be rejected").to_string()
}

/// A minimal valid config with `hcm` (indented to sit under `typed_config`), `route` (the
/// route's `route` map body) and `clusters` spliced in.
fn with(hcm_extra: &str, route_extra: &str, clusters: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": {HCM_TYPE_URL}
          stat_prefix: p
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route:
                  cluster: c
{route_extra}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE_URL}}}
{hcm_extra}
  clusters:
  - name: c
    load_assignment:
      cluster_name: c
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}}}}}]}}]
{clusters}
"#
    )
}

const LISTENER: &str = "static_resources.listeners[0]";
const TYPED: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

#[test]
fn terminate_http1_connect() {
    let config = parse(TERMINATE_HTTP1_CONNECT);
    assert_eq!(config.admin, Some(Admin { address: "127.0.0.1:9902".parse().unwrap() }));

    let listener = &config.listeners[0];
    assert_eq!(listener.name, "listener_0");
    assert_eq!(listener.address, "127.0.0.1:10001".parse::<SocketAddr>().unwrap());
    assert_eq!(listener.protocol, SocketProtocol::Tcp);
    assert_eq!(listener.per_connection_buffer_limit_bytes, 1 << 20);

    let hcm = hcm_of(&config);
    assert_eq!(hcm.stat_prefix, "ingress_http");
    assert_eq!(hcm.codec_type, CodecType::Auto);
    assert_eq!(hcm.http_filters, vec![router()]);
    assert_eq!(
        hcm.upgrade_configs,
        vec![UpgradeConfig { upgrade_type: "CONNECT".into(), enabled: true, filters: None }]
    );
    assert_eq!(hcm.http_protocol_options, Http1Options { accept_http_10: false });
    assert_eq!(hcm.max_request_headers_kb, 60);
    assert_eq!(hcm.max_headers_count, 100);
    assert_eq!(hcm.stream_idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(hcm.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(hcm.request_headers_timeout, None);
    assert!(!hcm.use_remote_address);
    assert!(hcm.generate_request_id);
    assert_eq!(hcm.server_name, "envoy");

    let vh = &hcm.route_config.virtual_hosts[0];
    assert_eq!(hcm.route_config.name, "local_route");
    assert_eq!(vh.domains, vec!["*"]);
    let connect_upgrade = vec![RouteUpgradeConfig {
        upgrade_type: "CONNECT".into(),
        enabled: true,
        connect_config: Some(ConnectConfig {}),
    }];
    assert_eq!(
        vh.routes[0],
        Route {
            matcher: RouteMatch {
                path: PathMatch::Connect,
                headers: vec![HeaderMatcher {
                    name: "foo".into(),
                    rule: HeaderRule::Exact { value: "bar".into(), ignore_case: false },
                    invert: false,
                }],
            },
            action: RouteAction::Route(target(1, connect_upgrade.clone())),
            disabled_filters: vec![],
            enabled_filters: vec![],
        }
    );
    assert_eq!(
        vh.routes[1],
        Route {
            matcher: RouteMatch { path: PathMatch::Connect, headers: vec![] },
            action: RouteAction::Route(target(0, connect_upgrade)),
            disabled_filters: vec![],
            enabled_filters: vec![],
        }
    );

    let google = &config.clusters[0];
    assert_eq!(google.name, "service_google");
    assert_eq!(google.discovery, Discovery::LogicalDns);
    assert_eq!(google.connect_timeout, Duration::from_millis(250));
    assert_eq!(google.dns_lookup_family, Family::V4Only);
    assert_eq!(google.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(google.endpoints, vec![Endpoint::Dns { host: "www.google.com".into(), port: 443 }]);
    assert_eq!(google.protocol, UpstreamProtocol::Http1);
    assert_eq!(google.circuit_breakers, Thresholds::default());
    assert_eq!(google.idle_timeout, Some(Duration::from_secs(3600)));

    let original_dst = &config.clusters[1];
    assert_eq!(
        original_dst.discovery,
        Discovery::OriginalDst { use_http_header: true, http_header_name: Some(":authority".into()) }
    );
    assert_eq!(original_dst.lb_policy, LbPolicy::ClusterProvided);
    assert!(original_dst.endpoints.is_empty());
}

#[test]
fn json_is_accepted() {
    let json = format!(
        r#"{{"static_resources": {{"listeners": [{{"name": "l",
          "address": {{"socket_address": {{"address": "::1", "port_value": "10000"}}}},
          "filter_chains": [{{"filters": [{{"name": "x", "typed_config": {{
            "@type": "{HCM_TYPE_URL}", "stat_prefix": "p",
            "route_config": {{"virtual_hosts": []}},
            "http_filters": [{{"name": "r", "typed_config": {{"@type": "{ROUTER_TYPE_URL}"}}}}]}}}}]}}]}}]}}}}"#
    );
    let config = parse(&json);
    assert_eq!(config.listeners[0].address, "[::1]:10000".parse::<SocketAddr>().unwrap());
    assert!(config.admin.is_none() && config.clusters.is_empty());
}

#[test]
fn hcm_options_and_cluster_protocols() {
    let hcm = r#"          codec_type: HTTP1
          http_protocol_options: {accept_http_10: true}
          max_request_headers_kb: "96"
          common_http_protocol_options: {max_headers_count: 50}
          stream_idle_timeout: 0s
          upgrade_configs: [{upgrade_type: websocket, enabled: false}]"#;
    let route = r#"                  upgrade_configs:
                  - upgrade_type: CONNECT
                    connect_config: {allow_post: false}"#;
    let clusters = r#"  - name: typed
    type: STRICT_DNS
    lb_policy: ROUND_ROBIN
    connect_timeout: {seconds: 1, nanos: 500000000}
    dns_refresh_rate: 1.5s
    per_connection_buffer_limit_bytes: 32768
    load_assignment:
      cluster_name: typed
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: Backend.example, port_value: 80}}}
        - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 81}}}
    circuit_breakers:
      thresholds:
      - {priority: HIGH, max_connections: 1}
      - {max_connections: 10, max_pending_requests: "20", max_retries: 0}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http_protocol_options: {}
        common_http_protocol_options: {max_requests_per_connection: 7, idle_timeout: 0s}
  - name: legacy
    connect_timeout: 5s
    http_protocol_options: {}
    max_requests_per_connection: 3
    load_assignment:
      cluster_name: legacy
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]"#;
    let config = parse(&with(hcm, route, clusters));

    let h = hcm_of(&config);
    assert_eq!(h.codec_type, CodecType::Http1);
    assert!(h.http_protocol_options.accept_http_10);
    assert_eq!((h.max_request_headers_kb, h.max_headers_count), (96, 50));
    assert_eq!(h.stream_idle_timeout, None);
    assert_eq!(
        h.upgrade_configs,
        vec![UpgradeConfig { upgrade_type: "websocket".into(), enabled: false, filters: None }]
    );
    let RouteAction::Route(target) = &h.route_config.virtual_hosts[0].routes[0].action else {
        panic!("not a route action");
    };
    assert_eq!(target.upgrade_configs[0].connect_config, Some(ConnectConfig {}));

    let typed = &config.clusters[1];
    assert_eq!(typed.discovery, Discovery::StrictDns);
    assert_eq!(typed.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(typed.connect_timeout, Duration::from_millis(1500));
    assert_eq!(typed.dns_refresh_rate, Duration::from_millis(1500));
    assert_eq!(typed.per_connection_buffer_limit_bytes, 32768);
    assert_eq!(
        typed.endpoints,
        vec![
            Endpoint::Dns { host: "backend.example".into(), port: 80 },
            Endpoint::Ip("10.0.0.1:81".parse().unwrap())
        ]
    );
    assert_eq!(
        typed.circuit_breakers,
        Thresholds { max_connections: 10, max_pending_requests: 20, max_requests: 1024, max_retries: 0 }
    );
    assert_eq!(typed.protocol, UpstreamProtocol::Http1);
    assert_eq!(typed.max_requests_per_connection, Some(7));
    assert_eq!(typed.idle_timeout, None);

    let legacy = &config.clusters[2];
    assert_eq!(legacy.protocol, UpstreamProtocol::Http1);
    assert_eq!(legacy.max_requests_per_connection, Some(3));
    assert_eq!(legacy.discovery, Discovery::Static);
}

#[test]
fn typed_http_protocol_options_http1_and_logical_dns_ip() {
    let clusters = r#"  - name: up
    type: LOGICAL_DNS
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http_protocol_options: {}}
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 10001}}}}]}]"#;
    let config = parse(&with("", "", clusters));
    assert_eq!(config.clusters[1].protocol, UpstreamProtocol::Http1);
    assert_eq!(config.clusters[1].endpoints, vec![Endpoint::Ip("127.0.0.1:10001".parse().unwrap())]);
}

#[test]
fn header_matchers_and_domains() {
    let text = with("", "", "")
        .replace(r#"domains: ["*"]"#, r#"domains: ["Example.COM", "*.example.org", "api.*"]"#);
    let text = text.replace(
        r#"match: {prefix: "/"}"#,
        r#"match:
                  path: /exact
                  headers:
                  - {name: ":Method", exact_match: POST}
                  - {name: x-a, string_match: {prefix: v, ignore_case: true}, invert_match: true}
                  - {name: x-b, present_match: false}
                  - {name: x-c}"#,
    );
    let config = parse(&text);
    let vh = &hcm_of(&config).route_config.virtual_hosts[0];
    assert_eq!(vh.domains, vec!["example.com", "*.example.org", "api.*"]);
    let m = &vh.routes[0].matcher;
    assert_eq!(m.path, PathMatch::Path("/exact".into()));
    let rules: Vec<_> = m.headers.iter().map(|h| (h.name.as_str(), h.rule.clone(), h.invert)).collect();
    assert_eq!(
        rules,
        vec![
            (":method", HeaderRule::Exact { value: "POST".into(), ignore_case: false }, false),
            ("x-a", HeaderRule::Prefix { value: "v".into(), ignore_case: true }, true),
            ("x-b", HeaderRule::Present(false), false),
            ("x-c", HeaderRule::Present(true), false),
        ]
    );
}

#[test]
fn unknown_fields_are_rejected_at_every_depth() {
    let cases = [
        ("node: {id: x}\n", "node: unknown field `node`"),
        (
            "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 1, ipv4_compat: true}}}\n",
            "admin.address.socket_address.ipv4_compat: unknown field `ipv4_compat`",
        ),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
    }

    let inside = |hcm: &str, route: &str, clusters: &str, want: &str| {
        let got = error(&with(hcm, route, clusters));
        assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
    };
    inside("          bogus: 1", "", "", &format!("{TYPED}.bogus: unknown field `bogus`"));
    inside(
        "          http_protocol_options: {header_key_format: {}}",
        "",
        "",
        &format!("{TYPED}.http_protocol_options.header_key_format: unknown field"),
    );
    inside(
        "",
        "                  retry_policy: {}",
        "",
        &format!(
            "{TYPED}.route_config.virtual_hosts[0].routes[0].route.retry_policy: unknown field `retry_policy`"
        ),
    );
    inside(
        "",
        "",
        "  - {name: d, transport_socket: {}}",
        "static_resources.clusters[1].transport_socket: unknown field",
    );

    let router = with("", "", "").replace(
        &format!(r#"typed_config: {{"@type": {ROUTER_TYPE_URL}}}"#),
        &format!(r#"typed_config: {{"@type": {ROUTER_TYPE_URL}, suppress_envoy_headers: true}}"#),
    );
    assert!(error(&router)
        .starts_with(&format!("{TYPED}.http_filters[0].typed_config.suppress_envoy_headers: unknown field")));

    let chain_match =
        with("", "", "").replace("    - filters:", "    - filter_chain_match: {}\n      filters:");
    assert!(error(&chain_match)
        .starts_with(&format!("{LISTENER}.filter_chains[0].filter_chain_match: unknown field")));
}

#[test]
fn typed_config_errors() {
    let unknown_type = with("", "", "")
        .replace(HCM_TYPE_URL, "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy");
    let got = error(&unknown_type);
    assert!(got.starts_with(&format!("{TYPED}.@type: unsupported network filter type")), "{got}");

    let untyped = with("", "", "").replace(&format!(r#"typed_config: {{"@type": {ROUTER_TYPE_URL}}}"#), "");
    assert_eq!(
        error(&untyped),
        format!("{TYPED}.http_filters[0]: Didn't find a registered implementation for 'envoy.filters.http.router' with type URL: ''")
    );

    let other_filter = with("", "", "")
        .replace(ROUTER_TYPE_URL, "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors");
    assert_eq!(
        error(&other_filter),
        format!("{TYPED}.http_filters[0].typed_config.@type: Didn't find a registered implementation for 'envoy.filters.http.router' with type URL: 'envoy.extensions.filters.http.cors.v3.Cors'")
    );

    let no_typed = with("", "", "").replace(&format!("          \"@type\": {HCM_TYPE_URL}\n"), "");
    assert_eq!(error(&no_typed), format!("{TYPED}: missing @type"));

    let bare = r#"
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains: [{filters: [{name: hcm}]}]
"#;
    assert_eq!(error(bare), format!("{LISTENER}.filter_chains[0].filters[0]: missing typed_config"));
}

#[test]
fn value_errors_name_their_path() {
    let hcm_case = |extra: &str, want: &str| assert_eq!(error(&with(extra, "", "")), want);
    hcm_case(
        "          upgrade_configs: [{upgrade_type: websocket}, {upgrade_type: \"\"}]",
        &format!("{TYPED}.upgrade_configs[1].upgrade_type: empty"),
    );
    hcm_case(
        "          stream_idle_timeout: 5",
        &format!("{TYPED}.stream_idle_timeout: invalid duration 5: expected a duration such as \"5s\" or \"0.25s\" (a string with an 's' suffix)"),
    );
    hcm_case(
        "          stream_idle_timeout: 5m",
        &format!("{TYPED}.stream_idle_timeout: invalid duration '5m': missing the 's' suffix; expected a duration such as \"5s\" or \"0.25s\""),
    );
    hcm_case(
        "          max_request_headers_kb: 9000",
        &format!("{TYPED}.max_request_headers_kb: 9000 is out of range (1..=8192)"),
    );
    hcm_case(
        "          codec_type: SPDY",
        &format!(
            "{TYPED}.codec_type: unknown variant `SPDY`, expected one of `AUTO`, `HTTP1`, `HTTP2`, `HTTP3`"
        ),
    );

    let route_case = |extra: &str, want: &str| assert_eq!(error(&with("", extra, "")), want);
    let route = format!("{TYPED}.route_config.virtual_hosts[0].routes[0].route");
    route_case(
        "                  upgrade_configs: [{upgrade_type: websocket, connect_config: {}}]",
        &format!(
            "{route}.upgrade_configs[0].connect_config: Non-CONNECT upgrade type websocket has ConnectConfig"
        ),
    );

    let unknown_cluster = with("", "", "").replace("cluster: c\n", "cluster: nope\n");
    assert_eq!(error(&unknown_cluster), format!("{route}.cluster: unknown cluster 'nope'"));

    let two_matchers =
        with("", "", "").replace(r#"match: {prefix: "/"}"#, r#"match: {prefix: "/", connect_matcher: {}}"#);
    assert_eq!(
        error(&two_matchers),
        format!("{TYPED}.route_config.virtual_hosts[0].routes[0].match: only one of prefix, path, safe_regex and connect_matcher may be set")
    );
    let bad_domain = with("", "", "").replace(r#"domains: ["*"]"#, r#"domains: ["a.*.com"]"#);
    assert!(error(&bad_domain)
        .starts_with(&format!("{TYPED}.route_config.virtual_hosts[0].domains[0]: 'a.*.com'")));
}

#[test]
fn address_errors() {
    let port = with("", "", "").replace("port_value: 10000", "port_value: 70000");
    assert_eq!(
        error(&port),
        format!("{LISTENER}.address.socket_address.port_value: 70000 is out of range (0..=65535)")
    );

    let name = with("", "", "")
        .replace("address: 127.0.0.1, port_value: 10000", "address: localhost, port_value: 10000");
    assert_eq!(
        error(&name),
        format!("{LISTENER}.address.socket_address.address: 'localhost' is not a valid IP address")
    );

    let static_name =
        with("", "", "").replace("address: 127.0.0.1, port_value: 1", "address: backend, port_value: 1");
    assert!(error(&static_name).starts_with(
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: 'backend' is not a valid IP address"
    ));
}

#[test]
fn cluster_validation() {
    let case = |clusters: &str, want: &str| {
        let got = error(&with("", "", clusters));
        assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
    };
    case(
        "  - {name: o, type: ORIGINAL_DST}",
        "static_resources.clusters[1].lb_policy: only CLUSTER_PROVIDED",
    );
    case(
        "  - {name: o, lb_policy: CLUSTER_PROVIDED}",
        "static_resources.clusters[1].lb_policy: CLUSTER_PROVIDED is not valid",
    );
    case(
        "  - {name: s}",
        "static_resources.clusters[1].load_assignment: a STATIC cluster needs at least one endpoint",
    );
    case(
        "  - {name: l, type: LOGICAL_DNS}",
        "static_resources.clusters[1].load_assignment: LOGICAL_DNS clusters must have a single",
    );
    case(
        "  - {name: c, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED}",
        "static_resources.clusters[1].name: duplicate cluster name 'c'",
    );
    case(
        "  - {name: o, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 0s}",
        "static_resources.clusters[1].connect_timeout: must be greater than 0s",
    );
    case("  - {name: o, type: EDS}", "static_resources.clusters[1].type: unknown variant `EDS`");
    case(
        "  - {name: o, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, http_protocol_options: {}, typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http_protocol_options: {}}}}}",
        "static_resources.clusters[1].http_protocol_options: cannot be combined with typed_extension_protocol_options",
    );
    case(
        "  - {name: o, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {}}}}",
        "static_resources.clusters[1].typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"].explicit_http_config: missing http_protocol_options",
    );
}

#[test]
fn dns_lookup_family_takes_envoys_five_values() {
    let family = |line: &str| {
        let clusters = format!("  - {{name: d, type: STRICT_DNS{line}, load_assignment: {{endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: d.test, port_value: 1}}}}}}}}]}}]}}}}");
        parse(&with("", "", &clusters)).clusters[1].dns_lookup_family
    };
    assert_eq!(family(""), Family::Auto);
    assert_eq!(family(", dns_lookup_family: AUTO"), Family::Auto);
    assert_eq!(family(", dns_lookup_family: V4_ONLY"), Family::V4Only);
    assert_eq!(family(", dns_lookup_family: V6_ONLY"), Family::V6Only);
    assert_eq!(family(", dns_lookup_family: V4_PREFERRED"), Family::V4Preferred);
    assert_eq!(family(", dns_lookup_family: ALL"), Family::All);
    // The field is allowed on every cluster type (it matters where names are resolved).
    let odst = "  - {name: o, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, dns_lookup_family: V6_ONLY}";
    assert_eq!(parse(&with("", "", odst)).clusters[1].dns_lookup_family, Family::V6Only);
    let got = error(&with(
        "",
        "",
        "  - {name: o, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, dns_lookup_family: V4_FIRST}",
    ));
    assert!(
        got.starts_with("static_resources.clusters[1].dns_lookup_family: unknown variant `V4_FIRST`, expected one of `AUTO`, `V4_ONLY`, `V6_ONLY`, `V4_PREFERRED`, `ALL`"),
        "{got}"
    );
}

#[test]
fn yaml_syntax_errors_carry_the_position() {
    let got = error("static_resources:\n  listeners: [\n");
    assert!(got.starts_with("invalid YAML: ") && got.contains("line 2"), "{got}");
    let got = error("admin:\n  address: x\n    port: 1\n");
    assert!(got.contains("line 3, column"), "{got}");
    assert_eq!(error(""), "the configuration is empty");
}

#[test]
fn durations() {
    use super::raw::parse_duration;
    assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
    assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
    for bad in ["5", "s", "-1s", "1.2.3s", "1.0000000001s", "1 s", "1e3s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

/// The router entry of [`with`]'s `http_filters`, for replacing the whole chain.
fn router_entry() -> String {
    format!(
        "          http_filters:\n          - name: envoy.filters.http.router\n            typed_config: {{\"@type\": {ROUTER_TYPE_URL}}}\n"
    )
}

/// [`with`] with its HTTP filter chain replaced by `filters` (the `http_filters` key and list,
/// indented to sit under `typed_config`) and `hcm_extra` added.
fn with_filters(filters: &str, hcm_extra: &str) -> String {
    with(hcm_extra, "", "").replace(&router_entry(), filters)
}

/// [`with`] with its only route replaced by `routes` (list entries indented by 14 spaces).
fn with_routes(routes: &str) -> String {
    let text = with("", "", "");
    let only =
        "              - match: {prefix: \"/\"}\n                route:\n                  cluster: c\n";
    assert!(text.contains(only));
    text.replace(only, &format!("{routes}\n"))
}

const ROUTES: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes";

#[test]
fn shipped_configs_load() {
    for text in [
        include_str!("../../../configs/default.yaml"),
        include_str!("../../../configs/terminate_http1_connect.yaml"),
    ] {
        parse(text);
    }
}

#[test]
fn http_filters_upgrade_chains_and_hcm_options() {
    let filters = format!(
        r#"          http_filters:
          - name: buf
            disabled: true
            typed_config: {{"@type": {BUFFER_TYPE_URL}, max_request_bytes: "1024"}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE_URL}}}
          upgrade_configs:
          - upgrade_type: websocket
            filters: [{{name: r2, typed_config: {{"@type": {ROUTER_TYPE_URL}}}}}]
          - {{upgrade_type: foo, filters: []}}
"#
    );
    let hcm = r#"          common_http_protocol_options: {idle_timeout: 0s}
          request_headers_timeout: 30s
          use_remote_address: true
          generate_request_id: false
          server_name: burrow"#;
    let config = parse(&with_filters(&filters, hcm));
    let h = hcm_of(&config);
    let buffer = HttpFilter {
        name: "buf".into(),
        kind: HttpFilterKind::Buffer { max_request_bytes: 1024 },
        disabled: true,
    };
    assert_eq!(h.http_filters, vec![buffer, router()]);
    let r2 = HttpFilter { name: "r2".into(), ..router() };
    assert_eq!(
        h.upgrade_configs,
        vec![
            UpgradeConfig { upgrade_type: "websocket".into(), enabled: true, filters: Some(vec![r2]) },
            UpgradeConfig { upgrade_type: "foo".into(), enabled: true, filters: None },
        ]
    );
    assert_eq!(h.idle_timeout, None);
    assert_eq!(h.request_headers_timeout, Some(Duration::from_secs(30)));
    assert!(h.use_remote_address && !h.generate_request_id);
    assert_eq!(h.server_name, "burrow");

    // `request_timeout: 0s` is the default (disabled), so it is accepted.
    let config = parse(&with(
        "          common_http_protocol_options: {idle_timeout: 7s}\n          request_headers_timeout: 0s\n          request_timeout: 0s",
        "",
        "",
    ));
    assert_eq!(
        (hcm_of(&config).idle_timeout, hcm_of(&config).request_headers_timeout),
        (Some(Duration::from_secs(7)), None)
    );
}

#[test]
fn http_filter_errors() {
    let buffer = |body: &str| {
        format!("          - name: buf\n            typed_config: {{\"@type\": {BUFFER_TYPE_URL}{body}}}\n")
    };
    let router = "          - name: envoy.filters.http.router\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\n";
    let case = |filters: String, want: &str| {
        let got = error(&with_filters(&filters, ""));
        assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
    };
    let chain = |entries: &[&str]| format!("          http_filters:\n{}", entries.concat());
    let b = buffer(", max_request_bytes: 10");
    case(chain(&[&b]), &format!("{TYPED}.http_filters: the HTTP filter chain must end with the router"));
    case(chain(&[router, &b]), &format!("{TYPED}.http_filters[0]: the router must be the last HTTP filter"));
    case(
        chain(&[
            &router.replace("- name: envoy.filters.http.router", "- name: r\n            disabled: true")
        ]),
        &format!("{TYPED}.http_filters[0].disabled: the router cannot be disabled"),
    );
    case(
        chain(&[&buffer(""), router]),
        &format!("{TYPED}.http_filters[0].typed_config: missing max_request_bytes"),
    );
    case(
        chain(&[&buffer(", max_request_bytes: 0"), router]),
        &format!("{TYPED}.http_filters[0].typed_config.max_request_bytes: must be greater than 0"),
    );
    case(
        chain(&[&buffer(", max_request_bytes: ten"), router]),
        &format!("{TYPED}.http_filters[0].typed_config.max_request_bytes: 'ten' is not a valid uint32"),
    );
    case(
        chain(&[&buffer(", max_request_bytes: 1, max_request_time: 1s"), router]),
        &format!("{TYPED}.http_filters[0].typed_config.max_request_time: unknown field"),
    );
    case(
        chain(&[router]).replace("- name: envoy.filters.http.router", "- name: \"\""),
        &format!("{TYPED}.http_filters[0].name: empty"),
    );

    let upgrade = |filters: &str| {
        format!("{}          upgrade_configs:\n          - upgrade_type: websocket\n            filters:\n{filters}", router_entry())
    };
    case(
        upgrade(&b.replace("          ", "            ")),
        &format!("{TYPED}.upgrade_configs[0].filters: the HTTP filter chain must end with the router"),
    );
    case(
        upgrade(&[router, &b].concat().replace("          ", "            ")),
        &format!("{TYPED}.upgrade_configs[0].filters[0]: the router must be the last HTTP filter"),
    );

    let hcm_case = |extra: &str, want: &str| assert_eq!(error(&with(extra, "", "")), want);
    hcm_case(
        "          server_name: \"a\\r\\nb\"",
        &format!("{TYPED}.server_name: must not contain NUL, CR or LF"),
    );
    hcm_case(
        "          use_remote_address: 1",
        &format!("{TYPED}.use_remote_address: invalid type: integer `1`, expected a boolean"),
    );
}

#[test]
fn route_matchers_actions_and_per_filter_configs() {
    let routes = format!(
        r#"              - match:
                  safe_regex: {{google_re2: {{}}, regex: "/api/v[0-9]+/.*"}}
                  headers:
                  - {{name: x-re, string_match: {{safe_regex: {{regex: "a+|ab"}}}}}}
                  - {{name: x-old, safe_regex_match: {{regex: b}}}}
                route:
                  cluster: c
                  prefix_rewrite: /new
                  host_rewrite_literal: example.com
                  timeout: 0s
                  idle_timeout: 0s
                typed_per_filter_config:
                  buf: {{"@type": {FILTER_CONFIG_TYPE_URL}, disabled: true}}
                  auth: {{"@type": {FILTER_CONFIG_TYPE_URL}, is_optional: true}}
                  buf2: {{"@type": {BUFFER_PER_ROUTE_TYPE_URL}, disabled: true}}
              - match: {{prefix: /x}}
                route: {{cluster: c, timeout: 2s, idle_timeout: 5s, prefix_rewrite: ""}}
              - match: {{prefix: /}}
                direct_response: {{status: 503, body: {{inline_string: nope}}}}
              - match: {{path: /empty}}
                direct_response: {{status: "204"}}"#
    );
    let config = parse(&with_routes(&routes));
    let routes = &hcm_of(&config).route_config.virtual_hosts[0].routes;

    let PathMatch::Regex(re) = &routes[0].matcher.path else { panic!("{:?}", routes[0].matcher.path) };
    assert_eq!(re.source, "/api/v[0-9]+/.*");
    assert!(re.compiled.is_match("/api/v1/x") && !re.compiled.is_match("/x/api/v1/"));
    let HeaderRule::Regex(re) = &routes[0].matcher.headers[0].rule else { panic!() };
    // Anchored as a whole: the second alternative matches all of "ab".
    assert_eq!(re.compiled.find("ab").map(|m| m.range()), Some(0..2));
    assert!(!re.compiled.is_match("abc"));
    assert!(matches!(&routes[0].matcher.headers[1].rule, HeaderRule::Regex(r) if r.source == "b"));
    assert_eq!(
        routes[0].action,
        RouteAction::Route(RouteTarget {
            prefix_rewrite: Some("/new".into()),
            host_rewrite_literal: Some("example.com".into()),
            timeout: None,
            idle_timeout: Some(None),
            ..target(0, vec![])
        })
    );
    let mut disabled = routes[0].disabled_filters.clone();
    disabled.sort();
    assert_eq!(
        (disabled, routes[0].enabled_filters.clone()),
        (vec!["buf".into(), "buf2".into()], vec!["auth".to_string()])
    );

    assert_eq!(
        routes[1].action,
        RouteAction::Route(RouteTarget {
            timeout: Some(Duration::from_secs(2)),
            idle_timeout: Some(Some(Duration::from_secs(5))),
            ..target(0, vec![])
        })
    );
    assert!(routes[1].disabled_filters.is_empty() && routes[1].enabled_filters.is_empty());
    assert_eq!(routes[2].action, RouteAction::DirectResponse { status: 503, body: Some("nope".into()) });
    assert_eq!(routes[3].action, RouteAction::DirectResponse { status: 204, body: None });
}

#[test]
fn route_errors() {
    let case = |route: &str, want: &str| {
        let got = error(&with_routes(route));
        assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
    };
    let r0 = format!("{ROUTES}[0]");
    let target = "route: {cluster: c}";
    case(
        &format!("              - {{match: {{safe_regex: {{regex: \"(abc\"}}}}, {target}}}"),
        &format!("{r0}.match.safe_regex.regex: invalid regex: regex parse error"),
    );
    case(
        &format!("              - {{match: {{safe_regex: {{regex: \"\"}}}}, {target}}}"),
        &format!("{r0}.match.safe_regex.regex: empty"),
    );
    case(
        &format!("              - {{match: {{safe_regex: {{regex: \"a)|(b\"}}}}, {target}}}"),
        &format!("{r0}.match.safe_regex.regex: invalid regex"),
    );
    case(
        &format!("              - {{match: {{prefix: /, safe_regex: {{regex: a}}}}, {target}}}"),
        &format!("{r0}.match: only one of prefix, path, safe_regex and connect_matcher may be set"),
    );
    case(
        &format!("              - {{match: {{prefix: /, headers: [{{name: x, string_match: {{safe_regex: {{regex: \"[\"}}}}}}]}}, {target}}}"),
        &format!("{r0}.match.headers[0].string_match.safe_regex.regex: invalid regex"),
    );
    case(
        &format!("              - {{match: {{prefix: /, headers: [{{name: x, string_match: {{exact: a, safe_regex: {{regex: a}}}}}}]}}, {target}}}"),
        &format!("{r0}.match.headers[0].string_match: only one of exact, prefix, suffix, contains and safe_regex may be set"),
    );
    case(
        &format!("              - {{match: {{prefix: /, headers: [{{name: x, safe_regex_match: {{regex: \"*\"}}}}]}}, {target}}}"),
        &format!("{r0}.match.headers[0].safe_regex_match.regex: invalid regex"),
    );
    case(
        &format!("              - {{match: {{prefix: /}}, {target}, direct_response: {{status: 200}}}}"),
        &format!("{r0}: only one of route and direct_response may be set"),
    );
    case(
        "              - {match: {prefix: /}}",
        &format!("{r0}: one of route or direct_response is required"),
    );
    case(
        "              - {match: {prefix: /}, redirect: {host_redirect: x}}",
        &format!("{r0}.redirect: unsupported"),
    );
    let direct = |body: &str| format!("              - {{match: {{prefix: /}}, direct_response: {body}}}");
    case(&direct("{status: 100}"), &format!("{r0}.direct_response.status: 100 is out of range (200..=599)"));
    case(&direct("{body: {inline_string: x}}"), &format!("{r0}.direct_response: missing status"));
    case(
        &direct("{status: 200, body: {filename: /etc/passwd}}"),
        &format!("{r0}.direct_response.body.filename: unsupported: burrow does not read files here"),
    );
    case(
        &direct(&format!("{{status: 200, body: {{inline_string: {}}}}}", "x".repeat(4097))),
        &format!(
            "{r0}.direct_response.body.inline_string: response body size is 4097 bytes; maximum is 4096"
        ),
    );
    case(
        "              - {match: {prefix: /}, route: {cluster: c, host_rewrite_literal: \"a\\nb\"}}",
        &format!("{r0}.route.host_rewrite_literal: must not contain NUL, CR or LF"),
    );
    case(
        "              - {match: {prefix: /}, route: {cluster: c, timeout: 5}}",
        &format!("{r0}.route.timeout: invalid duration 5"),
    );

    let per_filter = |config: &str| {
        format!(
            "              - {{match: {{prefix: /}}, {target}, typed_per_filter_config: {{f: {config}}}}}"
        )
    };
    let pf = format!("{r0}.typed_per_filter_config[\"f\"]");
    case(
        &per_filter("{\"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy}"),
        &format!("{pf}.@type: unsupported per-filter config type"),
    );
    case(&per_filter("{disabled: true}"), &format!("{pf}: missing @type"));
    case(
        &per_filter(&format!("{{\"@type\": {FILTER_CONFIG_TYPE_URL}, disabled: true, bogus: 1}}")),
        &format!("{pf}.bogus: unknown field"),
    );
    case(
        &per_filter(&format!("{{\"@type\": {FILTER_CONFIG_TYPE_URL}, config: {{}}}}")),
        &format!("{pf}.config: unsupported"),
    );
    case(
        &per_filter(&format!("{{\"@type\": {BUFFER_PER_ROUTE_TYPE_URL}, buffer: {{max_request_bytes: 5}}}}")),
        &format!("{pf}.buffer: unsupported"),
    );
    case(
        &per_filter(&format!("{{\"@type\": {BUFFER_PER_ROUTE_TYPE_URL}, disabled: false}}")),
        &format!("{pf}.disabled: must be true"),
    );
    case(
        &per_filter(&format!("{{\"@type\": {BUFFER_PER_ROUTE_TYPE_URL}}}")),
        &format!("{pf}: one of disabled or buffer is required"),
    );

    let vhost_level = with("", "", "").replace(
        "              domains: [\"*\"]\n",
        &format!("              domains: [\"*\"]\n              typed_per_filter_config: {{f: {{\"@type\": {FILTER_CONFIG_TYPE_URL}}}}}\n"),
    );
    assert!(error(&vhost_level).starts_with(&format!(
        "{TYPED}.route_config.virtual_hosts[0].typed_per_filter_config: unknown field"
    )));
}

/// Asserts that `text` is refused at `path` with a "not supported yet" message.
#[track_caller]
fn refused_as_unsupported(text: &str, path: &str) {
    let got = error(text);
    assert!(
        got.starts_with(&format!("{path}: ")) && got.contains("not supported yet"),
        "got {got:?}, want {path}: ... not supported yet ..."
    );
}

#[test]
fn udp_listeners_are_not_supported_yet() {
    let udp = with("", "", "").replace(
        "address: {socket_address: {address: 127.0.0.1, port_value: 10000}}",
        "address: {socket_address: {protocol: UDP, address: 127.0.0.1, port_value: 10000}}",
    );
    refused_as_unsupported(&udp, &format!("{LISTENER}.address.socket_address.protocol"));
    assert!(error(&udp).contains("UDP is not supported yet"));
    // Also with the codec that would go with it.
    refused_as_unsupported(
        &udp.replace("stat_prefix: p", "stat_prefix: p\n          codec_type: HTTP3"),
        &format!("{LISTENER}.address.socket_address.protocol"),
    );
}

#[test]
fn http2_and_http3_codecs_are_not_supported_yet() {
    for codec in ["HTTP2", "HTTP3"] {
        let text = with(&format!("          codec_type: {codec}"), "", "");
        refused_as_unsupported(&text, &format!("{TYPED}.codec_type"));
        assert!(error(&text).contains(&format!("{codec} is not supported yet")), "{}", error(&text));
    }
    for codec in ["AUTO", "HTTP1"] {
        let config = parse(&with(&format!("          codec_type: {codec}"), "", ""));
        let want = if codec == "AUTO" { CodecType::Auto } else { CodecType::Http1 };
        assert_eq!(hcm_of(&config).codec_type, want);
    }
}

#[test]
fn hcm_http2_options_and_request_timeout_are_not_supported_yet() {
    for options in ["{allow_connect: true}", "{allow_connect: false}", "{}", "{max_concurrent_streams: 5}"] {
        refused_as_unsupported(
            &with(&format!("          http2_protocol_options: {options}"), "", ""),
            &format!("{TYPED}.http2_protocol_options"),
        );
    }
    refused_as_unsupported(
        &with("          request_timeout: 30s", "", ""),
        &format!("{TYPED}.request_timeout"),
    );
}

#[test]
fn cluster_http2_http3_and_automatic_protocols_are_not_supported_yet() {
    let c1 = "static_resources.clusters[1]";
    let cluster = |extra: &str| {
        format!("  - name: o\n    type: ORIGINAL_DST\n    lb_policy: CLUSTER_PROVIDED\n{extra}")
    };
    refused_as_unsupported(
        &with("", "", &cluster("    http2_protocol_options: {}")),
        &format!("{c1}.http2_protocol_options"),
    );
    refused_as_unsupported(
        &with("", "", &cluster("    http_protocol_options: {}\n    http2_protocol_options: {}")),
        &format!("{c1}.http2_protocol_options"),
    );
    let typed = |body: &str| {
        cluster(&format!(
            "    typed_extension_protocol_options:\n      {HTTP_PROTOCOL_OPTIONS_NAME}:\n        \"@type\": {HTTP_PROTOCOL_OPTIONS_TYPE_URL}\n        {body}"
        ))
    };
    let hpo = format!("{c1}.typed_extension_protocol_options[\"{HTTP_PROTOCOL_OPTIONS_NAME}\"]");
    refused_as_unsupported(
        &with("", "", &typed("explicit_http_config: {http2_protocol_options: {allow_connect: true}}")),
        &format!("{hpo}.explicit_http_config.http2_protocol_options"),
    );
    refused_as_unsupported(
        &with("", "", &typed("explicit_http_config: {http3_protocol_options: {}}")),
        &format!("{hpo}.explicit_http_config.http3_protocol_options"),
    );
    refused_as_unsupported(
        &with(
            "",
            "",
            &typed("explicit_http_config: {http_protocol_options: {}, http2_protocol_options: {}}"),
        ),
        &format!("{hpo}.explicit_http_config.http2_protocol_options"),
    );
    refused_as_unsupported(
        &with("", "", &typed("auto_config: {http_protocol_options: {}, http2_protocol_options: {}}")),
        &format!("{hpo}.auto_config"),
    );
    refused_as_unsupported(
        &with("", "", &typed("use_downstream_protocol_config: {}")),
        &format!("{hpo}.use_downstream_protocol_config"),
    );
}

#[test]
fn least_request_and_random_balancing_are_not_supported_yet() {
    for policy in ["LEAST_REQUEST", "RANDOM"] {
        let text =
            with("", "", "").replace("  - name: c\n", &format!("  - name: c\n    lb_policy: {policy}\n"));
        refused_as_unsupported(&text, "static_resources.clusters[0].lb_policy");
        assert!(error(&text).contains(&format!("{policy} is not supported yet")));
    }
}

#[test]
fn connect_udp_termination_and_allow_post_are_not_supported_yet() {
    let route = format!("{TYPED}.route_config.virtual_hosts[0].routes[0].route.upgrade_configs[0]");
    refused_as_unsupported(
        &with("", "                  upgrade_configs: [{upgrade_type: CONNECT, connect_config: {allow_post: true}}]", ""),
        &format!("{route}.connect_config.allow_post"),
    );
    refused_as_unsupported(
        &with("", "                  upgrade_configs: [{upgrade_type: CONNECT-UDP, connect_config: {}}]", ""),
        &format!("{route}.connect_config"),
    );
    // A CONNECT-UDP upgrade without termination is a plain upgrade token, which burrow passes on.
    parse(&with("", "                  upgrade_configs: [{upgrade_type: CONNECT-UDP}]", ""));
}

#[test]
fn admin_access_logs_are_not_supported_yet() {
    let admin = |block: &str| {
        format!(
            "admin:\n{block}\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 9901}}}}\n{}",
            with("", "", "")
        )
    };
    refused_as_unsupported(&admin("  access_log_path: /tmp/admin.log"), "admin.access_log_path");
    refused_as_unsupported(&admin("  access_log: [{name: envoy.access_loggers.stdout}]"), "admin.access_log");
    for fine in ["  access_log_path: /dev/null", "  access_log_path: \"\"", "  access_log: []"] {
        parse(&admin(fine));
    }
}
