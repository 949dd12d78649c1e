//! Envoy's admin endpoint as a pure function from request line to response.
//!
//! The HTTP/1.1 plumbing (parsing, framing, keep-alive) lives with the admin connection; keeping
//! the routing here makes every endpoint testable without a socket.

use bytes::Bytes;

use crate::stats::{Format, Stats};

/// Envoy's content type for its text endpoints.
pub const TEXT_PLAIN: &str = "text/plain; charset=UTF-8";
pub const APPLICATION_JSON: &str = "application/json";

/// What `/ready` reports: load balancers stop sending traffic once we drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    Live,
    Draining,
}

/// A complete admin response. For `HEAD` the body is the one `GET` would return, so the
/// caller can send its length in `Content-Length`; the caller must not send the body itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl AdminResponse {
    fn text(status: u16, body: impl Into<Bytes>) -> AdminResponse {
        AdminResponse { status, content_type: TEXT_PLAIN, body: body.into() }
    }
}

/// The supported commands, sorted by path as Envoy's help lists them: (path, help, params).
const COMMANDS: &[(&str, &str, &[&str])] = &[
    ("/help", "print out list of admin commands", &[]),
    ("/ready", "print server state, return 200 if LIVE, otherwise return 503", &[]),
    (
        "/stats",
        "print server stats",
        &[FILTER_HELP, "format: Format to use; One of (text, json, prometheus)"],
    ),
    ("/stats/prometheus", "print server stats in prometheus format", &[FILTER_HELP]),
];

const FILTER_HELP: &str =
    "filter: Substring for filtering stats (a plain substring, not a regular expression)";

/// Answers one admin request. `path_and_query` is the request target as sent (`/stats?filter=cx`);
/// the path must match exactly, as in Envoy, and query values are percent-decoded.
pub fn respond(stats: &Stats, method: &str, path_and_query: &str, state: ServerState) -> AdminResponse {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    if !COMMANDS.iter().any(|(p, _, _)| *p == path) {
        return AdminResponse::text(404, format!("invalid path. {}", help()));
    }
    // Every endpoint here only reads; Envoy's mutating ones (which would need POST) are absent.
    if method != "GET" && method != "HEAD" {
        return AdminResponse::text(405, "method not allowed\n");
    }
    let filter = query_param(query, "filter").unwrap_or_default();
    match path {
        "/ready" => match state {
            ServerState::Live => AdminResponse::text(200, "LIVE\n"),
            ServerState::Draining => AdminResponse::text(503, "DRAINING\n"),
        },
        "/stats" => {
            let format = match query_param(query, "format").as_deref() {
                None | Some("text") => Format::Text,
                Some("json") => Format::Json,
                Some("prometheus") => Format::Prometheus,
                Some(_) => return AdminResponse::text(400, "usage: /stats?format=(text|json|prometheus)\n"),
            };
            let content_type = if format == Format::Json { APPLICATION_JSON } else { TEXT_PLAIN };
            AdminResponse { status: 200, content_type, body: stats.render(format, &filter).into() }
        }
        "/stats/prometheus" => AdminResponse::text(200, stats.render(Format::Prometheus, &filter)),
        _ => AdminResponse::text(200, help()),
    }
}

/// Envoy's `/help` text; also the tail of the 404 body.
fn help() -> String {
    let mut out = String::from("admin commands are:\n");
    for (path, help, params) in COMMANDS {
        out.push_str(&format!("  {path}: {help}\n"));
        for param in *params {
            out.push_str(&format!("      {param}\n"));
        }
    }
    out
}

/// The first value of `key` in a query string, percent-decoded (`+` is a space, as in forms).
/// A bare `key` yields an empty value.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+`; malformed escapes are kept literally rather than rejected,
/// and invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |at: usize| b.get(at).and_then(|&c| (c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(stats: &Stats, target: &str) -> AdminResponse {
        respond(stats, "GET", target, ServerState::Live)
    }

    fn body(r: &AdminResponse) -> &str {
        std::str::from_utf8(&r.body).unwrap()
    }

    fn store() -> Stats {
        let stats = Stats::default();
        stats.counter("http.ingress_http.downstream_cx_total").add(3);
        stats.gauge("cluster.backend.upstream_cx_active").set(1);
        stats
    }

    #[test]
    fn stats_text() {
        let r = get(&store(), "/stats");
        assert_eq!((r.status, r.content_type), (200, TEXT_PLAIN));
        assert_eq!(
            body(&r),
            "cluster.backend.upstream_cx_active: 1\nhttp.ingress_http.downstream_cx_total: 3\n"
        );
        assert_eq!(get(&store(), "/stats?format=text"), r);
    }

    #[test]
    fn stats_json() {
        let r = get(&store(), "/stats?format=json");
        assert_eq!((r.status, r.content_type), (200, APPLICATION_JSON));
        assert_eq!(
            body(&r),
            "{\"stats\":[{\"name\":\"cluster.backend.upstream_cx_active\",\"value\":1},\
             {\"name\":\"http.ingress_http.downstream_cx_total\",\"value\":3}]}"
        );
    }

    #[test]
    fn stats_prometheus_both_routes() {
        let expected = "# TYPE envoy_http_downstream_cx_total counter\n\
                        envoy_http_downstream_cx_total{envoy_http_conn_manager_prefix=\"ingress_http\"} 3\n\
                        # TYPE envoy_cluster_upstream_cx_active gauge\n\
                        envoy_cluster_upstream_cx_active{envoy_cluster_name=\"backend\"} 1\n";
        for target in ["/stats/prometheus", "/stats?format=prometheus"] {
            let r = get(&store(), target);
            assert_eq!((r.status, r.content_type, body(&r)), (200, TEXT_PLAIN, expected), "{target}");
        }
    }

    #[test]
    fn filter_is_percent_decoded() {
        let stats = store();
        stats.counter("listener.admin.downstream_cx_total").inc();
        let r = get(&stats, "/stats?usedonly&filter=%64ownstream%5Fcx&format=json");
        assert_eq!(
            body(&r),
            "{\"stats\":[{\"name\":\"http.ingress_http.downstream_cx_total\",\"value\":3},\
             {\"name\":\"listener.admin.downstream_cx_total\",\"value\":1}]}"
        );
        let r = get(&stats, "/stats/prometheus?filter=backend");
        assert_eq!(
            body(&r),
            "# TYPE envoy_cluster_upstream_cx_active gauge\n\
             envoy_cluster_upstream_cx_active{envoy_cluster_name=\"backend\"} 1\n"
        );
    }

    #[test]
    fn unknown_format_is_a_bad_request() {
        let r = get(&store(), "/stats?format=html");
        assert_eq!((r.status, r.content_type), (400, TEXT_PLAIN));
        assert_eq!(body(&r), "usage: /stats?format=(text|json|prometheus)\n");
    }

    #[test]
    fn ready_follows_server_state() {
        let stats = Stats::default();
        let r = respond(&stats, "GET", "/ready", ServerState::Live);
        assert_eq!((r.status, r.content_type, body(&r)), (200, TEXT_PLAIN, "LIVE\n"));
        let r = respond(&stats, "GET", "/ready", ServerState::Draining);
        assert_eq!((r.status, r.content_type, body(&r)), (503, TEXT_PLAIN, "DRAINING\n"));
    }

    const HELP: &str = "admin commands are:\n  \
        /help: print out list of admin commands\n  \
        /ready: print server state, return 200 if LIVE, otherwise return 503\n  \
        /stats: print server stats\n      \
        filter: Substring for filtering stats (a plain substring, not a regular expression)\n      \
        format: Format to use; One of (text, json, prometheus)\n  \
        /stats/prometheus: print server stats in prometheus format\n      \
        filter: Substring for filtering stats (a plain substring, not a regular expression)\n";

    #[test]
    fn help_lists_commands() {
        let r = get(&Stats::default(), "/help");
        assert_eq!((r.status, r.content_type, body(&r)), (200, TEXT_PLAIN, HELP));
    }

    #[test]
    fn unknown_path_is_404_with_help() {
        for target in ["/", "/nope", "/stats/", "/statsx?format=json", "/clusters"] {
            let r = respond(&Stats::default(), "POST", target, ServerState::Live);
            assert_eq!((r.status, r.content_type), (404, TEXT_PLAIN), "{target}");
            assert_eq!(body(&r), format!("invalid path. {HELP}"), "{target}");
        }
    }

    #[test]
    fn only_get_and_head_are_allowed() {
        let stats = store();
        let head = respond(&stats, "HEAD", "/stats", ServerState::Live);
        assert_eq!(head, get(&stats, "/stats"));
        for method in ["POST", "PUT", "DELETE", "get"] {
            let r = respond(&stats, method, "/stats", ServerState::Live);
            assert_eq!((r.status, r.content_type, body(&r)), (405, TEXT_PLAIN, "method not allowed\n"));
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb+c%2e"), "a.b c.");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(query_param("a=1&b=2&a=3", "a").as_deref(), Some("1"));
        assert_eq!(query_param("flag&x=1", "flag").as_deref(), Some(""));
        assert_eq!(query_param("", "filter"), None);
        assert_eq!(query_param("f%69lter=x", "filter").as_deref(), Some("x"));
    }
}
