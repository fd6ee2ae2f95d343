//! `palisade-cni`: the CNI chained plugin. Reads the request from the
//! environment and stdin, prints the result (or CNI error) on stdout; the
//! logic is in `palisade::cni`.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => palisade::cni::run(&|k| std::env::var(k).ok(), &stdin),
        Err(e) => {
            let err = palisade::cni::CniError::Stdin(e);
            palisade::cni::Outcome {
                stdout: serde_json::to_string(&err.to_result("1.0.0")).expect("serializes"),
                stderr: format!("palisade-cni: {err}"),
                success: false,
            }
        }
    };
    if !outcome.stderr.is_empty() {
        eprintln!("{}", outcome.stderr);
    }
    if !outcome.stdout.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", outcome.stdout);
        let _ = out.flush();
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
