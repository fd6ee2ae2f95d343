//! TCP throughput and new-connection rate (TCP_CRR-style transactions)
//! between two routed pods over real veths, with Palisade's programs
//! attached (both pods isolated both ways, policy allowing the traffic)
//! versus not attached, alternated in the same run; then, with the kernel's
//! BPF run-time statistics on, the programs' own time per run in that
//! traffic next to the empty program's. Run as root: `cargo xtask bench
//! datapath` (after the BPF_PROG_TEST_RUN table) or `cargo bench -p
//! palisade-tests --bench veth [-- --rounds=N]` (`--rounds=0`: only the
//! statistics pass). Traffic stays inside the lab's network namespaces
//! (198.18.0.0/15).

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

use aya::programs::TcAttachType;
use palisade::datapath::{AttachMode, Attachment, attach_endpoint, detach_endpoint};
use palisade_common::{
    EndpointInfo, IDENTITY_WORLD, IpcacheValue, PolicyKey, PolicyValue,
    direction::{EGRESS, INGRESS},
    endpoint_flags as ef, program_names, proto,
};
use palisade_lab::{LabSpec, run_in};
use palisade_tests::bpf::TestDatapath;

const STREAM_PORT: u16 = 5001;
const CONNECT_PORT: u16 = 5002;
/// Seconds each side (with, without) is measured per round and metric.
const SECONDS: f64 = 2.0;
/// Each side's seconds come in this many slices. With and without
/// alternate slice by slice in the order ABBA ABBA (rounds alternate which
/// side is A), so that the machine's load changing under us (it is shared)
/// falls on both sides alike instead of on whichever ran second; a round of
/// two 2 s blocks swung from 61% to 113% on this VM.
const SLICES: usize = 8;
const SLICE_SECONDS: f64 = SECONDS / SLICES as f64;
/// Rounds by default (`--rounds=N`): the summary is the median of the
/// per-round ratios.
const ROUNDS: usize = 12;

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Server side: a sink on STREAM_PORT; on CONNECT_PORT an echo server that
/// answers each byte with that byte until the client resets the connection,
/// one connection at a time (the clients are serial too).
fn servers(netns: &str, stop: Arc<AtomicBool>) {
    let (sink, transactions) = run_in(netns, || {
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
        for conn in transactions.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut c) = conn else { continue };
            let _ = c.set_nodelay(true);
            let mut byte = [0u8; 1];
            // Echo until the client's RST (or FIN): closing first would
            // leave this side in TIME_WAIT.
            while matches!(c.read(&mut byte), Ok(1)) && c.write_all(&byte).is_ok() {}
        }
    });
}

/// SYNs retransmitted in the calling thread's network namespace: each is a
/// handshake that stalled for a retransmission timeout.
fn syn_retransmissions() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    let mut stalls = 0;
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if name == "TCPSynRetrans" {
                stalls += value.parse::<u64>().unwrap_or(0);
            }
        }
    }
    stalls
}
/// What one side did in a round: amounts and the seconds they took.
#[derive(Clone, Copy, Default)]
struct Tally {
    bytes: f64,
    stream_secs: f64,
    transactions: f64,
    transaction_secs: f64,
    syn_retransmissions: u64,
}

impl Tally {
    fn throughput(&self) -> f64 {
        self.bytes / self.stream_secs
    }
    fn connection_rate(&self) -> f64 {
        self.transactions / self.transaction_secs
    }
}

/// Bytes sent on one TCP stream in about `secs`, and the seconds taken.
fn stream(client_ns: &str, dst: SocketAddr, secs: f64) -> (f64, f64) {
    run_in(client_ns, || {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(2)).expect("connect");
        let buf = vec![0x5au8; 1 << 18];
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            s.write_all(&buf).expect("write");
            sent += buf.len() as u64;
        }
        (sent as f64, start.elapsed().as_secs_f64())
    })
    .unwrap()
}

/// Request/response transactions per second on one connection for SECONDS,
/// like netperf's TCP_RR: every packet belongs to an established flow.
fn request_rate(client_ns: &str, dst: SocketAddr) -> f64 {
    run_in(client_ns, || {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(2)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let start = Instant::now();
        let mut n = 0u64;
        let mut byte = [1u8; 1];
        while start.elapsed().as_secs_f64() < SECONDS {
            s.write_all(&byte).expect("request");
            s.read_exact(&mut byte).expect("response");
            n += 1;
        }
        reset_on_close(&s);
        n as f64 / start.elapsed().as_secs_f64()
    })
    .unwrap()
}

/// Makes dropping `s` send a RST (linger 0), so TIME_WAIT does not pile up.
fn reset_on_close(s: &TcpStream) {
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
}

/// Connection transactions per second for SECONDS, like netperf's TCP_CRR:
/// connect, send one byte, read the one-byte answer, close with RST. Each
/// connection completes before the next starts, so no queue builds up
/// anywhere; a plain connect loop outruns the server's accept loop on a
/// loaded 2-core machine, overflows the accept queue, and every SYN the
/// server then drops costs a one-second retransmission timeout, which made
/// single 2 s rounds of the earlier version swing from 25% to 600%.
/// Returns the transactions, the seconds they took and the SYN
/// retransmissions in the client's namespace meanwhile (which should be
/// zero).
fn connections(client_ns: &str, dst: SocketAddr, secs: f64) -> (f64, f64, u64) {
    run_in(client_ns, || {
        let stalls_before = syn_retransmissions();
        let start = Instant::now();
        let mut n = 0u64;
        let mut byte = [1u8; 1];
        while start.elapsed().as_secs_f64() < secs {
            let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(2)).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.write_all(&byte).expect("request");
            s.read_exact(&mut byte).expect("response");
            reset_on_close(&s);
            drop(s);
            n += 1;
        }
        let took = start.elapsed().as_secs_f64();
        (n as f64, took, syn_retransmissions() - stalls_before)
    })
    .unwrap()
}

/// Connection transactions per second for SECONDS (see [`connections`]).
fn connection_rate(client_ns: &str, dst: SocketAddr) -> f64 {
    let (n, secs, _) = connections(client_ns, dst, SECONDS);
    n / secs
}

/// Runs and nanoseconds accumulated by `programs` (counted
/// only while BPF run-time statistics are enabled).
fn program_stats(t: &TestDatapath, programs: [&'static str; 2]) -> (u64, u64) {
    let mut names = programs.to_vec();
    names.dedup();
    names
        .iter()
        .map(|name| {
            let info = t.dp.program(name).expect("program").info().expect("info");
            (info.run_count(), info.run_time().as_nanos() as u64)
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
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

    // The agent's conntrack capacity: ~12 000 transactions a round open
    // ~24 000 entries (one per pod veth), more than the small test maps hold.
    let mut t = TestDatapath::with_default_capacities();
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
    // Each pod may send from its own address (source verification).
    t.allow_source(cif, IpAddr::V4(client.ipv4()).into());
    t.allow_source(sif, IpAddr::V4(server.ipv4()).into());
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

    let stream_addr = SocketAddr::new(IpAddr::V4(server.ipv4()), STREAM_PORT);
    let connect = SocketAddr::new(IpAddr::V4(server.ipv4()), CONNECT_PORT);
    let rounds: usize = std::env::args()
        .find_map(|a| {
            a.strip_prefix("--rounds=")
                .map(|v| v.parse().expect("--rounds=N"))
        })
        .unwrap_or(ROUNDS);
    let mut rows = Vec::new();
    let mut stalls = 0;
    for round in 0..rounds {
        // [without, with]
        let mut sides = [Tally::default(); 2];
        for slice in 0..2 * SLICES {
            let on = usize::from(matches!(slice % 4, 1 | 2)) ^ (round % 2);
            let atts: Vec<Attachment> = if on == 1 {
                lab.node("n1")
                    .run(|| {
                        [client.host_veth(), server.host_veth()]
                            .iter()
                            .map(|i| {
                                attach_endpoint(&mut t.dp, i, AttachMode::Tcx, None)
                                    .expect("attach")
                            })
                            .collect()
                    })
                    .unwrap()
            } else {
                Vec::new()
            };
            let (bytes, stream_secs) = stream(client.netns(), stream_addr, SLICE_SECONDS);
            let (n, secs, stalls) = connections(client.netns(), connect, SLICE_SECONDS);
            if on == 1 {
                for a in atts {
                    detach_endpoint(&mut t.dp, a).expect("detach");
                }
                t.clear_ct();
            }
            let side = &mut sides[on];
            side.bytes += bytes;
            side.stream_secs += stream_secs;
            side.transactions += n;
            side.transaction_secs += secs;
            side.syn_retransmissions += stalls;
        }
        let [base, on] = sides;
        let (base_tp, on_tp) = (base.throughput(), on.throughput());
        let (base_cr, on_cr) = (base.connection_rate(), on.connection_rate());
        let (base_stalls, on_stalls) = (base.syn_retransmissions, on.syn_retransmissions);
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
            "round {round}: throughput {:.2} Gbit/s without, {:.2} with ({:.1}%); connections {:.0}/s without, {:.0}/s with ({:.1}%); SYN retransmissions {base_stalls} without, {on_stalls} with",
            base_tp * 8e-9,
            on_tp * 8e-9,
            100.0 * on_tp / base_tp,
            base_cr,
            on_cr,
            100.0 * on_cr / base_cr
        );
        stalls += base_stalls + on_stalls;
        rows.push((on_tp / base_tp, on_cr / base_cr));
    }
    // Where the connection-rate difference goes: one more measurement each
    // with the empty program and with ours attached, with the kernel's
    // per-program run-time statistics on (they add two clock reads per run,
    // so they stay off during the rounds above).
    let stats_guard = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enable BPF stats");
    let veths = [client.host_veth(), server.host_veth()];
    for (label, programs) in [
        ("empty program", [program_names::NOOP; 2]),
        ("palisade", [program_names::FROM_POD, program_names::TO_POD]),
    ] {
        let mut links = Vec::new();
        lab.node("n1")
            .run(|| {
                for iface in veths {
                    for (name, hook) in programs
                        .iter()
                        .zip([TcAttachType::Ingress, TcAttachType::Egress])
                    {
                        let id =
                            t.dp.program_mut(name)
                                .expect("program")
                                .attach(iface, hook)
                                .expect("attach");
                        links.push((*name, id));
                    }
                }
            })
            .unwrap();
        let before = program_stats(&t, programs);
        let rate = connection_rate(client.netns(), connect);
        let after = program_stats(&t, programs);
        let rr = request_rate(client.netns(), connect);
        let after_rr = program_stats(&t, programs);
        let (bytes, stream_secs) = stream(client.netns(), stream_addr, SECONDS);
        let after_stream = program_stats(&t, programs);
        for (name, id) in links {
            t.dp.program_mut(name)
                .expect("program")
                .detach(id)
                .expect("detach");
        }
        t.clear_ct();
        let transactions = rate * SECONDS;
        let (runs, ns) = (after.0 - before.0, after.1 - before.1);
        println!(
            "{label}: {transactions:.0} connection transactions ({rate:.0}/s, {:.1} us each): {:.1} runs and {:.2} us of program time per transaction, {:.0} ns per run",
            1e6 / rate,
            runs as f64 / transactions,
            ns as f64 / transactions / 1e3,
            ns as f64 / runs as f64
        );
        let (runs, ns) = (after_rr.0 - after.0, after_rr.1 - after.1);
        println!(
            "{label}: {:.0} request/response transactions on one connection ({rr:.0}/s): {:.1} runs per transaction, {:.0} ns per run",
            rr * SECONDS,
            runs as f64 / (rr * SECONDS),
            ns as f64 / runs as f64
        );
        let (runs, ns) = (after_stream.0 - after_rr.0, after_stream.1 - after_rr.1);
        println!(
            "{label}: one stream at {:.2} Gbit/s: {runs} runs, {:.0} ns per run, program time {:.2}% of the stream's {stream_secs:.1} s",
            bytes * 8e-9 / stream_secs,
            ns as f64 / runs as f64,
            100.0 * ns as f64 / (stream_secs * 1e9)
        );
    }
    drop(stats_guard);

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
    if rows.is_empty() {
        return;
    }
    println!(
        "veth, {rounds} rounds of {SECONDS} s per side and measurement (in {SLICES} interleaved slices), median of per-round ratios: throughput with programs = {:.1}% of without, new-connection rate = {:.1}% of without; {stalls} SYN retransmissions in all",
        100.0 * median(|r| r.0),
        100.0 * median(|r| r.1)
    );
}
