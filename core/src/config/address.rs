//! Socket addresses: `address: {socket_address: {...}}` as listeners, the admin block and
//! cluster endpoints write them.

use std::net::{IpAddr, SocketAddr};

use super::fields::{at, err, Result};
use super::model::SocketProtocol;
use super::raw;

pub(super) enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Reads an `address: {socket_address: {...}}`. `path` names the `address` field.
pub(super) fn host_address(address: raw::Address, path: &str) -> Result<(Host, u16, SocketProtocol)> {
    let Some(sa) = address.socket_address else {
        return err(path, "missing socket_address (burrow supports only socket addresses)");
    };
    let path = at(path, "socket_address");
    let port = sa.port_value.map_or(0, |p| p.0);
    let Ok(port) = u16::try_from(port) else {
        return err(at(&path, "port_value"), format!("{port} is out of range (0..=65535)"));
    };
    let protocol = match sa.protocol {
        None | Some(raw::Protocol::Tcp) => SocketProtocol::Tcp,
        Some(raw::Protocol::Udp) => SocketProtocol::Udp,
    };
    let host = match sa.address.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) if sa.address.is_empty() => return err(at(&path, "address"), "empty"),
        Err(_) => Host::Name(sa.address),
    };
    Ok((host, port, protocol))
}

/// An address that must be an IP literal; UDP only where `udp_ok`.
pub(super) fn ip_address(
    address: raw::Address,
    path: &str,
    udp_ok: bool,
) -> Result<(SocketAddr, SocketProtocol)> {
    let (host, port, protocol) = host_address(address, path)?;
    if protocol == SocketProtocol::Udp && !udp_ok {
        return err(at(path, "socket_address.protocol"), "UDP is not supported here");
    }
    match host {
        Host::Ip(ip) => Ok((SocketAddr::new(ip, port), protocol)),
        Host::Name(name) => {
            err(at(path, "socket_address.address"), format!("'{name}' is not a valid IP address"))
        }
    }
}
