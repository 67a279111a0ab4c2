//! The state machine of one virtual router, RFC 5798 section 6.4 (and RFC
//! 3768 6.4 for VRRPv2), sans IO.
//!
//! Inputs are plain values with the current time passed in; outputs are
//! [`Action`]s for the daemon to carry out (send an advert, add or remove
//! the virtual IPs, announce them). Timers are deadlines the daemon reads
//! with [`Instance::next_deadline`] and fires with [`Instance::on_timer`].
//!
//! Beyond the RFC, as an operator expects from keepalived and a little more:
//! - preempt_delay: a lower-priority master is tolerated this long after
//!   startup;
//! - FAULT: a failed tracked object (or the interface) stops the instance;
//! - handover (maintenance, or SIGTERM): the master sends priority 0 so the
//!   backup takes over after Skew_Time, but keeps the addresses until it
//!   hears the new master, so no packet is lost in between;
//! - after a split brain heals, the master that stays re-announces its
//!   addresses at once (keepalived issue #166 lost them).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tandem_model::api::VrrpState;

use crate::packet::{Advert, Drop, Version};

mod operator;

/// What the instance is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub version: Version,
    pub vrid: u8,
    /// Configured priority; 255 for an address owner.
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// The virtual IPs, in advert order.
    pub addresses: Vec<IpAddr>,
    /// Second announcement burst after takeover (zero: none).
    pub announce_repeat_after: Duration,
    /// Periodic announcement while master (zero: none).
    pub announce_refresh: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (0: stepping down).
    SendAdvert { priority: u8 },
    /// Put the virtual IPs on the interfaces.
    AddAddresses,
    /// Take them away.
    RemoveAddresses,
    /// Gratuitous ARP / unsolicited NA for every virtual IP (one burst).
    Announce,
    Transition {
        from: VrrpState,
        to: VrrpState,
        reason: String,
    },
    /// A shutdown has completed: nothing of this instance remains.
    Stopped,
}

/// The master as last heard (or this node when it is master).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterSeen {
    pub address: IpAddr,
    pub priority: u8,
    pub interval: Duration,
    pub at: Instant,
}

/// Adverts accepted with something worth a look, counted and logged as
/// keepalived does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The advert lists other addresses than ours.
    Addresses,
    /// VRRPv3: the master advertises at another interval (learned).
    Interval,
}

impl Mismatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::Addresses => "addresses",
            Mismatch::Interval => "interval",
        }
    }
}

/// What an accepted advert produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub actions: Vec<Action>,
    pub mismatches: Vec<Mismatch>,
}

/// Why the master hands over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    Maintenance,
    Shutdown,
}

#[derive(Clone, Debug)]
pub struct Instance {
    params: Params,
    state: VrrpState,
    /// Our address in adverts and tie-breaks (the interface's primary
    /// address, or unicast_src); `None` until the daemon knows it.
    local_addr: Option<IpAddr>,
    /// Priority after tracking (always `params.priority` for an owner).
    tracked_priority: u8,
    maintenance: bool,
    fault: Option<String>,
    master_adver_interval: Duration,
    adver_timer: Option<Instant>,
    master_down_timer: Option<Instant>,
    announce_timer: Option<Instant>,
    preempt_allowed_at: Option<Instant>,
    /// Handing over: priority 0 sent, addresses kept until the new master
    /// is heard or this deadline passes.
    releasing: Option<(Release, Instant)>,
    last_conflict_announce: Option<Instant>,
    master_seen: Option<MasterSeen>,
    /// The master that resigned with priority 0 (a backup takes over
    /// after Skew_Time), until another advert comes.
    resigned: Option<IpAddr>,
    stopping: bool,
    /// The addresses were on the interfaces before startup (left by a
    /// keepalived or a vrrpd that was killed): they stay while this
    /// instance is BACKUP and has heard no master, so a backup that then
    /// takes over never takes them down in between.
    adopted: bool,
}

impl Instance {
    pub fn new(params: Params) -> Self {
        let p = params.priority;
        let interval = params.advert_interval;
        Instance {
            params,
            state: VrrpState::Init,
            local_addr: None,
            tracked_priority: p,
            maintenance: false,
            fault: None,
            master_adver_interval: interval,
            adver_timer: None,
            master_down_timer: None,
            announce_timer: None,
            preempt_allowed_at: None,
            releasing: None,
            last_conflict_announce: None,
            master_seen: None,
            resigned: None,
            stopping: false,
            adopted: false,
        }
    }

    /// The advert this instance sends with `priority` (its own, or 0).
    pub fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.params.version,
            vrid: self.params.vrid,
            priority,
            interval: self.params.advert_interval,
            addresses: self.params.addresses.clone(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn state(&self) -> VrrpState {
        self.state
    }

    pub fn master_seen(&self) -> Option<MasterSeen> {
        self.master_seen
    }

    /// Before startup: this instance's addresses are on the interfaces
    /// already. RFC 5798 6.4.1 starts a router that is not the owner as
    /// BACKUP, which holds no address; removing them at once and adding
    /// them back at the takeover Master_Down_Interval later would cut
    /// every client off in between (keepalived killed on a master, a
    /// vrrpd restarted after kill -9). So they stay until a master is
    /// heard that this backup follows, or the instance leaves BACKUP.
    pub fn adopt_addresses(&mut self) {
        if self.state == VrrpState::Init && !self.is_owner() {
            self.adopted = true;
        }
    }

    /// Whether this instance's addresses belong on the interfaces now.
    pub fn holds_addresses(&self) -> bool {
        match self.state {
            VrrpState::Master => true,
            VrrpState::Init | VrrpState::Backup => self.adopted,
            VrrpState::Fault | VrrpState::Stop => false,
        }
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    pub fn local_addr(&self) -> Option<IpAddr> {
        self.local_addr
    }

    pub fn set_local_addr(&mut self, addr: Option<IpAddr>) {
        self.local_addr = addr;
    }

    fn is_owner(&self) -> bool {
        self.params.priority == 255
    }

    /// The priority this router advertises and compares with now.
    pub fn priority(&self) -> u8 {
        if self.maintenance {
            1
        } else if self.is_owner() {
            255
        } else {
            self.tracked_priority.clamp(1, 254)
        }
    }

    /// The interval we learned from the master (v3) or our own (v2).
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// RFC 5798 6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256;
    /// RFC 3768 6.1: (256 - Priority) / 256 seconds.
    pub fn skew_time(&self) -> Duration {
        let p = u32::from(self.priority());
        match self.params.version {
            Version::V3 => self.master_adver_interval * (256 - p) / 256,
            Version::V2 => Duration::from_secs(1) * (256 - p) / 256,
        }
    }

    /// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        3 * self.master_adver_interval + self.skew_time()
    }

    /// The earliest instant [`on_timer`](Self::on_timer) has work at.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.adver_timer,
            self.master_down_timer,
            self.announce_timer,
            self.releasing.map(|(_, t)| t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Every change of state: whatever was adopted is either a master's
    /// now or must go (the daemon removes the addresses of an instance
    /// that leaves BACKUP for neither state).
    fn transition(&mut self, to: VrrpState, reason: impl Into<String>) -> Action {
        let from = self.state;
        self.state = to;
        if to != VrrpState::Backup {
            self.adopted = false;
        }
        Action::Transition {
            from,
            to,
            reason: reason.into(),
        }
    }

    fn become_master(&mut self, now: Instant, reason: String) -> Vec<Action> {
        self.resigned = None;
        let out = vec![
            self.transition(VrrpState::Master, reason),
            // The addresses first: the advert makes the old master drop
            // them at once, and until ours are up (a netlink round trip)
            // nobody would answer. Then, as RFC 5798 6.4.2 orders what
            // goes on the wire, the advert and the announcements.
            Action::AddAddresses,
            Action::SendAdvert {
                priority: self.priority(),
            },
            Action::Announce,
        ];
        self.master_down_timer = None;
        self.adver_timer = Some(now + self.params.advert_interval);
        self.announce_timer = self.first_announce_repeat(now);
        self.master_adver_interval = self.params.advert_interval;
        if let Some(addr) = self.local_addr {
            self.master_seen = Some(MasterSeen {
                address: addr,
                priority: self.priority(),
                interval: self.params.advert_interval,
                at: now,
            });
        }
        out
    }

    fn first_announce_repeat(&self, now: Instant) -> Option<Instant> {
        if !self.params.announce_repeat_after.is_zero() {
            Some(now + self.params.announce_repeat_after)
        } else if !self.params.announce_refresh.is_zero() {
            Some(now + self.params.announce_refresh)
        } else {
            None
        }
    }

    /// Enters BACKUP, waiting Master_Down_Interval for a master.
    fn become_backup(&mut self, now: Instant, reason: String) -> Vec<Action> {
        self.resigned = None;
        let was_master = self.state == VrrpState::Master;
        let mut out = vec![self.transition(VrrpState::Backup, reason)];
        if was_master {
            out.push(Action::RemoveAddresses);
        }
        self.adver_timer = None;
        self.announce_timer = None;
        self.releasing = None;
        self.master_down_timer = Some(now + self.master_down_interval());
        out
    }

    /// RFC 5798 6.4.1, the Startup event.
    pub fn startup(&mut self, now: Instant) -> Vec<Action> {
        if self.state != VrrpState::Init {
            return Vec::new();
        }
        self.stopping = false;
        if let Some(why) = self.fault.clone() {
            return vec![self.transition(VrrpState::Fault, why)];
        }
        self.enter_running(now, "startup")
    }

    fn enter_running(&mut self, now: Instant, why: &str) -> Vec<Action> {
        self.preempt_allowed_at = Some(now + self.params.preempt_delay);
        self.master_adver_interval = self.params.advert_interval;
        self.master_seen = None;
        if self.priority() == 255 {
            return self.become_master(now, format!("{why}: address owner (priority 255)"));
        }
        self.become_backup(
            now,
            format!(
                "{why}: waiting {} for a master",
                fmt_duration(self.master_down_interval())
            ),
        )
    }

    /// Processes every deadline that has passed.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some((why, t)) = self.releasing {
            if t <= now {
                self.releasing = None;
                match why {
                    Release::Shutdown => {
                        out.push(Action::RemoveAddresses);
                        out.push(self.transition(
                            VrrpState::Stop,
                            "shutdown: no backup took over; addresses removed",
                        ));
                        out.push(Action::Stopped);
                        self.clear_timers();
                        return out;
                    }
                    Release::Maintenance => {
                        // Nobody took over: keep serving, at the lowest
                        // priority, so a backup that appears will.
                        out.push(Action::SendAdvert {
                            priority: self.priority(),
                        });
                        self.adver_timer = Some(now + self.params.advert_interval);
                    }
                }
            }
        }
        if self.adver_timer.is_some_and(|t| t <= now) && self.state == VrrpState::Master {
            out.push(Action::SendAdvert {
                priority: self.priority(),
            });
            self.adver_timer = Some(now + self.params.advert_interval);
        }
        if self.announce_timer.is_some_and(|t| t <= now) && self.state == VrrpState::Master {
            out.push(Action::Announce);
            self.announce_timer = if self.params.announce_refresh.is_zero() {
                None
            } else {
                Some(now + self.params.announce_refresh)
            };
        }
        if self.master_down_timer.is_some_and(|t| t <= now) && self.state == VrrpState::Backup {
            let why = match self.master_seen {
                _ if self.resigned.is_some() => format!(
                    "master {} resigned (priority 0): taking over after Skew_Time {}",
                    self.resigned.map_or_else(String::new, |a| a.to_string()),
                    fmt_duration(self.skew_time())
                ),
                // Adverts kept coming but we discarded them: a lower
                // master is being preempted.
                Some(m) if now.saturating_duration_since(m.at) < self.master_down_interval() => {
                    format!(
                        "preempting {} (priority {} < {})",
                        m.address,
                        m.priority,
                        self.priority()
                    )
                }
                Some(m) => format!(
                    "master down: no advert from {} for {}",
                    m.address,
                    fmt_duration(now.saturating_duration_since(m.at))
                ),
                None => format!(
                    "no master heard within {}",
                    fmt_duration(self.master_down_interval())
                ),
            };
            out.extend(self.become_master(now, why));
        }
        out
    }

    /// Receiver checks that depend on this instance, then RFC 5798 6.4.2
    /// (Backup) or 6.4.3 (Master). `src` is the sender's IP address.
    pub fn on_advert(&mut self, now: Instant, src: IpAddr, adv: &Advert) -> Result<Received, Drop> {
        if adv.version != self.params.version {
            return Err(Drop::Version);
        }
        if Some(src) == self.local_addr {
            return Err(Drop::Own);
        }
        // RFC 5798 7.1: the address owner drops adverts for its VRID.
        if self.is_owner() {
            return Err(Drop::Owner);
        }
        let mut mismatches = Vec::new();
        if adv.version == Version::V2 && adv.interval != self.params.advert_interval {
            // RFC 3768 7.1: MUST verify the interval matches, else drop.
            return Err(Drop::Interval);
        }
        if adv.version == Version::V3 && adv.interval != self.params.advert_interval {
            mismatches.push(Mismatch::Interval);
        }
        if !same_addresses(&adv.addresses, &self.params.addresses) {
            mismatches.push(Mismatch::Addresses);
        }
        let interval = adv.interval.max(Duration::from_millis(10));
        let mut out = Vec::new();
        match self.state {
            VrrpState::Backup => {
                if adv.priority == 0 {
                    // The master is stepping down: take over after
                    // Skew_Time, so the highest backup wins the race.
                    self.master_down_timer = Some(now + self.skew_time());
                    self.resigned = Some(src);
                } else {
                    self.resigned = None;
                    self.master_seen = Some(MasterSeen {
                        address: src,
                        priority: adv.priority,
                        interval,
                        at: now,
                    });
                    let delaying = self.preempt_allowed_at.is_some_and(|t| now < t);
                    if !self.params.preempt || adv.priority >= self.priority() || delaying {
                        if self.params.version == Version::V3 {
                            self.master_adver_interval = interval;
                        }
                        self.master_down_timer = Some(now + self.master_down_interval());
                        if std::mem::take(&mut self.adopted) {
                            // A master this backup follows: its addresses
                            // must answer alone.
                            out.push(Action::RemoveAddresses);
                        }
                    }
                    // Otherwise discard: we preempt when Master_Down_Timer
                    // fires.
                }
            }
            VrrpState::Master => {
                if adv.priority == 0 {
                    // Another router resigned: make sure backups hear us.
                    out.push(Action::SendAdvert {
                        priority: self.priority(),
                    });
                    self.adver_timer = Some(now + self.params.advert_interval);
                } else if self.releasing.is_some()
                    || adv.priority > self.priority()
                    || (adv.priority == self.priority() && self.loses_tie_to(src))
                {
                    let releasing = self.releasing.take();
                    if self.params.version == Version::V3 {
                        self.master_adver_interval = interval;
                    }
                    self.master_seen = Some(MasterSeen {
                        address: src,
                        priority: adv.priority,
                        interval,
                        at: now,
                    });
                    match releasing {
                        Some((Release::Shutdown, _)) => {
                            out.push(Action::RemoveAddresses);
                            out.push(
                                self.transition(
                                    VrrpState::Stop,
                                    format!("shutdown: {src} took over"),
                                ),
                            );
                            out.push(Action::Stopped);
                            self.clear_timers();
                        }
                        Some((Release::Maintenance, _)) => {
                            out.extend(
                                self.become_backup(
                                    now,
                                    format!("maintenance: handed over to {src}"),
                                ),
                            );
                        }
                        None => {
                            let why = if adv.priority > self.priority() {
                                format!("higher priority {} from {src}", adv.priority)
                            } else {
                                format!("same priority {} from higher address {src}", adv.priority)
                            };
                            // One last advert as we yield: if two masters
                            // met (a split brain healing), the winner hears
                            // a lower master and re-announces, so no
                            // neighbour keeps pointing at us. RFC 5798
                            // sends nothing here; the extra advert only
                            // resets other backups' timers.
                            out.push(Action::SendAdvert {
                                priority: self.priority(),
                            });
                            out.extend(self.become_backup(now, why));
                        }
                    }
                } else {
                    // Another master with a lower claim: a split brain is
                    // healing. It yields when it hears us; re-announce so
                    // every neighbour points at us again (keepalived #166),
                    // at most once per advert interval.
                    let due = self.last_conflict_announce.is_none_or(|t| {
                        now.saturating_duration_since(t) >= self.params.advert_interval
                    });
                    if due {
                        self.last_conflict_announce = Some(now);
                        out.push(Action::SendAdvert {
                            priority: self.priority(),
                        });
                        out.push(Action::Announce);
                        self.adver_timer = Some(now + self.params.advert_interval);
                    }
                }
            }
            VrrpState::Init | VrrpState::Fault | VrrpState::Stop => {}
        }
        Ok(Received {
            actions: out,
            mismatches,
        })
    }

    /// RFC 5798 6.4.3: on equal priority the higher primary address wins,
    /// compared as unsigned integers in network byte order.
    fn loses_tie_to(&self, src: IpAddr) -> bool {
        match (self.local_addr, src) {
            (Some(IpAddr::V4(me)), IpAddr::V4(them)) => them.octets() > me.octets(),
            (Some(IpAddr::V6(me)), IpAddr::V6(them)) => them.octets() > me.octets(),
            // Without a known address of our own, yield.
            _ => true,
        }
    }

    fn clear_timers(&mut self) {
        self.adver_timer = None;
        self.master_down_timer = None;
        self.announce_timer = None;
        self.releasing = None;
    }
}

fn same_addresses(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// "3.61s", "620ms"
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}
