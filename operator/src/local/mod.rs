//! `loadgate local -f FILE`: the operator's LoadTest on one machine, no cluster. It starts
//! model-server as a child process as a pod would run it, waits on its readiness as the probe
//! does, runs each profile with the loadrunner engine on the very run spec the runner Job's pods
//! would get, and drives the same state machine ([`crate::status::load_test`]) the operator
//! drives, so the status it prints is the one the operator would write. Reports (CSV, HTML,
//! JSON) land in `results/<test>/`.
//!
//! Exit codes: 0 passed, 1 a budget broke (a verdict: Failed), 2 the manifest is wrong, 3 no
//! verdict was reached (the endpoint never became ready, the model is missing, a runner
//! failed, the test timed out or was interrupted), so a CI gate can tell a slow endpoint from a
//! broken setup.

pub mod manifest;
pub mod references;
pub mod server;

use crate::resources::load_test::{requested_run, run_spec};
use crate::status::load_test::{advance, start_run};
use crate::status::now;
use crate::status::plan::{EndpointState, EventReason, JobState, Step};
use crate::status::profile_results::RunnerResults;
use clap::Args;
use kube::ResourceExt;
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::LoadPhase;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `loadgate local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// YAML file with a LoadTest and, for an `endpointRef` target, its ModelEndpoint, and the
    /// Secrets and ConfigMaps it references (the same manifests the operator takes); repeat to
    /// read several files together.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    pub file: Vec<PathBuf>,

    /// Reports go to DIR/<test name>/: per profile Locust CSVs, an HTML report and a JSON
    /// summary, and the final status.yaml.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,

    /// The model-server binary; default: the one next to this `loadgate`, else `model-server`
    /// on PATH.
    #[arg(long, env = "MODEL_SERVER_BIN", value_name = "PATH")]
    pub model_server_bin: Option<PathBuf>,

    /// Where image paths like `/models/all-MiniLM-L6-v2` are found on this machine.
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

fn say(line: impl AsRef<str>) {
    eprintln!("==> {}", line.as_ref());
}

fn model_server_binary(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("model-server")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("model-server"))
}

/// SIGINT/SIGTERM, seen by every phase: the readiness wait gives up, the runner stops its users
/// and still writes its reports, no further profile starts, and the child server is stopped.
#[derive(Clone)]
struct Interrupt(tokio::sync::watch::Receiver<bool>);

impl Interrupt {
    fn install() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::signals::interrupted().await;
            say("interrupted: stopping users, draining, writing reports, stopping model-server");
            let _ = tx.send(true);
        });
        Self(rx)
    }

    fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    async fn wait(mut self) {
        let _ = self.0.wait_for(|set| *set).await;
    }
}

/// Exit code: the test finished and a budget broke.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the manifest cannot be run (the message names the field).
pub const EXIT_BAD_MANIFEST: u8 = 2;
/// Exit code: no verdict (setup broken, endpoint never ready, runner failed, timeout).
pub const EXIT_NO_VERDICT: u8 = 3;

/// Runs the manifest and returns the exit code.
pub async fn run(args: LocalArgs) -> ExitCode {
    let manifest = match manifest::read(&args.file) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("loadgate local: {e}");
            return ExitCode::from(EXIT_BAD_MANIFEST);
        }
    };
    let interrupt = Interrupt::install();
    match run_manifest(&args, manifest, interrupt).await {
        Ok(test) => match test.status.as_ref().and_then(|s| s.phase) {
            Some(LoadPhase::Passed) => ExitCode::SUCCESS,
            Some(LoadPhase::Failed) => ExitCode::from(EXIT_FAILED),
            _ => ExitCode::from(EXIT_NO_VERDICT),
        },
        Err(e) => {
            eprintln!("loadgate local: {e:#}");
            ExitCode::from(EXIT_NO_VERDICT)
        }
    }
}

async fn run_manifest(
    args: &LocalArgs,
    manifest: manifest::Manifest,
    interrupt: Interrupt,
) -> anyhow::Result<LoadTest> {
    let manifest::Manifest {
        mut test,
        endpoint,
        objects,
    } = manifest;
    let name = test.name_any();
    let out = args.results.join(&name);
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    if test.spec.parallelism > 1 {
        say(format!(
            "parallelism {} runs as one runner here (it splits the same load across pods on a cluster)",
            test.spec.parallelism
        ));
        test.spec.parallelism = 1;
    }
    // The last run here, kept in status.yaml: its figures become `status.previous`, and its
    // passed run the baseline (as the operator keeps them in the status it re-runs).
    let last = read_status(&out.join("status.yaml"));
    let mut server = None;
    let mut cold_start_seconds = None;
    let url = match &endpoint {
        Some(endpoint) => {
            let binary = model_server_binary(args.model_server_bin.as_deref());
            say(format!(
                "ModelEndpoint {}: starting {} (model {})",
                endpoint.name_any(),
                binary.display(),
                endpoint.spec.model
            ));
            let mut child = server::LocalServer::start(
                endpoint,
                &binary,
                &args.models_dir,
                &out.join("model-server.log"),
            )?;
            let period = Duration::from_secs(
                u64::try_from(endpoint.spec.readiness.period_seconds).unwrap_or(2),
            )
            .min(Duration::from_millis(250));
            let stop = interrupt.clone();
            let (waited, seen) =
                child.wait_ready(period, test.spec.endpoint_timeout.get(), &|| stop.is_set())?;
            say(format!(
                "readiness probe GET /health: {} ({:.2}s)",
                seen.join(" → "),
                waited.as_secs_f64()
            ));
            // Local mode's cold start: from the child's start to its first 200 on /health.
            cold_start_seconds = Some(waited.as_secs_f64());
            let url = format!("http://{}", child.addr);
            server = Some(child);
            url
        }
        None => test
            .spec
            .target
            .url
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned(),
    };

    let run = local_run_name(&test);
    // Another LoadTest's run as the baseline: its status from an earlier local run beside this one.
    let referenced = test
        .spec
        .baseline
        .as_ref()
        .and_then(|b| b.load_test_ref.as_deref())
        .and_then(|other| read_status(&args.results.join(other).join("status.yaml")));
    let mut plan = start_run(&test, last.as_ref(), referenced.as_ref(), &run, &now());
    if let Some(baseline) = &plan.status.baseline {
        say(format!("baseline: {}", baseline.message));
    }
    let mut job = JobState::Missing;
    // The child runs unlimited here: without CPU resources in its spec, it has this machine.
    let resources = endpoint.as_ref().map(|e| {
        crate::resources::model_endpoint::target_resources(&e.spec).unwrap_or(
            loadgate_api::efficiency::TargetResources {
                cpu_cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
                memory_gib: None,
            },
        )
    });
    let ready = EndpointState::Ready {
        url: url.clone(),
        cold_start_seconds,
        resources,
        readiness_path: None,
    };
    let total = test.spec.profiles.len();
    let mut reports = Vec::new();
    loop {
        plan = advance(&test, &plan.status, &ready, &job, &now());
        reports.extend(plan.report.take().map(|(_, report)| report));
        // The runner ran to completion inside `run_profile`, so its outcome is consumed here.
        job = JobState::Missing;
        for event in &plan.events {
            if event.reason != EventReason::ProfileStarted {
                say(&event.note);
            }
        }
        if plan.status.phase.is_some_and(LoadPhase::is_finished) {
            break;
        }
        match &plan.step {
            Step::CreateJob { index, target_url } => {
                let profile = &test.spec.profiles[*index];
                say(format!(
                    "profile {} ({} of {total}): {}",
                    profile.name,
                    index + 1,
                    profile.load_profile().describe()
                ));
                job = if interrupt.is_set() {
                    JobState::Failed("interrupted before it started".into())
                } else {
                    run_profile(
                        &test,
                        &objects,
                        *index,
                        target_url,
                        &out,
                        server.is_some(),
                        interrupt.clone(),
                    )
                    .await
                };
            }
            Step::Wait | Step::DeleteJob(_) => {}
        }
    }
    if let Some(server) = server.take() {
        server.stop(Duration::from_secs(10));
    }
    if let Some(capacity) = &plan.status.capacity {
        say(format!("capacity: {}", capacity.message));
    }
    // The same merged report the operator keeps in its ConfigMap, and its one-page HTML.
    let report = loadgate_api::report::TestReport {
        test: name.clone(),
        run: run.clone(),
        generation: crate::resources::load_test::generation(&test),
        profiles: reports,
        cold_start_seconds: plan.status.cold_start_seconds,
    };
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(
        out.join("report.html"),
        loadgate_results::html::render_test(&report),
    )?;
    test.status = Some(plan.status);
    let yaml = serde_saphyr::to_string(&test)
        .map_err(|e| anyhow::anyhow!("cannot print the status: {e}"))?;
    std::fs::write(out.join("status.yaml"), &yaml)?;
    println!("{yaml}");
    say(format!("reports in {}/", out.display()));
    Ok(test)
}

/// The status a previous run here left in `path`, when there is one that reads; a file that
/// does not is said and ignored (the run goes on without a baseline).
fn read_status(path: &Path) -> Option<loadgate_api::load_test_status::LoadTestStatus> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_saphyr::from_str::<LoadTest>(&text) {
        Ok(test) => test.status,
        Err(e) => {
            say(format!(
                "{}: not a LoadTest status ({e}); ignored",
                path.display()
            ));
            None
        }
    }
}

/// The run's name: the `loadgate.dev/run` annotation, else the UTC time it starts
/// (`local-20261204t201530z`), so each run here is told apart in `previous` and `baseline`.
fn local_run_name(test: &LoadTest) -> String {
    if test
        .annotations()
        .contains_key(loadgate_api::load_test::RUN_ANNOTATION)
    {
        return requested_run(test);
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    format!("local-{}", now.strftime("%Y%m%dt%H%M%Sz"))
}

/// One profile through the runner's engine, with the run spec the Job's pods would get, and
/// report paths here.
#[allow(clippy::too_many_arguments)]
async fn run_profile(
    test: &LoadTest,
    objects: &references::Objects,
    index: usize,
    url: &str,
    out: &Path,
    started_here: bool,
    interrupt: Interrupt,
) -> JobState {
    let profile = &test.spec.profiles[index];
    let prefix = out.join(&profile.name);
    // Local mode runs model-server only (a spec.runtime is refused): its readiness is /health.
    let mut spec = run_spec(test, profile, url, None);
    // What a runner pod reads from its Secret-backed environment and mounted files, here from
    // the manifest's own Secrets and ConfigMaps, in memory.
    if let Err(e) = objects.localize(test, &mut spec) {
        return JobState::Failed(e);
    }
    // Its readiness has just been waited on, as the probe does.
    spec.readiness.wait = !started_here;
    let outputs = loadrunner::outputs::RunOutputs {
        csv: Some(prefix.clone()),
        html: Some(out.join(format!("{}.html", profile.name))),
        json: Some(out.join(format!("{}.json", profile.name))),
        ..Default::default()
    };
    match loadrunner::run::execute(&spec, &[], &outputs, interrupt.wait()).await {
        // The full results, as the operator reads them from a pod's log: steps and windows.
        Ok(finished) => JobState::Succeeded(vec![RunnerResults::full(finished.results)]),
        Err(e) => JobState::Failed(format!("{e:#}")),
    }
}
