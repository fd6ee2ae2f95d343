//! The lab itself: nodes (router namespaces on a shared fabric), routed pods
//! and external hosts, built with `ip` and torn down on drop.
//!
//! [`Lab`] owns every namespace it creates; dropping it (also while a test
//! unwinds) deletes pods and external hosts first, then nodes, then the
//! fabric. Deleting a namespace destroys the veths inside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use crate::addressing::{
    FIRST_POD, LAST_POD, MAX_NODES, POD_GATEWAY_V4, POD_GATEWAY_V6, node_v4, node_v6, pod_cidr_v4,
    pod_cidr_v6, pod_v4, pod_v6,
};
use crate::names::{host_veth_name, lab_id, valid_object_name, valid_prefix};
use crate::netns::{Netns, NetnsError};

/// Name of the bridge in the fabric namespace that joins all nodes.
pub const FABRIC_BRIDGE: &str = "br0";
/// Name of each node's uplink to the fabric (inside the node namespace).
pub const NODE_UPLINK: &str = "eth0";
/// Name of the interface inside pods and external hosts.
pub const POD_IFACE: &str = "eth0";
/// Interface in each node that swallows traffic to unknown addresses, so
/// nothing ever leaves the lab and proxy ARP has a route to answer for (as a
/// Calico host's default route). It is one end of a veth pair whose other
/// end stays down, so what is routed there is dropped.
pub const NODE_SINK: &str = "sink0";
/// How long to wait for a new link to come up.
const LINK_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// What failed while building a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A namespace, link, address or route could not be set up.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The prefix cannot start namespace names.
    #[error("lab prefix {0:?}: must be 1..=64 bytes of [A-Za-z0-9_-]")]
    InvalidPrefix(String),
    /// A node, pod or external host name is unusable.
    #[error("{kind} name {name:?}: must be 1..=40 bytes of [a-z0-9-]")]
    InvalidName {
        /// `node`, `pod` or `external host`.
        kind: &'static str,
        /// The offending name.
        name: String,
    },
    /// The name is already taken in this lab.
    #[error("{kind} {name:?} already exists in this lab")]
    Duplicate {
        /// `node`, `pod` or `external host`.
        kind: &'static str,
        /// The offending name.
        name: String,
    },
    /// A pod or external host names a node the lab does not have.
    #[error("{kind} {name:?}: no node {node:?} in this lab")]
    UnknownNode {
        /// `pod` or `external host`.
        kind: &'static str,
        /// The pod or host.
        name: String,
        /// The missing node.
        node: String,
    },
    /// Out of node or pod indices (see `addressing`).
    #[error("{what}: the address plan allows at most {max}")]
    Full {
        /// What ran out (`nodes`, `pods on node n1`).
        what: String,
        /// The limit.
        max: usize,
    },
    /// Two pods on one node hash to the same host veth name.
    #[error("pod {namespace}/{pod}: host veth name {veth} already used on node {node}")]
    VethCollision {
        /// The pod's namespace label.
        namespace: String,
        /// The pod.
        pod: String,
        /// The colliding name.
        veth: String,
        /// The node.
        node: String,
    },
    /// An external host was given no addresses.
    #[error("external host {0:?}: needs at least one address")]
    NoAddresses(String),
}

/// Anything that lives in its own namespace and can run servers or probes:
/// a [`Pod`], a [`Node`] or an [`ExternalHost`].
pub trait Endpoint {
    /// The namespace name.
    fn netns(&self) -> &str;
    /// A human label used in server banners (`default/web`, `node n1`).
    fn label(&self) -> String;
    /// The addresses servers bind UDP and SCTP sockets to.
    fn addrs(&self) -> Vec<IpAddr>;
}

/// A node: a namespace that routes for its pods, like a Calico host.
#[derive(Debug)]
pub struct Node {
    name: String,
    index: u8,
    netns: Netns,
    next_pod: u8,
    next_uplink: u16,
}

impl Node {
    /// The node's name in the spec.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The namespace name (for `ip netns exec`, TC attach threads).
    pub fn netns(&self) -> &str {
        self.netns.name()
    }
    /// The node's index in the address plan (1-based).
    pub fn index(&self) -> u8 {
        self.index
    }
    /// The node's own IPv4 address (source of host traffic to its pods).
    pub fn ipv4(&self) -> Ipv4Addr {
        node_v4(self.index)
    }
    /// The node's own IPv6 address.
    pub fn ipv6(&self) -> Ipv6Addr {
        node_v6(self.index)
    }
    /// Runs `f` on a thread inside the node namespace (e.g. to attach TC).
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.netns.run(f)
    }
    /// `ip netns exec <node> <program>`, e.g. to start the agent.
    pub fn command(&self, program: &str) -> Command {
        self.netns.command(program)
    }
}

impl Endpoint for Node {
    fn netns(&self) -> &str {
        self.netns.name()
    }
    fn label(&self) -> String {
        format!("node/{}", self.name)
    }
    fn addrs(&self) -> Vec<IpAddr> {
        vec![self.ipv4().into(), self.ipv6().into()]
    }
}

/// A pod: a namespace with `eth0`, one IPv4 /32 and one IPv6 /128, routed
/// by its node through a `cali…` host veth.
#[derive(Debug)]
pub struct Pod {
    name: String,
    namespace: String,
    node: String,
    node_netns: String,
    host_veth: String,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
    netns: Netns,
}

impl Pod {
    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The Kubernetes namespace it stands for (a label only).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The name of the node it runs on.
    pub fn node(&self) -> &str {
        &self.node
    }
    /// The node's namespace name, where [`Pod::host_veth`] lives.
    pub fn node_netns(&self) -> &str {
        &self.node_netns
    }
    /// The host-side veth in the node namespace (where Palisade attaches).
    pub fn host_veth(&self) -> &str {
        &self.host_veth
    }
    /// The pod's IPv4 address.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }
    /// The pod's IPv6 address.
    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }
    /// The pod's namespace name.
    pub fn netns(&self) -> &str {
        self.netns.name()
    }
    /// Runs `f` on a thread inside the pod namespace.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.netns.run(f)
    }
    /// `ip netns exec <pod> <program>`.
    pub fn command(&self, program: &str) -> Command {
        self.netns.command(program)
    }
}

impl Endpoint for Pod {
    fn netns(&self) -> &str {
        self.netns.name()
    }
    fn label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    fn addrs(&self) -> Vec<IpAddr> {
        vec![self.ipv4.into(), self.ipv6.into()]
    }
}

/// An "outside" host: a namespace hanging off one node like an uplink router,
/// holding addresses that stand for the world (metadata service, internet).
#[derive(Debug)]
pub struct ExternalHost {
    name: String,
    node: String,
    uplink: String,
    addrs: Vec<IpAddr>,
    netns: Netns,
}

impl ExternalHost {
    /// The host's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The node it hangs off.
    pub fn node(&self) -> &str {
        &self.node
    }
    /// The node-side interface leading to it.
    pub fn uplink(&self) -> &str {
        &self.uplink
    }
    /// Its addresses.
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }
    /// Its namespace name.
    pub fn netns(&self) -> &str {
        self.netns.name()
    }
}

impl Endpoint for ExternalHost {
    fn netns(&self) -> &str {
        self.netns.name()
    }
    fn label(&self) -> String {
        format!("external/{}", self.name)
    }
    fn addrs(&self) -> Vec<IpAddr> {
        self.addrs.clone()
    }
}

/// A pod in a [`LabSpec`].
#[derive(Clone, Debug)]
pub struct PodSpec {
    /// Pod name, unique in the lab.
    pub name: String,
    /// Kubernetes namespace label.
    pub namespace: String,
    /// Node name.
    pub node: String,
}

/// An external host in a [`LabSpec`].
#[derive(Clone, Debug)]
pub struct ExternalSpec {
    /// Host name, unique in the lab.
    pub name: String,
    /// Node it attaches to.
    pub node: String,
    /// Addresses it holds.
    pub addrs: Vec<IpAddr>,
}

/// A whole lab described up front; [`LabSpec::up`] builds it.
#[derive(Clone, Debug)]
pub struct LabSpec {
    prefix: String,
    nodes: Vec<String>,
    pods: Vec<PodSpec>,
    externals: Vec<ExternalSpec>,
}

impl LabSpec {
    /// A spec whose namespaces will be named `<prefix>-<pid>-…`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            nodes: Vec::new(),
            pods: Vec::new(),
            externals: Vec::new(),
        }
    }
    /// Adds a node.
    pub fn node(mut self, name: &str) -> Self {
        self.nodes.push(name.to_owned());
        self
    }
    /// Adds pod `name` (labelled with Kubernetes `namespace`) on `node`.
    pub fn pod(mut self, name: &str, namespace: &str, node: &str) -> Self {
        self.pods.push(PodSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            node: node.to_owned(),
        });
        self
    }
    /// Adds an external host on `node` holding `addrs`.
    pub fn external_host(mut self, name: &str, node: &str, addrs: &[IpAddr]) -> Self {
        self.externals.push(ExternalSpec {
            name: name.to_owned(),
            node: node.to_owned(),
            addrs: addrs.to_vec(),
        });
        self
    }
    /// Builds everything; a failure part way tears down what was built.
    pub fn up(&self) -> Result<Lab, LabError> {
        let mut lab = Lab::new(&self.prefix)?;
        for node in &self.nodes {
            lab.add_node(node)?;
        }
        for pod in &self.pods {
            lab.add_pod(&pod.name, &pod.namespace, &pod.node)?;
        }
        for ext in &self.externals {
            lab.add_external_host(&ext.name, &ext.node, &ext.addrs)?;
        }
        Ok(lab)
    }
}

/// A running lab; dropping it deletes all its namespaces.
#[derive(Debug)]
pub struct Lab {
    id: String,
    pods: Vec<Pod>,
    externals: Vec<ExternalHost>,
    nodes: Vec<Node>,
    fabric: Netns,
}

impl Lab {
    /// An empty lab: just the fabric namespace with its bridge.
    pub fn new(prefix: &str) -> Result<Self, LabError> {
        if !valid_prefix(prefix) {
            return Err(LabError::InvalidPrefix(prefix.to_owned()));
        }
        let id = lab_id(prefix);
        let fabric = Netns::create(&format!("{id}-fabric"))?;
        fabric.ip_batch(&[
            format!("link add {FABRIC_BRIDGE} type bridge stp_state 0 mcast_snooping 0"),
            format!("link set {FABRIC_BRIDGE} up"),
        ])?;
        Ok(Self {
            id,
            pods: Vec::new(),
            externals: Vec::new(),
            nodes: Vec::new(),
            fabric,
        })
    }

    /// The lab id every namespace name starts with.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The fabric namespace (bridge `br0` joining the nodes' `eth0`).
    pub fn fabric_netns(&self) -> &str {
        self.fabric.name()
    }

    /// All nodes, in creation order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// All pods, in creation order.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// All external hosts, in creation order.
    pub fn external_hosts(&self) -> &[ExternalHost] {
        &self.externals
    }

    /// The node `name`, if any.
    pub fn get_node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The pod `name`, if any.
    pub fn get_pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name == name)
    }

    /// The external host `name`, if any.
    pub fn get_external_host(&self, name: &str) -> Option<&ExternalHost> {
        self.externals.iter().find(|h| h.name == name)
    }

    /// The node `name`. Panics if there is none (for tests).
    pub fn node(&self, name: &str) -> &Node {
        self.get_node(name)
            .unwrap_or_else(|| panic!("lab {}: no node {name:?}", self.id))
    }

    /// The pod `name`. Panics if there is none (for tests).
    pub fn pod(&self, name: &str) -> &Pod {
        self.get_pod(name)
            .unwrap_or_else(|| panic!("lab {}: no pod {name:?}", self.id))
    }

    /// The external host `name`. Panics if there is none (for tests).
    pub fn external_host(&self, name: &str) -> &ExternalHost {
        self.get_external_host(name)
            .unwrap_or_else(|| panic!("lab {}: no external host {name:?}", self.id))
    }

    /// Pods scheduled on node `name`.
    pub fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods.iter().filter(move |p| p.node == node)
    }

    /// Adds a node: a routing namespace on the fabric, with routes to every
    /// other node's pod CIDRs and external hosts (and theirs to it).
    pub fn add_node(&mut self, name: &str) -> Result<&Node, LabError> {
        check_name("node", name)?;
        if self.get_node(name).is_some() {
            return Err(dup("node", name));
        }
        let index = u8::try_from(self.nodes.len() + 1)
            .ok()
            .filter(|i| *i <= MAX_NODES)
            .ok_or_else(|| LabError::Full {
                what: "nodes".into(),
                max: MAX_NODES.into(),
            })?;
        let netns = Netns::create(&format!("{}-node-{name}", self.id))?;
        netns.sysctls(&[
            ("net/ipv4/ip_forward".into(), "1"),
            ("net/ipv6/conf/all/forwarding".into(), "1"),
            ("net/ipv6/conf/all/accept_dad".into(), "0"),
            ("net/ipv6/conf/default/accept_dad".into(), "0"),
            ("net/ipv4/conf/all/rp_filter".into(), "0"),
            ("net/ipv4/conf/default/rp_filter".into(), "0"),
        ])?;
        let fabric_port = format!("fab{index}");
        self.fabric.ip_batch(&[
            format!(
                "link add {fabric_port} type veth peer name {NODE_UPLINK} netns {}",
                netns.name()
            ),
            format!("link set {fabric_port} master {FABRIC_BRIDGE}"),
            format!("link set {fabric_port} up"),
        ])?;
        let mut lines = vec![
            format!("addr add {}/24 dev {NODE_UPLINK}", node_v4(index)),
            format!("addr add {}/64 dev {NODE_UPLINK} nodad", node_v6(index)),
            format!("link set {NODE_UPLINK} up"),
            format!("link add {NODE_SINK} type veth peer name {NODE_SINK}-peer"),
            format!("link set {NODE_SINK} up"),
            format!("route add default dev {NODE_SINK}"),
            format!("route add ::/0 dev {NODE_SINK}"),
        ];
        for other in &self.nodes {
            lines.extend(routes_via(
                other.index,
                &[pod_cidr_v4(other.index), pod_cidr_v6(other.index)],
            ));
        }
        for ext in &self.externals {
            let owner = self.node(&ext.node).index;
            lines.extend(routes_via(owner, &host_routes(&ext.addrs)));
        }
        netns.ip_batch(&lines)?;
        self.fabric.wait_link_up(&fabric_port, LINK_UP_TIMEOUT)?;
        netns.wait_link_up(NODE_UPLINK, LINK_UP_TIMEOUT)?;
        for other in &self.nodes {
            other.netns.ip_batch(&routes_via(
                index,
                &[pod_cidr_v4(index), pod_cidr_v6(index)],
            ))?;
        }
        self.nodes.push(Node {
            name: name.to_owned(),
            index,
            netns,
            next_pod: FIRST_POD,
            next_uplink: 0,
        });
        Ok(self.nodes.last().expect("just pushed"))
    }

    /// Adds pod `name` (Kubernetes namespace label `namespace`) on `node`:
    /// veth `eth0` ↔ `cali…`, addresses, routes, proxy ARP.
    pub fn add_pod(&mut self, name: &str, namespace: &str, node: &str) -> Result<&Pod, LabError> {
        check_name("pod", name)?;
        if self.get_pod(name).is_some() {
            return Err(dup("pod", name));
        }
        let node_pos = self
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| LabError::UnknownNode {
                kind: "pod",
                name: name.to_owned(),
                node: node.to_owned(),
            })?;
        let host_veth = host_veth_name(namespace, name);
        if self.pods_on(node).any(|p| p.host_veth == host_veth) {
            return Err(LabError::VethCollision {
                namespace: namespace.to_owned(),
                pod: name.to_owned(),
                veth: host_veth,
                node: node.to_owned(),
            });
        }
        let node_ref = &mut self.nodes[node_pos];
        if node_ref.next_pod > LAST_POD {
            return Err(LabError::Full {
                what: format!("pods on node {node}"),
                max: usize::from(LAST_POD - FIRST_POD + 1),
            });
        }
        let k = node_ref.next_pod;
        node_ref.next_pod += 1;
        let node_ref = &self.nodes[node_pos];
        let (ipv4, ipv6) = (pod_v4(node_ref.index, k), pod_v6(node_ref.index, k));
        let netns = Netns::create(&format!("{}-pod-{name}", self.id))?;
        attach_leaf(
            &node_ref.netns,
            &netns,
            &host_veth,
            &[ipv4.into(), ipv6.into()],
        )?;
        self.pods.push(Pod {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            node: node.to_owned(),
            node_netns: node_ref.netns.name().to_owned(),
            host_veth,
            ipv4,
            ipv6,
            netns,
        });
        Ok(self.pods.last().expect("just pushed"))
    }

    /// Adds an external host on `node` holding `addrs` (e.g. 169.254.169.254,
    /// 203.0.113.10, 2001:db8:ffff::10). Every node routes them via `node`;
    /// they exist only inside the lab.
    pub fn add_external_host(
        &mut self,
        name: &str,
        node: &str,
        addrs: &[IpAddr],
    ) -> Result<&ExternalHost, LabError> {
        check_name("external host", name)?;
        if self.get_external_host(name).is_some() {
            return Err(dup("external host", name));
        }
        if addrs.is_empty() {
            return Err(LabError::NoAddresses(name.to_owned()));
        }
        let node_pos = self
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| LabError::UnknownNode {
                kind: "external host",
                name: name.to_owned(),
                node: node.to_owned(),
            })?;
        let uplink = format!("ext{}", self.nodes[node_pos].next_uplink);
        self.nodes[node_pos].next_uplink += 1;
        let owner = &self.nodes[node_pos];
        let netns = Netns::create(&format!("{}-ext-{name}", self.id))?;
        attach_leaf(&owner.netns, &netns, &uplink, addrs)?;
        for other in self.nodes.iter().filter(|n| n.index != owner.index) {
            other
                .netns
                .ip_batch(&routes_via(owner.index, &host_routes(addrs)))?;
        }
        self.externals.push(ExternalHost {
            name: name.to_owned(),
            node: node.to_owned(),
            uplink,
            addrs: addrs.to_vec(),
            netns,
        });
        Ok(self.externals.last().expect("just pushed"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Leaves before the routers, the fabric last (it is a field).
        self.pods.clear();
        self.externals.clear();
        self.nodes.clear();
    }
}

/// Connects a leaf namespace (pod or external host) to a node the Calico
/// way: `eth0` in the leaf, `host_if` in the node with proxy ARP and
/// `fe80::1`, a host route per address, default routes in the leaf.
fn attach_leaf(
    node: &Netns,
    leaf: &Netns,
    host_if: &str,
    addrs: &[IpAddr],
) -> Result<(), LabError> {
    leaf.sysctls(&[
        ("net/ipv6/conf/all/accept_dad".into(), "0"),
        ("net/ipv6/conf/default/accept_dad".into(), "0"),
    ])?;
    node.ip_batch(&[format!(
        "link add {host_if} type veth peer name {POD_IFACE} netns {}",
        leaf.name()
    )])?;
    node.sysctls(&[
        (format!("net/ipv4/conf/{host_if}/proxy_arp"), "1"),
        // Answer ARP at once rather than after up to 0.8 s (Calico does too).
        (format!("net/ipv4/neigh/{host_if}/proxy_delay"), "0"),
        (format!("net/ipv6/conf/{host_if}/accept_dad"), "0"),
    ])?;
    let mut node_lines = vec![
        format!("addr add {POD_GATEWAY_V6}/64 dev {host_if} nodad"),
        format!("link set {host_if} up"),
    ];
    node_lines.extend(
        host_routes(addrs)
            .into_iter()
            .map(|dst| format!("route add {dst} dev {host_if}")),
    );
    node.ip_batch(&node_lines)?;
    let mut leaf_lines: Vec<String> = addrs
        .iter()
        .map(|addr| match addr {
            IpAddr::V4(a) => format!("addr add {a}/32 dev {POD_IFACE}"),
            IpAddr::V6(a) => format!("addr add {a}/128 dev {POD_IFACE} nodad"),
        })
        .collect();
    leaf_lines.extend([
        format!("link set {POD_IFACE} up"),
        format!("route add default via {POD_GATEWAY_V4} dev {POD_IFACE} onlink"),
        format!("route add ::/0 via {POD_GATEWAY_V6} dev {POD_IFACE}"),
    ]);
    leaf.ip_batch(&leaf_lines)?;
    node.wait_link_up(host_if, LINK_UP_TIMEOUT)?;
    leaf.wait_link_up(POD_IFACE, LINK_UP_TIMEOUT)?;
    Ok(())
}

fn host_routes(addrs: &[IpAddr]) -> Vec<String> {
    addrs
        .iter()
        .map(|addr| match addr {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        })
        .collect()
}

/// `route add <dst> via <node index's fabric address>` for each destination.
fn routes_via(index: u8, dsts: &[String]) -> Vec<String> {
    dsts.iter()
        .map(|dst| {
            let via: IpAddr = if dst.contains(':') {
                node_v6(index).into()
            } else {
                node_v4(index).into()
            };
            format!("route add {dst} via {via} dev {NODE_UPLINK}")
        })
        .collect()
}

fn check_name(kind: &'static str, name: &str) -> Result<(), LabError> {
    if valid_object_name(name) {
        Ok(())
    } else {
        Err(LabError::InvalidName {
            kind,
            name: name.to_owned(),
        })
    }
}

fn dup(kind: &'static str, name: &str) -> LabError {
    LabError::Duplicate {
        kind,
        name: name.to_owned(),
    }
}
