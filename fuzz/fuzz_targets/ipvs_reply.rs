//! Whatever the kernel's IPVS family answers: a receive buffer split into
//! netlink messages, each decoded as every reply the codec reads. A
//! malformed one is an error, never a panic.
#![no_main]

use ipvsctl::codec;
use ipvsctl::netlink::{self, Reply};
use ipvsctl::types::Family;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = netlink::family_id(data);
    let Ok(messages) = netlink::messages(data) else {
        return;
    };
    for m in messages {
        let Ok(reply) = netlink::classify(&m) else {
            continue;
        };
        if let Reply::Data { attrs, .. } = reply {
            let _ = codec::decode_service(attrs);
            let _ = codec::decode_dest(attrs, Family::Ipv4);
            let _ = codec::decode_dest(attrs, Family::Ipv6);
            let _ = codec::decode_info(attrs);
            let _ = codec::decode_timeouts(attrs);
            let _ = codec::decode_daemon(attrs);
        }
    }
});
