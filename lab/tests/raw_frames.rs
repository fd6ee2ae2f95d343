//! Crafted packets injected into a pod's `eth0` are routed by the node and
//! captured at the destination; the capture wait is bounded.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use palisade_lab::raw::{Capture, inject_ip};
use palisade_lab::topology::POD_IFACE;
use palisade_lab::wire::{IPV4_MF, ipv4_packet, ipv6_packet, udp_datagram};
use palisade_lab::{Lab, LabSpec};

const WAIT: Duration = Duration::from_secs(2);

fn lab(prefix: &str) -> Lab {
    LabSpec::new(prefix)
        .node("n1")
        .pod("src", "default", "n1")
        .pod("dst", "default", "n1")
        .up()
        .expect("lab up")
}

#[test]
fn crafted_ipv4_udp_and_first_fragment_arrive_at_destination() {
    let lab = lab("pltest-raw4");
    let (src, dst) = (lab.pod("src"), lab.pod("dst"));
    let capture = Capture::start(dst.netns(), POD_IFACE).expect("capture");

    let udp = udp_datagram(
        src.ipv4().into(),
        dst.ipv4().into(),
        1234,
        9,
        b"marker-v4-udp",
    );
    inject_ip(src, &ipv4_packet(src.ipv4(), dst.ipv4(), 17, 1, 0, &udp)).expect("inject");
    let frame = capture
        .wait_for_incoming(b"marker-v4-udp", WAIT)
        .expect("routed to dst");
    // Forwarded once: TTL 64 -> 63.
    assert_eq!(frame.payload()[8], 63);

    let first = udp_datagram(
        src.ipv4().into(),
        dst.ipv4().into(),
        1234,
        9,
        b"marker-frag-1..",
    );
    inject_ip(
        src,
        &ipv4_packet(src.ipv4(), dst.ipv4(), 17, 2, IPV4_MF, &first),
    )
    .expect("inject");
    let frame = capture
        .wait_for_incoming(b"marker-frag-1", WAIT)
        .expect("fragment routed to dst");
    assert_eq!(frame.payload()[6] & 0x20, 0x20, "MF flag kept");
}

#[test]
fn crafted_ipv6_with_extension_header_arrives_and_missing_marker_times_out() {
    let lab = lab("pltest-raw6");
    let (src, dst) = (lab.pod("src"), lab.pod("dst"));
    let capture = Capture::start(dst.netns(), POD_IFACE).expect("capture");

    let (s, d) = (IpAddr::from(src.ipv6()), IpAddr::from(dst.ipv6()));
    let udp = udp_datagram(s, d, 1234, 9, b"marker-v6-dstopts");
    // Destination Options header (60): next header UDP, length 0, PadN.
    let mut payload = vec![17, 0, 1, 4, 0, 0, 0, 0];
    payload.extend_from_slice(&udp);
    inject_ip(src, &ipv6_packet(src.ipv6(), dst.ipv6(), 60, &payload)).expect("inject");
    let frame = capture
        .wait_for_incoming(b"marker-v6-dstopts", WAIT)
        .expect("routed to dst");
    assert_eq!(frame.payload()[6], 60, "extension header kept");

    let started = Instant::now();
    assert!(
        capture
            .wait_for(b"never-sent", Duration::from_millis(200))
            .is_none()
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}
