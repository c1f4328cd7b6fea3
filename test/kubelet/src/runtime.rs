//! The kubelet loop: every half second it lists the pods, binds unscheduled ones to its Node
//! (there is no scheduler in the test cluster), starts the containers of new pods as processes on
//! their own 127.0.0.N, restarts or finishes exited ones by restartPolicy, probes readiness,
//! stops deleted pods (SIGTERM, then SIGKILL after the grace period) and writes each changed
//! PodStatus.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::plan::{self, Launch, Settings};
use crate::probe::{self, HttpProbe};
use crate::services::{Backend, resolve_entries};
use crate::status::{ContainerReport, ContainerState, PodReport, pod_status};

/// The env variable carrying Service → address entries to the runner (`--resolve`).
pub const RESOLVE_ENV: &str = "LOADRUNNER_RESOLVE";
/// Longest wait between SIGTERM and SIGKILL, whatever the pod's grace period says.
const MAX_GRACE: Duration = Duration::from_secs(30);
/// How much of a failed container's log becomes its message under FallbackToLogsOnError.
const LOG_TAIL_BYTES: usize = 2048;
/// Termination messages are cut to this, as the kubelet does.
const MESSAGE_BYTES: usize = 4096;

/// The kubelet's state.
pub struct Kubelet {
    client: kube::Client,
    node: String,
    settings: Settings,
    state_dir: PathBuf,
    first_ip: u8,
    pods: HashMap<String, LocalPod>,
}

struct LocalPod {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    dir: PathBuf,
    report: PodReport,
    containers: Vec<LocalContainer>,
    last_sent: Option<serde_json::Value>,
    /// SIGTERM sent; SIGKILL at this instant.
    stopping: Option<Instant>,
}

struct LocalContainer {
    spec: Container,
    launch: Launch,
    log: PathBuf,
    child: Option<Child>,
    probe: Option<HttpProbe>,
    next_probe: Instant,
    restart_at: Option<Instant>,
    report: ContainerReport,
}

fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

impl Kubelet {
    /// A kubelet for `node`, keeping pod files under `state_dir`, handing out 127.0.0.`first_ip`
    /// upwards.
    pub fn new(
        client: kube::Client,
        node: String,
        settings: Settings,
        state_dir: PathBuf,
        first_ip: u8,
    ) -> Self {
        Self {
            client,
            node,
            settings,
            state_dir,
            first_ip,
            pods: HashMap::new(),
        }
    }

    /// One pass over the pods.
    pub async fn tick(&mut self) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let listed = pods.list(&ListParams::default()).await?;
        let mut present = BTreeSet::new();
        for pod in listed {
            let uid = pod.uid().unwrap_or_default();
            present.insert(uid.clone());
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            if pod.metadata.deletion_timestamp.is_some() {
                // Already force-deleted and only waiting on finalizers (the Job controller's):
                // nothing left to stop or ask for.
                let waiting_on_finalizers = !self.pods.contains_key(&uid)
                    && pod.metadata.deletion_grace_period_seconds == Some(0);
                let ours = node.as_deref() == Some(self.node.as_str()) || node.is_none();
                if ours && !waiting_on_finalizers {
                    self.stop(&pod, &uid).await;
                }
                continue;
            }
            match node {
                None => self.bind(&pod).await,
                Some(n) if n == self.node && !self.pods.contains_key(&uid) => {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if !matches!(phase, Some("Succeeded" | "Failed")) {
                        self.start(&pod, uid).await;
                    }
                }
                _ => {}
            }
        }
        // Pods removed from the apiserver while running (force-deleted): stop at once.
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| !present.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(mut pod) = self.pods.remove(&uid) {
                tracing::info!(pod = %pod.name, "pod is gone: killing its processes");
                for c in &mut pod.containers {
                    if let Some(child) = c.child.as_mut() {
                        let _ = child.kill().await;
                    }
                }
            }
        }
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            self.step(&uid).await;
        }
        Ok(())
    }

    /// Kills every process (the harness is stopping).
    pub async fn shutdown(&mut self) {
        for pod in self.pods.values_mut() {
            for c in &mut pod.containers {
                if let Some(child) = c.child.as_mut() {
                    let _ = child.kill().await;
                }
            }
        }
    }

    async fn bind(&self, pod: &Pod) {
        let name = pod.name_any();
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        });
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => tracing::info!(pod = %name, node = %self.node, "bound"),
            Err(e) => tracing::warn!(pod = %name, error = %e, "bind failed"),
        }
    }

    fn free_ip(&self) -> Option<Ipv4Addr> {
        let used: BTreeSet<Ipv4Addr> = self.pods.values().map(|p| p.report.ip).collect();
        (self.first_ip..=250)
            .map(|n| Ipv4Addr::new(127, 0, 0, n))
            .find(|ip| !used.contains(ip))
    }

    /// Service → ready pod entries for `LOADRUNNER_RESOLVE`.
    async fn resolve_env(&self) -> String {
        let services: Api<Service> = Api::all(self.client.clone());
        let Ok(services) = services.list(&ListParams::default()).await else {
            tracing::warn!("could not list Services: no service addresses");
            return String::new();
        };
        let backends: Vec<Backend> = self.pods.values().map(LocalPod::backend).collect();
        resolve_entries(&services.items, &backends).join(",")
    }

    async fn start(&mut self, pod: &Pod, uid: String) {
        let Some(ip) = self.free_ip() else {
            tracing::error!("no free loopback address for {}", pod.name_any());
            return;
        };
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let dir = self
            .state_dir
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        let mut settings = self.settings.clone();
        let resolve = self.resolve_env().await;
        if !resolve.is_empty() {
            settings.env.push((RESOLVE_ENV.to_owned(), resolve));
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let mut report = PodReport {
            ip,
            started: now(),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            failed: None,
            ready_since: None,
        };
        let mut containers = Vec::new();
        // The Secrets and ConfigMaps it references, read once as it starts (a missing one keeps
        // it from starting, as CreateContainerConfigError does).
        let objects = crate::objects::fetch(&self.client, pod).await;
        let planned: Result<Vec<_>, String> = objects.and_then(|objects| {
            let planned = spec
                .containers
                .iter()
                .map(|c| {
                    let launch = plan::launch(&settings, pod, c, ip, &dir, &objects)?;
                    let probe = probe::readiness(c, ip)?;
                    Ok((c.clone(), launch, probe))
                })
                .collect::<Result<Vec<_>, String>>()?;
            create_pod_dirs(&dir, &spec)?;
            crate::objects::write_volumes(&dir, &spec, &objects)?;
            Ok(planned)
        });
        match planned {
            Ok(planned) => {
                containers = planned
                    .into_iter()
                    .map(|(spec, launch, probe)| LocalContainer::new(spec, launch, probe, &dir))
                    .collect();
            }
            Err(message) => {
                tracing::warn!(pod = %name, %message, "cannot run pod");
                report.failed = Some(message);
            }
        }
        tracing::info!(pod = %name, %namespace, %ip, "starting");
        self.pods.insert(
            uid,
            LocalPod {
                namespace,
                name,
                labels: pod.labels().clone(),
                dir,
                report,
                containers,
                last_sent: None,
                stopping: None,
            },
        );
    }

    async fn stop(&mut self, pod: &Pod, uid: &str) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(MAX_GRACE, |s| Duration::from_secs(s).min(MAX_GRACE));
        let mut finished = true;
        if let Some(local) = self.pods.get_mut(uid) {
            let deadline = *local.stopping.get_or_insert_with(|| {
                for c in &local.containers {
                    if let Some(pid) = c.child.as_ref().and_then(Child::id) {
                        signal(pid, "TERM");
                    }
                }
                Instant::now() + grace
            });
            for c in &mut local.containers {
                if let Some(child) = c.child.as_mut() {
                    match child.try_wait() {
                        Ok(Some(_)) => c.child = None,
                        _ if Instant::now() >= deadline => {
                            let _ = child.kill().await;
                            c.child = None;
                        }
                        _ => finished = false,
                    }
                }
            }
        }
        if !finished {
            return;
        }
        self.pods.remove(uid);
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        match api
            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => tracing::info!(pod = %pod.name_any(), "stopped and deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "delete failed"),
        }
    }

    /// Exits, restarts, probes and the status write of one pod.
    async fn step(&mut self, uid: &str) {
        let Some(pod) = self.pods.get_mut(uid) else {
            return;
        };
        if pod.stopping.is_some() {
            return;
        }
        let policy = pod.report.restart_policy.clone();
        for c in &mut pod.containers {
            c.check_exit(&policy);
            if c.restart_at.is_some_and(|at| Instant::now() >= at) {
                c.spawn(&pod.dir);
            }
            c.probe_if_due().await;
        }
        let reports: Vec<ContainerReport> =
            pod.containers.iter().map(|c| c.report.clone()).collect();
        if !crate::status::all_ready(&reports) {
            pod.report.ready_since = None;
        } else if pod.report.ready_since.is_none() {
            pod.report.ready_since = Some(now());
        }
        let status = json!({ "status": pod_status(&pod.report, &reports) });
        if pod.last_sent.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        match api
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => pod.last_sent = Some(status),
            Err(e) => tracing::warn!(pod = %pod.name, error = %e, "status write failed"),
        }
    }
}

impl LocalPod {
    fn backend(&self) -> Backend {
        Backend {
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            ip: self.report.ip,
            ready: self.stopping.is_none()
                && crate::status::all_ready(
                    &self
                        .containers
                        .iter()
                        .map(|c| c.report.clone())
                        .collect::<Vec<_>>(),
                ),
            ports: self
                .containers
                .iter()
                .flat_map(|c| c.spec.ports.iter().flatten())
                .filter_map(|p| Some((p.name.clone()?, p.container_port)))
                .collect(),
        }
    }
}

/// The pod's directory and one directory per emptyDir volume, as a kubelet creates them before
/// the containers start.
fn create_pod_dirs(
    dir: &std::path::Path,
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> Result<(), String> {
    let empty_dirs = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.empty_dir.is_some())
        .map(|v| dir.join("volumes").join(&v.name));
    for path in std::iter::once(dir.to_path_buf()).chain(empty_dirs) {
        fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

impl LocalContainer {
    /// A container of a pod whose files live in `dir`, to be started on the next pass.
    fn new(
        spec: Container,
        launch: Launch,
        probe: Option<HttpProbe>,
        dir: &std::path::Path,
    ) -> Self {
        Self {
            log: dir.join(format!("{}.log", spec.name)),
            report: ContainerReport {
                name: spec.name.clone(),
                image: spec.image.clone().unwrap_or_default(),
                restarts: 0,
                state: ContainerState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                },
            },
            spec,
            launch,
            child: None,
            probe,
            next_probe: Instant::now(),
            restart_at: Some(Instant::now()),
        }
    }

    fn spawn(&mut self, dir: &std::path::Path) {
        self.restart_at = None;
        let log = OpenOptions::new().create(true).append(true).open(&self.log);
        let spawned = log.and_then(|log| {
            let _ = File::create(&self.launch.termination_log);
            let mut command = Command::new(&self.launch.program);
            command
                .args(&self.launch.args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            command.spawn()
        });
        match spawned {
            Ok(child) => {
                tracing::info!(container = %self.spec.name, pid = ?child.id(), "started");
                self.child = Some(child);
                self.report.state = ContainerState::Running {
                    started: now(),
                    ready: self.probe.is_none(),
                };
            }
            Err(e) => {
                self.report.state = ContainerState::Waiting {
                    reason: "RunContainerError".into(),
                    message: Some(format!("{}: {e}", self.launch.program.display())),
                };
                self.restart_at = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    fn check_exit(&mut self, restart_policy: &str) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let Ok(Some(exit)) = child.try_wait() else {
            return;
        };
        self.child = None;
        let exit_code = exit.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + exit.signal().unwrap_or(9)
        });
        let started = match &self.report.state {
            ContainerState::Running { started, .. } => started.clone(),
            _ => now(),
        };
        let message = self.termination_message(exit_code);
        tracing::info!(container = %self.spec.name, exit_code, "exited");
        self.report.state = ContainerState::Terminated {
            exit_code,
            message,
            started,
            finished: now(),
        };
        let restart = match restart_policy {
            "Always" => true,
            "OnFailure" => exit_code != 0,
            _ => false,
        };
        if restart {
            self.report.restarts += 1;
            let backoff =
                Duration::from_secs(u64::from(self.report.restarts.unsigned_abs()).min(10));
            self.restart_at = Some(Instant::now() + backoff);
        }
    }

    fn termination_message(&self, exit_code: i32) -> Option<String> {
        let mut message = fs::read(&self.launch.termination_log).unwrap_or_default();
        let fallback =
            self.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        if message.is_empty() && fallback && exit_code != 0 {
            let log = fs::read(&self.log).unwrap_or_default();
            message = log[log.len().saturating_sub(LOG_TAIL_BYTES)..].to_vec();
        }
        message.truncate(MESSAGE_BYTES);
        (!message.is_empty()).then(|| String::from_utf8_lossy(&message).into_owned())
    }

    async fn probe_if_due(&mut self) {
        let (Some(probe), ContainerState::Running { ready, .. }) =
            (&self.probe, &mut self.report.state)
        else {
            return;
        };
        if Instant::now() < self.next_probe {
            return;
        }
        self.next_probe = Instant::now() + Duration::from_secs(1);
        *ready = probe::passes(probe).await;
    }
}

/// Sends a signal by name through kill(1): the workspace forbids unsafe code, and this is a test
/// harness, not a hot path.
fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container running `sh -c SCRIPT` in a fresh directory named after the test;
    /// `$TERMINATION` names its termination-message file.
    fn shell(test: &str, script: &str, policy: Option<&str>) -> (LocalContainer, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("process-kubelet-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let termination_log = dir.join("c.termination-log");
        let container = LocalContainer::new(
            Container {
                name: "c".into(),
                termination_message_policy: policy.map(str::to_owned),
                ..Container::default()
            },
            Launch {
                program: PathBuf::from("/bin/sh"),
                args: vec!["-c".into(), script.into()],
                env: vec![("TERMINATION".into(), termination_log.display().to_string())],
                termination_log,
            },
            None,
            &dir,
        );
        (container, dir)
    }

    async fn run_to_exit(c: &mut LocalContainer, dir: &std::path::Path, policy: &str) {
        c.spawn(dir);
        assert!(matches!(
            c.report.state,
            ContainerState::Running { ready: true, .. }
        ));
        for _ in 0..100 {
            c.check_exit(policy);
            if c.child.is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the process did not exit within 5 s");
    }

    #[tokio::test]
    async fn an_exit_reports_its_code_and_termination_message() {
        let (mut c, dir) = shell("exit", r#"echo '{"summary":1}' > "$TERMINATION""#, None);
        run_to_exit(&mut c, &dir, "Never").await;
        let ContainerState::Terminated {
            exit_code, message, ..
        } = &c.report.state
        else {
            panic!("{:?}", c.report.state)
        };
        assert_eq!(
            (*exit_code, message.as_deref()),
            (0, Some("{\"summary\":1}\n"))
        );
        assert_eq!(c.restart_at, None, "restartPolicy Never does not restart");
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_failure_falls_back_to_its_log_and_restarts_when_always() {
        let (mut c, dir) = shell(
            "failure",
            "echo 'cannot resolve minilm.default.svc' >&2; exit 3",
            Some("FallbackToLogsOnError"),
        );
        run_to_exit(&mut c, &dir, "Always").await;
        let ContainerState::Terminated {
            exit_code, message, ..
        } = &c.report.state
        else {
            panic!("{:?}", c.report.state)
        };
        assert_eq!(*exit_code, 3);
        assert_eq!(
            message.as_deref(),
            Some("cannot resolve minilm.default.svc\n")
        );
        assert_eq!(c.report.restarts, 1);
        assert!(c.restart_at.is_some(), "restartPolicy Always restarts");
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_binary_waits_with_the_reason() {
        let (mut c, dir) = shell("missing", "true", None);
        c.launch.program = dir.join("no-such-binary");
        c.spawn(&dir);
        let ContainerState::Waiting { reason, message } = &c.report.state else {
            panic!("{:?}", c.report.state)
        };
        assert_eq!(reason, "RunContainerError");
        assert!(message.as_deref().unwrap().contains("no-such-binary"));
        fs::remove_dir_all(dir).unwrap();
    }
}
