//! A client's TCP socket on its shard: nonblocking system calls, readiness from the shard's epoll
//! registry (`readiness.rs`), and the kernel's receive time of what each read returns.
//!
//! What it replaces, glommio's `TcpStream`, keeps a `POLL_ADD` source per waiting read (~490 bytes per
//! idle client) and asks for a new one after every read; this one registers the socket once. It is
//! all the connection code needs of a stream: `poll_read`, `poll_write`, a read timeout (the CONNECT
//! deadline, the closing linger) and the receive times (`SO_TIMESTAMPNS`, read as a control message
//! of `recvmsg`, which orders a SUBSCRIBE against other clients' PUBLISHes: `lookback.rs`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::Future;
use glommio::timer::Timer;

use super::readiness::{Interest, Registration};

pub(super) struct Tcp {
    /// Dropped before `stream`: it removes the socket from the epoll instance, which needs it open.
    registration: Registration,
    stream: std::net::TcpStream,
    /// When the kernel received the data last read, ns since the epoch (0: none carried a time).
    rx_stamp: u64,
    /// How long a read may wait, and the timer of the read waiting now; `None`: for ever. Boxed: only
    /// a connection's setup (the CONNECT) has one, and every idle client keeps its stream (8 bytes
    /// here instead of 24, memory per idle client).
    read_deadline: Option<Box<ReadDeadline>>,
}

impl Tcp {
    /// Serve `stream` from this shard: registers it with the shard's epoll instance. Every call passes
    /// `MSG_DONTWAIT`, so the socket's own blocking mode does not matter (no `fcntl` per connection).
    pub(super) fn new(stream: std::net::TcpStream) -> io::Result<Tcp> {
        let registration = Registration::new(stream.as_raw_fd())?;
        Ok(Tcp {
            registration,
            stream,
            rx_stamp: 0,
            read_deadline: None,
        })
    }

    /// Ask the kernel for the receive time of what each read returns ([`Self::last_rx_timestamp`]).
    pub(super) fn set_rx_timestamps(&self, on: bool) -> io::Result<()> {
        let on = libc::c_int::from(on);
        // SAFETY: the socket is open; the option value is a c_int that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// When the kernel received the data last read (ns since the epoch; 0 when none carried a time).
    pub(super) fn last_rx_timestamp(&self) -> u64 {
        self.rx_stamp
    }

    pub(super) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.stream.set_nodelay(on)
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// See [`Registration::hand_read_wait_to`]. Only without a read timeout (a served connection).
    pub(super) fn hand_read_wait_to(&self, waker: &Waker) -> bool {
        self.read_deadline.is_none() && self.registration.hand_read_wait_to(waker)
    }

    /// Bound every later read's wait to `timeout` (`None`: wait for ever).
    pub(super) fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_deadline = timeout.map(|timeout| {
            Box::new(ReadDeadline {
                timeout,
                timer: None,
            })
        });
    }

    /// Read what the socket has into `buf`: Ok(0) at the end of the stream; `TimedOut` after the read
    /// timeout with nothing read.
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Still waiting since the last `EAGAIN`: nothing arrived, so no system call (a wake-up for
        // the connection's writer polls its reader too, `serving.rs`).
        if !self.registration.waiting(Interest::Read, cx) {
            loop {
                match recv_stamped(self.stream.as_raw_fd(), buf) {
                    Ok((n, stamp)) => {
                        if stamp != 0 {
                            self.rx_stamp = stamp;
                        }
                        if let Some(d) = self.read_deadline.as_deref_mut() {
                            d.timer = None;
                        }
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            self.registration.wait(Interest::Read, cx);
        }
        if let Some(d) = self.read_deadline.as_deref_mut() {
            let timeout = d.timeout;
            let timer = d.timer.get_or_insert_with(|| Timer::new(timeout));
            if Pin::new(timer).poll(cx).is_ready() {
                d.timer = None;
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
        }
        Poll::Pending
    }

    /// Write as much of `bytes` as the socket takes now (at least one byte when Ready(Ok)).
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        // As for reads: no room came since the last `EAGAIN`.
        if self.registration.waiting(Interest::Write, cx) {
            return Poll::Pending;
        }
        loop {
            // SAFETY: `bytes` is valid for its length for the call; the socket is open.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Poll::Ready(Ok(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    self.registration.wait(Interest::Write, cx);
                    return Poll::Pending;
                }
                _ => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// A read timeout: how long, and the timer of the read waiting now.
struct ReadDeadline {
    timeout: Duration,
    timer: Option<Timer>,
}

impl AsRawFd for Tcp {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

/// `recvmsg` with room for one `SO_TIMESTAMPNS` control message: the bytes read and their receive
/// time (0 when the read carried none: the option off, or the end of the stream).
fn recv_stamped(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one `timespec` control message (CMSG_SPACE(16) = 32 on 64-bit), aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid (no name, no iovecs) before the fields below are set.
    let mut hdr = unsafe { std::mem::zeroed::<libc::msghdr>() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `hdr` points at `iov` (into `buf`) and `control`, all alive for the call.
    let n = unsafe { libc::recvmsg(fd, &mut hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = 0;
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = (ts.tv_sec as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

/// A listening socket of this shard (its own, `SO_REUSEPORT`): accepts through the shard's epoll
/// registry like the clients' reads.
pub(super) struct Listener {
    registration: Registration,
    listener: std::net::TcpListener,
}

impl Listener {
    pub(super) fn new(listener: std::net::TcpListener) -> io::Result<Listener> {
        // The listening socket is polled with `accept4`, which waits when the socket blocks.
        listener.set_nonblocking(true)?;
        Ok(Listener {
            registration: Registration::new(listener.as_raw_fd())?,
            listener,
        })
    }

    /// The next connection: its socket (nonblocking, close-on-exec) and the client's address.
    pub(super) async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| loop {
            // SAFETY: an all-zero sockaddr_storage is valid; the kernel fills it up to `len`.
            let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `addr` and `len` outlive the call, `len` says how big `addr` is.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    (&mut addr as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: `fd` is the connected socket just accepted, owned by nobody else.
                let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
                let peer =
                    socket_addr(&addr).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                return Poll::Ready(Ok((stream, peer)));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    self.registration.wait(Interest::Read, cx);
                    return Poll::Pending;
                }
                _ => return Poll::Ready(Err(e)),
            }
        })
        .await
    }
}

/// The IPv4 or IPv6 address the kernel wrote into `addr`.
fn socket_addr(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
