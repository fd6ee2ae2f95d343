//! The agent's answer to `palisade graph --live`: the graph of the scope
//! computed from the agent's own compiler model (the computation the
//! offline graph uses, `palisade_analysis::graph`), with the live overlay:
//! the hub's recent drops over the window asked for, and the live
//! connections of the conntrack maps.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_analysis::graph::{self, Observed, SeenDrop, SeenFlow};
use palisade_common::{CtValue, DropReason, addr_to_bytes, ct_flags};
use tracing::warn;

use super::Agent;
use crate::control::{GraphRequest, Response};
use crate::monitor::aggregate::DEFAULT_WINDOW_SECONDS;

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the conntrack entries'
/// deadlines (`bpf_ktime_get_coarse_ns`).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The connection an entry tracks, as its opener sent it, if it is live
/// (not expired, not an audit-mode entry).
fn flow(
    (lo, hi): (IpAddr, IpAddr),
    (port_lo, port_hi): (u16, u16),
    protocol: u8,
    v: &CtValue,
    now: u64,
) -> Option<SeenFlow> {
    if v.expires_ns <= now || v.flags & ct_flags::AUDITED != 0 {
        return None;
    }
    let (src, dst, port) = if v.flags & ct_flags::OPENED_HI_TO_LO != 0 {
        (hi, lo, port_lo)
    } else {
        (lo, hi, port_hi)
    };
    let port = if palisade_common::proto::has_ports(protocol) {
        port
    } else {
        0
    };
    Some(SeenFlow {
        src,
        dst,
        protocol,
        port,
    })
}

impl Agent {
    /// The live connections of both conntrack maps (each connection once,
    /// though a connection between two local pods has an entry per pod).
    fn live_flows(&self) -> Vec<SeenFlow> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        let v4 = |w: u32| IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()));
        for r in self.dp.maps.ct_v4.iter() {
            match r {
                Ok((k, v)) => out.extend(flow(
                    (v4(k.addr_lo), v4(k.addr_hi)),
                    (k.port_lo, k.port_hi),
                    k.proto,
                    &v,
                    now,
                )),
                Err(error) => {
                    warn!(%error, "reading CT_V4 for graph --live");
                    break;
                }
            }
        }
        let v6 = |a| IpAddr::V6(Ipv6Addr::from(addr_to_bytes(a)));
        for r in self.dp.maps.ct_v6.iter() {
            match r {
                Ok((k, v)) => out.extend(flow(
                    (v6(k.addr_lo), v6(k.addr_hi)),
                    (k.port_lo, k.port_hi),
                    k.proto,
                    &v,
                    now,
                )),
                Err(error) => {
                    warn!(%error, "reading CT_V6 for graph --live");
                    break;
                }
            }
        }
        out.sort_by_key(|f| (f.src, f.dst, f.protocol, f.port));
        out.dedup();
        out
    }

    /// What the agent saw over `window` seconds.
    fn observed(&self, window: u64) -> Observed {
        let counts = self.obs.hub.drop_counts(window);
        let partial = counts.partial();
        Observed {
            window_seconds: counts.window_seconds,
            drops: counts
                .drops
                .into_iter()
                .map(|(k, count)| SeenDrop {
                    src: k.src,
                    dst: k.dst,
                    protocol: k.protocol,
                    port: k.port,
                    cause: DropReason::from_u8(k.reason)
                        .map_or_else(|| format!("reason-{}", k.reason), |r| r.as_str().into()),
                    count,
                })
                .collect(),
            flows: self.live_flows(),
            partial,
        }
    }

    /// `graph`: the scope's graph with the live overlay, as JSON.
    pub(super) fn graph_answer(&self, req: &GraphRequest) -> Response {
        let scope = match req.scope() {
            Ok(s) => s,
            Err(e) => return Response::error(e),
        };
        let observed = self.observed(req.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS));
        let rejected = self
            .compiler
            .rejections()
            .values()
            .map(ToString::to_string)
            .collect();
        match graph::compute_observed(&self.compiler, &scope, rejected, Some(&observed)) {
            Ok(g) => match serde_json::to_value(&g) {
                Ok(v) => Self::data(v),
                Err(e) => Response::error(e.to_string()),
            },
            Err(e) => Response::error(e.to_string()),
        }
    }
}
