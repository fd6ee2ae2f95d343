//! One invocation of the plugin: reads the request, talks to the agent,
//! and produces what the runtime reads back (stdout and exit status).
//!
//! * ADD hands the pod's addresses and host interface to the agent
//!   (`cni_add`) and returns only once the agent answered that both
//!   programs are attached with the pod's policy state; then it prints
//!   `prevResult` unchanged. No answer within `agentTimeoutMs` (or no
//!   agent) fails the ADD: the runtime retries, and no container starts
//!   unfiltered (fail closed).
//! * DEL is idempotent and succeeds when the agent is not running or not
//!   answering: the interface is deleted by the plugin that created it,
//!   which detaches our programs with it, and the pod's entries are
//!   removed when the agent's sources drop the pod (a restarted agent
//!   holds nothing of a pod it never saw ADDed). An agent that answers
//!   with an error fails the DEL, so the runtime retries.
//! * CHECK fails unless the agent enforces the pod, on the host interface
//!   `prevResult` names (when it names one).
//! * VERSION lists [`SUPPORTED_VERSIONS`].

use std::ffi::CString;
use std::path::Path;

use serde_json::{Value, json};

use super::env::{CniEnv, Command};
use super::error::CniError;
use super::netconf::{self, Attachment, NetConf, SUPPORTED_VERSIONS};
use crate::control::{self, CniArgs, ControlError, Request, Response};

/// What the runtime gets back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Printed on stdout (a result, a version list, an error result, or
    /// nothing).
    pub stdout: String,
    /// Printed on stderr (diagnostics the runtime may log).
    pub stderr: String,
    /// Success (exit status 0) or failure (1).
    pub success: bool,
}

/// The newest version we speak, for answers to unreadable requests.
fn newest() -> &'static str {
    SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1]
}

/// Runs one invocation: `var` reads the environment, `stdin` is the
/// network configuration.
pub fn run(var: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let version = netconf::peek_version(stdin)
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| newest().to_string());
    match dispatch(var, stdin, &version) {
        Ok(o) => o,
        Err(e) => Outcome {
            stdout: serde_json::to_string(&e.to_result(&version)).expect("serializes"),
            stderr: format!("palisade-cni: {e}"),
            success: false,
        },
    }
}

fn dispatch(
    var: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
    version: &str,
) -> Result<Outcome, CniError> {
    let command = Command::parse(&var("CNI_COMMAND").ok_or(CniError::InvalidEnv {
        var: "CNI_COMMAND",
        reason: "required, not set".into(),
    })?)?;
    if command == Command::Version {
        let out = json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS});
        return Ok(ok(out.to_string()));
    }
    let env = CniEnv::read(command, var)?;
    let conf = NetConf::parse(stdin)?;
    match command {
        Command::Add => add(&env, &conf),
        Command::Del => del(&env, &conf),
        Command::Check => check(&env, &conf),
        Command::Version => unreachable!("answered above"),
    }
}

fn ok(stdout: String) -> Outcome {
    Outcome {
        stdout,
        stderr: String::new(),
        success: true,
    }
}

fn prev_result(conf: &NetConf) -> Result<&Value, CniError> {
    conf.prev_result.as_ref().ok_or(CniError::InvalidConfig {
        field: "prevResult".into(),
        reason: "required: palisade-cni is a chained plugin and must follow the plugin that \
                 creates the pod's interface"
            .into(),
    })
}

fn pod(env: &CniEnv) -> Result<(String, String), CniError> {
    env.pod().ok_or(CniError::InvalidEnv {
        var: "CNI_ARGS",
        reason: "K8S_POD_NAMESPACE and K8S_POD_NAME are required (palisade enforces \
                 Kubernetes pods only)"
            .into(),
    })
}

fn args(env: &CniEnv, (ns, name): (String, String), at: Option<Attachment>) -> CniArgs {
    let (ips, host_ifname) = at.map_or((Vec::new(), None), |a| (a.ips, a.host_ifname));
    CniArgs {
        container_id: env.container_id.clone(),
        netns: env.netns.clone(),
        ifname: env.ifname.clone(),
        host_ifname,
        ips,
        pod_namespace: ns,
        pod_name: name,
        pod_uid: env.pod_uid.clone(),
    }
}

fn unavailable(conf: &NetConf, e: ControlError) -> CniError {
    let reason = match &e {
        ControlError::Io { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            format!(
                "no answer within agentTimeoutMs={} ({e})",
                conf.agent_timeout.as_millis()
            )
        }
        _ => e.to_string(),
    };
    CniError::AgentUnavailable {
        socket: conf.agent_socket.clone(),
        reason,
    }
}

/// Sends `req`; an `ok:false` answer is [`CniError::AgentRefused`].
fn call(conf: &NetConf, op: &'static str, req: &Request, pod: &str) -> Result<Response, CniError> {
    let r = control::request(Path::new(&conf.agent_socket), req, conf.agent_timeout)
        .map_err(|e| unavailable(conf, e))?;
    if !r.ok {
        return Err(CniError::AgentRefused {
            op,
            pod: pod.into(),
            reason: r.error.unwrap_or_else(|| "no reason given".into()),
        });
    }
    Ok(r)
}

fn add(env: &CniEnv, conf: &NetConf) -> Result<Outcome, CniError> {
    let prev = prev_result(conf)?;
    let at = netconf::attachment(prev)?;
    let p = pod(env)?;
    let name = format!("{}/{}", p.0, p.1);
    let r = call(
        conf,
        "cni_add",
        &Request::CniAdd(args(env, p, Some(at))),
        &name,
    )?;
    // The result out is the result in, in the configuration's version.
    let mut out = prev.clone();
    if let Value::Object(m) = &mut out {
        m.insert("cniVersion".into(), Value::String(conf.cni_version.clone()));
    }
    Ok(Outcome {
        stdout: out.to_string(),
        stderr: format!(
            "palisade-cni: ADD {name}: programs attached, policy {} (ifindex {}, revision {})",
            r.policy.as_deref().unwrap_or("?"),
            r.ifindex.unwrap_or(0),
            r.revision.unwrap_or(0)
        ),
        success: true,
    })
}

fn del(env: &CniEnv, conf: &NetConf) -> Result<Outcome, CniError> {
    let Some(p) = env.pod() else {
        // Not a Kubernetes pod: we never attached anything for it.
        return Ok(ok(String::new()));
    };
    let name = format!("{}/{}", p.0, p.1);
    // DEL may come without (or with a stale) prevResult: the agent keys the
    // removal by pod and container id, so addresses are informational.
    let at = conf
        .prev_result
        .as_ref()
        .and_then(|v| netconf::attachment(v).ok());
    match call(conf, "cni_del", &Request::CniDel(args(env, p, at)), &name) {
        Ok(_) => Ok(ok(String::new())),
        Err(e @ CniError::AgentUnavailable { .. }) => Ok(Outcome {
            stdout: String::new(),
            stderr: format!("palisade-cni: DEL {name}: {e}; nothing to release"),
            success: true,
        }),
        Err(e) => Err(e),
    }
}

fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn check(env: &CniEnv, conf: &NetConf) -> Result<Outcome, CniError> {
    let prev = prev_result(conf)?;
    let at = netconf::attachment(prev)?;
    let p = pod(env)?;
    let name = format!("{}/{}", p.0, p.1);
    let host = at.host_ifname.clone();
    let r = call(
        conf,
        "cni_check",
        &Request::CniCheck(args(env, p, Some(at))),
        &name,
    )
    .map_err(|e| match e {
        CniError::AgentRefused { pod, reason, .. } => CniError::NotEnforced { pod, reason },
        e => e,
    })?;
    if let (Some(ifname), Some(agent)) = (host, r.ifindex)
        && let Some(expected) = ifindex(&ifname)
        && expected != agent
    {
        return Err(CniError::WrongInterface {
            pod: name,
            agent,
            ifname,
            expected,
        });
    }
    Ok(ok(String::new()))
}
