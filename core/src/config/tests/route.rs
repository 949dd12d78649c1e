//! Routes: domains, matchers, actions and per-filter configs.

use std::time::Duration;

use super::*;

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
