//! Config tests by section; the helpers here build a minimal valid config to vary.

use std::time::Duration;

use super::*;

mod bootstrap;
mod cluster;
mod errors;
mod hcm;
mod route;
mod tcp_proxy;
mod unsupported;

fn hcm_of(config: &Config) -> &HttpConnectionManager {
    config.listeners[0].hcm()
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
