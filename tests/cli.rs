//! The command line of both binaries: `--help`, `--mode validate`, and start/stop on a config.

mod support;

use support::{Burrow, DRIVERS};

#[test]
fn help_lists_envoys_flags() {
    for driver in DRIVERS {
        let (status, output) = support::run(driver, &["--help"]);
        assert!(status.success(), "{driver} --help: {status}\n{output}");
        for flag in ["--config-path", "--concurrency", "--log-level", "--mode", "--drain-time-s"] {
            assert!(output.contains(flag), "{driver} --help does not mention {flag}:\n{output}");
        }
    }
}

#[test]
fn validate_accepts_the_default_config() {
    let config = support::config("default.yaml");
    for driver in DRIVERS {
        let (status, output) = support::validate(driver, &config);
        assert_eq!(status.code(), Some(0), "{driver}: {output}");
        assert!(output.contains("OK"), "{driver}: {output}");
    }
}

#[test]
fn validate_accepts_the_built_in_config() {
    for driver in DRIVERS {
        let (status, output) = support::run(driver, &["--mode", "validate"]);
        assert_eq!(status.code(), Some(0), "{driver}: {output}");
    }
}

#[test]
fn validate_names_an_unknown_field() {
    let config = support::config("default.yaml")
        .replace("    filter_chains:", "    no_such_field: true\n    filter_chains:");
    assert!(config.contains("no_such_field"));
    for driver in DRIVERS {
        let (status, output) = support::validate(driver, &config);
        assert_eq!(status.code(), Some(1), "{driver}: {output}");
        assert!(
            output.contains("static_resources.listeners[0].no_such_field"),
            "{driver} does not name the field path:\n{output}"
        );
        assert!(output.lines().next().is_some_and(|line| line.contains(".yaml")), "{driver}: {output}");
    }
}

/// `--mode validate` on `config` fails (exit 1) with a message naming `path` and saying it is
/// not supported yet, for both binaries.
fn validate_refuses_as_unsupported(config: &str, path: &str) {
    for driver in DRIVERS {
        let (status, output) = support::validate(driver, config);
        assert_eq!(status.code(), Some(1), "{driver}: {output}");
        assert!(output.contains(&format!("{path}: ")), "{driver} does not name {path}:\n{output}");
        assert!(output.contains("not supported yet"), "{driver}:\n{output}");
        assert!(!output.contains("OK"), "{driver}:\n{output}");
    }
}

const HCM: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

#[test]
fn validate_refuses_a_udp_listener() {
    let config = support::config("default.yaml").replace("protocol: TCP", "protocol: UDP");
    assert!(config.contains("protocol: UDP"));
    validate_refuses_as_unsupported(&config, "static_resources.listeners[0].address.socket_address.protocol");
}

#[test]
fn validate_refuses_an_http3_codec() {
    let config = support::config("default.yaml").replace(
        "          stat_prefix: forward_proxy\n",
        "          stat_prefix: forward_proxy\n          codec_type: HTTP3\n",
    );
    assert!(config.contains("codec_type: HTTP3"));
    validate_refuses_as_unsupported(&config, &format!("{HCM}.codec_type"));
}

#[test]
fn validate_refuses_cluster_http3_protocol_options() {
    let typed = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http3_protocol_options: {} }\n";
    let config = support::config("default.yaml")
        .replace("    lb_policy: CLUSTER_PROVIDED\n", &format!("    lb_policy: CLUSTER_PROVIDED\n{typed}"));
    assert!(config.contains("http3_protocol_options"));
    validate_refuses_as_unsupported(
        &config,
        "static_resources.clusters[0].typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"].explicit_http_config.http3_protocol_options",
    );
}

#[test]
fn validate_reports_a_missing_file() {
    for driver in DRIVERS {
        let (status, output) =
            support::run(driver, &["--mode", "validate", "-c", "/nonexistent/burrow.yaml"]);
        assert_eq!(status.code(), Some(1), "{driver}: {output}");
        assert!(output.contains("/nonexistent/burrow.yaml"), "{driver}: {output}");
    }
}

/// The default config on free ports: ready, serving stats, and exiting 0 on SIGTERM.
#[test]
fn serves_then_exits_cleanly_on_sigterm() {
    for driver in DRIVERS {
        let (proxy_port, admin_port) = (support::free_port(), support::free_port());
        let config = support::config("default.yaml")
            .replace("port_value: 10000", &format!("port_value: {proxy_port}"))
            .replace("port_value: 9901", &format!("port_value: {admin_port}"));
        let mut proxy = Burrow::start(driver, &config, admin_port);
        assert_eq!(proxy.stat("http.forward_proxy.downstream_cx_total"), 0);
        let status = proxy.terminate();
        assert!(status.success(), "{driver} exited with {status}; stderr:\n{}", proxy.stderr());
    }
}

/// A listener that cannot be bound makes the process exit non-zero, naming the address.
#[test]
fn bind_failure_exits_non_zero() {
    for driver in DRIVERS {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let admin_port = support::free_port();
        let config = support::config("default.yaml")
            .replace("port_value: 10000", &format!("port_value: {port}"))
            .replace("port_value: 9901", &format!("port_value: {admin_port}"));
        let mut proxy = Burrow::spawn(driver, &config, admin_port, 1);
        let status = proxy.wait_exit(std::time::Duration::from_secs(10)).expect("exits");
        assert!(!status.success(), "{driver}: {status}");
        assert!(proxy.stderr().contains(&format!("127.0.0.1:{port}")), "{driver}: {}", proxy.stderr());
    }
}
