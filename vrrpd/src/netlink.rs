//! rtnetlink: the links vrrpd runs on, the addresses it floats, and the
//! link events that put instances in FAULT. vrrpd is the only writer of
//! the virtual IPs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::{Stream, StreamExt, TryStreamExt};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, CacheInfo,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, MacVlanMode};
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec, MulticastGroup};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    // Causes are part of the messages, not also `source()`s: a chain
    // printer would say them twice.
    #[error("cannot open a netlink socket: {0}")]
    Open(std::io::Error),
    #[error("{what}: {cause}")]
    Request { what: String, cause: std::io::Error },
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn request_error(what: String, e: rtnetlink::Error) -> NetlinkError {
    let cause = match errno(&e) {
        Some(n) => std::io::Error::from_raw_os_error(n),
        None => std::io::Error::other(e.to_string()),
    };
    NetlinkError::Request { what, cause }
}

/// What vrrpd needs to know of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    /// Administratively up with carrier (IFF_UP and IFF_RUNNING).
    pub up: bool,
    /// Administratively up (IFF_UP), carrier or not.
    pub admin_up: bool,
    /// A macvlan's lower device, for virtual-MAC interfaces.
    pub lower: Option<u32>,
}

impl Link {
    fn from_message(m: &LinkMessage) -> Option<Link> {
        let mut name = None;
        let mut mac = [0u8; 6];
        let mut lower = None;
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Address(a) if a.len() == 6 => mac.copy_from_slice(a),
                LinkAttribute::Link(l) => lower = Some(*l),
                _ => {}
            }
        }
        let flags = m.header.flags;
        Some(Link {
            index: m.header.index,
            name: name?,
            mac,
            up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
            admin_up: flags.contains(LinkFlags::Up),
            lower,
        })
    }
}

/// An address on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub label: Option<String>,
    pub secondary: bool,
    /// IPv6 duplicate address detection still running: not usable as a
    /// source yet.
    pub tentative: bool,
}

/// A link changed state (or appeared, or went away), or the addresses of
/// a link changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    Changed(Link),
    Removed { index: u32, name: String },
    Addresses { index: u32 },
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a connection; its driver runs on the current runtime.
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(m) => Ok(m.as_ref().and_then(Link::from_message)),
            // A missing link is an error (ENODEV), not an empty answer.
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(request_error(format!("looking up link {name}"), e)),
        }
    }

    pub async fn addresses(&self, index: u32) -> Result<Vec<IfAddr>, NetlinkError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| request_error(format!("listing addresses of link {index}"), e))?;
        Ok(msgs.iter().filter_map(if_addr).collect())
    }

    /// Adds an address; one that is already there is fine. IPv6 addresses
    /// skip duplicate address detection so they serve at once (the peer
    /// that held it has just given it up).
    pub async fn add_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
        label: Option<&str>,
    ) -> Result<(), NetlinkError> {
        let mut req = self.handle.address().add(index, addr, prefix_len);
        let msg = req.message_mut();
        if addr.is_ipv6() {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        if let Some(l) = label {
            msg.attributes.push(AddressAttribute::Label(l.to_string()));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(request_error(format!("adding {addr}/{prefix_len}"), e)),
        }
    }

    /// Adds the source of our adverts to an IPv6 virtual-MAC macvlan:
    /// without DAD and deprecated (preferred lifetime 0), as keepalived
    /// does, so the kernel never picks it as a source of its own. A
    /// link-local address keeps its /64; another gets /128 and so adds no
    /// route beside the interface's own.
    pub async fn add_source_address(&self, index: u32, addr: IpAddr) -> Result<(), NetlinkError> {
        let link_local = matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local());
        let prefix_len = if link_local { 64 } else { 128 };
        let mut req = self.handle.address().add(index, addr, prefix_len);
        let msg = req.message_mut();
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        let mut lifetimes = CacheInfo::default();
        lifetimes.ifa_preferred = 0;
        lifetimes.ifa_valid = u32::MAX;
        msg.attributes.push(AddressAttribute::CacheInfo(lifetimes));
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(request_error(format!("adding {addr}/{prefix_len}"), e)),
        }
    }

    /// Removes an address; one that is already gone is fine.
    pub async fn del_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let msg = match addr {
            IpAddr::V4(a) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, prefix_len)
                .build(),
            IpAddr::V6(a) => rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, prefix_len)
                .build(),
        };
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV)) => Ok(()),
            Err(e) => Err(request_error(format!("removing {addr}/{prefix_len}"), e)),
        }
    }

    /// Creates the macvlan carrying the RFC virtual MAC, down (the caller
    /// configures it, then brings it up).
    pub async fn create_vmac(
        &self,
        name: &str,
        lower: u32,
        mac: [u8; 6],
    ) -> Result<Link, NetlinkError> {
        // Private mode: the macvlan does not talk to its siblings, as
        // keepalived's vmac.
        let msg = LinkMacVlan::new(name, lower, MacVlanMode::Private)
            .address(mac.to_vec())
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| request_error(format!("creating macvlan {name}"), e))?;
        self.link(name).await?.ok_or_else(|| NetlinkError::Request {
            what: format!("creating macvlan {name}"),
            cause: std::io::Error::from_raw_os_error(libc::ENODEV),
        })
    }

    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| request_error(format!("deleting link {index}"), e))
    }

    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| request_error(format!("setting link {index} up"), e))
    }
}

fn if_addr(m: &AddressMessage) -> Option<IfAddr> {
    let mut addr = None;
    let mut local = None;
    let mut label = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Address(a) => addr = Some(*a),
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Label(l) => label = Some(l.clone()),
            _ => {}
        }
    }
    // For IPv4, IFA_LOCAL is the interface's own address (IFA_ADDRESS is
    // the peer's on point-to-point links).
    let addr = local.or(addr)?;
    Some(IfAddr {
        index: m.header.index,
        addr,
        prefix_len: m.header.prefix_len,
        label,
        secondary: m.header.flags.contains(AddressHeaderFlags::Secondary),
        tentative: m.header.flags.contains(AddressHeaderFlags::Tentative),
    })
}

/// Link and address events from the kernel, as they happen.
pub fn link_events() -> Result<impl Stream<Item = LinkEvent> + Send + 'static, NetlinkError> {
    let (conn, _handle, messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])
    .map_err(NetlinkError::Open)?;
    tokio::spawn(conn);
    Ok(messages.filter_map(|(msg, _)| async move {
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                Link::from_message(&m).map(LinkEvent::Changed)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => Link::from_message(&m)
                .map(|l| LinkEvent::Removed {
                    index: l.index,
                    name: l.name,
                }),
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m),
            ) => Some(LinkEvent::Addresses {
                index: m.header.index,
            }),
            _ => None,
        }
    }))
}

/// The RFC virtual MAC: 00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID
/// for IPv6 (RFC 5798 7.3).
pub fn virtual_mac(vrid: u8, v6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if v6 { 0x02 } else { 0x01 }, vrid]
}
