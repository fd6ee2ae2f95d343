//! The datapath attached (TCX) to real host-side veths of routed pods in
//! network namespaces: real TCP, UDP, raw SCTP and ICMP probes, IPv4 and
//! IPv6, allowed and denied by map content, replies passing under
//! connection tracking, drop events read from the ring. Needs root.
//! Everything lives in namespaces the lab creates (198.18.0.0/15,
//! 2001:db8::/32) and is removed when the test ends, also on failure.

use std::{net::IpAddr, time::Duration};

use palisade::datapath::{AttachMode, attach_endpoint};
use palisade_common::{
    DropReason, EndpointInfo, IDENTITY_WORLD, IpcacheValue, PolicyKey, PolicyValue,
    direction::{EGRESS, INGRESS},
    endpoint_flags as ef, event_kind, proto,
};
use palisade_lab::{
    ANSWER_TIMEOUT, DEFAULT_TIMEOUT, LabSpec, ProbeResult, ProbeSpec, Services, probe_all, serve,
};
use palisade_tests::bpf::TestDatapath;

const CLIENT_ID: u32 = 500;
const SERVER_ID: u32 = 501;
const CLIENT_EP: u32 = 1;
const SERVER_EP: u32 = 2;

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(idx, 0, "no interface {name}");
    idx
}

fn key(ep_id: u32, identity: u32, dir: u8, proto: u8) -> PolicyKey {
    PolicyKey {
        ep_id,
        identity,
        direction: dir,
        proto,
        view: 0,
        _pad: 0,
    }
}

#[test]
fn real_traffic_is_allowed_and_denied_by_map_content() {
    let tag = format!("pv{}", std::process::id() % 100_000);
    let lab = LabSpec::new(&tag)
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("server", "prod", "n1")
        .up()
        .expect("lab up");
    let (client, server) = (lab.pod("client"), lab.pod("server"));
    let _servers = serve(
        server,
        &Services::new()
            .tcp(80)
            .tcp(81)
            .udp(53)
            .udp(54)
            .sctp(9000)
            .sctp(9001),
    )
    .expect("servers");

    let mut t = TestDatapath::new();
    // Server: isolated both ways, ingress allows client on TCP/80, UDP/53,
    // SCTP/9000; no egress entries at all (its replies ride on conntrack).
    // Client: isolated for egress, allows anything to the server except TCP/81.
    let (client_if, server_if) = lab
        .node("n1")
        .run(|| (ifindex(client.host_veth()), ifindex(server.host_veth())))
        .unwrap();
    let dp = &mut t.dp;
    dp.maps
        .endpoints
        .insert(
            server_if,
            EndpointInfo {
                ep_id: SERVER_EP,
                identity: SERVER_ID,
                flags: ef::ISOLATED_INGRESS | ef::ISOLATED_EGRESS,
                _pad: 0,
            },
            0,
        )
        .unwrap();
    dp.maps
        .endpoints
        .insert(
            client_if,
            EndpointInfo {
                ep_id: CLIENT_EP,
                identity: CLIENT_ID,
                flags: ef::ISOLATED_EGRESS,
                _pad: 0,
            },
            0,
        )
        .unwrap();
    // Each pod may send from its own addresses (source verification).
    for (ifi, p) in [(client_if, client), (server_if, server)] {
        t.allow_source(ifi, IpAddr::V4(p.ipv4()).into());
        t.allow_source(ifi, IpAddr::V6(p.ipv6()).into());
    }
    for (addr, id) in [
        (IpAddr::V4(client.ipv4()), CLIENT_ID),
        (IpAddr::V6(client.ipv6()), CLIENT_ID),
        (IpAddr::V4(server.ipv4()), SERVER_ID),
        (IpAddr::V6(server.ipv6()), SERVER_ID),
    ] {
        t.ipcache_exact(
            addr,
            IpcacheValue {
                identity: id,
                cidr_identity: IDENTITY_WORLD,
            },
        );
    }
    t.allow(
        key(SERVER_EP, CLIENT_ID, INGRESS, proto::TCP),
        PolicyValue::range(80, 80),
    );
    t.allow(
        key(SERVER_EP, CLIENT_ID, INGRESS, proto::UDP),
        PolicyValue::range(53, 53),
    );
    t.allow(
        key(SERVER_EP, CLIENT_ID, INGRESS, proto::SCTP),
        PolicyValue::range(9000, 9000),
    );
    t.allow(
        key(CLIENT_EP, SERVER_ID, EGRESS, proto::TCP),
        PolicyValue::range(1, 80),
    );
    t.allow(
        key(CLIENT_EP, SERVER_ID, EGRESS, proto::UDP),
        PolicyValue::ALL_PORTS,
    );
    t.allow(
        key(CLIENT_EP, SERVER_ID, EGRESS, proto::SCTP),
        PolicyValue::ALL_PORTS,
    );
    t.allow(
        key(CLIENT_EP, SERVER_ID, EGRESS, proto::OTHER),
        PolicyValue::ALL_PORTS,
    );

    // Before attaching, everything reaches the server.
    let open = |dst: IpAddr| {
        vec![
            ProbeSpec::tcp(client, dst, 80).timeout(ANSWER_TIMEOUT),
            ProbeSpec::tcp(client, dst, 81).timeout(ANSWER_TIMEOUT),
            ProbeSpec::udp(client, dst, 53).timeout(ANSWER_TIMEOUT),
            ProbeSpec::udp(client, dst, 54).timeout(ANSWER_TIMEOUT),
            ProbeSpec::sctp(client, dst, 9000).timeout(ANSWER_TIMEOUT),
            ProbeSpec::sctp(client, dst, 9001).timeout(ANSWER_TIMEOUT),
            ProbeSpec::icmp(client, dst).timeout(ANSWER_TIMEOUT),
        ]
    };
    let dsts = [IpAddr::V4(server.ipv4()), IpAddr::V6(server.ipv6())];
    for dst in dsts {
        let r = probe_all(&open(dst));
        assert!(
            r.iter().all(ProbeResult::reached),
            "before attach, {dst}: {r:?}"
        );
    }

    let mode = AttachMode::detect();
    assert_eq!(mode, AttachMode::Tcx, "this kernel has TCX");
    let _attachments = lab
        .node("n1")
        .run(|| {
            let a =
                attach_endpoint(&mut t.dp, client.host_veth(), mode, None).expect("attach client");
            let b =
                attach_endpoint(&mut t.dp, server.host_veth(), mode, None).expect("attach server");
            (a, b)
        })
        .unwrap();

    for dst in dsts {
        let short = |p: ProbeSpec, reach: bool| {
            if reach {
                p.timeout(ANSWER_TIMEOUT)
            } else {
                p.timeout(DEFAULT_TIMEOUT)
            }
        };
        let specs = vec![
            short(ProbeSpec::tcp(client, dst, 80), true),
            short(ProbeSpec::tcp(client, dst, 81), false),
            short(ProbeSpec::udp(client, dst, 53), true),
            short(ProbeSpec::udp(client, dst, 54), false),
            short(ProbeSpec::sctp(client, dst, 9000), true),
            short(ProbeSpec::sctp(client, dst, 9001), false),
            short(ProbeSpec::icmp(client, dst), false),
        ];
        let r = probe_all(&specs);
        let reached: Vec<bool> = r.iter().map(ProbeResult::reached).collect();
        assert_eq!(
            reached,
            vec![true, false, true, false, true, false, false],
            "after attach, {dst}: {r:?}"
        );
        assert!(
            matches!(r[1], ProbeResult::TimedOut),
            "denied TCP times out: {:?}",
            r[1]
        );
        assert_eq!(
            r[0].text().map(|s| s.contains("prod/server tcp/80")),
            Some(true),
            "{:?}",
            r[0]
        );
    }

    // Drop events: TCP/81 dropped at the client's egress; UDP/54, SCTP/9001
    // and ICMP dropped at the server's ingress.
    std::thread::sleep(Duration::from_millis(50));
    let ev = t.events();
    let tcp81: Vec<_> = ev
        .iter()
        .filter(|e| e.proto == proto::TCP && e.dport == 81)
        .collect();
    assert!(!tcp81.is_empty(), "{ev:?}");
    for e in &tcp81 {
        assert_eq!(
            (e.kind, e.reason, e.direction),
            (event_kind::DROP, DropReason::PolicyDenied as u8, EGRESS)
        );
        assert_eq!(
            (e.ep_id, e.src_identity, e.dst_identity),
            (CLIENT_EP, CLIENT_ID, SERVER_ID)
        );
        assert_eq!(e.ifindex, client_if);
    }
    for (p, port) in [(proto::UDP, 54), (proto::SCTP, 9001)] {
        let hits: Vec<_> = ev
            .iter()
            .filter(|e| e.proto == p && e.dport == port)
            .collect();
        assert!(!hits.is_empty(), "no event for {p}/{port}: {ev:?}");
        assert!(hits.iter().all(|e| e.direction == INGRESS
            && e.ep_id == SERVER_EP
            && e.src_identity == CLIENT_ID));
        assert!(hits.iter().any(|e| e.family == palisade_common::family::V4));
        assert!(hits.iter().any(|e| e.family == palisade_common::family::V6));
    }
    assert!(
        ev.iter().any(|e| e.proto == proto::ICMP),
        "icmp v4 drop event"
    );
    assert!(
        ev.iter().any(|e| e.proto == proto::ICMPV6),
        "icmp v6 drop event"
    );

    // Removing the server's TCP/80 entry stops new connections at once.
    t.disallow(&key(SERVER_EP, CLIENT_ID, INGRESS, proto::TCP));
    let r = probe_all(&[
        ProbeSpec::tcp(client, dsts[0], 80),
        ProbeSpec::tcp(client, dsts[1], 80),
    ]);
    assert!(r.iter().all(|r| !r.reached()), "{r:?}");
}

/// Header stubs (shorter than an IP header, which BPF_PROG_TEST_RUN refuses
/// to run) sent by a pod: dropped with their own reason when the pod is
/// isolated for egress, passed (to the kernel, which discards them) when not.
#[test]
fn header_stubs_are_dropped_as_truncated_when_isolated() {
    use palisade_common::{ForwardReason, verdict};
    let tag = format!("pt{}", std::process::id() % 100_000);
    let lab = LabSpec::new(&tag)
        .node("n1")
        .pod("sender", "dev", "n1")
        .up()
        .expect("lab up");
    let pod = lab.pod("sender");
    let mut t = TestDatapath::new();
    let ifi = lab.node("n1").run(|| ifindex(pod.host_veth())).unwrap();
    let ep = |flags| EndpointInfo {
        ep_id: 3,
        identity: CLIENT_ID,
        flags,
        _pad: 0,
    };
    t.dp.maps
        .endpoints
        .insert(ifi, ep(ef::ISOLATED_EGRESS), 0)
        .unwrap();
    let _att = lab
        .node("n1")
        .run(|| {
            attach_endpoint(&mut t.dp, pod.host_veth(), AttachMode::detect(), None).expect("attach")
        })
        .unwrap();
    let frame = |ethertype: u16, l3: &[u8]| {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 9]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    };
    let stubs = [
        frame(0x0800, &[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]), // 10 bytes of IPv4 header
        frame(
            0x86dd,
            &[0x60, 0, 0, 0, 0, 20, 6, 64, 0x20, 0x01, 0x0d, 0xb8],
        ), // 12 bytes of IPv6 header
    ];
    let truncated = |t: &TestDatapath| {
        t.counter(EGRESS, verdict::DROPPED, DropReason::Truncated as u8)
            .packets
    };
    let before = truncated(&t);
    for f in &stubs {
        palisade_lab::inject_frame(pod.netns(), "eth0", f).expect("inject");
    }
    assert_eq!(truncated(&t) - before, 2, "both stubs dropped as truncated");
    let ev = t.events();
    assert_eq!(
        ev.iter()
            .filter(|e| e.reason == DropReason::Truncated as u8)
            .count(),
        2,
        "{ev:?}"
    );
    // Not isolated for egress: stubs pass on (the kernel discards them).
    t.dp.maps
        .endpoints
        .insert(ifi, ep(ef::ISOLATED_INGRESS), 0)
        .unwrap();
    let passed = |t: &TestDatapath| {
        t.counter(EGRESS, verdict::FORWARDED, ForwardReason::NotIsolated as u8)
            .packets
    };
    let before = passed(&t);
    for f in &stubs {
        palisade_lab::inject_frame(pod.netns(), "eth0", f).expect("inject");
    }
    assert_eq!(passed(&t) - before, 2);
    assert_eq!(truncated(&t), 2, "no more drops");
}

/// Whether a TCP connection from `pod`'s `src_port` to `dst:port` is
/// answered within `timeout` (an exact source port, so a test can aim at
/// the tuple a spoofed packet named).
fn tcp_from(pod: &palisade_lab::Pod, src_port: u16, dst: IpAddr, port: u16) -> bool {
    use socket2::{Domain, SockAddr, Socket, Type};
    let src = if dst.is_ipv4() {
        IpAddr::V4(pod.ipv4())
    } else {
        IpAddr::V6(pod.ipv6())
    };
    pod.run(|| {
        let s = Socket::new(Domain::for_address((dst, port).into()), Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SockAddr::from(std::net::SocketAddr::from((src, src_port))))
            .unwrap();
        s.connect_timeout(
            &std::net::SocketAddr::from((dst, port)).into(),
            DEFAULT_TIMEOUT,
        )
        .is_ok()
    })
    .unwrap()
}

/// Whether a UDP datagram from `pod`'s `src_port` to `dst:port` is answered
/// within the default timeout.
fn udp_from(pod: &palisade_lab::Pod, src_port: u16, dst: IpAddr, port: u16) -> bool {
    let src = if dst.is_ipv4() {
        IpAddr::V4(pod.ipv4())
    } else {
        IpAddr::V6(pod.ipv6())
    };
    pod.run(|| {
        let s = std::net::UdpSocket::bind((src, src_port)).unwrap();
        s.set_read_timeout(Some(DEFAULT_TIMEOUT)).unwrap();
        s.send_to(b"probe", (dst, port)).unwrap();
        let mut buf = [0u8; 512];
        s.recv_from(&mut buf).is_ok()
    })
    .unwrap()
}

/// Conntrack poisoning over real veths, in the spirit of the AWS network
/// policy agent's regression test: an attacker pod on the victim's node,
/// free to send anything (not isolated), sends reply-shaped packets (TCP
/// SYN-ACK, ACK, FIN-ACK, UDP "replies") to the victim, and the victim,
/// isolated both ways with nothing allowed, sends some of its own. Then
/// connections on exactly the tuples those packets named, and others, are
/// still denied both ways, and the victim's interface holds no connection
/// state at all. The attacker's own entries (its egress was open) stay on
/// its interface.
#[test]
fn spoofed_replies_over_veths_open_nothing() {
    use palisade_lab::inject_ip;
    use palisade_tests::packet::{L4, PacketSpec, tcp};
    let tag = format!("pp{}", std::process::id() % 100_000);
    let lab = LabSpec::new(&tag)
        .node("n1")
        .pod("attacker", "dev", "n1")
        .pod("victim", "prod", "n1")
        .up()
        .expect("lab up");
    let (attacker, victim) = (lab.pod("attacker"), lab.pod("victim"));
    let _servers = (
        serve(victim, &Services::new().tcp(80).udp(53)).expect("victim servers"),
        serve(attacker, &Services::new().tcp(80).udp(53)).expect("attacker servers"),
    );
    const ATTACKER_EP: u32 = 5;
    const VICTIM_EP: u32 = 6;
    let mut t = TestDatapath::new();
    let (attacker_if, victim_if) = lab
        .node("n1")
        .run(|| (ifindex(attacker.host_veth()), ifindex(victim.host_veth())))
        .unwrap();
    for (ifi, ep_id, identity, flags) in [
        (attacker_if, ATTACKER_EP, CLIENT_ID, 0),
        (
            victim_if,
            VICTIM_EP,
            SERVER_ID,
            ef::ISOLATED_INGRESS | ef::ISOLATED_EGRESS,
        ),
    ] {
        t.dp.maps
            .endpoints
            .insert(
                ifi,
                EndpointInfo {
                    ep_id,
                    identity,
                    flags,
                    _pad: 0,
                },
                0,
            )
            .unwrap();
    }
    // Both pods send from their own addresses (source verification is on):
    // the spoofs are reply-shaped, not from a borrowed address.
    for (ifi, p) in [(attacker_if, attacker), (victim_if, victim)] {
        t.allow_source(ifi, IpAddr::V4(p.ipv4()).into());
        t.allow_source(ifi, IpAddr::V6(p.ipv6()).into());
    }
    for (addr, id) in [
        (IpAddr::V4(attacker.ipv4()), CLIENT_ID),
        (IpAddr::V6(attacker.ipv6()), CLIENT_ID),
        (IpAddr::V4(victim.ipv4()), SERVER_ID),
        (IpAddr::V6(victim.ipv6()), SERVER_ID),
    ] {
        t.ipcache_exact(
            addr,
            IpcacheValue {
                identity: id,
                cidr_identity: IDENTITY_WORLD,
            },
        );
    }
    let mode = AttachMode::detect();
    let _attachments = lab
        .node("n1")
        .run(|| {
            (
                attach_endpoint(&mut t.dp, attacker.host_veth(), mode, None).expect("attach"),
                attach_endpoint(&mut t.dp, victim.host_veth(), mode, None).expect("attach"),
            )
        })
        .unwrap();
    let victim_entries = |t: &TestDatapath| {
        t.dp.maps
            .ct_v4
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.ifindex == victim_if)
            .count()
            + t.dp
                .maps
                .ct_v6
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.ifindex == victim_if)
                .count()
    };
    for (a, v) in [
        (IpAddr::V4(attacker.ipv4()), IpAddr::V4(victim.ipv4())),
        (IpAddr::V6(attacker.ipv6()), IpAddr::V6(victim.ipv6())),
    ] {
        // From the attacker: "replies" from its port 80/53 to the victim's
        // port 5555, as if the victim had connected to it.
        for flags in [tcp::SYN | tcp::ACK, tcp::ACK, tcp::FIN | tcp::ACK] {
            let p = PacketSpec::new(
                a,
                v,
                L4::Tcp {
                    sport: 80,
                    dport: 5555,
                    flags,
                },
            );
            inject_ip(attacker, &p.ip_bytes()).expect("inject");
        }
        let p = PacketSpec::new(
            a,
            v,
            L4::Udp {
                sport: 53,
                dport: 5555,
            },
        );
        inject_ip(attacker, &p.ip_bytes()).expect("inject");
        // From the victim: "replies" from its port 80/53 to the attacker's
        // port 6666, as if the attacker had connected to it.
        for l4 in [
            L4::Tcp {
                sport: 80,
                dport: 6666,
                flags: tcp::SYN | tcp::ACK,
            },
            L4::Tcp {
                sport: 80,
                dport: 6666,
                flags: tcp::ACK,
            },
            L4::Udp {
                sport: 53,
                dport: 6666,
            },
        ] {
            inject_ip(victim, &PacketSpec::new(v, a, l4).ip_bytes()).expect("inject");
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            victim_entries(&t),
            0,
            "{v}: no state on the victim's interface"
        );
        let ev = t.events();
        let victim_drops = ev
            .iter()
            .filter(|e| e.ep_id == VICTIM_EP && e.reason == DropReason::PolicyDenied as u8)
            .count();
        assert!(
            victim_drops >= 7,
            "{v}: every spoof dropped by the victim's policy: {ev:?}"
        );

        // The tuples they named, and others, are still denied both ways.
        assert!(
            !tcp_from(attacker, 5555, v, 80),
            "{v}: attacker:5555 -> victim:80"
        );
        assert!(
            !udp_from(attacker, 5555, v, 53),
            "{v}: attacker:5555 -> victim:53 udp"
        );
        assert!(
            !tcp_from(attacker, 6666, v, 80),
            "{v}: attacker:6666 -> victim:80"
        );
        assert!(
            !udp_from(attacker, 6666, v, 53),
            "{v}: attacker:6666 -> victim:53 udp"
        );
        assert!(
            !tcp_from(victim, 5555, a, 80),
            "{v}: victim:5555 -> attacker:80"
        );
        assert!(
            !udp_from(victim, 5555, a, 53),
            "{v}: victim:5555 -> attacker:53 udp"
        );
        assert!(
            !tcp_from(victim, 6666, a, 80),
            "{v}: victim:6666 -> attacker:80"
        );
        assert_eq!(victim_entries(&t), 0, "{v}: still no state on the victim");
    }
    // The check can fail: allowing the victim's ingress on TCP/80 lets the
    // same connection through.
    t.allow(
        key(VICTIM_EP, CLIENT_ID, INGRESS, proto::TCP),
        PolicyValue::range(80, 80),
    );
    assert!(
        tcp_from(attacker, 5557, IpAddr::V4(victim.ipv4()), 80),
        "allowed now"
    );
    assert!(victim_entries(&t) > 0);
}
