//! vrrpd follows healthd: a director whose virtual server loses quorum
//! lowers its priority and the peer takes over; quorum back, it takes
//! over again; healthd gone past its grace, the same.

use std::time::Duration;

use tandem_model::api::VrrpState::{Backup, Master};
use tandem_tests::cluster::{Healthd, TestServer, Vrrpd, instance, net};

const T: Duration = Duration::from_secs(15);

fn director(priority: u8) -> (String, String) {
    let vrrp = format!(
        "[node]\nhealthd_grace = \"2s\"\n\n{}",
        instance(
            "web",
            51,
            priority,
            &["10.77.0.100/24"],
            "advert_interval = \"200ms\"\ntrack_virtual_servers = [{ name = \"web-http\", weight = -60 }]"
        )
    );
    let health = "[[virtual_server]]\nname = \"web-http\"\naddress = \"10.77.0.100:80\"\nforwarding = \"dr\"\n\
                  [virtual_server.check]\ntype = \"http\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 2\n\
                  [[virtual_server.real_server]]\naddress = \"10.77.0.3\"\n"
        .to_string();
    // vrrpd validates the whole file: it sees the virtual server too.
    (format!("{vrrp}\n{health}"), health)
}

#[test]
fn a_director_that_loses_quorum_hands_the_vip_to_its_peer() {
    let Some(net) = net("vrrp_quorum", 3) else {
        return;
    };
    let _server = TestServer::start(&net.lab, &net.directors[2], &["10.77.0.3:80"], "ok", &[]);
    let (v1, h1) = director(150);
    let (v2, h2) = director(100);
    // The Vrrpd helper writes [node] name; strip ours of the duplicate table.
    let strip = |s: &str| s.replacen("[node]\n", "", 1);
    let hd1 = Healthd::start(&net.lab, &net.directors[0], &h1);
    let _hd2 = Healthd::start(&net.lab, &net.directors[1], &h2);
    let lb1 = Vrrpd::start(&net.lab, &net.directors[0], &strip(&v1));
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &strip(&v2));
    lb1.wait_state("web", Master, T);
    lb2.wait_state("web", Backup, T);

    // lb1 alone can no longer reach the real server.
    let rules = "table inet hc {\n chain out { type filter hook output priority 0; ip daddr 10.77.0.3 tcp dport 80 drop; }\n}\n";
    net.lab.nft(&net.directors[0], rules);
    lb2.wait_state("web", Master, T);
    let st = lb1.instance("web");
    assert_eq!((st.state, st.effective_priority), (Backup, 90), "{st:?}");
    let vs = st
        .tracking
        .iter()
        .find(|t| t.kind == "virtual_server")
        .unwrap();
    assert!(!vs.ok && vs.delta == -60, "{vs:?}");

    // Quorum back: lb1 preempts again.
    net.lab
        .exec_ok(&net.directors[0], &["nft", "delete", "table", "inet", "hc"]);
    lb1.wait_state("web", Master, T);
    assert_eq!(lb1.instance("web").effective_priority, 150);

    // healthd dies: after healthd_grace (2 s) lb1 counts the virtual
    // server as failed.
    let mut hd1 = hd1;
    hd1.signal(libc::SIGKILL);
    lb2.wait_state("web", Master, T);
    assert_eq!(lb1.instance("web").effective_priority, 90);
    assert!(
        lb1.log()
            .contains("every tracked virtual server counts as failed"),
        "{}",
        lb1.log()
    );
    hd1.restart(&net.lab);
    lb1.wait_state("web", Master, T);
}
