//! The resolver: answers by each name's rule, and the check that an upstream address is one
//! its cluster's `dns_lookup_family` keeps.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use burrow_core::config::Family;
use burrow_core::QueryId;

use super::{DnsRule, Ev, World};

impl World {
    pub(super) fn answer(&mut self, query: QueryId, host: String) {
        let n = self.dns_queries.entry(host.clone()).or_default();
        *n += 1;
        let n = *n;
        let delay = Duration::from_micros(self.rng.range(0, 20_000));
        let rule = self.dns.get(&host.to_ascii_lowercase()).cloned().unwrap_or(DnsRule::Fail);
        match rule {
            DnsRule::Answer(addrs) => self.schedule(self.now + delay, Ev::Dns { query, addrs }),
            DnsRule::Fail => {
                self.tally.fault("dns-fails");
                self.schedule(self.now + delay, Ev::Dns { query, addrs: Vec::new() });
            }
            DnsRule::Never => {
                self.tally.fault("dns-never-answers");
            }
            DnsRule::Slow(addrs) => {
                self.tally.fault("dns-slow");
                let delay = Duration::from_millis(self.rng.range(300, 10_000));
                self.schedule(self.now + delay, Ev::Dns { query, addrs });
            }
            DnsRule::Rotate(answers) => {
                let addrs = answers[(n as usize - 1) % answers.len()].clone();
                if addrs.is_empty() {
                    self.tally.fault("dns-fails");
                }
                self.schedule(self.now + delay, Ev::Dns { query, addrs });
            }
        }
    }

    /// An upstream address that came from DNS is one its cluster's `dns_lookup_family` keeps
    /// from an answer: for a connection's own name (original destination), the first kept of
    /// the answer being delivered; for a DNS cluster, one kept of any answer its names can
    /// get (the first only for `LOGICAL_DNS`).
    pub(super) fn check_family(&mut self, addr: SocketAddr, cluster: Option<usize>) {
        let Some(c) = cluster.map(|i| &self.clusters[i]) else { return };
        let ip = addr.ip();
        let (family, fine) = if let Some(answer) = &self.answering {
            // Only original-destination connections resolve their own names.
            let Some(odst) = self.clusters.iter().find(|c| c.original_dst) else { return };
            (odst.family, kept(odst.family, answer).first() == Some(&ip))
        } else if c.original_dst || c.static_addrs.contains(&addr) {
            return;
        } else {
            let fine = c.dns.iter().filter(|(_, port)| *port == addr.port()).any(|(host, _)| {
                let answers = match self.dns.get(host) {
                    Some(DnsRule::Answer(ips) | DnsRule::Slow(ips)) => vec![ips.clone()],
                    Some(DnsRule::Rotate(answers)) => answers.clone(),
                    _ => Vec::new(),
                };
                answers.iter().any(|answer| {
                    let kept = kept(c.family, answer);
                    if c.logical_dns {
                        kept.first() == Some(&ip)
                    } else {
                        kept.contains(&ip)
                    }
                })
            });
            (c.family, fine)
        };
        if !fine {
            let what = match &self.answering {
                Some(answer) => format!("the answer {answer:?}"),
                None => format!("any answer for cluster {}", c.name),
            };
            self.notes.violation(self.now, format!("Connect to {addr}: not what {family:?} keeps of {what}"));
        }
    }

    pub(super) fn cluster_of(&self, addr: SocketAddr) -> Option<usize> {
        if let Some(i) = self.clusters.iter().position(|c| c.static_addrs.contains(&addr)) {
            return Some(i);
        }
        let by_dns = self.clusters.iter().position(|c| {
            c.dns.iter().any(|(host, port)| {
                *port == addr.port()
                    && match self.dns.get(host) {
                        Some(DnsRule::Answer(ips) | DnsRule::Slow(ips)) => ips.contains(&addr.ip()),
                        Some(DnsRule::Rotate(answers)) => answers.iter().any(|ips| ips.contains(&addr.ip())),
                        _ => false,
                    }
            })
        });
        by_dns.or_else(|| self.clusters.iter().position(|c| c.original_dst))
    }
}

/// What `dns_lookup_family` keeps of an answer, in order (the simulator's own statement of
/// Envoy's rule, to check the proxy's against).
fn kept(family: Family, answer: &[IpAddr]) -> Vec<IpAddr> {
    let v4 = answer.iter().any(IpAddr::is_ipv4);
    let v6 = answer.iter().any(IpAddr::is_ipv6);
    let keep = |ip: &IpAddr| match family {
        Family::V4Only => ip.is_ipv4(),
        Family::V6Only => ip.is_ipv6(),
        Family::Auto => ip.is_ipv6() || !v6,
        Family::V4Preferred => ip.is_ipv4() || !v4,
        Family::All => true,
    };
    let mut out: Vec<IpAddr> = Vec::new();
    // IPv4 first (only `All` keeps both), each address once.
    for ip in answer.iter().filter(|ip| ip.is_ipv4()).chain(answer.iter().filter(|ip| ip.is_ipv6())) {
        if keep(ip) && !out.contains(ip) {
            out.push(*ip);
        }
    }
    out
}
