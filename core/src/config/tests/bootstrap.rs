//! Whole configs: Envoy's own example, JSON, the shipped configs, YAML syntax and durations.

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

#[test]
fn terminate_http1_connect() {
    let config = parse(TERMINATE_HTTP1_CONNECT);
    assert_eq!(
        config.admin,
        Some(Admin { address: "127.0.0.1:9902".parse().unwrap(), access_log_path: None })
    );

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
        connect_config: Some(ConnectConfig::default()),
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
fn shipped_configs_load() {
    for text in [
        include_str!("../../../../configs/default.yaml"),
        include_str!("../../../../configs/terminate_http1_connect.yaml"),
    ] {
        parse(text);
    }
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
