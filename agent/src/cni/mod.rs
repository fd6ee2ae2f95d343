//! `palisade-cni`, the CNI chained plugin: it runs after the plugin that
//! creates a pod's interface and addresses, hands them to the node agent
//! over its control socket (`cni_add`), and lets the runtime start the
//! pod's containers only once the agent has attached the pod's programs
//! with its policy state. The binary (`src/bin/palisade-cni.rs`) only
//! calls [`run`].
//!
//! * [`env`]: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//!   `CNI_ARGS`.
//! * [`netconf`]: the configuration on stdin (`agentSocket`,
//!   `agentTimeoutMs`, `prevResult`) and what `prevResult` says about the
//!   pod.
//! * [`plugin`]: ADD, DEL, CHECK and VERSION.
//! * [`error`]: errors and the CNI error result.
//! * [`install`]: `palisade-cni install`, the binary and conflist entry
//!   on a node.
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
//!   {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}},
//!   {"type": "palisade-cni", "agentSocket": "/run/palisade/agent.sock",
//!    "agentTimeoutMs": 10000}]}
//! ```

pub mod env;
pub mod error;
pub mod install;
pub mod netconf;
pub mod plugin;

pub use error::{CniError, ErrorResult};
pub use netconf::SUPPORTED_VERSIONS;
pub use plugin::{Outcome, run};
