//! How a target is reached beyond its URL: TLS trust ([`TargetTls`]), headers sent on every
//! request, some from Secrets ([`Header`]), and the team's own texts ([`Dataset`]); and their
//! runner-side twins in a run spec ([`RunTls`], [`RunHeader`], [`RunDataset`]), where a secret
//! arrives by an environment variable or a mounted file and never as a value in the spec.
//!
//! [`is_credential`] names the headers whose values are redacted in every echo.

use crate::rules::{FieldError, err};
use serde::{Deserialize, Serialize};

/// Largest dataset: a ConfigMap holds at most 1 MiB, and an inline one rides in the LoadTest.
pub const MAX_DATASET_BYTES: usize = 1 << 20;
/// Most lines a dataset holds.
pub const MAX_DATASET_LINES: usize = 100_000;
/// Most headers a target sends.
pub const MAX_HEADERS: usize = 32;
/// Largest header value read from a Secret or a file.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 << 10;
/// Largest CA bundle read.
pub const MAX_CA_BYTES: usize = 1 << 20;

/// A key of a Secret in the LoadTest's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 253)))]
    pub name: String,
    /// The key in its `data`.
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 253)))]
    pub key: String,
}

/// A key of a ConfigMap in the LoadTest's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapKeyRef {
    /// The ConfigMap's name.
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 253)))]
    pub name: String,
    /// The key in its `data`.
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 253)))]
    pub key: String,
}

/// How an `https` target is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetTls {
    /// A PEM bundle of CA certificates trusted beside the system roots (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Trust any certificate (a test endpoint only: the run's report says so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// The name sent as SNI and checked in the certificate, when it is not the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 253)))]
    pub server_name: Option<String>,
}

/// A header sent on every request: a plain value, or one from a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "crd", schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.value) != has(self.valueFrom)", "message": "set exactly one of value and valueFrom"},
])))]
pub struct Header {
    /// The header's name (`Authorization`, `X-Api-Key`).
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 128)))]
    pub name: String,
    /// Its value, in the clear: not for credentials (use `valueFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(max = 8192)))]
    pub value: Option<String>,
    /// Its value from a Secret: it reaches the runner pods as an environment variable from the
    /// Secret, never in an argument, the status, an Event, a report or a log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderSource>,
}

/// Where a header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderSource {
    /// A key of a Secret in the LoadTest's namespace.
    pub secret_key_ref: SecretKeyRef,
}

/// The team's own texts: lines of plain text, or JSON lines `{"text": …}` for embed tasks and
/// `{"query": …, "documents": [...]}` for rerank tasks, drawn with the run's seed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "crd", schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.configMapRef) != (has(self.inline) && self.inline.size() > 0)", "message": "set exactly one of configMapRef and inline"},
])))]
pub struct Dataset {
    /// A key of a ConfigMap of this namespace holding the lines (at most 1 MiB: a ConfigMap's
    /// limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// The lines themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "crd", schemars(length(max = 10000)))]
    pub inline: Vec<String>,
}

/// True for a header whose value is a credential: `Authorization`, `Proxy-Authorization`,
/// `Cookie`, and any name ending in `-Key`, `-Token`, `-Secret` or `-Auth` (`X-Api-Key`,
/// `Api-Key`, `X-Auth-Token`). Its value is redacted wherever a header is echoed.
pub fn is_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "api-key" | "apikey"
    ) || ["-key", "-token", "-secret", "-auth", "_key", "_token"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// What a header echoes as its value: `[redacted]` for credentials and Secret values.
pub fn echo_value(name: &str, value: Option<&str>) -> String {
    match value {
        Some(v) if !is_credential(name) => v.to_owned(),
        _ => "[redacted]".to_owned(),
    }
}

/// Headers loadgate sets itself, which a target's headers may not replace.
const RESERVED: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
];

/// A header name as RFC 9110 allows it (a token), and not one loadgate sets itself.
pub(crate) fn check_header_name(at: &str, name: &str) -> Result<(), FieldError> {
    let token = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return err(
            format!("{at}.name"),
            format!("{name:?} is not a header name"),
        );
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return err(
            format!("{at}.name"),
            format!("{name} is set by the runner itself"),
        );
    }
    Ok(())
}

/// A header value as HTTP allows it: visible ASCII, spaces and tabs, no line breaks.
pub fn header_value_ok(value: &str) -> bool {
    value.len() <= MAX_HEADER_VALUE_BYTES
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// A LoadTest's headers under `at` (`spec.target.headers`).
pub fn check_headers(at: &str, headers: &[Header]) -> Result<(), FieldError> {
    if headers.len() > MAX_HEADERS {
        return err(at, format!("at most {MAX_HEADERS} headers"));
    }
    for (i, h) in headers.iter().enumerate() {
        let at = format!("{at}[{i}]");
        check_header_name(&at, &h.name)?;
        match (&h.value, &h.value_from) {
            (Some(_), Some(_)) | (None, None) => {
                return err(&at, "set exactly one of value and valueFrom");
            }
            (Some(v), None) if !header_value_ok(v) => {
                return err(
                    format!("{at}.value"),
                    "must be printable text without line breaks, at most 8 KiB",
                );
            }
            (Some(_), None) if is_credential(&h.name) => {
                return err(
                    format!("{at}.value"),
                    format!(
                        "{} carries a credential: take it from a Secret (valueFrom.secretKeyRef), \
                         so it never shows in the LoadTest, a Job or a log",
                        h.name
                    ),
                );
            }
            (None, Some(from)) => check_key_ref(
                &format!("{at}.valueFrom.secretKeyRef"),
                &from.secret_key_ref.name,
                &from.secret_key_ref.key,
            )?,
            _ => {}
        }
    }
    Ok(())
}

/// A Secret's or ConfigMap's name (a DNS subdomain) and key (`[-._a-zA-Z0-9]+`) under `at`.
pub fn check_key_ref(at: &str, name: &str, key: &str) -> Result<(), FieldError> {
    let subdomain = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && crate::rules::dns_label(l));
    if !subdomain {
        return err(
            format!("{at}.name"),
            format!("{name:?} is not a Secret or ConfigMap name (a DNS subdomain)"),
        );
    }
    let key_ok = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !key_ok {
        return err(
            format!("{at}.key"),
            format!("{key:?} is not a data key (letters, digits, '-', '.', '_')"),
        );
    }
    Ok(())
}

/// A LoadTest's TLS settings under `at` (`spec.target.tls`), for a target `url`.
pub fn check_tls(at: &str, tls: &TargetTls, url: Option<&str>) -> Result<(), FieldError> {
    if !url.is_some_and(|u| u.starts_with("https://")) {
        return err(at, "needs an https:// target.url");
    }
    if let Some(r) = &tls.ca_secret_ref {
        check_key_ref(&format!("{at}.caSecretRef"), &r.name, &r.key)?;
    }
    if let Some(name) = &tls.server_name {
        check_server_name(&format!("{at}.serverName"), name)?;
    }
    if tls.insecure_skip_verify && tls.ca_secret_ref.is_some() {
        return err(
            format!("{at}.insecureSkipVerify"),
            "trusts any certificate: leave caSecretRef out, or set this false",
        );
    }
    Ok(())
}

fn check_server_name(at: &str, name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        err(at, format!("{name:?} is not a DNS name"))
    }
}

/// A LoadTest's dataset under `at` (`spec.dataset`).
pub fn check_dataset(at: &str, dataset: &Dataset) -> Result<(), FieldError> {
    match (&dataset.config_map_ref, dataset.inline.is_empty()) {
        (Some(_), false) | (None, true) => err(at, "set exactly one of configMapRef and inline"),
        (Some(r), true) => check_key_ref(&format!("{at}.configMapRef"), &r.name, &r.key),
        (None, false) => check_lines(&format!("{at}.inline"), &dataset.inline),
    }
}

fn check_lines(at: &str, lines: &[String]) -> Result<(), FieldError> {
    if lines.len() > MAX_DATASET_LINES {
        return err(at, format!("at most {MAX_DATASET_LINES} lines"));
    }
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    if bytes > MAX_DATASET_BYTES {
        return err(
            at,
            format!("{bytes} bytes; a dataset holds at most 1 MiB (a ConfigMap's limit)"),
        );
    }
    Ok(())
}

/// How a runner trusts an `https` target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunTls {
    /// A PEM file of CA certificates trusted beside the system roots (the operator mounts the
    /// Secret's key here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The same bundle given inline (local mode, which read it from a Secret document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Trust any certificate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// SNI and the name the certificate must hold, when not the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// A header the runner sends: a plain value, or a secret read from an environment variable or
/// a file when the runner starts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunHeader {
    /// Its name.
    pub name: String,
    /// Its value, in the clear (plain headers; local mode's secrets, held in memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The environment variable holding the value (the operator sets it from the Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from_env: Option<String>,
    /// A file holding the value (a mounted Secret key); one trailing newline is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from_file: Option<String>,
}

impl std::fmt::Debug for RunHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHeader")
            .field("name", &self.name)
            .field(
                "value",
                &self
                    .value
                    .as_deref()
                    .map(|v| echo_value(&self.name, Some(v))),
            )
            .field("value_from_env", &self.value_from_env)
            .field("value_from_file", &self.value_from_file)
            .finish()
    }
}

/// The dataset a runner draws texts from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunDataset {
    /// A file of lines (the operator mounts the ConfigMap's key here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The lines themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<String>,
}

/// A run spec's headers under `at`.
pub(crate) fn check_run_headers(at: &str, headers: &[RunHeader]) -> Result<(), FieldError> {
    if headers.len() > MAX_HEADERS {
        return err(at, format!("at most {MAX_HEADERS} headers"));
    }
    for (i, h) in headers.iter().enumerate() {
        let at = format!("{at}[{i}]");
        check_header_name(&at, &h.name)?;
        let sources = [
            h.value.is_some(),
            h.value_from_env.is_some(),
            h.value_from_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return err(
                &at,
                "set exactly one of value, valueFromEnv and valueFromFile",
            );
        }
        if h.value.as_deref().is_some_and(|v| !header_value_ok(v)) {
            return err(
                format!("{at}.value"),
                "must be printable text without line breaks, at most 8 KiB",
            );
        }
    }
    Ok(())
}

/// A run spec's TLS under `at`, for its `target`.
pub(crate) fn check_run_tls(at: &str, tls: &RunTls, target: &str) -> Result<(), FieldError> {
    if !target.starts_with("https://") {
        return err(at, "needs an https:// target");
    }
    if tls.ca_file.is_some() && tls.ca_pem.is_some() {
        return err(at, "set at most one of caFile and caPem");
    }
    if tls
        .ca_pem
        .as_deref()
        .is_some_and(|p| p.len() > MAX_CA_BYTES)
    {
        return err(format!("{at}.caPem"), "at most 1 MiB");
    }
    if let Some(name) = &tls.server_name {
        check_server_name(&format!("{at}.serverName"), name)?;
    }
    Ok(())
}

/// A run spec's dataset under `at`.
pub(crate) fn check_run_dataset(at: &str, dataset: &RunDataset) -> Result<(), FieldError> {
    match (&dataset.file, dataset.inline.is_empty()) {
        (Some(_), false) | (None, true) => err(at, "set exactly one of file and inline"),
        (Some(_), true) => Ok(()),
        (None, false) => check_lines(&format!("{at}.inline"), &dataset.inline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_named_by_their_header() {
        for name in [
            "Authorization",
            "x-api-key",
            "Api-Key",
            "X-Auth-Token",
            "Cookie",
            "X-Client-Secret",
        ] {
            assert!(is_credential(name), "{name}");
            assert_eq!(echo_value(name, Some("hunter2")), "[redacted]");
        }
        for name in ["X-Tenant", "Accept", "X-Request-Id"] {
            assert!(!is_credential(name), "{name}");
        }
        assert_eq!(echo_value("X-Tenant", Some("blue")), "blue");
        assert_eq!(echo_value("X-Tenant", None), "[redacted]");
    }

    #[test]
    fn a_run_headers_debug_never_shows_a_credential() {
        let h = RunHeader {
            name: "Authorization".into(),
            value: Some("Bearer s3cr3t".into()),
            value_from_env: None,
            value_from_file: None,
        };
        assert!(!format!("{h:?}").contains("s3cr3t"), "{h:?}");
    }

    #[test]
    fn bad_headers_tls_and_datasets_name_the_field() {
        let plain = |name: &str, value: &str| Header {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        };
        let at = "spec.target.headers";
        let field = |r: Result<(), FieldError>| r.unwrap_err().field;
        assert_eq!(
            field(check_headers(at, &[plain("Bad Name", "x")])),
            "spec.target.headers[0].name"
        );
        assert_eq!(
            field(check_headers(at, &[plain("Host", "x")])),
            "spec.target.headers[0].name"
        );
        assert_eq!(
            field(check_headers(
                at,
                &[plain("X-A", "ok"), plain("X-B", "a\r\nb")]
            )),
            "spec.target.headers[1].value"
        );
        assert!(
            check_headers(at, &[plain("Authorization", "Bearer x")])
                .unwrap_err()
                .message
                .contains("Secret")
        );
        let from = Header {
            name: "Authorization".into(),
            value: None,
            value_from: Some(HeaderSource {
                secret_key_ref: SecretKeyRef {
                    name: "api-key".into(),
                    key: "token".into(),
                },
            }),
        };
        check_headers(at, &[from.clone(), plain("X-Tenant", "blue")]).unwrap();
        let mut bad = from;
        bad.value_from.as_mut().unwrap().secret_key_ref.name = "Not_A_Name".into();
        assert_eq!(
            field(check_headers(at, &[bad])),
            "spec.target.headers[0].valueFrom.secretKeyRef.name"
        );
        let tls = TargetTls {
            server_name: Some("bad name".into()),
            ..TargetTls::default()
        };
        assert_eq!(
            field(check_tls("spec.target.tls", &tls, Some("https://x"))),
            "spec.target.tls.serverName"
        );
        assert_eq!(
            field(check_tls(
                "spec.target.tls",
                &TargetTls::default(),
                Some("http://x")
            )),
            "spec.target.tls"
        );
        assert_eq!(
            field(check_dataset("spec.dataset", &Dataset::default())),
            "spec.dataset"
        );
        let big = Dataset {
            config_map_ref: None,
            inline: vec!["x".repeat(1 << 19); 3],
        };
        assert!(
            check_dataset("spec.dataset", &big)
                .unwrap_err()
                .message
                .contains("1 MiB")
        );
    }
}
