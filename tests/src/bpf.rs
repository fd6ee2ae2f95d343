//! Runs the real datapath programs through BPF_PROG_TEST_RUN on crafted
//! frames, with helpers to fill its maps and read back events and counters.
//!
//! BPF_PROG_TEST_RUN runs on the loopback device of the calling thread's
//! network namespace, so the endpoint under test is keyed by ifindex 1.

use std::net::IpAddr;

use aya::{
    maps::lpm_trie::Key,
    programs::{TestRun, TestRunOptions},
};
use ipnet::IpNet;
use palisade::datapath::{Datapath, DatapathLog, LoadOptions};
use palisade_common::{
    Config, Counter, DropEvent, EndpointInfo, IpcacheValue, PolicyKey, PolicyValue, PortBitmap,
    SOURCE_ALLOWED, SourceKey4, SourceKey6, TierTable, direction, metrics_index, program_names,
};

/// The ifindex BPF_PROG_TEST_RUN reports (loopback).
pub const TEST_IFINDEX: u32 = 1;

/// What the program did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `TC_ACT_UNSPEC`: passed on.
    Pass,
    /// `TC_ACT_SHOT`.
    Drop,
}

/// A loaded datapath with small maps, driven by BPF_PROG_TEST_RUN.
///
/// Like the agent, it bumps `Config::ipcache_generation` after every
/// ipcache write, so the datapath's per-CPU cache of resolved addresses
/// never answers from before the write.
pub struct TestDatapath {
    /// The datapath.
    pub dp: Datapath,
    /// The configuration last written (with the current generation).
    config: Config,
}

impl Default for TestDatapath {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDatapath {
    /// Loads a private (unpinned) datapath with small capacities.
    pub fn new() -> Self {
        let dp = Datapath::load(&LoadOptions {
            ct_entries: Some(16_384),
            policy_entries: Some(200_000),
            ipcache_exact_entries: Some(16_384),
            ipcache_lpm_entries: Some(65_536),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("load datapath: {e}"));
        TestDatapath {
            dp,
            config: Config::default(),
        }
    }

    /// [`TestDatapath::new`], with the programs writing the datapath log
    /// records `log` asks for (nobody reads them: the ring fills, then
    /// records are counted as having had no room).
    pub fn with_datapath_log(log: DatapathLog) -> Self {
        let dp = Datapath::load(&LoadOptions {
            ct_entries: Some(16_384),
            policy_entries: Some(200_000),
            ipcache_exact_entries: Some(16_384),
            ipcache_lpm_entries: Some(65_536),
            datapath_log: log,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("load datapath: {e}"));
        TestDatapath {
            dp,
            config: Config::default(),
        }
    }

    /// Loads a private (unpinned) datapath with the agent's default
    /// capacities, for benchmarks whose flows would overflow the small
    /// test maps (and so measure LRU eviction).
    pub fn with_default_capacities() -> Self {
        let dp = Datapath::load(&LoadOptions::default())
            .unwrap_or_else(|e| panic!("load datapath: {e}"));
        TestDatapath {
            dp,
            config: Config::default(),
        }
    }

    /// Runs the program for `dir` once on `frame`.
    pub fn run(&self, dir: u8, frame: &[u8]) -> Action {
        let r = self.run_n(dir, frame, 1);
        match r.0 {
            u32::MAX => Action::Pass,
            2 => Action::Drop,
            other => panic!("unexpected TC action {other}"),
        }
    }

    /// Runs the program for `dir` once on `frame`; `None` when the kernel
    /// refuses the frame itself (too short for BPF_PROG_TEST_RUN to build
    /// an skb from), which no interface would deliver either.
    pub fn try_run(&self, dir: u8, frame: &[u8]) -> Option<Action> {
        let name = if dir == direction::INGRESS {
            program_names::TO_POD
        } else {
            program_names::FROM_POD
        };
        let prog = self.dp.program(name).unwrap_or_else(|e| panic!("{e}"));
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        };
        match prog.test_run(opts).ok()?.return_value {
            u32::MAX => Some(Action::Pass),
            2 => Some(Action::Drop),
            other => panic!("unexpected TC action {other}"),
        }
    }

    /// Runs the program `repeat` times; returns (return value, ns per run).
    pub fn run_n(&self, dir: u8, frame: &[u8], repeat: u32) -> (u32, f64) {
        let name = if dir == direction::INGRESS {
            program_names::TO_POD
        } else {
            program_names::FROM_POD
        };
        self.run_program(name, frame, repeat)
    }

    /// Runs any program of the object.
    pub fn run_program(&self, name: &'static str, frame: &[u8], repeat: u32) -> (u32, f64) {
        let prog = self.dp.program(name).unwrap_or_else(|e| panic!("{e}"));
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        };
        let r = prog
            .test_run(opts)
            .unwrap_or_else(|e| panic!("test_run {name} on {} bytes: {e:?}", frame.len()));
        (r.return_value, r.duration.as_nanos() as f64)
    }

    /// Sets the endpoint under test.
    pub fn set_endpoint(&mut self, ep: EndpointInfo) {
        self.dp.maps.endpoints.insert(TEST_IFINDEX, ep, 0).unwrap();
    }

    /// Removes the endpoint under test.
    pub fn remove_endpoint(&mut self) {
        let _ = self.dp.maps.endpoints.remove(&TEST_IFINDEX);
    }

    /// Writes the configuration (keeping the current ipcache generation,
    /// whatever `cfg` says).
    pub fn set_config(&mut self, cfg: Config) {
        self.config = Config {
            ipcache_generation: self.config.ipcache_generation,
            ..cfg
        };
        self.dp.maps.set_config(&self.config).unwrap();
    }

    /// Writes the configuration exactly as given, ipcache generation
    /// included (to test what the generation does).
    pub fn set_config_raw(&mut self, cfg: Config) {
        self.config = cfg;
        self.dp.maps.set_config(&cfg).unwrap();
    }

    /// The configuration last written.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Bumps the ipcache generation after ipcache writes.
    fn publish_ipcache(&mut self) {
        self.config.ipcache_generation = self.config.ipcache_generation.wrapping_add(1);
        self.dp.maps.set_config(&self.config).unwrap();
    }

    /// Adds a policy entry.
    pub fn allow(&mut self, key: PolicyKey, value: PolicyValue) {
        self.dp.maps.policy.insert(key, value, 0).unwrap();
    }

    /// Removes a policy entry.
    pub fn disallow(&mut self, key: &PolicyKey) {
        self.dp.maps.policy.remove(key).unwrap();
    }

    /// Adds a port bitmap.
    pub fn portset(&mut self, id: u32, bitmap: &PortBitmap) {
        self.dp.maps.portsets.insert(id, bitmap, 0).unwrap();
    }

    /// Adds a tier segment table.
    pub fn tierset(&mut self, id: u32, table: &TierTable) {
        self.dp.maps.tiersets.insert(id, table, 0).unwrap();
    }

    /// Removes a tier segment table.
    pub fn forget_tierset(&mut self, id: u32) {
        self.dp.maps.tiersets.remove(&id).unwrap();
    }

    /// Maps a single address to identities.
    pub fn ipcache_exact(&mut self, addr: IpAddr, v: IpcacheValue) {
        match addr {
            IpAddr::V4(a) => self
                .dp
                .maps
                .ipcache_exact4
                .insert(a.octets(), v, 0)
                .unwrap(),
            IpAddr::V6(a) => self
                .dp
                .maps
                .ipcache_exact6
                .insert(a.octets(), v, 0)
                .unwrap(),
        }
        self.publish_ipcache();
    }

    /// Maps a prefix to a region identity.
    pub fn ipcache_prefix(&mut self, net: IpNet, identity: u32) {
        let v = IpcacheValue {
            identity,
            cidr_identity: identity,
        };
        match net {
            IpNet::V4(n) => self
                .dp
                .maps
                .ipcache_v4
                .insert(
                    &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                    v,
                    0,
                )
                .unwrap(),
            IpNet::V6(n) => self
                .dp
                .maps
                .ipcache_v6
                .insert(
                    &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                    v,
                    0,
                )
                .unwrap(),
        }
        self.publish_ipcache();
    }

    /// Lets the pod on `ifindex` send from `net` (`SOURCES_V4/V6`), as the
    /// agent does for a pod's own addresses and its namespace's prefixes.
    pub fn allow_source(&mut self, ifindex: u32, net: IpNet) {
        let len = 32 + u32::from(net.prefix_len());
        match net.trunc() {
            IpNet::V4(n) => self
                .dp
                .maps
                .sources_v4
                .insert(
                    &Key::new(
                        len,
                        SourceKey4 {
                            ifindex,
                            addr: n.network().octets(),
                        },
                    ),
                    SOURCE_ALLOWED,
                    0,
                )
                .unwrap(),
            IpNet::V6(n) => self
                .dp
                .maps
                .sources_v6
                .insert(
                    &Key::new(
                        len,
                        SourceKey6 {
                            ifindex,
                            addr: n.network().octets(),
                        },
                    ),
                    SOURCE_ALLOWED,
                    0,
                )
                .unwrap(),
        }
    }

    /// Takes `net` away from the pod on `ifindex`.
    pub fn forget_source(&mut self, ifindex: u32, net: IpNet) {
        let len = 32 + u32::from(net.prefix_len());
        let _ = match net.trunc() {
            IpNet::V4(n) => self.dp.maps.sources_v4.remove(&Key::new(
                len,
                SourceKey4 {
                    ifindex,
                    addr: n.network().octets(),
                },
            )),
            IpNet::V6(n) => self.dp.maps.sources_v6.remove(&Key::new(
                len,
                SourceKey6 {
                    ifindex,
                    addr: n.network().octets(),
                },
            )),
        };
    }

    /// Removes a single address from the ipcache.
    pub fn forget_exact(&mut self, addr: IpAddr) {
        let _ = match addr {
            IpAddr::V4(a) => self.dp.maps.ipcache_exact4.remove(&a.octets()),
            IpAddr::V6(a) => self.dp.maps.ipcache_exact6.remove(&a.octets()),
        };
        self.publish_ipcache();
    }

    /// Removes a prefix from the ipcache.
    pub fn forget_prefix(&mut self, net: IpNet) {
        let _ = match net {
            IpNet::V4(n) => self
                .dp
                .maps
                .ipcache_v4
                .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets())),
            IpNet::V6(n) => self
                .dp
                .maps
                .ipcache_v6
                .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets())),
        };
        self.publish_ipcache();
    }

    /// Empties connection tracking and fragment state.
    pub fn clear_ct(&mut self) {
        self.remove_ct_and_frags();
        self.dp.maps.clear_flow_cache().unwrap();
    }

    /// Forgets every flow cheaply, for runs of millions of first packets:
    /// removes connection-tracking and fragment entries (few) and moves the
    /// policy epoch on, which makes every flow-cache slot stale without
    /// rewriting the cache.
    pub fn forget_flows(&mut self) {
        self.remove_ct_and_frags();
        self.config.policy_epoch = self.config.policy_epoch.wrapping_add(1);
        self.dp.maps.set_config(&self.config).unwrap();
    }

    fn remove_ct_and_frags(&mut self) {
        let maps = &mut self.dp.maps;
        for k in maps.ct_v4.keys().filter_map(Result::ok).collect::<Vec<_>>() {
            let _ = maps.ct_v4.remove(&k);
        }
        for k in maps.ct_v6.keys().filter_map(Result::ok).collect::<Vec<_>>() {
            let _ = maps.ct_v6.remove(&k);
        }
        for k in maps.frags.keys().filter_map(Result::ok).collect::<Vec<_>>() {
            let _ = maps.frags.remove(&k);
        }
    }

    /// Number of live connection-tracking entries.
    pub fn ct_len(&self) -> usize {
        self.dp.maps.ct_v4.keys().count() + self.dp.maps.ct_v6.keys().count()
    }

    /// Drains the event ring.
    pub fn events(&mut self) -> Vec<DropEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.dp.maps.events.next() {
            assert_eq!(item.len(), size_of::<DropEvent>(), "event record size");
            // SAFETY: the record is a DropEvent written by the datapath.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropEvent>()) });
        }
        out
    }

    /// A counter slot summed over CPUs.
    pub fn counter(&self, dir: u8, verdict: u8, reason: u8) -> Counter {
        self.dp
            .maps
            .counter(metrics_index(dir, verdict, reason))
            .unwrap()
    }
}
