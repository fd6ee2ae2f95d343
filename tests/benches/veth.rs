//! TCP throughput and new-connection rate between two routed pods over real
//! veths, with Palisade's programs attached (both pods isolated both ways,
//! policy allowing the traffic) versus not attached, alternated in the same
//! run. Run as root: `cargo xtask bench datapath` (after the
//! BPF_PROG_TEST_RUN table) or `cargo bench -p palisade-tests --bench veth`.
//! Traffic stays inside the lab's network namespaces (198.18.0.0/15).

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use palisade::datapath::{AttachMode, Attachment, attach_endpoint, detach_endpoint};
use palisade_common::{
    EndpointInfo, IDENTITY_WORLD, IpcacheValue, PolicyKey, PolicyValue,
    direction::{EGRESS, INGRESS},
    endpoint_flags as ef, proto,
};
use palisade_lab::{LabSpec, run_in};
use palisade_tests::bpf::TestDatapath;

const STREAM_PORT: u16 = 5001;
const CONNECT_PORT: u16 = 5002;
const SECONDS: f64 = 2.0;
/// Rounds by default (`--rounds=N`). The machine is shared and noisy: the
/// summary is the median of the per-round ratios, and rounds alternate
/// which of the two measurements comes first so drift cancels out.
const ROUNDS: usize = 8;

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Server side: a sink on STREAM_PORT, accept-and-close on CONNECT_PORT.
fn servers(netns: &str, stop: Arc<AtomicBool>) {
    let (sink, closer) = run_in(netns, || {
        (
            TcpListener::bind(("0.0.0.0", STREAM_PORT)).unwrap(),
            TcpListener::bind(("0.0.0.0", CONNECT_PORT)).unwrap(),
        )
    })
    .unwrap();
    let s1 = stop.clone();
    std::thread::spawn(move || {
        for conn in sink.incoming() {
            if s1.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 18];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    std::thread::spawn(move || {
        for conn in closer.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            drop(conn);
        }
    });
}

/// Bytes per second of one TCP stream for SECONDS.
fn throughput(client_ns: &str, dst: SocketAddr) -> f64 {
    run_in(client_ns, || {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(2)).expect("connect");
        let buf = vec![0x5au8; 1 << 18];
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed().as_secs_f64() < SECONDS {
            s.write_all(&buf).expect("write");
            sent += buf.len() as u64;
        }
        sent as f64 / start.elapsed().as_secs_f64()
    })
    .unwrap()
}

/// Connections opened (and reset) per second for SECONDS.
fn connection_rate(client_ns: &str, dst: SocketAddr) -> f64 {
    run_in(client_ns, || {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < SECONDS {
            let s = TcpStream::connect_timeout(&dst, Duration::from_secs(2)).expect("connect");
            // Close with RST (linger 0) so TIME_WAIT does not exhaust ports.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: valid fd and option struct.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    size_of::<libc::linger>() as u32,
                );
            }
            drop(s);
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
    .unwrap()
}

fn main() {
    let lab = LabSpec::new(&format!("pb{}", std::process::id() % 100_000))
        .node("n1")
        .pod("client", "bench", "n1")
        .pod("server", "bench", "n1")
        .up()
        .expect("lab up");
    let (client, server) = (lab.pod("client"), lab.pod("server"));
    let stop = Arc::new(AtomicBool::new(false));
    servers(server.netns(), stop.clone());

    let mut t = TestDatapath::new();
    let (cif, sif) = lab
        .node("n1")
        .run(|| (ifindex(client.host_veth()), ifindex(server.host_veth())))
        .unwrap();
    let both = ef::ISOLATED_INGRESS | ef::ISOLATED_EGRESS;
    t.dp.maps
        .endpoints
        .insert(
            cif,
            EndpointInfo {
                ep_id: 1,
                identity: 600,
                flags: both,
                _pad: 0,
            },
            0,
        )
        .unwrap();
    t.dp.maps
        .endpoints
        .insert(
            sif,
            EndpointInfo {
                ep_id: 2,
                identity: 601,
                flags: both,
                _pad: 0,
            },
            0,
        )
        .unwrap();
    t.ipcache_exact(
        IpAddr::V4(client.ipv4()),
        IpcacheValue {
            identity: 600,
            cidr_identity: IDENTITY_WORLD,
        },
    );
    t.ipcache_exact(
        IpAddr::V4(server.ipv4()),
        IpcacheValue {
            identity: 601,
            cidr_identity: IDENTITY_WORLD,
        },
    );
    let key = |ep_id, identity, direction| PolicyKey {
        ep_id,
        identity,
        direction,
        proto: proto::TCP,
        view: 0,
        _pad: 0,
    };
    t.allow(
        key(1, 601, EGRESS),
        PolicyValue::range(STREAM_PORT, CONNECT_PORT),
    );
    t.allow(
        key(2, 600, INGRESS),
        PolicyValue::range(STREAM_PORT, CONNECT_PORT),
    );

    let stream = SocketAddr::new(IpAddr::V4(server.ipv4()), STREAM_PORT);
    let connect = SocketAddr::new(IpAddr::V4(server.ipv4()), CONNECT_PORT);
    let rounds: usize = std::env::args()
        .find_map(|a| {
            a.strip_prefix("--rounds=")
                .map(|v| v.parse().expect("--rounds=N"))
        })
        .unwrap_or(ROUNDS);
    let mut rows = Vec::new();
    for round in 0..rounds {
        let without = || {
            (
                throughput(client.netns(), stream),
                connection_rate(client.netns(), connect),
            )
        };
        let mut with = || {
            let atts: Vec<Attachment> = lab
                .node("n1")
                .run(|| {
                    [client.host_veth(), server.host_veth()]
                        .iter()
                        .map(|i| {
                            attach_endpoint(&mut t.dp, i, AttachMode::Tcx, None).expect("attach")
                        })
                        .collect()
                })
                .unwrap();
            let on = (
                throughput(client.netns(), stream),
                connection_rate(client.netns(), connect),
            );
            for a in atts {
                detach_endpoint(&mut t.dp, a).expect("detach");
            }
            t.clear_ct();
            on
        };
        let ((base_tp, base_cr), (on_tp, on_cr)) = if round % 2 == 0 {
            let b = without();
            (b, with())
        } else {
            let o = with();
            (without(), o)
        };
        let drops =
            t.dp.maps
                .counter(palisade_common::metrics_index(
                    INGRESS,
                    palisade_common::verdict::DROPPED,
                    1,
                ))
                .unwrap()
                .packets
                + t.dp
                    .maps
                    .counter(palisade_common::metrics_index(
                        EGRESS,
                        palisade_common::verdict::DROPPED,
                        1,
                    ))
                    .unwrap()
                    .packets;
        assert_eq!(drops, 0, "allowed traffic was dropped");
        println!(
            "round {round}: throughput {:.2} Gbit/s without, {:.2} with ({:.1}%); connections {:.0}/s without, {:.0}/s with ({:.1}%)",
            base_tp * 8e-9,
            on_tp * 8e-9,
            100.0 * on_tp / base_tp,
            base_cr,
            on_cr,
            100.0 * on_cr / base_cr
        );
        rows.push((on_tp / base_tp, on_cr / base_cr));
    }
    stop.store(true, Ordering::Relaxed);
    let median = |f: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    println!(
        "veth, {rounds} rounds of {SECONDS} s per measurement, median of per-round ratios: throughput with programs = {:.1}% of without, new-connection rate = {:.1}% of without",
        100.0 * median(|r| r.0),
        100.0 * median(|r| r.1)
    );
}
