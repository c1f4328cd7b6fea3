//! The one Rust twin of every schema and CEL rule of the CRDs: [`LoadTestSpec::validate`] and
//! [`ModelEndpointSpec::validate`]. The apiserver checks the schema on admission; local mode
//! (which never meets an apiserver) and the reconciler (which must not trust that the CRD
//! installed is the one this release generated) call these. Each error names the field the way
//! the apiserver does (`spec.profiles[1].spawnRate`). The rules a runner's [`crate::run_spec`]
//! shares (a load shape, tasks, budgets) live in [`crate::rules`], without the CRD feature.
//!
//! The caps ([`MAX_DURATION`], [`MAX_STAGES`], [`MAX_USERS_PER_RUNNER`], name lengths) are
//! also in the generated schema; `operator` tests that both refuse the same examples, and the
//! end-to-end test applies them to a real apiserver.

use crate::load_test::LoadTestSpec;
use crate::model_endpoint::{ModelEndpointSpec, RUNTIME_TMP, Runtime};
pub use crate::rules::{
    FieldError, MAX_DURATION, MAX_SEARCH_STEP, MAX_SEARCH_STEPS, MAX_STAGES, MAX_TASK_NAME,
    MAX_USERS_PER_RUNNER, TARGET_URL_PATTERN, target_url_ok,
};
use crate::rules::{
    check_duration, check_load, check_scoped_thresholds, check_tasks, check_thresholds,
    check_wait_time, dns_label, err,
};

/// Longest LoadTest name: it is the value of the `loadgate.dev/loadtest` label on every Job and
/// pod, and a label value holds 63 characters.
pub const MAX_LOAD_TEST_NAME: usize = 63;
/// Longest ModelEndpoint name: it names the Service, a DNS-1035 label of at most 63 characters.
pub const MAX_ENDPOINT_NAME: usize = 63;

impl LoadTestSpec {
    /// Every rule of the LoadTest CRD's schema and CEL, and the caps that keep an admitted test
    /// from overflowing or failing late (label-sized names, durations ≤ 24h, stage and user
    /// counts).
    ///
    /// # Errors
    /// The first rule broken, naming its field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let target = &self.target;
        if target.endpoint_ref.is_some() == target.url.is_some() {
            return err(
                "spec.target",
                "set exactly one of target.endpointRef and target.url",
            );
        }
        if let Some(url) = &target.url
            && !target_url_ok(url)
        {
            return err(
                "spec.target.url",
                format!("{url:?} must be http(s)://host[:port] with no path"),
            );
        }
        if let Some(tls) = &target.tls {
            crate::target::check_tls("spec.target.tls", tls, target.url.as_deref())?;
        }
        crate::target::check_headers("spec.target.headers", &target.headers)?;
        if let Some(dataset) = &self.dataset {
            crate::target::check_dataset("spec.dataset", dataset)?;
        }
        if let Some(r) = &target.endpoint_ref
            && (r.name.len() > MAX_ENDPOINT_NAME || !dns_label(&r.name))
        {
            return err(
                "spec.target.endpointRef.name",
                "must be a ModelEndpoint name (a DNS label of at most 63 characters)",
            );
        }
        if let Some(path) = &self.target.readiness_path
            && (!path.starts_with('/') || path.len() > 256)
        {
            return err(
                "spec.target.readinessPath",
                "must be a path starting with '/', at most 256 characters",
            );
        }
        if !(1..=100).contains(&self.parallelism) {
            return err("spec.parallelism", "must be between 1 and 100");
        }
        if self.profiles.is_empty() || self.profiles.len() > 16 {
            return err("spec.profiles", "must hold between 1 and 16 profiles");
        }
        let parallelism = u32::try_from(self.parallelism).unwrap_or(1);
        for (i, p) in self.profiles.iter().enumerate() {
            let at = format!("spec.profiles[{i}]");
            if p.name.is_empty() || p.name.len() > 40 || !dns_label(&p.name) {
                return err(
                    format!("{at}.name"),
                    "must be lowercase alphanumerics and '-', 1 to 40 characters",
                );
            }
            if self.profiles[..i].iter().any(|q| q.name == p.name) {
                return err(format!("{at}.name"), "profile names must be unique");
            }
            check_load(
                &at,
                &p.load_profile(),
                &p.effective_thresholds(&self.thresholds),
            )?;
            if p.users < parallelism {
                return err(
                    format!("{at}.users"),
                    "every profile needs at least `parallelism` users (one per runner pod)",
                );
            }
            if p.users.div_ceil(parallelism) > MAX_USERS_PER_RUNNER {
                return err(
                    format!("{at}.users"),
                    format!(
                        "{} users over {parallelism} runner pods is more than \
                         {MAX_USERS_PER_RUNNER} per pod: raise spec.parallelism",
                        p.users
                    ),
                );
            }
            if let Some(t) = &p.thresholds {
                check_thresholds(&format!("{at}.thresholds"), t)?;
                check_scoped_thresholds(&format!("{at}.thresholds"), t, false)?;
            }
        }
        check_tasks(
            "spec.tasks",
            &self.tasks,
            "spec.taskThresholds",
            &self.task_thresholds,
        )?;
        check_thresholds("spec.thresholds", &self.thresholds)?;
        let llm = crate::rules::has_llm_task(&self.tasks);
        crate::rules::check_llm_budgets("spec.thresholds", &self.thresholds, llm)?;
        for (i, p) in self.profiles.iter().enumerate() {
            if let Some(t) = &p.thresholds {
                let at = format!("spec.profiles[{i}].thresholds");
                crate::rules::check_llm_budgets(&at, t, llm)?;
            }
        }
        if let Some(wait) = &self.wait_time {
            check_wait_time("spec.waitTime", wait)?;
        }
        check_duration("spec.timeout", self.timeout)?;
        let profiles: std::time::Duration = self
            .profiles
            .iter()
            .map(|p| p.load_profile().run_time())
            .sum();
        if self.timeout.get() < profiles {
            return err(
                "spec.timeout",
                format!(
                    "{} is shorter than the profiles' total duration of {}: the test could \
                     never finish inside it",
                    self.timeout,
                    crate::duration::Duration::from_millis(
                        u64::try_from(profiles.as_millis()).unwrap_or(u64::MAX)
                    )
                ),
            );
        }
        check_duration("spec.endpointTimeout", self.endpoint_timeout)?;
        if let Some(t) = self.runner.request_timeout {
            check_duration("spec.runner.requestTimeout", t)?;
        }
        if self.ttl_seconds_after_finished.is_some_and(|t| t < 0) {
            return err("spec.ttlSecondsAfterFinished", "must be ≥ 0");
        }
        if self.thresholds.max_cold_start_seconds.is_some() && self.target.endpoint_ref.is_none() {
            return err(
                "spec.thresholds.maxColdStartSeconds",
                "needs target.endpointRef: a URL target has no cold start to measure",
            );
        }
        if let Some(quality) = &self.quality {
            crate::rules::check_quality("spec.quality", quality, &self.tasks)?;
        }
        if let Some(baseline) = &self.baseline {
            for (name, v, most) in [
                (
                    "maxP95IncreasePercent",
                    baseline.max_p95_increase_percent,
                    f64::MAX,
                ),
                (
                    "maxP99IncreasePercent",
                    baseline.max_p99_increase_percent,
                    f64::MAX,
                ),
                (
                    "maxRpsDecreasePercent",
                    baseline.max_rps_decrease_percent,
                    100.0,
                ),
                (
                    "maxCapacityDecreasePercent",
                    baseline.max_capacity_decrease_percent,
                    100.0,
                ),
                (
                    "maxTtftP95IncreasePercent",
                    baseline.max_ttft_p95_increase_percent,
                    f64::MAX,
                ),
                (
                    "maxTpotP95IncreasePercent",
                    baseline.max_tpot_p95_increase_percent,
                    f64::MAX,
                ),
                (
                    "maxOutputTokensPerSecondDecreasePercent",
                    baseline.max_output_tokens_per_second_decrease_percent,
                    100.0,
                ),
            ] {
                if v.is_some_and(|v| !v.is_finite() || !(0.0..=most).contains(&v)) {
                    return err(
                        format!("spec.baseline.{name}"),
                        if most == 100.0 {
                            "must be between 0 and 100"
                        } else {
                            "must be ≥ 0"
                        },
                    );
                }
            }
            if let Some(name) = &baseline.load_test_ref
                && (name.len() > MAX_ENDPOINT_NAME || !dns_label(name))
            {
                return err(
                    "spec.baseline.loadTestRef",
                    "must be a LoadTest name (a DNS label of at most 63 characters)",
                );
            }
        }
        Ok(())
    }
}

/// The rules of a LoadTest's metadata the schema checks on the object's root.
///
/// # Errors
/// When the name is longer than a label value holds, or is not a DNS-1123 subdomain (the
/// apiserver's rule for every object name; local mode also writes `results/NAME/` with it, so
/// `..`, `/` or an absolute path can never point outside `results/`).
pub fn validate_load_test_name(name: &str) -> Result<(), FieldError> {
    if name.len() > MAX_LOAD_TEST_NAME {
        return err(
            "metadata.name",
            format!("must be at most {MAX_LOAD_TEST_NAME} characters (it is a label value)"),
        );
    }
    if !name.split('.').all(dns_label) {
        return err(
            "metadata.name",
            format!(
                "{name:?} must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit"
            ),
        );
    }
    Ok(())
}

/// The rules of a ModelEndpoint's metadata the schema checks on the object's root.
///
/// # Errors
/// When the name cannot name a Service.
pub fn validate_endpoint_name(name: &str) -> Result<(), FieldError> {
    if name.len() > MAX_ENDPOINT_NAME
        || !dns_label(name)
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return err(
            "metadata.name",
            "must be a DNS-1035 label of at most 63 characters (it names the Service)",
        );
    }
    Ok(())
}

impl ModelEndpointSpec {
    /// Every rule of the ModelEndpoint CRD's schema.
    ///
    /// # Errors
    /// The first rule broken, naming its field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.model.is_empty() {
            return err("spec.model", "must name a model directory or hub id");
        }
        if !(0..=1000).contains(&self.replicas) {
            return err("spec.replicas", "must be between 0 and 1000");
        }
        if !(1..=65535).contains(&self.port) {
            return err("spec.port", "must be between 1 and 65535");
        }
        let s = &self.server;
        for (field, v) in [
            ("maxBatchSize", s.max_batch_size),
            ("maxBatchTokens", s.max_batch_tokens),
            ("maxConcurrentRequests", s.max_concurrent_requests),
            ("maxClientBatchSize", s.max_client_batch_size),
            ("inferenceWorkers", s.inference_workers),
            ("requestTimeoutSecs", s.request_timeout_secs),
        ] {
            if v.is_some_and(|v| v < 1) {
                return err(format!("spec.server.{field}"), "must be ≥ 1");
            }
        }
        let r = &self.readiness;
        for (field, v) in [
            ("periodSeconds", r.period_seconds),
            ("timeoutSeconds", r.timeout_seconds),
            ("failureThreshold", r.failure_threshold),
        ] {
            if v < 1 {
                return err(format!("spec.readiness.{field}"), "must be ≥ 1");
            }
        }
        if let Some(runtime) = &self.runtime {
            self.check_runtime(runtime)?;
        }
        Ok(())
    }

    /// The rules of `spec.runtime`, and of the fields that do not go with it.
    fn check_runtime(&self, runtime: &Runtime) -> Result<(), FieldError> {
        if let Some(image) = &self.image {
            return err(
                "spec.image",
                format!(
                    "{image} cannot go with spec.runtime: spec.image replaces loadgate's \
                     model-server image, spec.runtime.image names your own server"
                ),
            );
        }
        if let Some(field) = self.server.fields_set().first() {
            return err(
                format!("spec.server.{field}"),
                "applies to loadgate's model-server only; with spec.runtime pass your \
                 server's own flags in spec.runtime.args",
            );
        }
        if runtime.image.trim().is_empty() {
            return err("spec.runtime.image", "must not be empty");
        }
        if runtime.port.is_some_and(|p| !(1..=65535).contains(&p)) {
            return err("spec.runtime.port", "must be between 1 and 65535");
        }
        let path = &runtime.readiness_path;
        if !path.starts_with('/') || path.len() > 256 {
            return err(
                "spec.runtime.readinessPath",
                "must be a path starting with '/', at most 256 characters",
            );
        }
        let mount = runtime.model_mount_path.trim_end_matches('/');
        if !runtime.model_mount_path.starts_with('/')
            || mount.is_empty()
            || mount == RUNTIME_TMP
            || mount.split('/').any(|part| part == "..")
            || runtime.model_mount_path.len() > 256
        {
            return err(
                "spec.runtime.modelMountPath",
                format!(
                    "{:?} must be an absolute path other than / and {RUNTIME_TMP} (the \
                     writable scratch directory), without '..', at most 256 characters",
                    runtime.model_mount_path
                ),
            );
        }
        for (i, var) in runtime.env.iter().enumerate() {
            if !env_name_ok(&var.name) {
                return err(
                    format!("spec.runtime.env[{i}].name"),
                    format!(
                        "{:?} must be letters, digits, '_', '-' and '.', not starting with a \
                         digit",
                        var.name
                    ),
                );
            }
            if var
                .value_from
                .as_ref()
                .is_some_and(|from| from.file_key_ref.is_some())
            {
                return err(
                    format!("spec.runtime.env[{i}].valueFrom.fileKeyRef"),
                    "is not supported: the pod has no volume of yours to read it from; use \
                     secretKeyRef or configMapKeyRef",
                );
            }
            if var.value_from.is_some() && var.value.as_deref().is_some_and(|v| !v.is_empty()) {
                return err(
                    format!("spec.runtime.env[{i}]"),
                    "set either value or valueFrom, not both",
                );
            }
        }
        Ok(())
    }
}

/// An environment variable name every apiserver accepts (`[-._a-zA-Z][-._a-zA-Z0-9]*`, the
/// rule before Kubernetes relaxed it to any printable character but `=`), so a spec this admits
/// never fails later as a Deployment the apiserver refuses.
fn env_name_ok(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    name.chars()
        .next()
        .is_some_and(|c| ok(c) && !c.is_ascii_digit())
        && name.chars().all(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field `validate` names for a LoadTest spec given as JSON, `None` when it passes.
    fn refused_field(spec: &str) -> Option<String> {
        let spec: LoadTestSpec = serde_json::from_str(spec).unwrap();
        spec.validate().err().map(|e| e.field)
    }

    /// Before: a timeout shorter than the profiles could run was accepted, and every run of
    /// the test ended in Error at its timeout.
    #[test]
    fn a_timeout_shorter_than_the_profiles_is_refused_naming_both() {
        let spec = |timeout: &str| {
            serde_json::from_str::<LoadTestSpec>(&format!(
                r#"{{"target":{{"url":"http://127.0.0.1:1"}},"timeout":"{timeout}","profiles":[{{"name":"a","users":1,"spawnRate":1,"duration":"2m"}},{{"name":"b","users":1,"spawnRate":1,"duration":"1m30s"}}]}}"#
            ))
            .unwrap()
        };
        let e = spec("3m").validate().unwrap_err();
        assert_eq!(e.field, "spec.timeout");
        assert!(
            e.to_string()
                .contains("3m is shorter than the profiles' total duration of 3m30s"),
            "{e}"
        );
        assert_eq!(spec("3m30s").validate(), Ok(()));
    }

    /// LLM budgets judge LLM tasks: set without one they are refused naming the field, and a
    /// chat task's own fields are checked.
    #[test]
    fn llm_budgets_need_an_llm_task_and_llm_requests_are_checked() {
        let spec = |tasks: &str, thresholds: &str| {
            format!(
                r#"{{"target":{{"url":"http://127.0.0.1:1"}},"profiles":[{{"name":"p","users":1,"spawnRate":1,"duration":"5s"}}],"tasks":[{tasks}],"thresholds":{{{thresholds}}}}}"#
            )
        };
        let chat = r#"{"name":"chat","weight":1,"request":{"chat":{"model":"m","maxTokens":64}}}"#;
        let get = r#"{"name":"get","weight":1,"request":{"get":{"path":"/health"}}}"#;
        assert_eq!(
            refused_field(&spec(chat, r#""ttftP95Ms":500,"minGoodput":0.9"#)),
            None
        );
        assert_eq!(
            refused_field(&spec(get, r#""tpotP95Ms":50"#)).as_deref(),
            Some("spec.thresholds.tpotP95Ms")
        );
        assert_eq!(
            refused_field(&spec(chat, r#""minGoodput":1.5"#)).as_deref(),
            Some("spec.thresholds.minGoodput")
        );
        let no_tokens = r#"{"name":"chat","weight":1,"request":{"chat":{"maxTokens":0}}}"#;
        assert_eq!(
            refused_field(&spec(no_tokens, "")).as_deref(),
            Some("spec.tasks[0].request.chat.maxTokens")
        );
        let prompt = r#"{"name":"c","weight":1,"request":{"completion":{"prompt":{"minTokens":9,"maxTokens":3}}}}"#;
        assert_eq!(
            refused_field(&spec(prompt, "")).as_deref(),
            Some("spec.tasks[0].request.completion.prompt")
        );
    }

    /// Before: local mode wrote `results/NAME/` with any name, `../x` or `/tmp/x` included.
    #[test]
    fn a_load_test_name_is_a_dns_subdomain() {
        for bad in ["../escape", "/tmp/x", "a/b", "..", "Upper", "-a", "a.", ""] {
            let e = validate_load_test_name(bad).unwrap_err();
            assert_eq!(e.field, "metadata.name", "{bad}");
        }
        for good in ["quickstart", "web.v2", "a-1"] {
            assert_eq!(validate_load_test_name(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn the_new_gates_are_checked_naming_their_field() {
        let spec = |profile: &str, thresholds: &str| {
            format!(
                r#"{{"target":{{"url":"http://127.0.0.1:1"}},"profiles":[{{"name":"p","users":1,"spawnRate":1,"duration":"5s"{profile}}}],"thresholds":{{{thresholds}}}}}"#
            )
        };
        assert_eq!(refused_field(&spec(r#","warmup":"2s""#, "")), None);
        assert_eq!(
            refused_field(&spec(r#","warmup":"5s""#, "")).as_deref(),
            Some("spec.profiles[0].warmup"),
            "a warm-up as long as the run leaves nothing to measure"
        );
        assert_eq!(
            refused_field(&spec("", r#""abortOnFail":true"#)).as_deref(),
            Some("spec.profiles[0].thresholds.abortOnFail"),
            "nothing to judge the seconds on"
        );
        assert_eq!(
            refused_field(&spec("", r#""abortOnFail":true,"p95Ms":5"#)),
            None
        );
        assert_eq!(
            refused_field(&spec(r#","thresholds":{"maxColdStartSeconds":5}"#, "")).as_deref(),
            Some("spec.profiles[0].thresholds.maxColdStartSeconds")
        );
        assert_eq!(
            refused_field(&spec("", r#""maxColdStartSeconds":5"#)).as_deref(),
            Some("spec.thresholds.maxColdStartSeconds"),
            "a URL target has no cold start"
        );
    }

    /// The field `validate` names for a ModelEndpoint spec with this `runtime` (JSON) and
    /// these other top-level fields, `None` when it passes.
    fn refused_runtime(runtime: &str, extra: &str) -> Option<(String, String)> {
        let spec: ModelEndpointSpec = serde_json::from_str(&format!(
            r#"{{"model":"bge-small","runtime":{runtime}{extra}}}"#
        ))
        .unwrap();
        spec.validate()
            .err()
            .map(|e| (e.field.clone(), e.to_string()))
    }

    #[test]
    fn a_runtime_is_checked_naming_each_field() {
        let tei = r#"{"image":"ghcr.io/huggingface/text-embeddings-inference:cpu-1.8","args":["--model-id","/models/bge-small"],"env":[{"name":"HF_TOKEN","valueFrom":{"secretKeyRef":{"name":"hf","key":"token"}}},{"name":"log.level_x-1","value":"info"}],"port":8080,"readinessPath":"/health","modelMountPath":"/data"}"#;
        assert_eq!(refused_runtime(tei, ""), None);
        assert_eq!(
            refused_runtime(r#"{"image":"tei:1"}"#, ""),
            None,
            "defaults"
        );
        let field = |runtime: &str, extra: &str| refused_runtime(runtime, extra).unwrap();
        for (runtime, want, says) in [
            (
                r#"{"image":" "}"#,
                "spec.runtime.image",
                "must not be empty",
            ),
            (
                r#"{"image":"t","port":0}"#,
                "spec.runtime.port",
                "between 1 and 65535",
            ),
            (
                r#"{"image":"t","port":65536}"#,
                "spec.runtime.port",
                "between 1 and 65535",
            ),
            (
                r#"{"image":"t","readinessPath":"health"}"#,
                "spec.runtime.readinessPath",
                "starting with '/'",
            ),
            (
                r#"{"image":"t","modelMountPath":"models"}"#,
                "spec.runtime.modelMountPath",
                "absolute path",
            ),
            (
                r#"{"image":"t","modelMountPath":"/"}"#,
                "spec.runtime.modelMountPath",
                "other than /",
            ),
            (
                r#"{"image":"t","modelMountPath":"/tmp/"}"#,
                "spec.runtime.modelMountPath",
                "/tmp",
            ),
            (
                r#"{"image":"t","modelMountPath":"/a/../etc"}"#,
                "spec.runtime.modelMountPath",
                "'..'",
            ),
            (
                r#"{"image":"t","env":[{"name":"OK","value":"1"},{"name":"1BAD","value":"x"}]}"#,
                "spec.runtime.env[1].name",
                "\"1BAD\" must be letters",
            ),
            (
                r#"{"image":"t","env":[{"name":"A B"}]}"#,
                "spec.runtime.env[0].name",
                "must be letters",
            ),
            (
                r#"{"image":"t","env":[{"name":"T","valueFrom":{"fileKeyRef":{"volumeName":"v","path":"p","key":"k"}}}]}"#,
                "spec.runtime.env[0].valueFrom.fileKeyRef",
                "not supported",
            ),
            (
                r#"{"image":"t","env":[{"name":"T","value":"x","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]}"#,
                "spec.runtime.env[0]",
                "not both",
            ),
        ] {
            let (got, message) = field(runtime, "");
            assert_eq!(got, want, "{runtime}: {message}");
            assert!(message.contains(says), "{runtime}: {message}");
        }
    }

    /// model-server's settings and image do not go with a runtime: each is refused by name,
    /// saying where the runtime's own flags go.
    #[test]
    fn model_server_settings_with_a_runtime_are_refused_naming_the_field() {
        let runtime = r#"{"image":"tei:1"}"#;
        for (server, field) in [
            (r#""maxBatchSize":8"#, "maxBatchSize"),
            (r#""maxBatchTokens":8"#, "maxBatchTokens"),
            (r#""maxConcurrentRequests":8"#, "maxConcurrentRequests"),
            (r#""maxClientBatchSize":8"#, "maxClientBatchSize"),
            (r#""inferenceWorkers":2"#, "inferenceWorkers"),
            (r#""requestTimeoutSecs":9"#, "requestTimeoutSecs"),
            (r#""dtype":"int8""#, "dtype"),
        ] {
            let (got, message) =
                refused_runtime(runtime, &format!(r#","server":{{{server}}}"#)).unwrap();
            assert_eq!(got, format!("spec.server.{field}"));
            assert_eq!(
                message,
                format!(
                    "spec.server.{field}: applies to loadgate's model-server only; with \
                     spec.runtime pass your server's own flags in spec.runtime.args"
                )
            );
        }
        assert_eq!(refused_runtime(runtime, r#","server":{}"#), None);
        let (got, message) = refused_runtime(runtime, r#","image":"mine:1""#).unwrap();
        assert_eq!(got, "spec.image");
        assert!(
            message.contains("cannot go with spec.runtime"),
            "names both fields: {message}"
        );
    }

    #[test]
    fn target_urls_are_exactly_http_or_https_authorities() {
        for ok in [
            "http://127.0.0.1:8080",
            "https://embed.example.com",
            "https://gw.ml.svc:8443/",
            "http://minilm.ml.svc:8080/",
            "http://[::1]:9000",
            "http://host",
        ] {
            assert!(target_url_ok(ok), "{ok}");
        }
        for bad in [
            "ftp://x:1",
            "https://x:1/v1",
            "http://x:1/embed",
            "http://:80",
            "http://x:0",
            "http://x:65536",
            "http://x:",
            "http://-x",
            "http://[::1",
            "http://x y",
        ] {
            assert!(!target_url_ok(bad), "{bad}");
        }
    }
}
