//! Listeners: the address, and the one filter chain with its network filter (the HTTP
//! connection manager or the TCP proxy).

use std::collections::HashMap;

use super::address::ip_address;
use super::fields::{at, decode, err, not_supported, split_typed, Result, DEFAULT_BUFFER_LIMIT};
use super::hcm::hcm;
use super::model::*;
use super::raw;
use super::tcp_proxy::{tcp_proxy, TCP_PROXY_TYPE_URL};

pub const HCM_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

pub(super) fn listener(
    l: raw::Listener,
    path: &str,
    clusters: &HashMap<String, usize>,
    sinks: &mut Vec<LogSink>,
) -> Result<Listener> {
    let Some(address) = l.address else {
        return err(path, "missing address");
    };
    let (address, protocol) = ip_address(address, &at(path, "address"), true)?;
    if protocol == SocketProtocol::Udp {
        return not_supported(
            at(path, "address.socket_address.protocol"),
            "UDP",
            "burrow listens on TCP only; HTTP/3 over QUIC is not implemented",
        );
    }
    // Envoy makes up a name for an unnamed listener; the address is a readable stand-in.
    let name = l.name.filter(|n| !n.is_empty()).unwrap_or_else(|| address.to_string());

    let mut chains = l.filter_chains.into_iter();
    let Some(chain) = chains.next() else {
        return err(at(path, "filter_chains"), "a listener needs one filter chain");
    };
    if chains.next().is_some() {
        return err(
            at(path, "filter_chains[1]"),
            "burrow supports one filter chain per listener (filter_chain_match is not supported)",
        );
    }
    let chain_path = at(path, "filter_chains[0]");
    let mut filters = chain.filters.into_iter();
    let Some(filter) = filters.next() else {
        return err(at(&chain_path, "filters"), "a filter chain needs the HTTP connection manager filter");
    };
    if filters.next().is_some() {
        return err(
            at(&chain_path, "filters[1]"),
            "burrow supports exactly one network filter per filter chain (the HTTP connection manager or the TCP proxy)",
        );
    }
    let filter_path = at(&chain_path, "filters[0]");
    let Some(typed) = filter.typed_config else {
        return err(filter_path, "missing typed_config");
    };
    let typed_path = at(&filter_path, "typed_config");
    let (url, body) = split_typed(&typed, &typed_path)?;
    let filter = match url.as_str() {
        HCM_TYPE_URL => {
            let raw = decode(&body, &typed_path)?;
            NetworkFilter::HttpConnectionManager(Box::new(hcm(raw, &typed_path, clusters, sinks)?))
        }
        TCP_PROXY_TYPE_URL => {
            let raw = decode(&body, &typed_path)?;
            NetworkFilter::TcpProxy(Box::new(tcp_proxy(raw, &typed_path, clusters, sinks)?))
        }
        _ => {
            return err(
                at(&typed_path, "@type"),
                format!(
                    "unsupported network filter type '{url}' for filter '{}' (burrow supports \
                     {HCM_TYPE_URL} and {TCP_PROXY_TYPE_URL})",
                    filter.name
                ),
            )
        }
    };
    Ok(Listener {
        name,
        address,
        protocol,
        per_connection_buffer_limit_bytes: l
            .per_connection_buffer_limit_bytes
            .map_or(DEFAULT_BUFFER_LIMIT, |v| v.0),
        filter,
    })
}
