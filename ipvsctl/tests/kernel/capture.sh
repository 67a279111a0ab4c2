#!/bin/sh
# Captures the IPVS generic netlink traffic of ipvsadm programming a table
# that covers every attribute family, on the kernel's nlmon device. Runs as
# root on a kernel with IPVS (the test VM: see README.md here); writes into
# OUTDIR (default $TANDEM_VM_DIR):
#
#   capture.pcap  every netlink message of the run (dumpcap -P on nlmon0)
#   steps         one line per step: NAME PID RC COMMAND...
#   transcript    each command with its exit status and ipvsadm's output
#   versions      kernel, ipvsadm and libnl versions
#
# Each step is one ipvsadm process; its pid is how the extractor tells the
# steps apart in the capture (libnl's port ids carry the pid in their low
# 22 bits). tandem-ipvs-capture (tests/src/bin) runs this
# in the VM and turns the capture into the *.hex files.
set -eu

out=${1:-${TANDEM_VM_DIR:?give an output directory}}
cd "$out"
: >steps
: >transcript

{
    echo "kernel $(uname -r) $(uname -v)"
    echo "ipvsadm $(ipvsadm --version 2>&1 | head -n1)"
    dpkg-query -W -f '${Package} ${Version}\n' ipvsadm libnl-3-200 libnl-genl-3-200
} >versions

# Real servers on routable, non-local addresses; an interface for the
# sync daemons.
ip link add lab0 type dummy
ip link set lab0 up
ip addr add 10.0.0.254/24 dev lab0
ip -6 addr add 2001:db8::fe/64 dev lab0 nodad
# A real server in a namespace, behind NAT, to carry traffic both ways.
ip netns add rs
ip link add veth-rs type veth peer name eth0 netns rs
ip addr add 10.0.1.254/24 dev veth-rs
ip link set veth-rs up
ip -n rs link set lo up
ip -n rs addr add 10.0.1.2/24 dev eth0
ip -n rs link set eth0 up
ip -n rs route add default via 10.0.1.254
ip link add sync0 type dummy
ip link set sync0 up multicast on
ip -6 addr add fe80::99/64 dev sync0 nodad

ip link add nlmon0 type nlmon
ip link set nlmon0 up
dumpcap -q -P -i nlmon0 -w capture.pcap 2>dumpcap.err &
dumpcap=$!
n=0
until grep -q "Capturing on" dumpcap.err 2>/dev/null; do
    n=$((n + 1))
    if [ $n -gt 300 ] || ! kill -0 $dumpcap 2>/dev/null; then
        echo "dumpcap did not start:" >&2
        cat dumpcap.err >&2
        exit 1
    fi
    sleep 0.1
done
sleep 1

# Lets dumpcap write the last packets, then stops it (also when a step
# failed: the capture shows what was sent).
stop_capture() {
    sleep 1
    kill -INT $dumpcap
    wait $dumpcap || true
}

# run WANT NAME ARGS...: one ipvsadm process; WANT is ok or fail.
run() {
    want=$1 name=$2
    shift 2
    rc=0
    ipvsadm "$@" >step.out 2>&1 &
    pid=$!
    wait $pid || rc=$?
    echo "$name $pid $rc ipvsadm $*" >>steps
    {
        echo "\$ ipvsadm $*    # $name, rc=$rc"
        cat step.out
        echo
    } >>transcript
    if [ "$want" = ok ] && [ $rc -ne 0 ]; then
        echo "step $name failed (rc=$rc): ipvsadm $*" >&2
        cat step.out >&2
        stop_capture
        exit 1
    fi
    if [ "$want" = fail ] && [ $rc -eq 0 ]; then
        echo "step $name should have failed: ipvsadm $*" >&2
        stop_capture
        exit 1
    fi
    rm -f step.out
}
ok() { run ok "$@"; }
fails() { run fail "$@"; }

# The family lookup, GET_INFO, and an empty GET_SERVICE dump.
ok list_empty -Ln

# Timeouts.
ok timeout_get_default -L --timeout
ok timeout_set_all --set 900 60 300
ok timeout_set_fin_only --set 0 30 0
ok timeout_get -L --timeout

# Sync daemons: before the table, as the kernel refuses to start one while
# a service has destinations of the other family (ip_vs_genl_new_daemon:
# mixed_address_family_dests).
ok daemon_start_master --start-daemon master --mcast-interface sync0 --syncid 5
ok daemon_start_backup_options --start-daemon backup --mcast-interface sync0 --syncid 6 --sync-maxlen 1400 --mcast-group 224.0.0.99 --mcast-port 9000 --mcast-ttl 3
ok daemon_list -L --daemon
ok daemon_stop_master --stop-daemon master
ok daemon_start_master_v6 --start-daemon master --mcast-interface sync0 --syncid 7 --mcast-group ff02::99
ok daemon_list_v6 -L --daemon
ok daemon_stop_master_v6 --stop-daemon master
ok daemon_stop_backup --stop-daemon backup

# Services: every protocol and family, the schedulers' flags, one-packet
# scheduling, persistence with a netmask, a persistence engine.
ok add_service_tcp_v4_wrr -A -t 10.0.0.1:80 -s wrr
ok add_service_udp_v4_sh_flags_ops -A -u 10.0.0.1:53 -s sh -b sh-fallback,sh-port -o
ok add_service_sctp_v4_rr -A --sctp-service 10.0.0.1:9 -s rr
ok add_service_tcp_v4_persistent -A -t 10.0.0.1:443 -s rr -p 360 -M 255.255.255.0
ok add_service_udp_v4_pe_sip -A -u 10.0.0.1:5060 -s rr -p 60 --pe sip
ok add_service_fwmark_v4 -A -f 7 -s wrr -p 300 -M 255.255.0.0
ok add_service_tcp_v6_sh_persistent -A -t [2001:db8::1]:443 -s sh -b sh-port -p 60 -M 64
ok add_service_udp_v6_ops -A -u [2001:db8::1]:53 -s rr -o
ok add_service_fwmark_v6 -A -f 8 -6 -s rr -p 120 -M 48
fails add_service_exists -A -t 10.0.0.1:80 -s wrr

# Destinations: NAT, DR, every tunnel type and checksum flag, weights,
# thresholds, an IPv4 tunnel destination behind an IPv6 service.
ok add_dest_nat_thresholds -a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 3 -x 100 -y 50
ok add_dest_dr -a -t 10.0.0.1:80 -r 10.0.0.3:80 -g -w 1
ok add_dest_nat_rs -a -t 10.0.0.1:443 -r 10.0.1.2:8443 -m -w 1
ok add_dest_tun_gue_csum -a -u 10.0.0.1:53 -r 10.0.0.5:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum
ok add_dest_tun_gue_remcsum -a -u 10.0.0.1:53 -r 10.0.0.6:53 -i -w 1 --tun-type gue --tun-port 6081 --tun-remcsum
ok add_dest_tun_gre_csum -a -u 10.0.0.1:53 -r 10.0.0.7:53 -i -w 1 --tun-type gre --tun-csum
ok add_dest_tun_ipip_weight0 -a -u 10.0.0.1:53 -r 10.0.0.8:53 -i -w 0 --tun-type ipip
ok add_dest_sctp_dr_threshold -a --sctp-service 10.0.0.1:9 -r 10.0.0.12:9 -g -w 7 -x 10
ok add_dest_nat_pe_sip -a -u 10.0.0.1:5060 -r 10.0.0.14:5060 -m -w 1
ok add_dest_fwmark_v4_dr -a -f 7 -r 10.0.0.9:0 -g -w 1
ok add_dest_nat_v6 -a -t [2001:db8::1]:443 -r [2001:db8::2]:8443 -m -w 65535
ok add_dest_tun_v4_in_v6 -a -u [2001:db8::1]:53 -r 10.0.0.13:53 -i -w 1 --tun-type ipip
ok add_dest_fwmark_v6_dr -a -f 8 -6 -r [2001:db8::5]:0 -g -w 4

# Reading it back: the whole table (GET_SERVICE dump, a GET_DEST dump per
# service), then each service alone (GET_SERVICE + GET_DEST dump).
ok list_all -Ln
ok list_tcp_v4_wrr -Ln --thresholds -t 10.0.0.1:80
ok list_udp_v4_sh -Ln --tun-info -u 10.0.0.1:53
ok list_sctp_v4 -Ln --thresholds --sctp-service 10.0.0.1:9
ok list_tcp_v4_persistent -Ln -t 10.0.0.1:443
ok list_udp_v4_pe_sip -Ln -u 10.0.0.1:5060
ok list_fwmark_v4 -Ln -f 7
ok list_tcp_v6 -Ln -t [2001:db8::1]:443
ok list_udp_v6 -Ln --tun-info -u [2001:db8::1]:53
ok list_fwmark_v6 -Ln -f 8 -6
fails list_missing -Ln -t 10.9.9.9:1

# Edits.
ok edit_service_tcp_v4 -E -t 10.0.0.1:80 -s wlc -p 30
ok edit_dest_nat -e -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 5 -x 200 -y 100
ok list_tcp_v4_edited -Ln --thresholds -t 10.0.0.1:80

# Counters: two connections from a local client (IPVS's LOCAL_OUT hook)
# through the persistent service to the namespace's server, one closed,
# one kept open, so that the counters both ways, the estimator's rates
# (after its 2 s tick) and the active, inactive and persistent connection
# counts all read non-zero. ipvsadm's listings of the same replies are in
# transcript.txt.
cat >responder.sh <<'END'
#!/bin/sh
read -r what
head -c 1000 /dev/zero
[ "$what" = keep ] && exec sleep 120
exit 0
END
chmod +x responder.sh
ip netns exec rs busybox nc -ll -p 8443 -e "$out/responder.sh" &
server=$!
sleep 1
bash -c 'exec 3<>/dev/tcp/10.0.0.1/443; echo keep >&3; head -c 1000 <&3 >/dev/null; exec sleep 120' &
client=$!
timeout 10 bash -c 'exec 3<>/dev/tcp/10.0.0.1/443; echo close >&3; cat <&3 >/dev/null'
sleep 3
ok list_tcp_v4_stats -Ln --stats --exact -t 10.0.0.1:443
ok list_tcp_v4_rate -Ln --rate --exact -t 10.0.0.1:443
ok list_tcp_v4_conns -Ln --persistent-conn -t 10.0.0.1:443
ok zero_service -Z -t 10.0.0.1:443
ok list_tcp_v4_zeroed -Ln --stats --exact -t 10.0.0.1:443
kill $client $server
ok zero_all -Z

# Deletions.
ok del_dest -d -t 10.0.0.1:80 -r 10.0.0.3:80
ok del_dest_v6 -d -t [2001:db8::1]:443 -r [2001:db8::2]:8443
ok del_service -D -t 10.0.0.1:80
ok del_service_fwmark_v6 -D -f 8 -6
ok flush -C

stop_capture
ip link del nlmon0
test -s capture.pcap
