//! Socket set-up shared by both drivers (socket2), so both bind, connect and close alike.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Listen backlog, as Envoy's default.
pub const BACKLOG: i32 = 1024;

/// A nonblocking listener with SO_REUSEADDR and SO_REUSEPORT, so every worker binds the same
/// port and the kernel spreads connections over them. IPv6 addresses are IPv6-only (Envoy's
/// default without `ipv4_compat`).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Starts a nonblocking connect (TCP_NODELAY set). The stream becomes writable once the
/// handshake finished or failed; then ask [`connect_result`].
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// Where a nonblocking connect stands: `Ok(true)` connected, `Ok(false)` still in progress,
/// `Err` failed.
pub fn connect_result(socket: &impl AsFd) -> io::Result<bool> {
    let socket = SockRef::from(socket);
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    match socket.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected || e.raw_os_error() == Some(libc::ENOTCONN) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// TCP_NODELAY on an accepted socket.
pub fn set_nodelay(socket: &impl AsFd) -> io::Result<()> {
    SockRef::from(socket).set_tcp_nodelay(true)
}

/// The local address of a socket.
pub fn local_addr(socket: &impl AsFd) -> io::Result<SocketAddr> {
    SockRef::from(socket)
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}

/// Shut down the write side (FIN after whatever the kernel still holds).
pub fn shutdown_write(socket: &impl AsFd) -> io::Result<()> {
    SockRef::from(socket).shutdown(Shutdown::Write)
}

/// SO_LINGER 0: closing the socket afterwards drops unsent data and sends RST.
pub fn set_abort_on_close(socket: &impl AsFd) -> io::Result<()> {
    SockRef::from(socket).set_linger(Some(Duration::ZERO))
}
