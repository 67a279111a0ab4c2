//! Errors at the library's boundary, and what a kernel errno means for
//! the request that got it, in words a person can act on.
//!
//! The errno choices come from net/netfilter/ipvs/ip_vs_ctl.c:
//! `ip_vs_genl_set_cmd` answers ESRCH for a missing service, the
//! destination functions ENOENT for a missing destination, EEXIST for
//! duplicates; `ip_vs_add_service` ENOENT for an unknown scheduler or
//! persistence engine; `ip_vs_new_dest` EINVAL for an address it cannot
//! forward to. Every IPVS command is `GENL_ADMIN_PERM` (CAP_NET_ADMIN).

use std::fmt;

use crate::codec::CodecError;
use crate::reconcile::Op;
use crate::types::{Forwarding, ServiceKey, SyncRole};

/// What was asked of the kernel, for the message of a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    ResolveFamily,
    Op(Op),
    ListServices,
    GetService(ServiceKey),
    ListDests(ServiceKey),
    Info,
    GetTimeouts,
    SetTimeouts,
    Zero(Option<ServiceKey>),
    Flush,
    ListDaemons,
    StartDaemon { role: SyncRole, interface: String },
    StopDaemon(SyncRole),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::ResolveFamily => write!(f, "looking up the IPVS netlink family"),
            Request::Op(op) => write!(f, "{op}"),
            Request::ListServices => write!(f, "listing services"),
            Request::GetService(k) => write!(f, "reading service {k}"),
            Request::ListDests(k) => write!(f, "listing the real servers of {k}"),
            Request::Info => write!(f, "reading IPVS information"),
            Request::GetTimeouts => write!(f, "reading timeouts"),
            Request::SetTimeouts => write!(f, "setting timeouts"),
            Request::Zero(Some(k)) => write!(f, "zeroing the counters of {k}"),
            Request::Zero(None) => write!(f, "zeroing all counters"),
            Request::Flush => write!(f, "flushing the table"),
            Request::ListDaemons => write!(f, "listing sync daemons"),
            Request::StartDaemon { role, .. } => {
                write!(f, "starting the {} sync daemon", role.name())
            }
            Request::StopDaemon(role) => write!(f, "stopping the {} sync daemon", role.name()),
        }
    }
}

/// The kernel refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelError {
    pub request: Request,
    pub errno: i32,
    /// The kernel's extended ACK text, when it gave one.
    pub detail: Option<String>,
}

impl KernelError {
    /// What the errno means for this request.
    pub fn explanation(&self) -> String {
        explain(&self.request, self.errno)
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.request, self.explanation())?;
        if let Some(d) = &self.detail {
            write!(f, " (kernel: {d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

/// Why something failed, at the library's boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this kernel has no IPVS: load the ip_vs module (modprobe ip_vs)")]
    NoIpvs,
    // Causes are part of the messages, not also `source()`s: a chain
    // printer (anyhow's `{:#}`) would say them twice.
    #[error("cannot open a generic netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink socket error: {0}")]
    Io(std::io::Error),
    #[error("unreadable reply from the kernel: {0}")]
    Codec(CodecError),
    #[error("{0}")]
    Kernel(Box<KernelError>),
    /// Operations of a batch that failed; the others were applied.
    #[error("{}", list(.0))]
    Ops(Vec<KernelError>),
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::Codec(e)
    }
}

fn list(errors: &[KernelError]) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&e.to_string());
    }
    if errors.len() > 1 {
        out.push_str(&format!("\n({} operations failed)", errors.len()));
    }
    out
}

impl Error {
    /// The kernel errors inside, if that is what this is.
    pub fn kernel_errors(&self) -> Vec<&KernelError> {
        match self {
            Error::Kernel(e) => vec![e.as_ref()],
            Error::Ops(v) => v.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether this is a missing CAP_NET_ADMIN.
    pub fn is_permission(&self) -> bool {
        self.kernel_errors()
            .iter()
            .any(|e| e.errno == libc::EPERM || e.errno == libc::EACCES)
    }
}

/// The symbolic name of an errno, for messages.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOBUFS => "ENOBUFS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ERANGE => "ERANGE",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
        None => text,
    }
}

/// What `errno` means for `request`, with the usual causes and fixes.
pub fn explain(request: &Request, errno: i32) -> String {
    let name = errno_name(errno);
    if errno == libc::EPERM || errno == libc::EACCES {
        return format!(
            "permission denied ({name}): IPVS needs CAP_NET_ADMIN; run ipvsctl as root \
             (or give it the capability)"
        );
    }
    match (request, errno) {
        (Request::ResolveFamily, libc::ENOENT) => {
            "this kernel has no IPVS: load the ip_vs module (modprobe ip_vs)".to_string()
        }
        (Request::Op(Op::AddService { key, .. }), libc::EEXIST) => {
            format!("service {key} already exists ({name}); change it instead of adding it")
        }
        (Request::Op(Op::AddService { settings, .. }), libc::ENOENT) => {
            let mut s = format!(
                "no scheduler \"{}\" in this kernel ({name}): the kernel loads the module \
                 ip_vs_{} on demand and found none",
                settings.scheduler, settings.scheduler
            );
            if let Some(pe) = &settings.pe {
                s.push_str(&format!(
                    ", or no persistence engine \"{pe}\" (module ip_vs_pe_{pe})"
                ));
            }
            s
        }
        (Request::Op(Op::EditService { settings, .. }), libc::ENOENT) => format!(
            "no scheduler \"{}\" (module ip_vs_{}) or persistence engine in this kernel ({name})",
            settings.scheduler, settings.scheduler
        ),
        (Request::Op(op), libc::ESRCH) => {
            format!("there is no service {} ({name})", op.service())
        }
        (
            Request::GetService(key) | Request::ListDests(key) | Request::Zero(Some(key)),
            libc::ESRCH,
        ) => {
            format!("there is no service {key} ({name})")
        }
        (Request::Op(Op::AddDest { service, addr, .. }), libc::EEXIST) => format!(
            "real server {addr} already exists in {service} ({name}); change it instead of adding it"
        ),
        (
            Request::Op(Op::EditDest { service, addr, .. } | Op::DelDest { service, addr }),
            libc::ENOENT,
        ) => format!("{service} has no real server {addr} ({name})"),
        (
            Request::Op(
                Op::AddDest {
                    service,
                    addr,
                    settings,
                }
                | Op::EditDest {
                    service,
                    addr,
                    settings,
                },
            ),
            libc::EINVAL,
        ) => {
            let mut causes = Vec::new();
            causes.push(format!(
                "{} is not a unicast address the director can send to: a broadcast, multicast, \
                 network or IPv6 link-local address, or one whose route is of type \
                 unreachable, blackhole or prohibit{}",
                addr.ip(),
                if settings.forwarding == Forwarding::Masq {
                    " (NAT rewrites packets towards it: the director needs a route to the real \
                     server, e.g. an interface on its subnet)"
                } else {
                    ""
                }
            ));
            if service.family() != crate::types::Family::of(addr.ip()) {
                causes.push(format!(
                    "the real server's address family differs from {service}'s: only tunnel \
                     forwarding may mix IPv4 and IPv6"
                ));
            }
            if settings.lower_threshold > settings.upper_threshold {
                causes.push(format!(
                    "the lower threshold {} is above the upper threshold {}",
                    settings.lower_threshold, settings.upper_threshold
                ));
            }
            if settings.forwarding == Forwarding::Tunnel
                && settings.tunnel.kind == crate::types::TunnelType::Gue
                && settings.tunnel.port == 0
            {
                causes.push("a GUE tunnel needs its UDP port".to_string());
            }
            if settings.weight > i32::MAX as u32 {
                causes.push(format!("weight {} is out of range", settings.weight));
            }
            format!(
                "the kernel refused real server {addr} of {service} ({name}). The usual causes: {}",
                causes.join("; ")
            )
        }
        (Request::Op(Op::AddService { key, .. } | Op::EditService { key, .. }), libc::EINVAL) => {
            format!(
                "the kernel refused service {key} ({name}). The usual causes: an IPv6 \
                 persistence netmask outside 1-128, a scheduler or engine name longer than 15 \
                 characters, IPv6 on a kernel built without CONFIG_IP_VS_IPV6"
            )
        }
        (Request::StartDaemon { role, .. }, libc::EEXIST) => {
            format!("a {} sync daemon is already running ({name})", role.name())
        }
        (Request::StartDaemon { interface, .. }, libc::ENODEV) => {
            format!("there is no interface {interface} ({name})")
        }
        (Request::StartDaemon { interface, .. }, libc::EINVAL) => format!(
            "the kernel refused the sync daemon ({name}). The usual causes: interface \
             \"{interface}\" is missing, down or has no multicast, or its MTU is below the sync \
             message length"
        ),
        (Request::StopDaemon(role), libc::ESRCH) => {
            format!("no {} sync daemon is running ({name})", role.name())
        }
        _ => format!("{} ({name})", strerror(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DestSettings, Family, ServiceSettings};

    fn key() -> ServiceKey {
        ServiceKey::tcp("10.0.1.1:80".parse().unwrap())
    }

    #[test]
    fn a_missing_service_is_named() {
        let e = KernelError {
            request: Request::Op(Op::AddDest {
                service: key(),
                addr: "10.0.2.11:80".parse().unwrap(),
                settings: DestSettings::new(Forwarding::Masq, 1),
            }),
            errno: libc::ESRCH,
            detail: None,
        };
        assert_eq!(
            e.to_string(),
            "adding real server 10.0.2.11:80 to TCP 10.0.1.1:80: there is no service \
             TCP 10.0.1.1:80 (ESRCH)"
        );
    }

    #[test]
    fn a_nat_einval_says_the_director_needs_a_route() {
        let msg = explain(
            &Request::Op(Op::AddDest {
                service: key(),
                addr: "10.0.2.255:80".parse().unwrap(),
                settings: DestSettings::new(Forwarding::Masq, 1),
            }),
            libc::EINVAL,
        );
        assert!(msg.contains("not a unicast address"), "{msg}");
        assert!(msg.contains("needs a route to the real server"), "{msg}");
    }

    #[test]
    fn an_unknown_scheduler_names_the_module() {
        let msg = explain(
            &Request::Op(Op::AddService {
                key: key(),
                settings: ServiceSettings::new(Family::Ipv4, "nosuch"),
            }),
            libc::ENOENT,
        );
        assert!(msg.contains("ip_vs_nosuch"), "{msg}");
    }

    #[test]
    fn permission_errors_name_the_capability() {
        let msg = explain(&Request::ListServices, libc::EPERM);
        assert!(msg.contains("CAP_NET_ADMIN"), "{msg}");
    }

    #[test]
    fn duplicates_say_what_exists() {
        let msg = explain(
            &Request::Op(Op::AddDest {
                service: key(),
                addr: "10.0.2.11:80".parse().unwrap(),
                settings: DestSettings::new(Forwarding::Route, 1),
            }),
            libc::EEXIST,
        );
        assert!(msg.starts_with("real server 10.0.2.11:80 already exists in TCP 10.0.1.1:80"));
    }

    #[test]
    fn other_errnos_read_as_the_system_says() {
        assert_eq!(
            explain(&Request::Flush, libc::ENOMEM),
            "cannot allocate memory (ENOMEM)"
        );
    }
}
