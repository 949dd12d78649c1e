//! What burrow parses but refuses as "not supported yet", rather than ignoring it.

use super::*;

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
fn the_http3_codec_is_not_supported_yet() {
    let text = with("          codec_type: HTTP3", "", "");
    refused_as_unsupported(&text, &format!("{TYPED}.codec_type"));
    assert!(error(&text).contains("HTTP3 is not supported yet"), "{}", error(&text));
    for (codec, want) in [("AUTO", CodecType::Auto), ("HTTP1", CodecType::Http1), ("HTTP2", CodecType::Http2)]
    {
        let config = parse(&with(&format!("          codec_type: {codec}"), "", ""));
        assert_eq!(hcm_of(&config).codec_type, want);
    }
}

#[test]
fn hcm_http2_options_are_read_and_checked_against_envoys_ranges() {
    let options = |text: &str| {
        hcm_of(&parse(&with(&format!("          http2_protocol_options: {text}"), "", "")))
            .http2_protocol_options
    };
    assert_eq!(options("{}"), Http2Options::default());
    let keepalive = options("{connection_keepalive: {interval: 2s, timeout: 1s}}").keepalive;
    assert_eq!(
        keepalive,
        Some(Keepalive { interval: Duration::from_secs(2), timeout: Duration::from_secs(1) })
    );
    let set = options("{allow_connect: true, max_concurrent_streams: 5, initial_stream_window_size: 65535, initial_connection_window_size: 1048576}");
    assert_eq!(
        set,
        Http2Options {
            max_concurrent_streams: 5,
            initial_stream_window_size: 65535,
            initial_connection_window_size: 1 << 20,
            allow_connect: true,
            keepalive: None,
        }
    );
    for (text, field) in [
        ("{initial_stream_window_size: 100}", "initial_stream_window_size"),
        ("{max_concurrent_streams: 0}", "max_concurrent_streams"),
        ("{initial_connection_window_size: 4294967295}", "initial_connection_window_size"),
        ("{hpack_table_size: 10}", "hpack_table_size"),
        ("{connection_keepalive: {interval: 1s}}", "connection_keepalive.timeout"),
        (
            "{connection_keepalive: {interval: 1s, timeout: 1s, interval_jitter: {value: 5}}}",
            "interval_jitter",
        ),
    ] {
        let message = error(&with(&format!("          http2_protocol_options: {text}"), "", ""));
        assert!(
            message.contains(&format!("{TYPED}.http2_protocol_options")) && message.contains(field),
            "{message}"
        );
    }
}

#[test]
fn request_timeout_is_not_supported_yet() {
    refused_as_unsupported(
        &with("          request_timeout: 30s", "", ""),
        &format!("{TYPED}.request_timeout"),
    );
}

#[test]
fn cluster_http3_and_automatic_protocols_are_not_supported_yet_and_http2_is_one_choice() {
    let c1 = "static_resources.clusters[1]";
    let cluster = |extra: &str| {
        format!("  - name: o\n    type: ORIGINAL_DST\n    lb_policy: CLUSTER_PROVIDED\n{extra}")
    };
    let legacy = parse(&with("", "", &cluster("    http2_protocol_options: {max_concurrent_streams: 7}")));
    let want = UpstreamProtocol::Http2(Http2Options { max_concurrent_streams: 7, ..Http2Options::default() });
    assert_eq!(legacy.clusters[1].protocol, want);
    let both =
        error(&with("", "", &cluster("    http_protocol_options: {}\n    http2_protocol_options: {}")));
    assert!(both.starts_with(&format!("{c1}.http2_protocol_options: ")), "{both}");
    let typed = |body: &str| {
        cluster(&format!(
            "    typed_extension_protocol_options:\n      {HTTP_PROTOCOL_OPTIONS_NAME}:\n        \"@type\": {HTTP_PROTOCOL_OPTIONS_TYPE_URL}\n        {body}"
        ))
    };
    let hpo = format!("{c1}.typed_extension_protocol_options[\"{HTTP_PROTOCOL_OPTIONS_NAME}\"]");
    let explicit = parse(&with("", "", &typed("explicit_http_config: {http2_protocol_options: {}}")));
    assert_eq!(explicit.clusters[1].protocol, UpstreamProtocol::Http2(Http2Options::default()));
    let bad = error(&with(
        "",
        "",
        &typed("explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 0}}"),
    ));
    assert!(
        bad.starts_with(&format!(
            "{hpo}.explicit_http_config.http2_protocol_options.max_concurrent_streams: "
        )),
        "{bad}"
    );
    let both = error(&with(
        "",
        "",
        &typed("explicit_http_config: {http_protocol_options: {}, http2_protocol_options: {}}"),
    ));
    assert!(both.starts_with(&format!("{hpo}.explicit_http_config: ")) && both.contains("one of"), "{both}");
    refused_as_unsupported(
        &with("", "", &typed("explicit_http_config: {http3_protocol_options: {}}")),
        &format!("{hpo}.explicit_http_config.http3_protocol_options"),
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
fn connect_udp_termination_is_not_supported_yet() {
    let route = format!("{TYPED}.route_config.virtual_hosts[0].routes[0].route.upgrade_configs[0]");
    let config = parse(&with(
        "",
        "                  upgrade_configs: [{upgrade_type: CONNECT, connect_config: {allow_post: true}}]",
        "",
    ));
    let target = hcm_of(&config).route_config.virtual_hosts[0].routes[0].action.target().cloned().unwrap();
    assert!(target.upgrade_configs[0].connect_config.as_ref().is_some_and(|c| c.allow_post));
    refused_as_unsupported(
        &with("", "                  upgrade_configs: [{upgrade_type: CONNECT-UDP, connect_config: {}}]", ""),
        &format!("{route}.connect_config"),
    );
    // A CONNECT-UDP upgrade without termination is a plain upgrade token, which burrow passes on.
    parse(&with("", "                  upgrade_configs: [{upgrade_type: CONNECT-UDP}]", ""));
}

#[test]
fn admin_access_logs_are_not_supported_yet_but_the_deprecated_path_is_accepted() {
    let admin = |block: &str| {
        format!(
            "admin:\n{block}\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 9901}}}}\n{}",
            with("", "", "")
        )
    };
    // Deprecated, and in Envoy's example configs: accepted, with a warning.
    let config = parse(&admin("  access_log_path: /tmp/admin.log"));
    assert!(config
        .warnings()
        .iter()
        .any(|w| w.contains("admin.access_log_path '/tmp/admin.log' is ignored")));
    refused_as_unsupported(&admin("  access_log: [{name: envoy.access_loggers.stdout}]"), "admin.access_log");
    for fine in ["  access_log_path: /dev/null", "  access_log_path: \"\"", "  access_log: []"] {
        parse(&admin(fine));
    }
}
