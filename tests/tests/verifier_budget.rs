//! The verifier's work on each datapath program stays inside the kernel's
//! limit of one million processed instructions with a quarter in reserve.
//! The count grows with every branch whose outcome the rest of the program
//! can tell apart, so a small change can push the programs over the limit
//! (they then fail to load anywhere): one conntrack change did, from 0.56
//! to over 1 million, before `barrier` was added. Kernels prune differently,
//! so the reserve is for them too. Run with `--nocapture` to see the
//! counts. Needs root.

use palisade::datapath::{Datapath, DatapathLog, LoadOptions};
use palisade_common::program_names;
use palisade_tests::bpf::TestDatapath;

/// The kernel's limit (BPF_COMPLEXITY_LIMIT_INSNS).
const KERNEL_LIMIT: u32 = 1_000_000;

/// The programs of `dp` the verifier processed more than three quarters
/// of the limit for, printing every count.
fn over_budget(dp: &Datapath, what: &str) -> Vec<String> {
    let mut over = Vec::new();
    for name in [program_names::FROM_POD, program_names::TO_POD] {
        let info = dp
            .program(name)
            .expect("program")
            .info()
            .expect("program info");
        let processed = info
            .verified_instruction_count()
            .expect("kernel reports verified instructions");
        println!("{name} ({what}): the verifier processed {processed} instructions");
        if processed > KERNEL_LIMIT / 4 * 3 {
            over.push(format!("{name} ({what}, {processed})"));
        }
    }
    over
}

#[test]
fn programs_verify_well_inside_the_instruction_limit() {
    let t = TestDatapath::new();
    let mut over = over_budget(&t.dp, "datapath log off");
    // With `--datapath-log debug` the verifier also walks the log records.
    let logging = Datapath::load(&LoadOptions {
        datapath_log: DatapathLog::Debug,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("load datapath with --datapath-log debug: {e}"));
    over.extend(over_budget(&logging, "datapath log debug"));
    assert!(
        over.is_empty(),
        "the verifier processed more than three quarters of the kernel's limit of {KERNEL_LIMIT} instructions for {}",
        over.join(", ")
    );
}
