//! One interface's wire, for the probes: an AF_PACKET socket bound to it
//! for one EtherType, that sends whole frames to one hardware address and
//! hands back the frames that arrive until a deadline.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

/// An interface's index and hardware address, from sysfs (of the
/// network namespace the doctor runs in).
pub fn interface(ifname: &str) -> io::Result<(u32, [u8; 6])> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{ifname}: {what}"));
    let base = std::path::Path::new("/sys/class/net").join(ifname);
    let index: u32 = std::fs::read_to_string(base.join("ifindex"))?
        .trim()
        .parse()
        .map_err(|_| bad("ifindex"))?;
    let text = std::fs::read_to_string(base.join("address"))?;
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(bad("not an Ethernet address"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| bad("address"))?;
    }
    Ok((index, mac))
}

pub struct Link {
    socket: Socket,
    to: libc::sockaddr_ll,
}

impl Link {
    /// Bound to interface `index` for `ethertype`, sending to `dst`.
    pub fn open(index: u32, ethertype: u16, dst: [u8; 6]) -> io::Result<Link> {
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ethertype.to_be()))),
        )?;
        // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { MaybeUninit::zeroed().assume_init() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ethertype.to_be();
        to.sll_ifindex = index as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&dst);
        let link = Link { socket, to };
        // SAFETY: `to` is valid for the length given.
        if unsafe { libc::bind(link.socket.as_raw_fd(), link.addr(), Self::LEN) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(link)
    }

    const LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;

    fn addr(&self) -> *const libc::sockaddr {
        (&self.to as *const libc::sockaddr_ll).cast()
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame and `to` are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                self.addr(),
                Self::LEN,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Hands every frame that arrives to `seen` until `until`, or until
    /// `seen` says it has what it waited for.
    pub fn receive_until(
        &self,
        until: Instant,
        mut seen: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<()> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 256];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            // SAFETY: recv initialised the first n bytes.
            let got: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if seen(&got) {
                return Ok(());
            }
        }
    }
}
