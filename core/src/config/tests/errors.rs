//! Errors name the field path, at every depth and inside `typed_config` bodies.

use super::*;

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
    let unknown_type = with("", "", "").replace(
        HCM_TYPE_URL,
        "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy",
    );
    let got = error(&unknown_type);
    assert!(got.starts_with(&format!("{TYPED}.@type: unsupported network filter type")), "{got}");

    // Envoy's example configs name the router without a typed_config: the name says which.
    let untyped = with("", "", "").replace(&format!(r#"typed_config: {{"@type": {ROUTER_TYPE_URL}}}"#), "");
    let config = parse(&untyped);
    assert_eq!(config.listeners[0].hcm().http_filters[0].kind, HttpFilterKind::Router);
    let untyped_other = untyped.replace("name: envoy.filters.http.router", "name: envoy.filters.http.cors");
    assert_eq!(
        error(&untyped_other),
        format!("{TYPED}.http_filters[0]: Didn't find a registered implementation for 'envoy.filters.http.cors' with type URL: ''")
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
