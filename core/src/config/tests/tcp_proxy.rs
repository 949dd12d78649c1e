//! The TCP proxy network filter and its `tunneling_config`.

use super::*;

/// A listener running the TCP proxy with `body` (indented under `typed_config`), beside
/// clusters `a` and `b`.
fn tcp(body: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: t
    address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
    filter_chains:
    - filters:
      - name: tcp
        typed_config:
          "@type": {TCP_PROXY_TYPE_URL}
{body}
  clusters:
  - name: a
    load_assignment: {{endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}}}}}]}}]}}
  - name: b
    load_assignment: {{endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 2}}}}}}}}]}}]}}
"#
    )
}

#[test]
fn a_plain_tcp_proxy_takes_envoys_defaults() {
    let config = parse(&tcp("          stat_prefix: s\n          cluster: b"));
    let proxy = config.listeners[0].tcp_proxy();
    assert_eq!(proxy.stat_prefix, "s");
    assert_eq!(proxy.clusters, [ClusterWeight { cluster: 1, weight: 1 }]);
    assert_eq!(proxy.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!((proxy.max_connect_attempts, proxy.max_downstream_connection_duration), (1, None));
    assert!(proxy.tunneling.is_none());
    assert!(config.listeners[0].http().is_none());
}

#[test]
fn tunneling_config_fields_and_weighted_clusters() {
    let config = parse(&tcp("          stat_prefix: s
          weighted_clusters: {clusters: [{name: a, weight: 1}, {name: b, weight: 3}]}
          idle_timeout: 0s
          max_connect_attempts: 3
          max_downstream_connection_duration: 10s
          tunneling_config:
            hostname: \"%DOWNSTREAM_LOCAL_ADDRESS%\"
            use_post: true
            post_path: /up
            headers_to_add:
            - header: {key: X-Port, value: \"%DOWNSTREAM_LOCAL_PORT%\"}
            - header: {key: x-port, value: again}
              append_action: OVERWRITE_IF_EXISTS_OR_ADD"));
    let proxy = config.listeners[0].tcp_proxy();
    assert_eq!(
        proxy.clusters,
        [ClusterWeight { cluster: 0, weight: 1 }, ClusterWeight { cluster: 1, weight: 3 }]
    );
    assert_eq!(proxy.idle_timeout, None, "zero disables");
    assert_eq!(proxy.max_connect_attempts, 3);
    assert_eq!(proxy.max_downstream_connection_duration, Some(Duration::from_secs(10)));
    let tunneling = proxy.tunneling.as_ref().unwrap();
    assert!(tunneling.use_post);
    assert_eq!(tunneling.post_path, "/up");
    let added: Vec<_> = tunneling.headers_to_add.iter().map(|h| (h.name.as_str(), h.action)).collect();
    assert_eq!(added, [("x-port", HeaderAction::Append), ("x-port", HeaderAction::Overwrite)]);
}

#[test]
fn tcp_proxy_errors_name_the_field() {
    let path = TYPED;
    let cases = [
        ("          cluster: a", format!("{path}.stat_prefix: empty")),
        ("          stat_prefix: s", format!("{path}: needs a cluster (cluster or weighted_clusters)")),
        ("          stat_prefix: s\n          cluster: nope", format!("{path}.cluster: unknown cluster 'nope'")),
        (
            "          stat_prefix: s\n          cluster: a\n          weighted_clusters: {clusters: [{name: a, weight: 1}]}",
            format!("{path}: cluster and weighted_clusters are exclusive: set one"),
        ),
        (
            "          stat_prefix: s\n          weighted_clusters: {clusters: [{name: a}]}",
            format!("{path}.weighted_clusters.clusters[0].weight: must be at least 1"),
        ),
        (
            "          stat_prefix: s\n          cluster: a\n          max_connect_attempts: 0",
            format!("{path}.max_connect_attempts: must be at least 1"),
        ),
        (
            "          stat_prefix: s\n          cluster: a\n          tunneling_config: {hostname: h, post_path: /x}",
            format!("{path}.tunneling_config.post_path: needs use_post: true"),
        ),
        (
            "          stat_prefix: s\n          cluster: a\n          tunneling_config: {use_post: true}",
            format!("{path}.tunneling_config.hostname: empty"),
        ),
        (
            "          stat_prefix: s\n          cluster: a\n          tunneling_config: {hostname: h, headers_to_add: [{header: {key: Host, value: x}}]}",
            format!("{path}.tunneling_config.headers_to_add[0].header.key: cannot set host (the hostname field does)"),
        ),
        (
            "          stat_prefix: s\n          cluster: a\n          tunneling_config: {hostname: h, headers_to_add: [{header: {key: \":path\", value: x}}]}",
            format!("{path}.tunneling_config.headers_to_add[0].header.key: must be a header name"),
        ),
        (
            "          stat_prefix: s\n          cluster: a\n          tunneling_config: {hostname: h}\n          hash_policy: []",
            format!("{path}.hash_policy: unknown field"),
        ),
    ];
    for (body, want) in cases {
        let got = error(&tcp(body));
        assert!(got.starts_with(&want), "{body}\n got: {got}\nwant: {want}");
    }
    let bad_operator = error(&tcp(
        "          stat_prefix: s\n          cluster: a\n          tunneling_config: {hostname: \"%NOPE%\"}",
    ));
    assert!(bad_operator.starts_with(&format!("{path}.tunneling_config.hostname: ")), "{bad_operator}");
    assert!(bad_operator.contains("NOPE"), "{bad_operator}");
}
