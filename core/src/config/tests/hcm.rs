//! The HTTP connection manager: its options, filter chains and upgrade types.

use std::time::Duration;

use super::*;

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
    assert_eq!(target.upgrade_configs[0].connect_config, Some(ConnectConfig::default()));

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
fn upgrades_on_a_buffering_default_chain_are_warned_about() {
    let filters = |buffer_disabled: bool| {
        format!(
            r#"          http_filters:
          - name: buf
            disabled: {buffer_disabled}
            typed_config: {{"@type": {BUFFER_TYPE_URL}, max_request_bytes: 10}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE_URL}}}
          upgrade_configs:
          - upgrade_type: websocket
          - upgrade_type: CONNECT
          - {{upgrade_type: h2c, enabled: false}}
          - upgrade_type: own
            filters: [{{name: r, typed_config: {{"@type": {ROUTER_TYPE_URL}}}}}]
"#
        )
    };
    let warnings = parse(&with_filters(&filters(false), "")).warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("listener 'l': upgrade type 'websocket' runs the default http_filters"));
    // A buffer filter switched off by default holds nothing back.
    assert_eq!(parse(&with_filters(&filters(true), "")).warnings(), Vec::<String>::new());
}
