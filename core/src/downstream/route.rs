//! Route selection as Envoy does it: a virtual host by authority, then the first route whose
//! match fits the request.

use crate::config::{HeaderMatcher, HeaderRule, PathMatch, Regex, Route, RouteConfig};

/// What routing looks at. For CONNECT, `authority` is the request target and `path` is absent.
pub(crate) struct RouteRequest<'a> {
    pub method: &'a str,
    pub authority: &'a [u8],
    pub path: Option<&'a [u8]>,
    /// The first value of a (lower-case) regular header.
    pub header: &'a dyn Fn(&str) -> Option<&'a [u8]>,
}

impl RouteRequest<'_> {
    fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }

    fn header_value(&self, name: &str) -> Option<&[u8]> {
        match name {
            ":method" => Some(self.method.as_bytes()),
            ":authority" | "host" => Some(self.authority),
            ":path" => self.path,
            _ => (self.header)(name),
        }
    }
}

/// Where a selected route sits in its route config, so a stream can find it again later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RouteIndex {
    vhost: usize,
    route: usize,
}

impl RouteIndex {
    pub(crate) fn get(self, config: &RouteConfig) -> &Route {
        &config.virtual_hosts[self.vhost].routes[self.route]
    }
}

/// The route for a request, if any, as where it sits in its config.
pub(crate) fn select_index(config: &RouteConfig, request: &RouteRequest<'_>) -> Option<RouteIndex> {
    let vhost = virtual_host(config, request.authority)?;
    let route = config.virtual_hosts[vhost].routes.iter().position(|route| matches(route, request))?;
    Some(RouteIndex { vhost, route })
}

/// Envoy's order: an exact domain, then the longest `*suffix`, then the longest `prefix*`,
/// then `*`. Domains are compared case-insensitively against the whole authority.
fn virtual_host(config: &RouteConfig, authority: &[u8]) -> Option<usize> {
    let host = authority.to_ascii_lowercase();
    let mut best: Option<(u8, usize, usize)> = None;
    for (index, vhost) in config.virtual_hosts.iter().enumerate() {
        for domain in &vhost.domains {
            let Some(rank) = domain_rank(domain.as_bytes(), &host) else { continue };
            if best.is_none_or(|(class, len, _)| (rank.0, rank.1) > (class, len)) {
                best = Some((rank.0, rank.1, index));
            }
        }
    }
    best.map(|(_, _, index)| index)
}

/// (class, specificity) of a domain pattern that matches `host`: exact 3, suffix 2, prefix 1,
/// catch-all 0; longer patterns win within a class.
fn domain_rank(domain: &[u8], host: &[u8]) -> Option<(u8, usize)> {
    if domain == b"*" {
        return Some((0, 0));
    }
    if let Some(suffix) = domain.strip_prefix(b"*") {
        return (host.len() > suffix.len() && host.ends_with(suffix)).then_some((2, suffix.len()));
    }
    if let Some(prefix) = domain.strip_suffix(b"*") {
        return (host.len() > prefix.len() && host.starts_with(prefix)).then_some((1, prefix.len()));
    }
    (domain == host).then_some((3, domain.len()))
}

fn matches(route: &Route, request: &RouteRequest<'_>) -> bool {
    let path_ok = match (&route.matcher.path, request.path) {
        (PathMatch::Connect, _) => request.is_connect(),
        (_, None) => false,
        (PathMatch::Prefix(prefix), Some(path)) => path.starts_with(prefix.as_bytes()),
        (PathMatch::Path(exact), Some(path)) => path_without_query(path) == exact.as_bytes(),
        (PathMatch::Regex(regex), Some(path)) => {
            std::str::from_utf8(path_without_query(path)).is_ok_and(|p| full_match(regex, p))
        }
    };
    path_ok && route.matcher.headers.iter().all(|m| header_matches(m, request))
}

fn path_without_query(path: &[u8]) -> &[u8] {
    path.iter().position(|&b| b == b'?').map_or(path, |at| &path[..at])
}

fn header_matches(matcher: &HeaderMatcher, request: &RouteRequest<'_>) -> bool {
    let value = request.header_value(&matcher.name);
    let hit = match (&matcher.rule, value) {
        (HeaderRule::Present(present), value) => value.is_some() == *present,
        (_, None) => return false,
        (HeaderRule::Exact { value: want, ignore_case }, Some(v)) => eq(v, want, *ignore_case),
        (HeaderRule::Prefix { value: want, ignore_case }, Some(v)) => {
            v.len() >= want.len() && eq(&v[..want.len()], want, *ignore_case)
        }
        (HeaderRule::Suffix { value: want, ignore_case }, Some(v)) => {
            v.len() >= want.len() && eq(&v[v.len() - want.len()..], want, *ignore_case)
        }
        (HeaderRule::Regex(regex), Some(v)) => std::str::from_utf8(v).is_ok_and(|v| full_match(regex, v)),
        (HeaderRule::Contains { value: want, ignore_case }, Some(v)) => {
            let (v, want) = if *ignore_case {
                (v.to_ascii_lowercase(), want.to_ascii_lowercase().into_bytes())
            } else {
                (v.to_vec(), want.as_bytes().to_vec())
            };
            want.is_empty() || v.windows(want.len()).any(|w| w == want.as_slice())
        }
    };
    hit != matcher.invert
}

/// Envoy's `safe_regex` must match the whole input.
fn full_match(regex: &Regex, input: &str) -> bool {
    regex.compiled.find(input).is_some_and(|m| m.start() == 0 && m.end() == input.len())
}

fn eq(value: &[u8], want: &str, ignore_case: bool) -> bool {
    if ignore_case {
        value.eq_ignore_ascii_case(want.as_bytes())
    } else {
        value == want.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteAction, RouteMatch, RouteTarget, VirtualHost};

    fn route(path: PathMatch, headers: Vec<HeaderMatcher>, cluster: usize) -> Route {
        Route {
            matcher: RouteMatch { path, headers },
            action: RouteAction::Route(RouteTarget {
                cluster,
                upgrade_configs: vec![],
                prefix_rewrite: None,
                host_rewrite_literal: None,
                timeout: None,
                idle_timeout: None,
            }),
            disabled_filters: vec![],
            enabled_filters: vec![],
        }
    }

    fn vhost(domains: &[&str], routes: Vec<Route>) -> VirtualHost {
        VirtualHost { name: "v".into(), domains: domains.iter().map(|d| d.to_string()).collect(), routes }
    }

    fn select<'c>(config: &'c RouteConfig, request: &RouteRequest<'_>) -> Option<&'c Route> {
        select_index(config, request).map(|at| at.get(config))
    }

    fn cluster_of(route: Option<&Route>) -> Option<usize> {
        route.map(|r| match &r.action {
            RouteAction::Route(t) => t.cluster,
            RouteAction::DirectResponse { status, .. } => *status as usize,
        })
    }

    fn no_headers(_: &str) -> Option<&'static [u8]> {
        None
    }

    fn foo_bar(name: &str) -> Option<&'static [u8]> {
        (name == "foo").then_some(b"bar")
    }

    #[test]
    fn connect_matcher_selects_connect_only_and_header_matchers_pick_first() {
        let foo = HeaderMatcher {
            name: "foo".into(),
            rule: HeaderRule::Exact { value: "bar".into(), ignore_case: false },
            invert: false,
        };
        let config = RouteConfig {
            name: "r".into(),
            virtual_hosts: vec![vhost(
                &["*"],
                vec![route(PathMatch::Connect, vec![foo], 1), route(PathMatch::Connect, vec![], 0)],
            )],
        };
        let connect = |header: &'static dyn Fn(&str) -> Option<&'static [u8]>| RouteRequest {
            method: "CONNECT",
            authority: b"host.com:443",
            path: None,
            header,
        };
        assert_eq!(cluster_of(select(&config, &connect(&foo_bar))), Some(1));
        assert_eq!(cluster_of(select(&config, &connect(&no_headers))), Some(0));
        let get =
            RouteRequest { method: "GET", authority: b"host.com", path: Some(b"/"), header: &no_headers };
        assert_eq!(cluster_of(select(&config, &get)), None);
    }

    #[test]
    fn virtual_hosts_prefer_exact_then_suffix_then_prefix_then_any() {
        let config = RouteConfig {
            name: "r".into(),
            virtual_hosts: vec![
                vhost(&["*"], vec![route(PathMatch::Prefix("/".into()), vec![], 0)]),
                vhost(&["api.*"], vec![route(PathMatch::Prefix("/".into()), vec![], 1)]),
                vhost(&["*.example.com"], vec![route(PathMatch::Prefix("/".into()), vec![], 2)]),
                vhost(&["*.b.example.com"], vec![route(PathMatch::Prefix("/".into()), vec![], 3)]),
                vhost(&["x.example.com:443"], vec![route(PathMatch::Prefix("/".into()), vec![], 4)]),
            ],
        };
        let pick = |authority: &'static [u8]| {
            cluster_of(select(
                &config,
                &RouteRequest { method: "GET", authority, path: Some(b"/"), header: &no_headers },
            ))
        };
        assert_eq!(pick(b"X.example.com:443"), Some(4));
        assert_eq!(pick(b"a.b.example.com"), Some(3));
        assert_eq!(pick(b"api.example.com"), Some(2));
        assert_eq!(pick(b"api.other"), Some(1));
        assert_eq!(pick(b"elsewhere"), Some(0));
    }

    #[test]
    fn path_and_prefix_and_inverted_headers() {
        let not_foo = HeaderMatcher { name: "foo".into(), rule: HeaderRule::Present(true), invert: true };
        let config = RouteConfig {
            name: "r".into(),
            virtual_hosts: vec![vhost(
                &["*"],
                vec![
                    route(PathMatch::Path("/exact".into()), vec![], 0),
                    route(PathMatch::Prefix("/p".into()), vec![not_foo], 1),
                ],
            )],
        };
        let pick = |path: &'static [u8], header: &'static dyn Fn(&str) -> Option<&'static [u8]>| {
            cluster_of(select(
                &config,
                &RouteRequest { method: "GET", authority: b"h", path: Some(path), header },
            ))
        };
        assert_eq!(pick(b"/exact?q=1", &no_headers), Some(0));
        assert_eq!(pick(b"/exactly", &no_headers), None);
        assert_eq!(pick(b"/prefix", &no_headers), Some(1));
        assert_eq!(pick(b"/prefix", &foo_bar), None);
    }
}
