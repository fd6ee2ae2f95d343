//! Puts a model's map contents ([`Contents`]) into the real maps of a
//! [`TestDatapath`] and takes them out again, so that the programs and the
//! model judge the same state. The configuration is the caller's.

use crate::bpf::{TEST_IFINDEX, TestDatapath};
use crate::model::Contents;

/// Writes the endpoint, policy, port sets, tier tables, ipcache and source entries.
pub fn write_contents(t: &mut TestDatapath, c: &Contents) {
    if let Some(ep) = c.endpoint {
        t.set_endpoint(ep);
    }
    for (k, v) in &c.policy {
        t.allow(*k, *v);
    }
    for (id, b) in &c.portsets {
        t.portset(*id, b);
    }
    for (id, table) in &c.tiersets {
        t.tierset(*id, table);
    }
    for (a, v) in &c.exact {
        t.ipcache_exact(*a, *v);
    }
    for (n, id) in &c.prefixes {
        t.ipcache_prefix(*n, *id);
    }
    for n in &c.sources {
        t.allow_source(TEST_IFINDEX, *n);
    }
}

/// Removes what [`write_contents`] wrote (the endpoint stays), every
/// connection, and the pending events.
pub fn erase_contents(t: &mut TestDatapath, c: &Contents) {
    for k in c.policy.keys() {
        t.disallow(k);
    }
    for id in c.tiersets.keys() {
        t.forget_tierset(*id);
    }
    for a in c.exact.keys() {
        t.forget_exact(*a);
    }
    for (n, _) in &c.prefixes {
        t.forget_prefix(*n);
    }
    for n in &c.sources {
        t.forget_source(TEST_IFINDEX, *n);
    }
    t.clear_ct();
    let _ = t.events();
}
