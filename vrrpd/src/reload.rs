//! A reload as a plan, sans IO: the running configuration and the new one
//! in, what happens to each instance out. The daemon carries it out.
//!
//! Rules (the promise is that a reload never flaps what it does not
//! change):
//! - An instance whose table and tracked scripts are the same is not
//!   touched: its state machine, timers and addresses stay as they are.
//! - A changed instance that stays the same virtual router (interface,
//!   VRID, family, version, multicast or unicast, virtual MAC or not) is
//!   reconfigured in place: priority, timers and addresses change without
//!   a transition (see `fsm::Instance::reconfigure`).
//! - Anything else that changed is a different virtual router: the old
//!   one stops (as a shutdown without handover) and the new one starts.
//! - Instances that stop are listed before those that start, so a VRID
//!   moving between two instances of one interface is never claimed twice.

use tandem_model::config::{Config, TrackScript, VrrpInstance};

/// What a reload does to one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// Reconfigured in place; what changed, for people.
    Reconfigure(String),
    /// Stopped, and started again as another virtual router.
    Replace,
    Remove,
    Add,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub instance: String,
    pub change: Change,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Removals and replacements in the old file's order, then the new
    /// file's instances in its order.
    pub steps: Vec<Step>,
    pub groups_changed: bool,
}

impl Plan {
    /// The instances that stop: removed or replaced.
    pub fn stopping(&self) -> impl Iterator<Item = &str> {
        self.steps
            .iter()
            .filter(|s| matches!(s.change, Change::Remove | Change::Replace))
            .map(|s| s.instance.as_str())
    }

    pub fn unchanged(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.change == Change::Unchanged)
            .count()
    }

    /// One line per change, as `POST /reload` reports them.
    pub fn changes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.steps {
            let line = match &s.change {
                Change::Unchanged | Change::Add if self.stops(&s.instance) => continue,
                Change::Unchanged => continue,
                Change::Reconfigure(what) => format!("instance {}: {what}", s.instance),
                Change::Replace => format!(
                    "instance {}: replaced (interface, vrid, family or version changed)",
                    s.instance
                ),
                Change::Remove => format!("instance {}: removed", s.instance),
                Change::Add => format!("instance {}: added", s.instance),
            };
            out.push(line);
        }
        if self.groups_changed {
            out.push("sync groups changed".into());
        }
        out
    }

    /// Whether carrying the plan out needs the kernel: sockets, addresses,
    /// virtual MACs and links belong to instances, so a file that changed
    /// only elsewhere (real servers, keys, the web UI, sync groups) needs
    /// none of it. The loop that sends adverts waits for every netlink
    /// answer a reload asks for: on a busy director a reload that changed
    /// nothing here held a master's adverts past the backup's
    /// Master_Down_Interval.
    pub fn touches_kernel(&self) -> bool {
        self.steps.iter().any(|s| s.change != Change::Unchanged)
    }

    fn stops(&self, name: &str) -> bool {
        self.stopping().any(|n| n == name)
    }
}

/// The plan that takes `old` to `new`.
pub fn plan(old: &Config, new: &Config) -> Plan {
    let mut steps = Vec::new();
    for o in &old.vrrp_instances {
        match new.vrrp_instance(&o.name) {
            Some(n) if same_router(o, n) => {}
            Some(_) => steps.push(Step {
                instance: o.name.clone(),
                change: Change::Replace,
            }),
            None => steps.push(Step {
                instance: o.name.clone(),
                change: Change::Remove,
            }),
        }
    }
    for n in &new.vrrp_instances {
        let change = match old.vrrp_instance(&n.name) {
            // Started again under its new identity: its Replace step said so.
            Some(o) if !same_router(o, n) => Change::Add,
            Some(o) if o == n && scripts(old, o) == scripts(new, n) => Change::Unchanged,
            Some(o) => Change::Reconfigure(describe_changes(o, n)),
            None => Change::Add,
        };
        steps.push(Step {
            instance: n.name.clone(),
            change,
        });
    }
    Plan {
        steps,
        groups_changed: old.vrrp_sync_groups != new.vrrp_sync_groups,
    }
}

/// The definitions of the scripts an instance tracks: a change to one of
/// them (its weight, say) changes the instance's trackers.
fn scripts<'a>(config: &'a Config, inst: &VrrpInstance) -> Vec<Option<&'a TrackScript>> {
    inst.track_scripts
        .iter()
        .map(|t| config.track_script(&t.name))
        .collect()
}

/// Whether two configurations of an instance are the same virtual router
/// (then it is reconfigured in place).
fn same_router(a: &VrrpInstance, b: &VrrpInstance) -> bool {
    a.interface == b.interface
        && a.vrid == b.vrid
        && a.is_ipv6() == b.is_ipv6()
        && a.version == b.version
        && a.unicast_peers.is_empty() == b.unicast_peers.is_empty()
        && a.use_vmac == b.use_vmac
}

/// "priority 150 -> 120, virtual_ips changed"
fn describe_changes(old: &VrrpInstance, new: &VrrpInstance) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return "changed".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let parts: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if !x.is_array() && !x.is_object() => format!("{k} {x} -> {y}"),
            _ => format!("{k} changed"),
        })
        .collect();
    if parts.is_empty() {
        "tracked scripts changed".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_model::config;

    fn cfg(instances: &str) -> Config {
        config::parse(
            &format!(
                "[node]\nname = \"lb1\"\n\n[[track_script]]\nname = \"chk\"\ncommand = [\"/bin/true\"]\n\n[[track_script]]\nname = \"other\"\ncommand = [\"/bin/true\"]\n\n{instances}"
            ),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn inst(name: &str, vrid: u8, extra: &str) -> String {
        format!(
            "[[vrrp_instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvrid = {vrid}\npriority = 150\nvirtual_ips = [\"192.0.2.{vrid}/24\"]\n{extra}\n"
        )
    }

    fn change_of<'a>(p: &'a Plan, name: &str) -> Vec<&'a Change> {
        p.steps
            .iter()
            .filter(|s| s.instance == name)
            .map(|s| &s.change)
            .collect()
    }

    #[test]
    fn a_file_changed_outside_its_instances_needs_no_kernel_work() {
        let old = cfg(&inst("web", 51, ""));
        let mut new = cfg(&inst("web", 51, ""));
        new.vrrp_sync_groups.clear();
        assert!(!plan(&old, &new).touches_kernel());
        let weights = cfg(&(inst("web", 51, "")
            + "[[virtual_server]]\nname = \"http\"\naddress = \"192.0.2.51:80\"\n\n\
               [[virtual_server.real_server]]\naddress = \"10.0.0.1:80\"\nweight = 8\n"));
        assert!(!plan(&old, &weights).touches_kernel());
        let priority = cfg(&inst("web", 51, "").replace("priority = 150", "priority = 120"));
        assert!(plan(&old, &priority).touches_kernel());
        let added = cfg(&(inst("web", 51, "") + &inst("db", 52, "")));
        assert!(plan(&old, &added).touches_kernel());
        assert!(plan(&added, &old).touches_kernel());
    }

    #[test]
    fn a_reload_never_touches_an_unchanged_instance() {
        let old = cfg(&(inst("web", 51, "") + &inst("db", 52, "")));
        // Everything around web changes: db's priority, a new instance,
        // the scripts nobody tracks, the node's settings.
        let new = cfg(&(inst("web", 51, "")
            + &inst("db", 52, "").replace("priority = 150", "priority = 120")
            + &inst("mail", 53, "")));
        let p = plan(&old, &new);
        assert_eq!(change_of(&p, "web"), vec![&Change::Unchanged]);
        assert_eq!(
            change_of(&p, "db"),
            vec![&Change::Reconfigure("priority 150 -> 120".into())]
        );
        assert_eq!(change_of(&p, "mail"), vec![&Change::Add]);
        assert_eq!(p.unchanged(), 1);
        assert_eq!(
            p.changes(),
            vec![
                "instance db: priority 150 -> 120".to_string(),
                "instance mail: added".to_string()
            ]
        );
    }

    #[test]
    fn the_same_file_plans_nothing() {
        let c = cfg(&(inst("web", 51, "track_scripts = [\"chk\"]") + &inst("db", 52, "")));
        let p = plan(&c, &c);
        assert!(p.changes().is_empty());
        assert_eq!(p.unchanged(), 2);
        assert_eq!(p.stopping().count(), 0);
    }

    #[test]
    fn a_new_identity_is_a_replacement_that_stops_before_it_starts() {
        let old = cfg(&inst("web", 51, ""));
        for new in [
            inst("web", 61, ""),
            inst("web", 51, "version = 2\nadvert_interval = \"1s\""),
            inst("web", 51, "use_vmac = true"),
            inst("web", 51, "unicast_peers = [\"10.0.0.2\"]"),
            inst("web", 51, "").replace("eth0", "eth1"),
        ] {
            let p = plan(&old, &cfg(&new));
            assert_eq!(
                change_of(&p, "web"),
                vec![&Change::Replace, &Change::Add],
                "{new}"
            );
            assert_eq!(p.stopping().collect::<Vec<_>>(), vec!["web"]);
            assert_eq!(
                p.changes(),
                vec!["instance web: replaced (interface, vrid, family or version changed)"]
            );
        }
    }

    #[test]
    fn a_removed_instance_stops() {
        let old = cfg(&(inst("web", 51, "") + &inst("db", 52, "")));
        let p = plan(&old, &cfg(&inst("web", 51, "")));
        assert_eq!(change_of(&p, "db"), vec![&Change::Remove]);
        assert_eq!(p.changes(), vec!["instance db: removed"]);
    }

    #[test]
    fn a_changed_script_reconfigures_only_the_instances_that_track_it() {
        let both = inst("web", 51, "track_scripts = [\"chk\"]") + &inst("db", 52, "");
        let old = cfg(&both);
        let new_text = format!(
            "[node]\nname = \"lb1\"\n\n[[track_script]]\nname = \"chk\"\ncommand = [\"/bin/true\"]\nweight = -20\n\n[[track_script]]\nname = \"other\"\ncommand = [\"/bin/false\"]\n\n{both}"
        );
        let new = config::parse(&new_text, "t.toml").unwrap();
        let p = plan(&old, &new);
        assert_eq!(
            change_of(&p, "web"),
            vec![&Change::Reconfigure("tracked scripts changed".into())]
        );
        assert_eq!(change_of(&p, "db"), vec![&Change::Unchanged]);
    }

    #[test]
    fn a_changed_sync_group_is_reported() {
        let two = inst("web", 51, "") + &inst("db", 52, "");
        let old = cfg(&two);
        let new = cfg(&format!(
            "{two}\n[[vrrp_sync_group]]\nname = \"g\"\ninstances = [\"web\", \"db\"]\n"
        ));
        let p = plan(&old, &new);
        assert!(p.groups_changed);
        assert_eq!(p.changes(), vec!["sync groups changed"]);
        assert_eq!(p.unchanged(), 2, "members keep running as they are");
    }
}
