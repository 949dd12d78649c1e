//! Socket set-up shared by both drivers (socket2), so both bind, connect and close alike.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use bytes::BytesMut;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Listen backlog, as Envoy's default.
pub const BACKLOG: i32 = 1024;

/// Whether an accepted socket has TCP_NODELAY when its listener has (set by [`listen`]), so
/// that it needs no `setsockopt` of its own. Linux copies it (and the test below checks);
/// elsewhere, set it on each accepted socket.
pub const ACCEPT_INHERITS_NODELAY: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// A nonblocking, close-on-exec TCP socket, made so by `socket()` itself where it can be.
fn tcp_socket(addr: SocketAddr) -> io::Result<Socket> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }
}

/// A nonblocking listener with SO_REUSEADDR and SO_REUSEPORT, so every worker binds the same
/// port and the kernel spreads connections over them. IPv6 addresses are IPv6-only (Envoy's
/// default without `ipv4_compat`).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = tcp_socket(addr)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Inherited by accepted sockets (see `ACCEPT_INHERITS_NODELAY`).
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Starts a nonblocking connect (TCP_NODELAY set). The stream becomes writable once the
/// handshake finished or failed; then ask [`connect_result`].
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = tcp_socket(addr)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// How a nonblocking connect ended, to be asked once the socket has been reported writable
/// (until the handshake ends, a connecting socket is not writable; then it is, connected or
/// failed): `Ok` connected, `Err` failed (`SO_ERROR`).
pub fn connect_result(socket: &impl AsFd) -> io::Result<()> {
    match SockRef::from(socket).take_error()? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One `recv` into the spare capacity of `buf`, appended (nothing is zeroed first).
pub fn recv(socket: &impl AsFd, buf: &mut BytesMut) -> io::Result<usize> {
    debug_assert!(buf.capacity() > buf.len(), "no room to read into: 0 would look like EOF");
    let n = SockRef::from(socket).recv(buf.spare_capacity_mut())?;
    // SAFETY: recv initialized the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        if ACCEPT_INHERITS_NODELAY {
            assert!(SockRef::from(&accepted).tcp_nodelay().unwrap(), "TCP_NODELAY not inherited");
        }
    }

    #[test]
    fn sockets_are_nonblocking() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(SockRef::from(&listener).nonblocking().unwrap());
        let stream = connect(listener.local_addr().unwrap()).unwrap();
        assert!(SockRef::from(&stream).nonblocking().unwrap());
        assert!(SockRef::from(&stream).tcp_nodelay().unwrap());
    }
}
