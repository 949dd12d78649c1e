//! The process-wide stats store, rendered in Envoy admin's formats.
//!
//! Metrics carry Envoy's full names (`http.ingress_http.downstream_cx_total`,
//! `cluster.backend.upstream_cx_connect_fail`) so dashboards and alerts written for Envoy keep
//! working. Registration takes a lock and is meant for start-up; the returned handles are
//! shared atomics, so updates from any worker are lock-free.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A monotonically increasing count. Cloning shares the value; a `default()` counter is
/// detached from any store (useful for tests and for components built without stats).
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (active connections, open circuit breakers). Unsigned like
/// Envoy's gauges: going below zero is a bookkeeping bug, so it saturates at 0 (and asserts in
/// debug builds) rather than wrapping to 2^64 and poisoning every dashboard.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn dec(&self) {
        self.sub(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(&self, n: u64) {
        let prev = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)))
            .unwrap_or_else(|v| v);
        debug_assert!(prev >= n, "gauge decremented below zero ({prev} - {n})");
    }

    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The output formats of Envoy's `/stats` admin endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `name: value` lines (`/stats`).
    Text,
    /// `{"stats":[{"name":..,"value":..}]}` (`/stats?format=json`).
    Json,
    /// Prometheus text exposition with Envoy's tag extraction (`/stats/prometheus`).
    Prometheus,
}

/// The registry of every counter and gauge in the process. Shared by all workers through
/// [`crate::Shared`].
#[derive(Debug, Default)]
pub struct Stats {
    registry: Mutex<Registry>,
}

/// Counters and gauges live in separate namespaces, as in Envoy.
#[derive(Debug, Default)]
struct Registry {
    counters: BTreeMap<String, Counter>,
    gauges: BTreeMap<String, Gauge>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric's name, kind and current value, read under the registry lock.
struct Sample<'a> {
    name: &'a str,
    kind: Kind,
    value: u64,
}

impl Stats {
    /// The counter called `name`, created at zero on first use. Every caller asking for the
    /// same name gets a handle on the same value.
    pub fn counter(&self, name: &str) -> Counter {
        let mut reg = self.lock();
        debug_assert!(!reg.gauges.contains_key(name), "stat {name:?} is already a gauge");
        reg.counters.entry(name.to_owned()).or_default().clone()
    }

    /// The gauge called `name`, created at zero on first use.
    pub fn gauge(&self, name: &str) -> Gauge {
        let mut reg = self.lock();
        debug_assert!(!reg.counters.contains_key(name), "stat {name:?} is already a counter");
        reg.gauges.entry(name.to_owned()).or_default().clone()
    }

    /// The current value of the counter or gauge called `name`, if registered (for tests and
    /// for callers that hold no handle).
    pub fn value(&self, name: &str) -> Option<u64> {
        let reg = self.lock();
        reg.counters.get(name).map(Counter::value).or_else(|| reg.gauges.get(name).map(Gauge::value))
    }

    /// Envoy's `/stats`.
    pub fn render_text(&self) -> String {
        self.render(Format::Text, "")
    }

    /// Envoy's `/stats?format=json`.
    pub fn render_json(&self) -> String {
        self.render(Format::Json, "")
    }

    /// Envoy's `/stats/prometheus`.
    pub fn render_prometheus(&self) -> String {
        self.render(Format::Prometheus, "")
    }

    /// Renders the metrics whose full name contains `filter` (`""` keeps all). Envoy's
    /// `filter` is a regular expression; a substring match covers the common use (a literal
    /// name fragment) without pulling a regex engine into the core.
    pub fn render(&self, format: Format, filter: &str) -> String {
        let reg = self.lock();
        let samples = reg.samples(filter);
        match format {
            Format::Text => render_text(&samples),
            Format::Json => render_json(&samples),
            Format::Prometheus => render_prometheus(&samples),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registry {
    /// Every matching metric, sorted by name (counters before gauges on a tie).
    fn samples(&self, filter: &str) -> Vec<Sample<'_>> {
        let counters =
            self.counters.iter().map(|(n, c)| Sample { name: n, kind: Kind::Counter, value: c.value() });
        let gauges = self.gauges.iter().map(|(n, g)| Sample { name: n, kind: Kind::Gauge, value: g.value() });
        let mut all: Vec<Sample<'_>> = counters.chain(gauges).filter(|s| s.name.contains(filter)).collect();
        all.sort_by(|a, b| a.name.cmp(b.name).then(a.kind.cmp(&b.kind)));
        all
    }
}

fn render_text(samples: &[Sample<'_>]) -> String {
    let mut out = String::new();
    for s in samples {
        let _ = writeln!(out, "{}: {}", s.name, s.value);
    }
    out
}

fn render_json(samples: &[Sample<'_>]) -> String {
    let mut out = String::from("{\"stats\":[");
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":\"");
        json_escape_into(&mut out, s.name);
        let _ = write!(out, "\",\"value\":{}}}", s.value);
    }
    out.push_str("]}");
    out
}

fn json_escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Envoy's Prometheus output: all counter families, then all gauge families; families sorted
/// by tag-extracted name and samples within a family by full name, both compared
/// dot-separated token by token as Envoy's symbol table does. Untagged samples still get `{}`,
/// exactly as Envoy prints them.
fn render_prometheus(samples: &[Sample<'_>]) -> String {
    let mut out = String::new();
    for kind in [Kind::Counter, Kind::Gauge] {
        let mut family: Vec<(Tagged<'_>, &Sample<'_>)> =
            samples.iter().filter(|s| s.kind == kind).map(|s| (extract_tags(s.name), s)).collect();
        family.sort_by(|(ta, sa), (tb, sb)| {
            token_cmp(&ta.extracted, &tb.extracted).then_with(|| token_cmp(sa.name, sb.name))
        });
        let type_name = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let mut current: Option<&str> = None;
        for (tagged, sample) in &family {
            let metric = prometheus_name(&tagged.extracted);
            if current != Some(tagged.extracted.as_str()) {
                let _ = writeln!(out, "# TYPE {metric} {type_name}");
                current = Some(&tagged.extracted);
            }
            out.push_str(&metric);
            out.push('{');
            for (i, (tag, value)) in tagged.tags.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(tag);
                out.push_str("=\"");
                prometheus_escape_into(&mut out, value);
                out.push('"');
            }
            let _ = writeln!(out, "}} {}", sample.value);
        }
    }
    out
}

/// Compares stat names the way Envoy's symbol table does: token by token, split on `.`.
fn token_cmp(a: &str, b: &str) -> CmpOrdering {
    a.split('.').cmp(b.split('.'))
}

/// `envoy_` + the name with every character outside `[a-zA-Z0-9_]` replaced by `_`.
fn prometheus_name(extracted: &str) -> String {
    let mut out = String::with_capacity(extracted.len() + 6);
    out.push_str("envoy_");
    out.extend(extracted.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }));
    out
}

/// Label-value escaping of the Prometheus text format (backslash, double quote, newline).
fn prometheus_escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A stat name split into Envoy's tag-extracted name and its tags (Prometheus label names).
#[derive(Debug, PartialEq, Eq)]
struct Tagged<'a> {
    extracted: String,
    tags: Vec<(&'static str, &'a str)>,
}

/// Envoy's default tag extraction (`source/common/config/well_known_names.cc`), for the
/// extractors that apply to burrow's stats. Like Envoy, every extractor runs on the original
/// name and the matched spans are cut out together; tags come out in Envoy's order: the
/// prefix-less extractors (response code, response code class, worker id), then those keyed on
/// the first token.
fn extract_tags(name: &str) -> Tagged<'_> {
    let mut tags: Vec<(&'static str, &str)> = Vec::new();
    let mut cuts: Vec<Range<usize>> = Vec::new();
    let b = name.as_bytes();
    let len = b.len();

    // `_rq(_(\d{3}))$`: upstream_rq_503 -> upstream_rq{envoy_response_code="503"}.
    if len >= 7 && b[len - 7..].starts_with(b"_rq_") && b[len - 3..].iter().all(u8::is_ascii_digit) {
        tags.push(("envoy_response_code", &name[len - 3..]));
        cuts.push(len - 4..len);
    }
    // `_rq_((\d))xx$`: downstream_rq_2xx -> downstream_rq_xx{envoy_response_code_class="2"}.
    if len >= 7 && b[len - 7..].starts_with(b"_rq_") && b[len - 3].is_ascii_digit() && b.ends_with(b"xx") {
        tags.push(("envoy_response_code_class", &name[len - 3..len - 2]));
        cuts.push(len - 3..len - 2);
    }
    // `^(?:listener\.(?:<ADDRESS>|<TAG_VALUE>)\.|server\.|listener_manager\.)worker_((\d+)\.)`
    if let Some(digits) = worker_digits(name) {
        tags.push(("envoy_worker_id", &name[digits.clone()]));
        cuts.push(digits.start..digits.end + 1);
    }

    let mut tokenized = |tag: &'static str, first: &str| {
        // `<first>.$.**`: the second token, which must be followed by more.
        let start = first.len() + 1;
        if let Some(dot) = name[start..].find('.').filter(|&d| d > 0) {
            tags.push((tag, &name[start..start + dot]));
            cuts.push(start..start + dot + 1);
        }
    };
    match name.split_once('.').map(|(first, _)| first) {
        Some("cluster") => tokenized("envoy_cluster_name", "cluster"),
        Some("http") => tokenized("envoy_http_conn_manager_prefix", "http"),
        Some("tcp") => tokenized("envoy_tcp_prefix", "tcp"),
        Some("udp") => tokenized("envoy_udp_prefix", "udp"),
        Some("vhost") => tokenized("envoy_virtual_host", "vhost"),
        Some("listener") => {
            const START: usize = "listener.".len();
            // `^listener\..*?\.http\.((<TAG_VALUE>)\.)`: the first `.http.<prefix>.`.
            let mut from = START;
            while let Some(at) = name[from..].find(".http.") {
                let value_start = from + at + ".http.".len();
                if let Some(dot) = name[value_start..].find('.').filter(|&d| d > 0) {
                    tags.push(("envoy_http_conn_manager_prefix", &name[value_start..value_start + dot]));
                    cuts.push(value_start..value_start + dot + 1);
                    break;
                }
                from += at + 1;
            }
            // `^listener\.((<ADDRESS>|<TAG_VALUE>)\.)`, except the admin listener.
            if let Some(end) = listener_segment_end(&name[START..]).first().copied() {
                let value = &name[START..START + end];
                if value != "admin" {
                    tags.push(("envoy_listener_address", value));
                    cuts.push(START..START + end + 1);
                }
            }
        }
        _ => {}
    }

    cuts.sort_by_key(|r| r.start);
    let mut extracted = String::with_capacity(len);
    let mut pos = 0;
    for cut in cuts {
        if cut.start > pos {
            extracted.push_str(&name[pos..cut.start]);
        }
        pos = pos.max(cut.end);
    }
    extracted.push_str(&name[pos..]);
    Tagged { extracted, tags }
}

/// The candidate ends of `(<ADDRESS>|<TAG_VALUE>)\.` at the start of `s`, in the regex's
/// preference order: an address (`10.0.0.1_8080`, `[__1]_8080`), then the first token.
fn listener_segment_end(s: &str) -> Vec<usize> {
    let mut ends = Vec::with_capacity(2);
    if let Some(n) = address_len(s.as_bytes()).filter(|&n| s.as_bytes().get(n) == Some(&b'.')) {
        ends.push(n);
    }
    if let Some(n) = s.find('.').filter(|&n| n > 0) {
        if !ends.contains(&n) {
            ends.push(n);
        }
    }
    ends
}

/// Length of Envoy's `<ADDRESS>` at the start of `s`:
/// `(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+`.
fn address_len(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    if s.first() == Some(&b'[') {
        i = 1;
        while s.get(i).is_some_and(|c| c.is_ascii_hexdigit() || *c == b'_') {
            i += 1;
        }
        if i == 1 || s.get(i) != Some(&b']') {
            return None;
        }
        i += 1;
    } else {
        for octet in 0..4 {
            if octet > 0 {
                if s.get(i) != Some(&b'.') {
                    return None;
                }
                i += 1;
            }
            let start = i;
            while i - start < 3 && s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    if s.get(i) != Some(&b'_') {
        return None;
    }
    i += 1;
    let start = i;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    (i > start).then_some(i)
}

/// The span of `<id>` in a `...worker_<id>.` stat name, per Envoy's `WORKER_ID` extractor.
fn worker_digits(name: &str) -> Option<Range<usize>> {
    let candidates: Vec<usize> = if let Some(rest) = name.strip_prefix("listener.") {
        listener_segment_end(rest).into_iter().map(|end| "listener.".len() + end + 1).collect()
    } else if name.starts_with("server.") {
        vec!["server.".len()]
    } else if name.starts_with("listener_manager.") {
        vec!["listener_manager.".len()]
    } else {
        return None;
    };
    candidates.into_iter().find_map(|at| {
        let start = at + "worker_".len();
        if !name[at..].starts_with("worker_") {
            return None;
        }
        let digits = name[start..].bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0 && name.as_bytes().get(start + digits) == Some(&b'.')).then_some(start..start + digits)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(name: &str) -> (String, Vec<(&'static str, &str)>) {
        let t = extract_tags(name);
        (t.extracted, t.tags)
    }

    #[test]
    fn stats_is_shareable() {
        fn check<T: Send + Sync + Default>() {}
        check::<Stats>();
        fn handle<T: Send + Sync + Clone>() {}
        handle::<Counter>();
        handle::<Gauge>();
    }

    #[test]
    fn handles_share_the_registered_value() {
        let stats = Stats::default();
        let a = stats.counter("http.ingress_http.downstream_cx_total");
        let b = stats.counter("http.ingress_http.downstream_cx_total");
        a.inc();
        b.add(2);
        assert_eq!(a.value(), 3);
        assert_eq!(stats.value("http.ingress_http.downstream_cx_total"), Some(3));
        assert_eq!(stats.value("nope"), None);

        let g = stats.gauge("http.ingress_http.downstream_cx_active");
        g.inc();
        g.add(4);
        g.dec();
        g.sub(2);
        assert_eq!(stats.gauge("http.ingress_http.downstream_cx_active").value(), 2);
        g.set(7);
        assert_eq!(stats.value("http.ingress_http.downstream_cx_active"), Some(7));
    }

    #[test]
    fn detached_handles_count_alone() {
        let c = Counter::default();
        c.inc();
        assert_eq!(c.value(), 1);
        assert_eq!(Stats::default().render_text(), "");
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "below zero"))]
    fn gauge_saturates_at_zero() {
        let g = Gauge::default();
        g.add(1);
        g.sub(3);
        assert_eq!(g.value(), 0);
    }

    fn sample_store() -> Stats {
        let stats = Stats::default();
        stats.counter("http.ingress_http.downstream_cx_total").add(5);
        stats.gauge("http.ingress_http.downstream_cx_active").set(2);
        stats.counter("cluster.backend.upstream_cx_connect_fail").inc();
        stats.counter("cluster.local_original_dst.upstream_cx_connect_fail").add(3);
        stats.gauge("cluster.backend.circuit_breakers.default.cx_open").set(0);
        stats.counter("server.worker_0.watchdog_miss");
        stats.gauge("server.uptime").set(12);
        stats
    }

    #[test]
    fn text_is_sorted_name_value_lines() {
        assert_eq!(
            sample_store().render_text(),
            "cluster.backend.circuit_breakers.default.cx_open: 0\n\
             cluster.backend.upstream_cx_connect_fail: 1\n\
             cluster.local_original_dst.upstream_cx_connect_fail: 3\n\
             http.ingress_http.downstream_cx_active: 2\n\
             http.ingress_http.downstream_cx_total: 5\n\
             server.uptime: 12\n\
             server.worker_0.watchdog_miss: 0\n"
        );
    }

    #[test]
    fn filter_is_a_substring_match() {
        let stats = sample_store();
        assert_eq!(
            stats.render(Format::Text, "connect_fail"),
            "cluster.backend.upstream_cx_connect_fail: 1\n\
             cluster.local_original_dst.upstream_cx_connect_fail: 3\n"
        );
        assert_eq!(stats.render(Format::Json, "nothing matches"), "{\"stats\":[]}");
        assert_eq!(
            stats.render(Format::Prometheus, "server.uptime"),
            "# TYPE envoy_server_uptime gauge\nenvoy_server_uptime{} 12\n"
        );
    }

    #[test]
    fn json_lists_name_value_objects() {
        let stats = Stats::default();
        assert_eq!(stats.render_json(), "{\"stats\":[]}");
        stats.counter("b.total").add(2);
        stats.gauge("a.active").set(1);
        stats.counter("odd.\"name\\\n").inc();
        assert_eq!(
            stats.render_json(),
            "{\"stats\":[{\"name\":\"a.active\",\"value\":1},{\"name\":\"b.total\",\"value\":2},\
             {\"name\":\"odd.\\\"name\\\\\\n\",\"value\":1}]}"
        );
    }

    #[test]
    fn prometheus_groups_families_with_envoy_tags() {
        assert_eq!(
            sample_store().render_prometheus(),
            "# TYPE envoy_cluster_upstream_cx_connect_fail counter\n\
             envoy_cluster_upstream_cx_connect_fail{envoy_cluster_name=\"backend\"} 1\n\
             envoy_cluster_upstream_cx_connect_fail{envoy_cluster_name=\"local_original_dst\"} 3\n\
             # TYPE envoy_http_downstream_cx_total counter\n\
             envoy_http_downstream_cx_total{envoy_http_conn_manager_prefix=\"ingress_http\"} 5\n\
             # TYPE envoy_server_worker_watchdog_miss counter\n\
             envoy_server_worker_watchdog_miss{envoy_worker_id=\"0\"} 0\n\
             # TYPE envoy_cluster_circuit_breakers_default_cx_open gauge\n\
             envoy_cluster_circuit_breakers_default_cx_open{envoy_cluster_name=\"backend\"} 0\n\
             # TYPE envoy_http_downstream_cx_active gauge\n\
             envoy_http_downstream_cx_active{envoy_http_conn_manager_prefix=\"ingress_http\"} 2\n\
             # TYPE envoy_server_uptime gauge\n\
             envoy_server_uptime{} 12\n"
        );
    }

    #[test]
    fn prometheus_response_codes_listeners_and_escaping() {
        let stats = Stats::default();
        stats.counter("http.ingress_http.downstream_rq_2xx").add(7);
        stats.counter("http.ingress_http.downstream_rq_5xx").add(1);
        stats.counter("cluster.a.upstream_rq_503").add(2);
        stats.counter("listener.0.0.0.0_10000.downstream_cx_total").add(4);
        stats.counter("listener.[__1]_10000.downstream_cx_total").add(1);
        stats.counter("listener.admin.downstream_cx_total").add(9);
        stats.counter("tcp.egress\"x\\.cx_total").add(1);
        stats.counter("weird-name.with:chars").add(1);
        assert_eq!(
            stats.render_prometheus(),
            "# TYPE envoy_cluster_upstream_rq counter\n\
             envoy_cluster_upstream_rq{envoy_response_code=\"503\",envoy_cluster_name=\"a\"} 2\n\
             # TYPE envoy_http_downstream_rq_xx counter\n\
             envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ingress_http\"} 7\n\
             envoy_http_downstream_rq_xx{envoy_response_code_class=\"5\",envoy_http_conn_manager_prefix=\"ingress_http\"} 1\n\
             # TYPE envoy_listener_admin_downstream_cx_total counter\n\
             envoy_listener_admin_downstream_cx_total{} 9\n\
             # TYPE envoy_listener_downstream_cx_total counter\n\
             envoy_listener_downstream_cx_total{envoy_listener_address=\"0.0.0.0_10000\"} 4\n\
             envoy_listener_downstream_cx_total{envoy_listener_address=\"[__1]_10000\"} 1\n\
             # TYPE envoy_tcp_cx_total counter\n\
             envoy_tcp_cx_total{envoy_tcp_prefix=\"egress\\\"x\\\\\"} 1\n\
             # TYPE envoy_weird_name_with_chars counter\n\
             envoy_weird_name_with_chars{} 1\n"
        );
    }

    #[test]
    fn tag_extraction_matches_envoy() {
        assert_eq!(
            tagged("listener.127.0.0.1_8080.http.ingress_http.downstream_rq_2xx"),
            (
                "listener.http.downstream_rq_xx".to_owned(),
                vec![
                    ("envoy_response_code_class", "2"),
                    ("envoy_http_conn_manager_prefix", "ingress_http"),
                    ("envoy_listener_address", "127.0.0.1_8080"),
                ]
            )
        );
        assert_eq!(
            tagged("listener.0.0.0.0_80.worker_3.downstream_cx_active"),
            (
                "listener.worker_downstream_cx_active".to_owned(),
                vec![("envoy_worker_id", "3"), ("envoy_listener_address", "0.0.0.0_80")]
            )
        );
        assert_eq!(
            tagged("listener.my_listener.downstream_cx_total"),
            ("listener.downstream_cx_total".to_owned(), vec![("envoy_listener_address", "my_listener")])
        );
        assert_eq!(
            tagged("listener_manager.worker_12.dispatcher.loop_duration_us"),
            (
                "listener_manager.worker_dispatcher.loop_duration_us".to_owned(),
                vec![("envoy_worker_id", "12")]
            )
        );
        // The prefix must be followed by a stat; names that are only a prefix stay untagged.
        assert_eq!(tagged("cluster.backend"), ("cluster.backend".to_owned(), vec![]));
        assert_eq!(
            tagged("cluster_manager.active_clusters"),
            ("cluster_manager.active_clusters".to_owned(), vec![])
        );
        assert_eq!(
            tagged("vhost.local.vcluster.other.upstream_rq_retry"),
            ("vhost.vcluster.other.upstream_rq_retry".to_owned(), vec![("envoy_virtual_host", "local")])
        );
        // Only the last segment is tested for response codes.
        assert_eq!(tagged("http.p.downstream_rq_2xx_foo").1, vec![("envoy_http_conn_manager_prefix", "p")]);
    }

    #[test]
    fn addresses_follow_envoys_pattern() {
        assert_eq!(address_len(b"10.0.0.1_8080.x"), Some(13));
        assert_eq!(address_len(b"[2001_db8__1]_443.x"), Some(17));
        assert_eq!(address_len(b"1000.0.0.1_80."), None);
        assert_eq!(address_len(b"10.0.0.1."), None);
        assert_eq!(address_len(b"[]_80."), None);
        assert_eq!(address_len(b"[zz]_80."), None);
    }

    #[test]
    fn families_sort_token_by_token() {
        // Plain string order would put `a-b` before `a.` ('-' < '.'); Envoy's token order
        // puts `a` before `a-b`.
        let stats = Stats::default();
        stats.counter("a-b.x").inc();
        stats.counter("a.x").inc();
        assert_eq!(
            stats.render_prometheus(),
            "# TYPE envoy_a_x counter\nenvoy_a_x{} 1\n# TYPE envoy_a_b_x counter\nenvoy_a_b_x{} 1\n"
        );
        assert_eq!(stats.render_text(), "a-b.x: 1\na.x: 1\n");
    }
}
