//! Attaches the two programs to a pod's host-side interface: `from_pod` on
//! TC ingress (the pod's egress) and `to_pod` on TC egress (the pod's
//! ingress). TCX links where the kernel has them (6.6+), clsact otherwise.
//!
//! With a link pin directory, each TCX link is pinned as
//! `<dir>/<iface>_<program>`; the attachment then outlives the agent, and a
//! restarted agent swaps its freshly loaded program into the existing link
//! atomically (`attach_to_link`), so no packet ever crosses an interface
//! without a program. Our links go first in the TCX chain and allowed
//! packets return "next", so a CNI's own programs still run after ours.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aya::{
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, PinnedLink},
        tc::{NlOptions, SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
    },
    util::KernelVersion,
};
use palisade_common::program_names;
use tracing::instrument;

use super::{Datapath, DatapathError};

/// How programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX links (kernel 6.6+).
    Tcx,
    /// A clsact qdisc with direct-action filters.
    Clsact,
}

impl AttachMode {
    /// The best mode this kernel supports.
    pub fn detect() -> AttachMode {
        match KernelVersion::current() {
            Ok(v) if v >= KernelVersion::new(6, 6, 0) => AttachMode::Tcx,
            _ => AttachMode::Clsact,
        }
    }
}

enum Handle {
    /// Owned by the loaded program; detached when it is dropped.
    Owned {
        program: &'static str,
        id: SchedClassifierLinkId,
    },
    /// Pinned on bpffs; detached when the pin is removed.
    Pinned(PathBuf),
}

/// The programs attached to one interface.
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// How they are attached.
    pub mode: AttachMode,
    handles: Vec<Handle>,
}

impl Attachment {
    /// Pin paths of the links (empty when not pinned).
    pub fn pins(&self) -> Vec<&Path> {
        self.handles
            .iter()
            .filter_map(|h| match h {
                Handle::Pinned(p) => Some(p.as_path()),
                Handle::Owned { .. } => None,
            })
            .collect()
    }
}

const HOOKS: [(&str, TcAttachType, &str); 2] = [
    (program_names::FROM_POD, TcAttachType::Ingress, "from_pod"),
    (program_names::TO_POD, TcAttachType::Egress, "to_pod"),
];

/// Attaches both programs to `iface` (in the calling thread's network
/// namespace). With `link_pin_dir`, TCX links are pinned (and an existing
/// pinned link for the interface is updated in place).
#[instrument(skip_all, fields(iface = %iface))]
pub fn attach_endpoint(
    dp: &mut Datapath,
    iface: &str,
    mode: AttachMode,
    link_pin_dir: Option<&Path>,
) -> Result<Attachment, DatapathError> {
    let mut handles = Vec::new();
    if mode == AttachMode::Clsact
        && let Err(e) = aya::programs::tc::qdisc_add_clsact(iface)
    {
        // An existing clsact qdisc is fine.
        let exists = matches!(&e, aya::programs::tc::TcError::IoError(io)
            if io.kind() == std::io::ErrorKind::AlreadyExists)
            || e.to_string().contains("exists");
        if !exists {
            return Err(DatapathError::Attach {
                iface: iface.into(),
                what: "add clsact qdisc",
                source: e.into(),
            });
        }
    }
    for (program, hook, suffix) in HOOKS {
        let prog = dp.program_mut(program)?;
        let err = |what, source| DatapathError::Attach {
            iface: iface.into(),
            what,
            source,
        };
        match (mode, link_pin_dir) {
            (AttachMode::Tcx, Some(dir)) => {
                let path = link_pin(dir, iface, suffix);
                handles.push(Handle::Pinned(attach_pinned(prog, iface, hook, &path)?));
            }
            (AttachMode::Tcx, None) => {
                let id = prog
                    .attach_with_options(iface, hook, TcAttachOptions::TcxOrder(LinkOrder::first()))
                    .map_err(|e| err("attach", e))?;
                handles.push(Handle::Owned { program, id });
            }
            (AttachMode::Clsact, _) => {
                let id = prog
                    .attach_with_options(
                        iface,
                        hook,
                        TcAttachOptions::Netlink(NlOptions {
                            priority: 1,
                            ..Default::default()
                        }),
                    )
                    .map_err(|e| err("attach", e))?;
                handles.push(Handle::Owned { program, id });
            }
        }
    }
    Ok(Attachment {
        iface: iface.into(),
        mode,
        handles,
    })
}

fn attach_pinned(
    prog: &mut SchedClassifier,
    iface: &str,
    hook: TcAttachType,
    path: &Path,
) -> Result<PathBuf, DatapathError> {
    let err = |what, source| DatapathError::Attach {
        iface: iface.into(),
        what,
        source,
    };
    let pin_err = |message: String| DatapathError::LinkPin {
        path: path.into(),
        message,
    };
    let id = match PinnedLink::from_pin(path) {
        Ok(existing) => {
            // Keep the link alive through our fd while its pin is replaced.
            let fd = existing
                .unpin()
                .map_err(|e| pin_err(format!("unpin: {e}")))?;
            let link = SchedClassifierLink::try_from(fd)
                .map_err(|e| pin_err(format!("not a TC link: {e}")))?;
            prog.attach_to_link(link)
                .map_err(|e| err("replace program in pinned link", e))?
        }
        Err(_) => prog
            .attach_with_options(iface, hook, TcAttachOptions::TcxOrder(LinkOrder::first()))
            .map_err(|e| err("attach", e))?,
    };
    let link = prog.take_link(id).map_err(|e| err("take link", e))?;
    let fd: FdLink = link
        .try_into()
        .map_err(|e| pin_err(format!("not an fd link: {e}")))?;
    fd.pin(path).map_err(|e| pin_err(format!("pin: {e}")))?;
    Ok(path.to_path_buf())
}

/// Where the link of hook `suffix` on interface `iface` is pinned: the one
/// spelling of link pin names.
fn link_pin(dir: &Path, iface: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{iface}_{suffix}"))
}

/// Removes the link pins of interface `iface` in `dir` (detaching its
/// programs); a pin that is not there is fine.
pub fn remove_link_pins(dir: &Path, iface: &str) {
    for (_, _, suffix) in HOOKS {
        let p = link_pin(dir, iface, suffix);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(pin = %p.display(), error = %e, "cannot remove link pin");
        }
    }
}

/// Interface names that have link pins in `dir`.
pub fn pinned_interfaces(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            HOOKS
                .iter()
                .find_map(|(_, _, suffix)| n.strip_suffix(suffix)?.strip_suffix('_'))
                .map(str::to_string)
        })
        .collect()
}

/// Detaches what [`attach_endpoint`] attached.
#[instrument(skip_all, fields(iface = %att.iface))]
pub fn detach_endpoint(dp: &mut Datapath, att: Attachment) -> Result<(), DatapathError> {
    for h in att.handles {
        match h {
            Handle::Owned { program, id } => {
                dp.program_mut(program)?
                    .detach(id)
                    .map_err(|source| DatapathError::Attach {
                        iface: att.iface.clone(),
                        what: "detach",
                        source,
                    })?;
            }
            Handle::Pinned(path) => {
                std::fs::remove_file(&path).map_err(|e| DatapathError::LinkPin {
                    path: path.clone(),
                    message: format!("remove: {e}"),
                })?;
            }
        }
    }
    Ok(())
}
