//! The per-packet pipeline shared by both directions:
//!
//! ```text
//! plain TCP/UDP of a cached flow? (fastpath) ─► pass
//! parse ─► ARP passes ─► egress: source verified? (source)
//!       ─► neighbour discovery passes ─► FLOW_CACHE hit? ─► later fragment? FRAGS
//!       ─► CT (established / reply) ─► related ICMP error?
//!       ─► ENDPOINTS ─► ipcache ─► isolation ─► POLICY ─► CT create
//! ```
//!
//! Only [`handle`] counts and reports; stages return a [`Verdict`]. Anything
//! unexpected on an isolated pod drops (fail closed); a pod that is not
//! isolated in a direction gets everything in that direction, as Kubernetes
//! specifies, malformed packets included (the kernel drops those itself).

use core::ops::ControlFlow;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::generated::bpf_ktime_get_coarse_ns,
    programs::TcContext,
};
use palisade_common::{
    Addr, Config, DropReason, EndpointInfo, ForwardReason, IpcacheValue, config_flags, ct_flags,
    defaults, direction, endpoint_flags, event_kind, proto, verdict,
};

use crate::{
    CONFIG, ENDPOINTS,
    barrier::{self, Parsed},
    conntrack,
    decision::{self, Decision},
    events, fastpath, flowcache, frags, ipcache,
    packet::{Fragment, Packet, opposite},
    parse::{self, Frame},
    rare,
    source::{self, FrameSource},
    wire::tcp_flags::RST as TCP_RST,
};

/// What happens to the packet.
enum Verdict {
    /// Pass it on.
    Forward(ForwardReason),
    /// Drop it.
    Drop(DropReason),
}

/// What the stages learnt, for counters and events.
struct Facts {
    ep: EndpointInfo,
    pkt: Option<&'static Packet>,
    peer_identity: u32,
    /// The `DropReason` of a would-drop to report although the packet
    /// passes (audit); 0 for none. A number, not an `Option`, so that it can
    /// pass the verifier barrier.
    audit: u8,
    /// `bpf_ktime_get_coarse_ns()` if the pipeline read it (0: not read).
    now: u64,
    /// The tier rule that denied (its `tier_code`), 0 if none did.
    rule_code: u32,
    /// The packet's source failed verification and passes only because
    /// verification is in audit mode: it must not fill the flow cache (see
    /// `source` on why the fast path needs no check of its own).
    unverified: bool,
}

const NO_ENDPOINT: EndpointInfo = EndpointInfo {
    ep_id: 0,
    identity: 0,
    flags: 0,
    _pad: 0,
};
const DEFAULT_CONFIG: Config = Config {
    policy_epoch: 0,
    flags: 0,
    events_per_sec: 0,
    events_burst: 0,
    tcp_syn_timeout_s: 0,
    tcp_established_timeout_s: 0,
    tcp_close_timeout_s: 0,
    udp_timeout_s: 0,
    sctp_timeout_s: 0,
    other_timeout_s: 0,
    frag_timeout_s: 0,
    ipcache_generation: 0,
};

/// Judges one packet crossing the host veth of a pod in `dir` and returns
/// the TC action. Allowed packets return `TC_ACT_UNSPEC` so programs
/// attached after ours (a CNI's own) still run.
#[inline(always)]
pub fn handle(ctx: &TcContext, dir: u8) -> i32 {
    let cfg = match CONFIG.get(0) {
        Some(c) => c,
        None => &DEFAULT_CONFIG,
    };
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let len = ctx.len();
    let fast = fastpath::established(ctx, dir, ifindex, cfg.policy_epoch);
    if fast == fastpath::Outcome::Cached {
        events::count(
            dir,
            verdict::FORWARDED,
            ForwardReason::Established as u8,
            len,
        );
        return TC_ACT_UNSPEC;
    }
    let mut facts = Facts {
        ep: NO_ENDPOINT,
        pkt: None,
        peer_identity: 0,
        audit: 0,
        now: 0,
        rule_code: 0,
        unverified: false,
    };
    // Reasons pass the verifier barrier so that counting and reporting are
    // verified once, not once per reason and path that led here.
    let (ControlFlow::Break(verdict) | ControlFlow::Continue(verdict)) =
        judge(ctx, dir, ifindex, cfg, fast, &mut facts);
    match verdict {
        Verdict::Forward(reason) => {
            events::count(dir, verdict::FORWARDED, barrier::opaque(reason as u8), len);
            if facts.audit != 0 {
                let would = barrier::opaque(facts.audit);
                events::count(dir, verdict::AUDIT, would, len);
                events::count_endpoint(facts.ep.ep_id, dir, verdict::AUDIT, would);
                report(ctx, cfg, event_kind::AUDIT, would, dir, ifindex, &facts);
            }
            TC_ACT_UNSPEC
        }
        Verdict::Drop(reason) => {
            let reason = barrier::opaque(reason as u8);
            events::count(dir, verdict::DROPPED, reason, len);
            events::count_endpoint(facts.ep.ep_id, dir, verdict::DROPPED, reason);
            report(ctx, cfg, event_kind::DROP, reason, dir, ifindex, &facts);
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn report(
    ctx: &TcContext,
    cfg: &Config,
    kind: u8,
    reason: u8,
    dir: u8,
    ifindex: u32,
    facts: &Facts,
) {
    events::report(
        cfg,
        &events::Report {
            kind,
            reason,
            dir,
            ifindex,
            ep: &facts.ep,
            pkt: facts.pkt,
            peer_identity: facts.peer_identity,
            len: ctx.len(),
            now: facts.now,
            rule_code: facts.rule_code,
        },
    );
}

#[inline(always)]
fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The endpoint on `ifindex`; fails closed when there is none (and says
/// so in the datapath log). `pkt`: the packet, if parsed, for the log.
#[inline(always)]
fn endpoint(
    ifindex: u32,
    dir: u8,
    cfg: &Config,
    pkt: Option<&Packet>,
) -> Result<Option<EndpointInfo>, DropReason> {
    match unsafe { ENDPOINTS.get(&ifindex) } {
        Some(ep) => Ok(Some(*ep)),
        None if cfg.flags & config_flags::UNKNOWN_ENDPOINT_PASS != 0 => Ok(None),
        // Fail closed: our program is on the interface but the agent has not
        // (or no longer) described the pod behind it.
        None => {
            rare::note(DropReason::UnknownEndpoint, true, dir, ifindex, pkt);
            Err(DropReason::UnknownEndpoint)
        }
    }
}

/// Verdict for a packet that cannot be judged by policy (malformed,
/// non-IP, unmatched fragment): drop only if the pod is isolated in `dir`.
/// Either way the datapath log says so (`rare`).
#[inline(always)]
fn unjudgeable(
    ifindex: u32,
    dir: u8,
    cfg: &Config,
    facts: &mut Facts,
    reason: DropReason,
    otherwise: ForwardReason,
) -> Verdict {
    let verdict = match endpoint(ifindex, dir, cfg, facts.pkt) {
        // Logged as an unknown endpoint.
        Err(r) => return Verdict::Drop(r),
        Ok(None) => Verdict::Forward(otherwise),
        Ok(Some(ep)) => {
            facts.ep = ep;
            if ep.flags & endpoint_flags::isolated(dir) == 0 {
                Verdict::Forward(otherwise)
            } else if ep.flags & endpoint_flags::audit(dir) != 0 {
                // An unverified source, already reported, says more.
                if facts.audit == 0 {
                    facts.audit = reason as u8;
                }
                Verdict::Forward(ForwardReason::Audited)
            } else {
                Verdict::Drop(reason)
            }
        }
    };
    let dropped = matches!(verdict, Verdict::Drop(_));
    rare::note(reason, dropped, dir, ifindex, facts.pkt);
    verdict
}

/// Whether source verification applies: the pod's egress, unless it is
/// switched off.
#[inline(always)]
fn verifies_source(dir: u8, cfg: &Config) -> bool {
    dir == direction::EGRESS && cfg.flags & config_flags::SOURCE_VERIFY_OFF == 0
}

/// The verdict of source verification when the source is not one the pod
/// may send from (`found` false), else `None` (go on). An interface with
/// no endpoint entry gets what such interfaces always get (fail closed
/// unless configured to pass): the check has no addresses to hold it to.
#[inline(always)]
fn source_verdict(found: bool, ifindex: u32, cfg: &Config, facts: &mut Facts) -> Option<Verdict> {
    if found {
        return None;
    }
    let ep = match endpoint(ifindex, direction::EGRESS, cfg, facts.pkt) {
        Err(r) => return Some(Verdict::Drop(r)),
        Ok(None) => return None,
        Ok(Some(ep)) => ep,
    };
    facts.ep = ep;
    if cfg.flags & config_flags::SOURCE_VERIFY_AUDIT != 0 {
        facts.audit = DropReason::InvalidSource as u8;
        facts.unverified = true;
        return None;
    }
    // Fail closed: a pod whose addresses the agent does not know yet (or
    // no longer) sends from none it may use.
    Some(Verdict::Drop(DropReason::InvalidSource))
}

/// Source verification of a frame whose headers did not parse.
#[inline(always)]
fn verify_frame_source(
    ctx: &TcContext,
    ifindex: u32,
    cfg: &Config,
    facts: &mut Facts,
) -> Option<Verdict> {
    match source::of_frame(ctx) {
        FrameSource::None => None,
        // Fail closed: an IP header we cannot read cannot be verified.
        FrameSource::Unreadable => source_verdict(false, ifindex, cfg, facts),
        FrameSource::Ip(v4, saddr) => {
            source_verdict(source::allowed(v4, &saddr, ifindex), ifindex, cfg, facts)
        }
    }
}

/// Neighbour discovery and MLD pass; on egress only from a link-scoped
/// source or a source the pod may use (see `source`).
#[inline(always)]
fn neighbour(dir: u8, saddr: &Addr, ifindex: u32, cfg: &Config, facts: &mut Facts) -> Verdict {
    if verifies_source(dir, cfg)
        && !source::link_scoped(saddr)
        && let Some(v) = source_verdict(source::allowed(false, saddr, ifindex), ifindex, cfg, facts)
    {
        return v;
    }
    Verdict::Forward(ForwardReason::AlwaysAllowed)
}

/// The stages in order: each either decides the packet's verdict
/// (`Break`) or hands it to the next (`Continue`); the last always decides.
#[inline(always)]
fn judge(
    ctx: &TcContext,
    dir: u8,
    ifindex: u32,
    cfg: &Config,
    fast: fastpath::Outcome,
    facts: &mut Facts,
) -> ControlFlow<Verdict, Verdict> {
    let parsed = ip_packet(ctx, dir, ifindex, cfg, facts)?;
    let pkt: &'static Packet = &parsed.pkt;
    let now = now_ns();
    facts.now = now;
    facts.pkt = Some(pkt);
    verify_source(pkt, dir, ifindex, cfg, facts)?;
    cached(pkt, fast, ifindex, dir, cfg)?;
    later_fragment(pkt, ifindex, dir, now, cfg, facts)?;
    tracked(pkt, ifindex, dir, now, cfg, facts)?;
    related_error(parsed, ifindex, dir, now)?;
    ControlFlow::Continue(new_flow(pkt, ifindex, dir, now, cfg, facts))
}

/// Parses the frame. Frames that are not IP packets are decided here: link
/// control passes, other protocols and headers that do not parse are
/// judged by the pod's isolation alone (after source verification).
#[inline(always)]
fn ip_packet(
    ctx: &TcContext,
    dir: u8,
    ifindex: u32,
    cfg: &Config,
    facts: &mut Facts,
) -> ControlFlow<Verdict, &'static Parsed> {
    let mut parsed = parse::parse(ctx);
    // Headers beyond the linear area (rare): pull them in and parse again.
    if matches!(parsed, Err(DropReason::Truncated)) && parse::pull_headers(ctx) {
        parsed = parse::parse(ctx);
    }
    let verdict = match parsed {
        Ok(Frame::Ip(p)) => match barrier::forget(&p, parse::icmp_error_inner(ctx, &p)) {
            Some(parsed) => return ControlFlow::Continue(parsed),
            // Cannot happen (see `barrier::forget`). Fail closed.
            None => Verdict::Drop(DropReason::Internal),
        },
        Ok(Frame::Control) => Verdict::Forward(ForwardReason::AlwaysAllowed),
        Ok(Frame::Neighbour(saddr)) => neighbour(dir, &saddr, ifindex, cfg, facts),
        Ok(Frame::OtherL3) => unjudgeable(
            ifindex,
            dir,
            cfg,
            facts,
            DropReason::UnsupportedL3,
            ForwardReason::AlwaysAllowed,
        ),
        Err(reason) => {
            if verifies_source(dir, cfg)
                && let Some(v) = verify_frame_source(ctx, ifindex, cfg, facts)
            {
                v
            } else {
                unjudgeable(ifindex, dir, cfg, facts, reason, ForwardReason::NotIsolated)
            }
        }
    };
    ControlFlow::Break(verdict)
}

/// Source verification, before the flow cache, fragments, conntrack and
/// policy: a packet from an address its pod may not use matches none of
/// their state.
#[inline(always)]
fn verify_source(
    pkt: &Packet,
    dir: u8,
    ifindex: u32,
    cfg: &Config,
    facts: &mut Facts,
) -> ControlFlow<Verdict> {
    if verifies_source(dir, cfg)
        && let Some(v) = source_verdict(
            source::allowed(pkt.is_v4(), &pkt.saddr, ifindex),
            ifindex,
            cfg,
            facts,
        )
    {
        return ControlFlow::Break(v);
    }
    ControlFlow::Continue(())
}

/// A packet of a cached established flow that leaves its conntrack entry
/// unchanged (plain packets already asked in the fast path).
#[inline(always)]
fn cached(
    pkt: &Packet,
    fast: fastpath::Outcome,
    ifindex: u32,
    dir: u8,
    cfg: &Config,
) -> ControlFlow<Verdict> {
    if fast == fastpath::Outcome::NotPlain
        && pkt.fragment == Fragment::None
        && flowcache::hit(pkt, ifindex, dir, cfg.policy_epoch)
    {
        return ControlFlow::Break(Verdict::Forward(ForwardReason::Established));
    }
    ControlFlow::Continue(())
}

/// A later fragment follows its first fragment's verdict; without one it
/// cannot be judged.
#[inline(always)]
fn later_fragment(
    pkt: &Packet,
    ifindex: u32,
    dir: u8,
    now: u64,
    cfg: &Config,
    facts: &mut Facts,
) -> ControlFlow<Verdict> {
    if pkt.fragment != Fragment::Later {
        return ControlFlow::Continue(());
    }
    if frags::lookup(pkt, ifindex, dir, now).is_some() {
        return ControlFlow::Break(Verdict::Forward(ForwardReason::Fragment));
    }
    ControlFlow::Break(unjudgeable(
        ifindex,
        dir,
        cfg,
        facts,
        DropReason::FragmentNoState,
        ForwardReason::NotIsolated,
    ))
}

/// A packet its conntrack entry exempts from policy (see `conntrack` for
/// which do not match), judged again first when `revalidate` says so.
#[inline(always)]
fn tracked(
    pkt: &Packet,
    ifindex: u32,
    dir: u8,
    now: u64,
    cfg: &Config,
    facts: &mut Facts,
) -> ControlFlow<Verdict> {
    let Some(hit) = conntrack::lookup(pkt, ifindex, dir, now) else {
        return ControlFlow::Continue(());
    };
    let entry = unsafe { &mut *hit.value };
    if let Err(reason) = revalidate(entry, pkt, hit.reply, ifindex, dir, cfg, facts) {
        return ControlFlow::Break(Verdict::Drop(reason));
    }
    conntrack::update(entry, pkt, hit.reply, now, cfg);
    if pkt.fragment == Fragment::First {
        remember_fragment(pkt, ifindex, dir, now, cfg);
    } else if !facts.unverified {
        flowcache::remember(pkt, ifindex, dir, entry, now, cfg);
    }
    ControlFlow::Break(Verdict::Forward(ForwardReason::Established))
}

/// An ICMP error about a tracked connection: the quoted packet travelled
/// the other way, as the opener or as a reply.
#[inline(always)]
fn related_error(parsed: &Parsed, ifindex: u32, dir: u8, now: u64) -> ControlFlow<Verdict> {
    if let Some(inner) = parsed.inner()
        && conntrack::related(inner, ifindex, opposite(dir), now)
    {
        return ControlFlow::Break(Verdict::Forward(ForwardReason::Established));
    }
    ControlFlow::Continue(())
}

/// The peer's identities, recorded for the report; `None` cannot happen
/// (see `ipcache::lookup`) and callers fail closed.
#[inline(always)]
fn peer_of(pkt: &Packet, addr: &Addr, cfg: &Config, facts: &mut Facts) -> Option<IpcacheValue> {
    let peer = ipcache::lookup(pkt.is_v4(), addr, cfg)?;
    facts.peer_identity = peer.identity;
    Some(peer)
}

/// A packet no state exempts: judged by policy as the first packet of a
/// flow and, if it passes, tracked.
#[inline(always)]
fn new_flow(
    pkt: &Packet,
    ifindex: u32,
    dir: u8,
    now: u64,
    cfg: &Config,
    facts: &mut Facts,
) -> Verdict {
    let ep = match endpoint(ifindex, dir, cfg, facts.pkt) {
        Err(r) => return Verdict::Drop(r),
        Ok(None) => return Verdict::Forward(ForwardReason::NotIsolated),
        Ok(Some(ep)) => ep,
    };
    facts.ep = ep;
    // Fail closed (see `peer_of`).
    let Some(peer) = peer_of(pkt, pkt.peer_addr(dir), cfg, facts) else {
        return Verdict::Drop(DropReason::Internal);
    };
    let mut ct_extra = 0u16;
    let reason = match decision::decide(&ep, dir, &peer, pkt.proto, pkt.policy_port(), cfg, true) {
        Decision::Pending => {
            rare::note(DropReason::PolicyPending, true, dir, ifindex, Some(pkt));
            return Verdict::Drop(DropReason::PolicyPending);
        }
        Decision::Denied {
            audit: false,
            reason,
            rule,
        } => {
            facts.rule_code = rule;
            return Verdict::Drop(reason);
        }
        Decision::Denied {
            audit: true,
            reason,
            rule,
        } => {
            // An unverified source, already reported, says more.
            if facts.audit == 0 {
                facts.audit = reason as u8;
                facts.rule_code = rule;
            }
            ct_extra = ct_flags::AUDITED;
            ForwardReason::Audited
        }
        Decision::Host => ForwardReason::Host,
        Decision::Allowed { view } => {
            report_view(view, facts);
            ForwardReason::PolicyAllowed
        }
        Decision::NotIsolated { view } => {
            report_view(view, facts);
            ForwardReason::NotIsolated
        }
    };

    // Neither a RST nor an ICMP error opens a flow: one passed by policy
    // leaves no state (a spoofed one cannot open a way back in).
    let created =
        if (pkt.proto == proto::TCP && pkt.l4_flags & TCP_RST != 0) || parse::is_icmp_error(pkt) {
            None
        } else {
            conntrack::create(pkt, ifindex, dir, now, cfg, peer.identity, ct_extra)
        };
    if pkt.fragment == Fragment::First {
        remember_fragment(pkt, ifindex, dir, now, cfg);
    } else if let Some(entry) = created
        && !facts.unverified
    {
        // Clears the slot: a new entry is unanswered, so the flow's next
        // packets this way are judged by policy until the other end answers,
        // and the answer reaches the entry.
        flowcache::remember(pkt, ifindex, dir, &entry, now, cfg);
        flowcache::forget_answer(pkt, ifindex, dir);
    }
    Verdict::Forward(reason)
}

/// Policies in audit mode would deny a flow policy lets through: report
/// it (an unverified source, already reported, says more). Either way the
/// verifier goes on from one state: what is reported and its rule pass
/// the barrier (`barrier`).
#[inline(always)]
fn report_view(view: decision::ViewDenied, facts: &mut Facts) {
    let (audit, rule) = if view.denied && facts.audit == 0 {
        (view.reason as u8, view.rule)
    } else {
        (facts.audit, facts.rule_code)
    };
    let both = barrier::opaque64((audit as u64) << 32 | rule as u64);
    facts.audit = (both >> 32) as u8;
    facts.rule_code = both as u32;
}

#[inline(always)]
fn remember_fragment(pkt: &Packet, ifindex: u32, dir: u8, now: u64, cfg: &Config) {
    let secs = if cfg.frag_timeout_s == 0 {
        defaults::FRAG_TIMEOUT_S
    } else {
        cfg.frag_timeout_s
    };
    frags::remember(pkt, ifindex, dir, now, secs as u64 * 1_000_000_000);
}

/// Re-judges a tracked connection when policy changed since it was judged
/// (only with `CT_REVALIDATE`) or when it was let through by audit mode
/// that has since ended. A connection policy no longer allows is removed
/// and its packet dropped, unless the endpoint audits that direction (then
/// it passes, reported as a would-be revocation).
#[inline(always)]
fn revalidate(
    entry: &mut palisade_common::CtValue,
    pkt: &Packet,
    reply: bool,
    ifindex: u32,
    dir: u8,
    cfg: &Config,
    facts: &mut Facts,
) -> Result<(), DropReason> {
    let audited = entry.flags & ct_flags::AUDITED != 0;
    let stale = cfg.flags & config_flags::CT_REVALIDATE != 0 && entry.epoch != cfg.policy_epoch;
    if !audited && !stale {
        return Ok(());
    }
    // The opener's direction, and the peer and destination port as the
    // opener's packet carried them.
    let orig_dir = if reply { opposite(dir) } else { dir };
    let ep = match endpoint(ifindex, dir, cfg, facts.pkt)? {
        Some(ep) => ep,
        None => return Ok(()),
    };
    facts.ep = ep;
    if audited && ep.flags & endpoint_flags::audit(orig_dir) != 0 {
        return Ok(());
    }
    // For a reply the peer is on the same side of the packet as for the
    // opener in the other direction: ingress opener's peer = reply's daddr.
    let peer_addr = if reply {
        pkt.peer_addr(dir)
    } else {
        pkt.peer_addr(orig_dir)
    };
    let orig_port = if !proto::has_ports(pkt.proto) {
        0
    } else if reply {
        pkt.sport
    } else {
        pkt.dport
    };
    // Fail closed (see `peer_of`).
    let peer = peer_of(pkt, peer_addr, cfg, facts).ok_or(DropReason::Internal)?;
    // A policy-pending endpoint allows nothing (fail closed).
    let allowed = match decision::decide(&ep, orig_dir, &peer, pkt.proto, orig_port, cfg, false) {
        Decision::NotIsolated { .. } | Decision::Host | Decision::Allowed { .. } => true,
        Decision::Pending | Decision::Denied { .. } => false,
    };
    if allowed {
        entry.epoch = cfg.policy_epoch;
        entry.flags &= !ct_flags::AUDITED;
        return Ok(());
    }
    if ep.flags & endpoint_flags::audit(orig_dir) != 0 {
        // Audit mode never drops: report the revocation it would make and
        // judge the flow again once audit mode ends.
        entry.epoch = cfg.policy_epoch;
        entry.flags |= ct_flags::AUDITED;
        facts.audit = DropReason::PolicyRevoked as u8;
        return Ok(());
    }
    conntrack::remove(pkt, ifindex, dir);
    Err(DropReason::PolicyRevoked)
}
