//! Clusters: discovery types, endpoints and upstream protocol options.

use super::*;

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
