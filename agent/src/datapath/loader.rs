//! Loads the embedded object: sizes maps, pins them (when asked) so a
//! restarted or upgraded agent reuses them with their contents, and loads
//! the three programs into the kernel.

use std::path::{Path, PathBuf};

use aya::{Ebpf, EbpfLoader, programs::SchedClassifier};
use palisade_common::{map_names, program_names};

use super::{DatapathError, DatapathLog, DatapathLogger, Maps, OBJECT};

/// Every map in the object, for pinning.
const ALL_MAPS: [&str; 19] = [
    map_names::ENDPOINTS,
    map_names::POLICY,
    map_names::PORTSETS,
    map_names::TIERSETS,
    map_names::IPCACHE_EXACT4,
    map_names::IPCACHE_EXACT6,
    map_names::IPCACHE_V4,
    map_names::IPCACHE_V6,
    map_names::SOURCES_V4,
    map_names::SOURCES_V6,
    map_names::CT_V4,
    map_names::CT_V6,
    map_names::FRAGS,
    map_names::CONFIG,
    map_names::METRICS,
    map_names::EP_DROPS,
    map_names::EVENT_STATS,
    map_names::EVENT_RATE,
    map_names::EVENTS,
];

/// How to load the datapath.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Pin every map as `<pin_dir>/<MAP>` (on bpffs), reusing maps already
    /// pinned there. `None` (tests, benchmarks): private, unpinned maps.
    pub pin_dir: Option<PathBuf>,
    /// Connection-tracking capacity per family (default `capacity::CT`).
    pub ct_entries: Option<u32>,
    /// Policy-map capacity (default `capacity::POLICY`).
    pub policy_entries: Option<u32>,
    /// Capacity of each exact ipcache map (default `capacity::IPCACHE_EXACT`).
    pub ipcache_exact_entries: Option<u32>,
    /// Capacity of each ipcache LPM trie (default `capacity::IPCACHE_LPM`).
    pub ipcache_lpm_entries: Option<u32>,
    /// What the programs log (default: nothing); read the records with
    /// [`Datapath::take_logger`].
    pub datapath_log: DatapathLog,
}

/// The loaded object: programs ready to attach and typed map handles.
pub struct Datapath {
    ebpf: Ebpf,
    /// The maps.
    pub maps: Maps,
    pin_dir: Option<PathBuf>,
}

impl Datapath {
    /// Loads the embedded object.
    pub fn load(opts: &LoadOptions) -> Result<Self, DatapathError> {
        let log_level = opts.datapath_log.object_level();
        let mut loader = EbpfLoader::new();
        loader.override_global(aya_log::LEVEL, &log_level, true);
        if let Some(n) = opts.ct_entries {
            loader.map_max_entries(map_names::CT_V4, n);
            loader.map_max_entries(map_names::CT_V6, n);
        }
        if let Some(n) = opts.policy_entries {
            loader.map_max_entries(map_names::POLICY, n);
        }
        if let Some(n) = opts.ipcache_exact_entries {
            loader.map_max_entries(map_names::IPCACHE_EXACT4, n);
            loader.map_max_entries(map_names::IPCACHE_EXACT6, n);
        }
        if let Some(n) = opts.ipcache_lpm_entries {
            loader.map_max_entries(map_names::IPCACHE_V4, n);
            loader.map_max_entries(map_names::IPCACHE_V6, n);
        }
        if let Some(dir) = &opts.pin_dir {
            std::fs::create_dir_all(dir).map_err(|source| DatapathError::PinDir {
                path: dir.clone(),
                source,
            })?;
            for name in ALL_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(OBJECT)?;
        for name in [
            program_names::FROM_POD,
            program_names::TO_POD,
            program_names::NOOP,
        ] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingProgram(name))?
                .try_into()
                .map_err(|source| DatapathError::Program { name, source })?;
            prog.load()
                .map_err(|source| DatapathError::Program { name, source })?;
        }
        let maps = Maps::take(&mut ebpf)?;
        Ok(Datapath {
            ebpf,
            maps,
            pin_dir: opts.pin_dir.clone(),
        })
    }

    /// A loaded program by name (`program_names`).
    pub fn program(&self, name: &'static str) -> Result<&SchedClassifier, DatapathError> {
        self.ebpf
            .program(name)
            .ok_or(DatapathError::MissingProgram(name))?
            .try_into()
            .map_err(|source| DatapathError::Program { name, source })
    }

    /// A loaded program by name, mutably (to attach it).
    pub fn program_mut(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DatapathError> {
        self.ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingProgram(name))?
            .try_into()
            .map_err(|source| DatapathError::Program { name, source })
    }

    /// The reader of the programs' log records (once: the ring moves into
    /// it). Records are written only if the object was loaded with
    /// [`LoadOptions::datapath_log`] on.
    pub fn take_logger(&mut self) -> Result<DatapathLogger, DatapathError> {
        DatapathLogger::take(&mut self.ebpf)
    }

    /// The directory maps are pinned in, if any.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }
}
