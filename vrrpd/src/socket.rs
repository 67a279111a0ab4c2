//! The sockets vrrpd talks through: raw IP protocol 112 for adverts
//! (IPv4 and IPv6), AF_PACKET for gratuitous ARP, raw ICMPv6 for
//! unsolicited neighbour advertisements. Thin: bytes in, bytes out; the
//! packet formats live in [`crate::packet`].

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, sendmsg,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::packet::{IPPROTO_VRRP, VRRP_TOS, VRRP_TTL};
use tandem_model::config::value::{VRRP_GROUP_V4, VRRP_GROUP_V6};

/// One received datagram, before any VRRP check.
#[derive(Clone, Debug)]
pub enum Datagram {
    /// AF_INET raw sockets deliver the IP header too.
    V4(Vec<u8>),
    /// AF_INET6 raw sockets deliver the payload; the addresses and hop
    /// limit come from the socket address and control messages.
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        payload: Vec<u8>,
    },
}

fn wrap(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    socket.set_nonblocking(true)?;
    // SAFETY: the socket owns its fd and keeps it open until the AsyncFd
    // drops it; as_raw_fd always returns that fd.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(|e| e.into())
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A raw VRRP socket on one interface for one address family, shared by
/// every instance there (they are told apart by VRID).
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
    v6: bool,
}

impl VrrpSocket {
    /// Opens the socket, bound to `ifname`; with `join`, a member of the
    /// VRRP group (a send-only socket on a virtual-MAC interface is not).
    pub fn open(ifname: &str, ifindex: u32, v6: bool, join: bool) -> io::Result<Self> {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        s.bind_device(Some(ifname.as_bytes()))?;
        if v6 {
            s.set_multicast_if_v6(ifindex)?;
            s.set_multicast_loop_v6(false)?;
            s.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
            s.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
            s.set_recv_hoplimit_v6(true)?;
            setsockopt_int(s.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            setsockopt_int(
                s.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_TCLASS,
                i32::from(VRRP_TOS),
            )?;
            // Only the groups joined on this socket, not every socket's.
            s.set_multicast_all_v6(false)?;
            if join {
                s.join_multicast_v6(&VRRP_GROUP_V6, ifindex)?;
            }
        } else {
            // We write the IP header: TTL 255, TOS CS6, no DF, as keepalived.
            s.set_header_included_v4(true)?;
            let mreqn = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex as i32,
            };
            // SAFETY: passes a pointer to a live ip_mreqn and its size.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_MULTICAST_IF,
                    (&mreqn as *const libc::ip_mreqn).cast(),
                    std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            s.set_multicast_loop_v4(false)?;
            s.set_multicast_all_v4(false)?;
            if join {
                s.join_multicast_v4_n(&VRRP_GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
            }
        }
        Ok(VrrpSocket {
            fd: wrap(s)?,
            ifindex,
            v6,
        })
    }

    /// Lets only adverts for `vrids` reach this socket; the kernel drops
    /// the rest before they are queued (see [`vrid_filter`]).
    pub fn keep_only_vrids(&self, vrids: &[u8]) -> io::Result<()> {
        let mut prog = vrid_filter(self.v6, vrids);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: passes a pointer to a live sock_fprog whose filter points
        // at `prog`, which outlives the call (the kernel copies it).
        let rc = unsafe {
            libc::setsockopt(
                self.fd.get_ref().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The next datagram.
    pub async fn recv(&self) -> io::Result<Datagram> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| self.recv_now(fd.get_ref().as_raw_fd())) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    fn recv_now(&self, fd: RawFd) -> io::Result<Datagram> {
        let mut buf = vec![0u8; 2048];
        if !self.v6 {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            buf.truncate(n as usize);
            return Ok(Datagram::V4(buf));
        }
        let mut cmsg = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo);
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())
            .map_err(io::Error::from)?;
        let n = msg.bytes;
        let src = msg.address.map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED);
        let mut hop_limit = 0u8;
        let mut dst = Ipv6Addr::UNSPECIFIED;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            match c {
                ControlMessageOwned::Ipv6HopLimit(h) => hop_limit = h.clamp(0, 255) as u8,
                ControlMessageOwned::Ipv6PacketInfo(pi) => {
                    dst = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                }
                _ => {}
            }
        }
        buf.truncate(n);
        Ok(Datagram::V6 {
            src,
            dst,
            hop_limit,
            payload: buf,
        })
    }

    /// Sends a whole IPv4 packet (header included) to `dst`.
    pub fn send_v4(&self, packet: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let addr = SockAddr::from(SocketAddrV4::new(dst, 0));
        self.fd.get_ref().send_to(packet, &addr).map(|_| ())
    }

    /// Sends a VRRP message from `src` (the interface's link-local address,
    /// RFC 5798 5.1.2.1) to `dst`.
    pub fn send_v6(&self, msg: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> io::Result<()> {
        let scope = if dst.is_unicast_link_local() || dst.is_multicast() {
            self.ifindex
        } else {
            0
        };
        let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
        let pktinfo = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: src.octets(),
            },
            ipi6_ifindex: self.ifindex,
        };
        let iov = [io::IoSlice::new(msg)];
        let cmsgs = [ControlMessage::Ipv6PacketInfo(&pktinfo)];
        sendmsg(
            self.fd.get_ref().as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::empty(),
            Some(&to),
        )
        .map(|_| ())
        .map_err(io::Error::from)
    }
}

/// Sends Ethernet frames (gratuitous ARP) out of one interface.
pub struct PacketSocket {
    socket: Socket,
    ifindex: u32,
}

impl PacketSocket {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // Protocol 0: send only, receive nothing.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.set_nonblocking(true)?;
        Ok(PacketSocket { socket, ifindex })
    }

    /// Sends a complete frame; the destination MAC is taken from it.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { MaybeUninit::zeroed().assume_init() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and sll are valid for the given lengths.
        let rc = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Sends ICMPv6 messages (neighbour advertisements) out of one interface;
/// the kernel fills the checksum.
pub struct Icmpv6Socket {
    socket: Socket,
    ifindex: u32,
}

impl Icmpv6Socket {
    pub fn open(ifname: &str, ifindex: u32) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        // RFC 4861 7.1.2: a receiver drops ND messages with a hop limit
        // other than 255.
        socket.set_multicast_hops_v6(255)?;
        socket.set_unicast_hops_v6(255)?;
        socket.set_multicast_if_v6(ifindex)?;
        socket.set_nonblocking(true)?;
        Ok(Icmpv6Socket { socket, ifindex })
    }

    pub fn send(&self, msg: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> io::Result<()> {
        let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, self.ifindex));
        let pktinfo = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: src.octets(),
            },
            ipi6_ifindex: self.ifindex,
        };
        let iov = [io::IoSlice::new(msg)];
        sendmsg(
            self.socket.as_raw_fd(),
            &iov,
            &[ControlMessage::Ipv6PacketInfo(&pktinfo)],
            MsgFlags::empty(),
            Some(&to),
        )
        .map(|_| ())
        .map_err(io::Error::from)
    }
}

/// Where the adverts of an instance go: the group, or each unicast peer.
pub fn destinations(v6: bool, unicast_peers: &[IpAddr]) -> Vec<IpAddr> {
    if !unicast_peers.is_empty() {
        unicast_peers.to_vec()
    } else if v6 {
        vec![IpAddr::V6(VRRP_GROUP_V6)]
    } else {
        vec![IpAddr::V4(VRRP_GROUP_V4)]
    }
}

/// A classic BPF socket filter that accepts a datagram only when its VRRP
/// header carries one of `vrids` (byte 1, RFC 5798 5.2.3), so a flood of
/// protocol 112 for other virtual routers, or garbage, is dropped by the
/// kernel instead of costing the daemon a wakeup, a copy and a parse per
/// packet. What passes is still checked in full in user space.
///
/// Where the filter looks: an AF_INET raw socket runs it on the packet
/// from its IP header (`raw_rcv` pushes the header back before
/// `sock_queue_rcv_skb`), so the VRRP header is at IHL x 4, which
/// `ldx 4*([0]&0xf)` loads; an AF_INET6 raw socket runs it from the
/// transport header (`ip6_protocol_deliver_rcu` pulls the IPv6 header and
/// its extensions first). A load past the end of a short datagram ends
/// the program with 0, a drop.
pub fn vrid_filter(v6: bool, vrids: &[u8]) -> Vec<libc::sock_filter> {
    const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const LD_B_IND: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_IND) as u16;
    const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };

    let mut vrids = vrids.to_vec();
    vrids.sort_unstable();
    vrids.dedup();
    let mut prog = Vec::with_capacity(vrids.len() + 4);
    if v6 {
        prog.push(op(LD_B_ABS, 0, 0, 1));
    } else {
        prog.push(op(LDX_B_MSH, 0, 0, 0));
        prog.push(op(LD_B_IND, 0, 0, 1));
    }
    // One compare per VRID; a match jumps over the rest and the drop to
    // the accept at the end. At most 255 VRIDs keep every jump in a u8.
    let n = vrids.len();
    for (i, vrid) in vrids.iter().enumerate() {
        let to_accept = (n - i) as u8;
        prog.push(op(JEQ_K, to_accept, 0, u32::from(*vrid)));
    }
    prog.push(op(RET_K, 0, 0, 0));
    prog.push(op(RET_K, 0, 0, u32::MAX));
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of classic BPF the filter uses, as the kernel's
    /// interpreter does (`___bpf_prog_run`): a load past the end returns 0.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let ins = prog[pc];
            pc += 1;
            let code = u32::from(ins.code);
            match code {
                c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_ABS => {
                    let Some(&b) = pkt.get(ins.k as usize) else {
                        return 0;
                    };
                    a = u32::from(b);
                }
                c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_IND => {
                    let Some(&b) = pkt.get((x + ins.k) as usize) else {
                        return 0;
                    };
                    a = u32::from(b);
                }
                c if c == libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH => {
                    let Some(&b) = pkt.get(ins.k as usize) else {
                        return 0;
                    };
                    x = 4 * u32::from(b & 0xf);
                }
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += usize::from(if a == ins.k { ins.jt } else { ins.jf });
                }
                c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                other => panic!("instruction {other:#x} not in the filter's subset"),
            }
        }
    }

    fn v4(ihl_words: u8, vrrp: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(ihl_words) * 4];
        p[0] = 0x40 | ihl_words;
        p.extend_from_slice(vrrp);
        p
    }

    #[test]
    fn the_filter_passes_our_vrids_and_drops_every_other() {
        let prog = vrid_filter(false, &[51, 7, 51]);
        assert!(run(&prog, &v4(5, &[0x31, 51, 100])) > 0);
        assert!(run(&prog, &v4(5, &[0x31, 7])) > 0);
        assert_eq!(run(&prog, &v4(5, &[0x31, 52, 100])), 0);
        // IP options move the VRRP header: the VRID is found behind them.
        assert!(run(&prog, &v4(6, &[0x31, 51])) > 0);
        assert_eq!(run(&prog, &v4(6, &[0, 0, 0, 51])), 0);
        // Too short to hold a VRID: dropped, not read past the end.
        assert_eq!(run(&prog, &v4(5, &[0x31])), 0);
        assert_eq!(run(&prog, &[]), 0);

        let prog6 = vrid_filter(true, &[51]);
        assert!(run(&prog6, &[0x31, 51, 100, 0]) > 0);
        assert_eq!(run(&prog6, &[0x31, 50]), 0);
        assert_eq!(run(&vrid_filter(true, &[]), &[0x31, 51]), 0);
    }

    #[test]
    fn every_vrid_fits_in_one_program() {
        let all: Vec<u8> = (1..=255).collect();
        let prog = vrid_filter(false, &all);
        for vrid in 1..=255u8 {
            assert!(run(&prog, &v4(5, &[0x31, vrid])) > 0, "{vrid}");
        }
        assert_eq!(run(&prog, &v4(5, &[0x31, 0])), 0);
    }
}
