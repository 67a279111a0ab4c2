//! The kernel client: a generic netlink socket talking to the `IPVS`
//! family. It only moves bytes; [`crate::netlink`] frames them and
//! [`crate::codec`] gives them meaning.
//!
//! Changes are sent in batches: many requests in one `sendmsg`, only the
//! last asking for an ACK. The kernel runs every request of a datagram in
//! order inside that `sendmsg` (`netlink_rcv_skb`) and answers a request
//! without `NLM_F_ACK` only when it fails, so one ACK tells that the whole
//! batch ran, and the errors before it name the requests that failed.

use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_GENERIC};

use crate::codec::{self, cmd};
use crate::error::{Error, KernelError, Request};
use crate::netlink::{self, Reply};
use crate::reconcile::{ConnectionSync, Dataplane, Op};
use crate::types::{Info, Service, ServiceKey, SyncDaemon, SyncRole, Table, Timeouts};

/// Bytes of requests per `sendmsg`. A datagram must fit the socket's send
/// buffer (`netlink_sendmsg` refuses one above `sk_sndbuf - 32`), and the
/// errors it may provoke must fit the receive buffer.
const BATCH_BYTES: usize = 96 * 1024;
/// Receive buffer asked for: room for a batch's worth of error messages.
const RCVBUF: usize = 8 << 20;
/// Receive buffer one error message may take: its skb's true size, with
/// the extended ACK's text.
const ERROR_TRUESIZE: usize = 2048;
/// One datagram: dumps fill at most 32 KiB (`netlink_dump`).
const RECV_LEN: usize = 64 * 1024;

// Socket options (include/uapi/linux/netlink.h).
const NETLINK_EXT_ACK: libc::c_int = 11;
const NETLINK_CAP_ACK: libc::c_int = 10;
const SOL_NETLINK: libc::c_int = 270;

/// How many requests of each kind went to the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Change requests (operations, zero, flush, timeouts, daemons).
    pub changes: u64,
    /// Dump and get requests.
    pub reads: u64,
    /// `sendmsg` calls.
    pub datagrams: u64,
}

/// A connection to the kernel's IPVS.
pub struct Kernel {
    socket: Socket,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
    counters: Counters,
    /// Requests per batch: if all of them fail, their errors must fit the
    /// receive buffer the kernel granted, or some would be lost.
    batch_ops: usize,
}

fn get_int_opt(fd: libc::c_int, level: libc::c_int, opt: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

fn set_int_opt(fd: libc::c_int, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live int.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

impl Kernel {
    /// Opens a socket and resolves the `IPVS` family through nlctrl.
    /// A kernel without IPVS gives [`Error::NoIpvs`].
    pub fn connect() -> Result<Kernel, Error> {
        let mut socket = Socket::new(NETLINK_GENERIC).map_err(Error::Socket)?;
        socket.bind_auto().map_err(Error::Socket)?;
        socket.connect(&NlAddr::new(0, 0)).map_err(Error::Socket)?;
        let fd = socket.as_raw_fd();
        // Error messages without the request echoed back, and with the
        // kernel's text when it has one.
        set_int_opt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        set_int_opt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        // Beyond rmem_max only with CAP_NET_ADMIN; a refusal leaves the
        // default, which smaller batches would then have to respect.
        if !set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF as i32) {
            set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF as i32);
        }
        set_int_opt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (BATCH_BYTES * 2) as i32,
        );
        let mut k = Kernel {
            socket,
            family: netlink::GENL_ID_CTRL,
            seq: 0,
            buf: vec![0; RECV_LEN],
            counters: Counters::default(),
            batch_ops: get_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)
                .map_or(64, |b| b as usize / ERROR_TRUESIZE)
                .clamp(16, 4096),
        };
        let seq = k.next_seq();
        let mut req = Vec::new();
        netlink::get_family_request(&mut req, seq, codec::FAMILY_NAME, NLM_F_REQUEST | NLM_F_ACK);
        let mut family = None;
        let resolved = k.exchange(&req, seq, &Request::ResolveFamily, &mut |a| {
            family = Some(netlink::family_id(a)?);
            Ok(())
        });
        match resolved {
            Err(Error::Kernel(e)) if e.errno == libc::ENOENT => return Err(Error::NoIpvs),
            r => r?,
        }
        k.family =
            family.ok_or_else(|| codec::CodecError::new("nlctrl gave no answer for IPVS"))?;
        k.counters = Counters::default();
        Ok(k)
    }

    /// The family id nlctrl gave.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    /// Requests sent so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&mut self, buf: &[u8]) -> Result<(), Error> {
        self.counters.datagrams += 1;
        let n = self.socket.send(buf, 0).map_err(Error::Io)?;
        if n != buf.len() {
            return Err(Error::Io(io::Error::other(format!(
                "sent {n} of {} bytes",
                buf.len()
            ))));
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<usize, Error> {
        loop {
            match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(Error::Io(io::Error::other(
                        "the kernel's replies overflowed the socket's receive buffer",
                    )));
                }
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Sends one request (already framed, sequence `seq`) and hands each
    /// of its data messages to `on_data`, straight from the receive buffer,
    /// until the ACK or the end of the dump.
    fn exchange(
        &mut self,
        req: &[u8],
        seq: u32,
        what: &Request,
        on_data: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.send(req)?;
        loop {
            let n = self.recv()?;
            for msg in netlink::messages(&self.buf[..n])? {
                if msg.seq != seq {
                    continue; // a late answer to an earlier request
                }
                match netlink::classify(&msg)? {
                    Reply::Data { attrs, .. } => on_data(attrs)?,
                    Reply::Done | Reply::Ack => return Ok(()),
                    Reply::Error { errno, message } => {
                        return Err(Error::Kernel(Box::new(KernelError {
                            request: what.clone(),
                            errno,
                            detail: message,
                        })));
                    }
                }
            }
        }
    }

    fn request(
        &mut self,
        cmd: u8,
        flags: u16,
        attrs: &[u8],
        what: Request,
        on_data: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let seq = self.next_seq();
        let mut req = Vec::new();
        netlink::put_request(
            &mut req,
            self.family,
            NLM_F_REQUEST | flags,
            seq,
            cmd,
            codec::FAMILY_VERSION,
            attrs,
        );
        if matches!(
            cmd,
            cmd::GET_SERVICE | cmd::GET_DEST | cmd::GET_DAEMON | cmd::GET_CONFIG | cmd::GET_INFO
        ) {
            self.counters.reads += 1;
        } else {
            self.counters.changes += 1;
        }
        self.exchange(&req, seq, &what, on_data)
    }

    /// A request whose answer, if any, is one message.
    fn request_one(
        &mut self,
        cmd: u8,
        flags: u16,
        attrs: &[u8],
        what: Request,
    ) -> Result<Option<Vec<u8>>, Error> {
        let mut answer = None;
        self.request(cmd, flags, attrs, what, &mut |a| {
            answer.get_or_insert_with(|| a.to_vec());
            Ok(())
        })?;
        Ok(answer)
    }

    /// The services, without their destinations.
    pub fn services(&mut self) -> Result<Vec<Service>, Error> {
        let mut out = Vec::new();
        self.request(
            cmd::GET_SERVICE,
            NLM_F_DUMP,
            &[],
            Request::ListServices,
            &mut |a| {
                out.push(codec::decode_service(a)?);
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// One service and its destinations; `None` when there is no such
    /// service.
    pub fn service(&mut self, key: &ServiceKey) -> Result<Option<Service>, Error> {
        let attrs = codec::dests_request(key);
        let found = match self.request_one(
            cmd::GET_SERVICE,
            NLM_F_ACK,
            &attrs,
            Request::GetService(*key),
        ) {
            Ok(found) => found,
            Err(Error::Kernel(e)) if e.errno == libc::ESRCH => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(reply) = found else {
            return Ok(None);
        };
        let mut svc = codec::decode_service(&reply)?;
        self.fill_dests(&mut svc)?;
        Ok(Some(svc))
    }

    /// The destinations of one service, with its settings filled in.
    pub fn fill_dests(&mut self, svc: &mut Service) -> Result<(), Error> {
        let attrs = codec::dests_request(&svc.key);
        let family = svc.key.family();
        let mut dests = Vec::new();
        self.request(
            cmd::GET_DEST,
            NLM_F_DUMP,
            &attrs,
            Request::ListDests(svc.key),
            &mut |a| {
                dests.push(codec::decode_dest(a, family)?);
                Ok(())
            },
        )?;
        svc.dests = dests;
        svc.sort();
        Ok(())
    }

    /// The whole table: one services dump, then one destinations dump per
    /// service (the family has no single dump of everything). A service
    /// deleted between the two is skipped.
    pub fn table(&mut self) -> Result<Table, Error> {
        let mut services = self.services()?;
        let mut kept = Vec::with_capacity(services.len());
        for mut svc in services.drain(..) {
            match self.fill_dests(&mut svc) {
                Ok(()) => kept.push(svc),
                Err(Error::Kernel(e)) if e.errno == libc::ESRCH => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Table::new(kept))
    }

    /// Version and connection table size.
    pub fn info(&mut self) -> Result<Info, Error> {
        let r = self.request_one(cmd::GET_INFO, NLM_F_ACK, &[], Request::Info)?;
        let attrs = r.ok_or_else(|| codec::CodecError::new("no answer to GET_INFO"))?;
        Ok(codec::decode_info(&attrs)?)
    }

    pub fn timeouts(&mut self) -> Result<Timeouts, Error> {
        let r = self.request_one(cmd::GET_CONFIG, NLM_F_ACK, &[], Request::GetTimeouts)?;
        let attrs = r.ok_or_else(|| codec::CodecError::new("no answer to GET_CONFIG"))?;
        Ok(codec::decode_timeouts(&attrs)?)
    }

    /// Sets the timeouts given; the others stay.
    pub fn set_timeouts(&mut self, t: &Timeouts) -> Result<(), Error> {
        let attrs = codec::timeouts_request(t);
        self.request_one(cmd::SET_CONFIG, NLM_F_ACK, &attrs, Request::SetTimeouts)?;
        Ok(())
    }

    /// Zeroes the counters of one service, or of all.
    pub fn zero(&mut self, key: Option<&ServiceKey>) -> Result<(), Error> {
        let attrs = codec::zero_request(key);
        self.request_one(cmd::ZERO, NLM_F_ACK, &attrs, Request::Zero(key.copied()))?;
        Ok(())
    }

    /// Deletes every service.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.request_one(cmd::FLUSH, NLM_F_ACK, &[], Request::Flush)?;
        Ok(())
    }

    /// The running sync daemons.
    pub fn daemons(&mut self) -> Result<Vec<SyncDaemon>, Error> {
        let mut out = Vec::new();
        self.request(
            cmd::GET_DAEMON,
            NLM_F_DUMP,
            &[],
            Request::ListDaemons,
            &mut |a| {
                out.push(codec::decode_daemon(a)?);
                Ok(())
            },
        )?;
        Ok(out)
    }

    pub fn start_daemon(&mut self, d: &SyncDaemon) -> Result<(), Error> {
        let attrs = codec::daemon_start_request(d);
        self.request_one(
            cmd::NEW_DAEMON,
            NLM_F_ACK,
            &attrs,
            Request::StartDaemon {
                role: d.role,
                interface: d.interface.clone(),
            },
        )?;
        Ok(())
    }

    pub fn stop_daemon(&mut self, role: SyncRole) -> Result<(), Error> {
        let attrs = codec::daemon_stop_request(role);
        self.request_one(
            cmd::DEL_DAEMON,
            NLM_F_ACK,
            &attrs,
            Request::StopDaemon(role),
        )?;
        Ok(())
    }

    /// Applies operations in batches (see the module's documentation).
    /// Every operation is tried; the failures come back together as
    /// [`Error::Ops`].
    pub fn apply_ops(&mut self, ops: &[Op]) -> Result<(), Error> {
        let mut failures = Vec::new();
        let mut start = 0;
        while start < ops.len() {
            let mut buf = Vec::with_capacity(BATCH_BYTES + 1024);
            let first_seq = self.seq.wrapping_add(1);
            let mut end = start;
            while end < ops.len() && buf.len() < BATCH_BYTES {
                let (cmd, attrs) = codec::encode_op(&ops[end]);
                let seq = self.next_seq();
                let last = end + 1 == ops.len()
                    || buf.len() + 512 >= BATCH_BYTES
                    || end + 1 - start >= self.batch_ops;
                let flags = NLM_F_REQUEST | if last { NLM_F_ACK } else { 0 };
                netlink::put_request(
                    &mut buf,
                    self.family,
                    flags,
                    seq,
                    cmd,
                    codec::FAMILY_VERSION,
                    &attrs,
                );
                end += 1;
                if last {
                    break;
                }
            }
            let last_seq = self.seq;
            self.counters.changes += (end - start) as u64;
            self.send(&buf)?;
            'batch: loop {
                let n = self.recv()?;
                for msg in netlink::messages(&self.buf[..n])? {
                    let index = msg.seq.wrapping_sub(first_seq) as usize;
                    if index >= end - start {
                        continue; // not this batch's
                    }
                    match netlink::classify(&msg)? {
                        Reply::Error { errno, message } => {
                            failures.push(KernelError {
                                request: Request::Op(ops[start + index].clone()),
                                errno,
                                detail: message,
                            });
                            if msg.seq == last_seq {
                                break 'batch;
                            }
                        }
                        Reply::Ack if msg.seq == last_seq => break 'batch,
                        _ => {}
                    }
                }
            }
            start = end;
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Ops(failures))
        }
    }
}

impl Dataplane for Kernel {
    type Error = Error;

    fn dump(&mut self) -> Result<Table, Error> {
        self.table()
    }

    fn apply(&mut self, ops: &[Op]) -> Result<(), Error> {
        self.apply_ops(ops)
    }
}

impl ConnectionSync for Kernel {
    fn sync_daemons(&mut self) -> Result<Vec<SyncDaemon>, Error> {
        self.daemons()
    }

    fn start_sync_daemon(&mut self, daemon: &SyncDaemon) -> Result<(), Error> {
        self.start_daemon(daemon)
    }

    fn stop_sync_daemon(&mut self, role: SyncRole) -> Result<(), Error> {
        self.stop_daemon(role)
    }
}
