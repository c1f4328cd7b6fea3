//! What a LoadTest or a ModelEndpoint may ask of the operator, set by whoever installs it (flags,
//! environment, chart values): the addresses a `target.url` may load, the images runner and
//! model-server pods may run, and how many users one LoadTest may start. Without it, anyone who
//! may create a LoadTest could aim up to 100 × 10,000 users at any address the namespace
//! reaches (the cloud metadata address, the apiserver, other teams' services) and run any image.
//!
//! Pure: [`Policy::check_load_test`] and [`Policy::check_endpoint`] say which rule a spec
//! breaks; the controllers end the run (or block the endpoint) `PolicyDenied` naming it.
//!
//! Targets are judged by what the URL says: an IP literal against CIDRs, a name against names
//! (`localhost` counts as loopback). A name is not resolved: pair the allowlist with the chart's
//! runner NetworkPolicy, which holds runner pods' egress to what the network really reaches.

use crate::config::OperatorArgs;
use loadgate_api::load_test::LoadTest;
use loadgate_api::model_endpoint::ModelEndpoint;
use std::net::IpAddr;

/// Targets denied unless the install says otherwise: loopback and link-local (the cloud
/// metadata address 169.254.169.254 is link-local), by CIDR, and `localhost` by name.
pub const DEFAULT_DENIED_TARGETS: &str = "127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10,localhost";

/// Most users one LoadTest may start in a profile (all its runner pods together), by default.
pub const DEFAULT_MAX_USERS: u32 = 10_000;

/// One rule of a target list: an address range, a host name, or every host under a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRule {
    /// `*`: any host.
    Any,
    /// `10.0.0.0/8`, `fd00::/8`, or one address.
    Cidr(IpAddr, u8),
    /// `*.svc.cluster.local`: the names under it.
    Suffix(String),
    /// `embeddings.ml.svc`: that name.
    Host(String),
}

impl TargetRule {
    /// Parses one rule.
    ///
    /// # Errors
    /// A rule that is none of the shapes above.
    pub fn parse(rule: &str) -> Result<Self, String> {
        let rule = rule.trim().to_ascii_lowercase();
        if rule == "*" {
            return Ok(Self::Any);
        }
        if let Some(suffix) = rule.strip_prefix("*.") {
            return Ok(Self::Suffix(format!(".{suffix}")));
        }
        if let Some((addr, bits)) = rule.split_once('/') {
            let addr: IpAddr = addr
                .parse()
                .map_err(|e| format!("target rule {rule:?}: {e}"))?;
            let most = if addr.is_ipv4() { 32 } else { 128 };
            let bits: u8 =
                bits.parse().ok().filter(|b| *b <= most).ok_or_else(|| {
                    format!("target rule {rule:?}: prefix length is not 0..={most}")
                })?;
            return Ok(Self::Cidr(addr, bits));
        }
        if let Ok(addr) = rule.parse::<IpAddr>() {
            let bits = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(Self::Cidr(addr, bits));
        }
        if rule.is_empty()
            || !rule
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!(
                "target rule {rule:?} is not *, *.domain, a host name or a CIDR"
            ));
        }
        Ok(Self::Host(rule))
    }

    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (Self::Any, _) => true,
            (Self::Cidr(net, bits), Host::Ip(ip)) => in_cidr(*ip, *net, *bits),
            (Self::Suffix(suffix), Host::Name(name)) => name.ends_with(suffix.as_str()),
            (Self::Host(want), Host::Name(name)) => want == name,
            _ => false,
        }
    }
}

impl std::fmt::Display for TargetRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Cidr(addr, bits) => write!(f, "{addr}/{bits}"),
            Self::Suffix(suffix) => write!(f, "*{suffix}"),
            Self::Host(host) => f.write_str(host),
        }
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        // An IPv4-mapped IPv6 address is judged as the IPv4 address it is.
        (IpAddr::V6(a), IpAddr::V4(_)) => match a.to_ipv4_mapped() {
            Some(v4) => return in_cidr(IpAddr::V4(v4), net, bits),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (ip >> shift) == (net >> shift)
}

/// A target's host as its URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// The host of an `http://host[:port]` or `https://host[:port]` URL (the CRD's rule),
/// lowercased, without a trailing dot.
fn host_of(url: &str) -> Option<Host> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let host = host.to_ascii_lowercase();
    Some(match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host.trim_end_matches('.').to_owned()),
    })
}

/// What the install allows.
#[derive(Debug, Clone)]
pub struct Policy {
    /// A `target.url` must match one of these ...
    pub allowed_targets: Vec<TargetRule>,
    /// ... and none of these.
    pub denied_targets: Vec<TargetRule>,
    /// Runner images must be one of these repositories (or under one ending in `/`).
    pub runner_images: Vec<String>,
    /// Model-server images likewise.
    pub model_server_images: Vec<String>,
    /// Most users in any profile of one LoadTest, all runner pods together.
    pub max_users: u32,
}

/// The repository of an image reference: without its tag or digest.
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        // A colon after the last slash is a tag; before it, a registry's port.
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}

fn image_allowed(image: &str, allowed: &[String]) -> bool {
    let repo = repository(image);
    allowed
        .iter()
        .any(|a| a == "*" || repo == a || (a.ends_with('/') && repo.starts_with(a.as_str())))
}

fn parse_list(list: &str) -> Result<Vec<TargetRule>, String> {
    list.split(',')
        .filter(|r| !r.trim().is_empty())
        .map(TargetRule::parse)
        .collect()
}

fn image_list(list: &str, default_image: &str) -> Vec<String> {
    let listed: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(str::to_owned)
        .collect();
    if listed.is_empty() {
        vec![repository(default_image).to_owned()]
    } else {
        listed
    }
}

impl Policy {
    /// From the operator's flags: image lists default to the repositories of the default
    /// images (the chart's own).
    ///
    /// # Errors
    /// A target rule that does not parse, naming it.
    pub fn from_args(args: &OperatorArgs) -> Result<Self, String> {
        Ok(Self {
            allowed_targets: parse_list(&args.allowed_targets)?,
            denied_targets: parse_list(&args.denied_targets)?,
            runner_images: image_list(&args.allowed_runner_images, &args.loadrunner_image),
            model_server_images: image_list(
                &args.allowed_model_server_images,
                &args.model_server_image,
            ),
            max_users: args.max_users_per_load_test,
        })
    }

    /// The defaults, for the images given (tests).
    pub fn defaults(model_server_image: &str, loadrunner_image: &str) -> Self {
        Self {
            allowed_targets: vec![TargetRule::Any],
            denied_targets: parse_list(DEFAULT_DENIED_TARGETS)
                .expect("the default target rules parse; this is a bug"),
            runner_images: vec![repository(loadrunner_image).to_owned()],
            model_server_images: vec![repository(model_server_image).to_owned()],
            max_users: DEFAULT_MAX_USERS,
        }
    }

    /// The rule `test` breaks, in words naming the field and the rule; `None` when allowed.
    /// `default_runner_image`: the image its Jobs get when the spec names none.
    pub fn check_load_test(&self, test: &LoadTest, default_runner_image: &str) -> Option<String> {
        let spec = &test.spec;
        if let Some(url) = &spec.target.url {
            let Some(host) = host_of(url) else {
                return Some(format!(
                    "spec.target.url {url} names no host the policy can judge"
                ));
            };
            if let Some(rule) = self.denied_targets.iter().find(|r| r.matches(&host)) {
                return Some(format!(
                    "spec.target.url {url} is denied by the operator's target policy (rule {rule}: \
                     loopback and link-local addresses are denied by default)"
                ));
            }
            if !self.allowed_targets.iter().any(|r| r.matches(&host)) {
                return Some(format!(
                    "spec.target.url {url} is not in the operator's allowed targets ({})",
                    join(&self.allowed_targets)
                ));
            }
        }
        let image = spec.runner.image.as_deref().unwrap_or(default_runner_image);
        if !image_allowed(image, &self.runner_images) {
            return Some(format!(
                "spec.runner.image {image} is not an allowed runner image ({})",
                self.runner_images.join(", ")
            ));
        }
        let users = spec.profiles.iter().map(|p| {
            let peak = p.stages.iter().map(|s| s.users).max().unwrap_or(0);
            (p, p.users.max(peak))
        });
        if let Some((p, users)) = users.clone().find(|(_, u)| *u > self.max_users) {
            return Some(format!(
                "profile {} asks for {users} users, more than the {} a LoadTest may start \
                 (the operator's --max-users-per-load-test)",
                p.name, self.max_users
            ));
        }
        None
    }

    /// The rule `endpoint` breaks (its image, or its runtime's: a team's own server is held to
    /// the same allowlist as model-server images), in words; `None` when allowed.
    pub fn check_endpoint(&self, endpoint: &ModelEndpoint, default_image: &str) -> Option<String> {
        let spec = &endpoint.spec;
        let (field, image) = match &spec.runtime {
            Some(runtime) => ("spec.runtime.image", runtime.image.as_str()),
            None => ("spec.image", spec.image.as_deref().unwrap_or(default_image)),
        };
        (!image_allowed(image, &self.model_server_images)).then(|| {
            format!(
                "{field} {image} is not an allowed model-server image ({}; the operator's \
                 --allowed-model-server-images)",
                self.model_server_images.join(", ")
            )
        })
    }
}

fn join(rules: &[TargetRule]) -> String {
    if rules.is_empty() {
        return "none".to_owned();
    }
    rules
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{endpoint, load_test};

    fn policy() -> Policy {
        Policy::defaults(
            "ghcr.io/loadgate/model-server:1",
            "ghcr.io/loadgate/loadrunner:1",
        )
    }

    fn url_test(url: &str) -> LoadTest {
        let mut test = load_test("lt");
        test.spec.target.endpoint_ref = None;
        test.spec.target.url = Some(url.into());
        test
    }

    /// Before: any address the namespace reaches could be loaded, the cloud metadata address
    /// and loopback included.
    #[test]
    fn loopback_and_link_local_targets_are_denied_by_default() {
        let p = policy();
        let runner = "ghcr.io/loadgate/loadrunner:1";
        for denied in [
            "http://169.254.169.254",
            "http://127.0.0.1:8080",
            "http://[::1]:80",
            "http://localhost:8080",
            "http://[fe80::1]:80",
            "http://[::ffff:169.254.169.254]:80",
        ] {
            let why = p.check_load_test(&url_test(denied), runner);
            assert!(
                why.as_deref()
                    .is_some_and(|w| w.contains("denied by the operator's target policy")),
                "{denied}: {why:?}"
            );
        }
        for allowed in ["http://embeddings.ml.svc:8080", "http://10.0.0.7:8080"] {
            assert_eq!(
                p.check_load_test(&url_test(allowed), runner),
                None,
                "{allowed}"
            );
        }
        // An endpointRef's URL is the operator's own Service URL: not judged here.
        assert_eq!(p.check_load_test(&load_test("lt"), runner), None);
    }

    /// An https target is judged by its host like an http one: the scheme and the port (443
    /// or another) change nothing.
    #[test]
    fn https_targets_are_judged_by_their_host() {
        assert_eq!(
            host_of("https://Embed.Example.COM.:8443/"),
            Some(Host::Name("embed.example.com".into()))
        );
        assert_eq!(
            host_of("https://[::1]:443"),
            Some(Host::Ip("::1".parse().unwrap()))
        );
        assert_eq!(
            host_of("https://10.1.2.3"),
            Some(Host::Ip("10.1.2.3".parse().unwrap()))
        );
        let mut p = policy();
        let runner = "ghcr.io/loadgate/loadrunner:1";
        for denied in ["https://169.254.169.254", "https://localhost:8443"] {
            let why = p.check_load_test(&url_test(denied), runner).unwrap();
            assert!(
                why.contains("denied by the operator's target policy"),
                "{why}"
            );
        }
        p.allowed_targets = parse_list("*.example.com").unwrap();
        assert_eq!(
            p.check_load_test(&url_test("https://embed.example.com"), runner),
            None
        );
        assert!(
            p.check_load_test(&url_test("https://embed.example.org:443"), runner)
                .is_some()
        );
    }

    #[test]
    fn an_allowlist_admits_only_its_hosts_and_ranges() {
        let mut p = policy();
        p.allowed_targets =
            parse_list("*.ml.svc.cluster.local,10.1.0.0/16,gateway.example").unwrap();
        let runner = "ghcr.io/loadgate/loadrunner:1";
        for ok in [
            "http://embed.ml.svc.cluster.local:8080",
            "http://10.1.2.3:80",
            "http://gateway.example",
        ] {
            assert_eq!(p.check_load_test(&url_test(ok), runner), None, "{ok}");
        }
        let why = p
            .check_load_test(&url_test("http://kubernetes.default.svc:443"), runner)
            .unwrap();
        assert!(
            why.contains("not in the operator's allowed targets"),
            "{why}"
        );
        assert!(TargetRule::parse("10.0.0.0/33").is_err());
        assert!(TargetRule::parse("a b").is_err());
    }

    #[test]
    fn runner_and_model_server_images_must_come_from_allowed_repositories() {
        let p = policy();
        let mut test = load_test("lt");
        let default = "ghcr.io/loadgate/loadrunner:1";
        assert_eq!(p.check_load_test(&test, default), None);
        test.spec.runner.image = Some("ghcr.io/loadgate/loadrunner@sha256:abc".into());
        assert_eq!(p.check_load_test(&test, default), None);
        for bad in ["evil.example/miner:1", "ghcr.io/loadgate/loadrunner-evil:1"] {
            test.spec.runner.image = Some(bad.into());
            let why = p.check_load_test(&test, default).unwrap();
            assert!(
                why.starts_with(&format!("spec.runner.image {bad}")),
                "{why}"
            );
        }
        let mut ep = endpoint("mini");
        assert_eq!(
            p.check_endpoint(&ep, "ghcr.io/loadgate/model-server:1"),
            None
        );
        ep.spec.image = Some("registry:5000/someone/server:2".into());
        assert!(
            p.check_endpoint(&ep, "ghcr.io/loadgate/model-server:1")
                .is_some()
        );
        let mut open = p.clone();
        open.model_server_images = vec!["registry:5000/".into()];
        assert_eq!(open.check_endpoint(&ep, "x"), None);
    }

    /// A runtime's image is held to the same allowlist, named as its own field.
    #[test]
    fn a_runtime_image_must_come_from_an_allowed_repository() {
        let mut p = policy();
        let mut ep = endpoint("tei");
        ep.spec.runtime = Some(
            serde_json::from_str(
                r#"{"image":"ghcr.io/huggingface/text-embeddings-inference:cpu-1.8"}"#,
            )
            .unwrap(),
        );
        let why = p
            .check_endpoint(&ep, "ghcr.io/loadgate/model-server:1")
            .unwrap();
        assert!(
            why.starts_with(
                "spec.runtime.image ghcr.io/huggingface/text-embeddings-inference:cpu-1.8 is not \
                 an allowed model-server image (ghcr.io/loadgate/model-server;"
            ),
            "{why}"
        );
        p.model_server_images
            .push("ghcr.io/huggingface/text-embeddings-inference".into());
        assert_eq!(
            p.check_endpoint(&ep, "ghcr.io/loadgate/model-server:1"),
            None
        );
    }

    #[test]
    fn a_test_over_the_user_cap_is_refused_naming_the_profile() {
        let mut p = policy();
        p.max_users = 50;
        let mut test = load_test("lt");
        test.spec.profiles[0].users = 51;
        let why = p
            .check_load_test(&test, "ghcr.io/loadgate/loadrunner:1")
            .unwrap();
        assert!(why.contains("asks for 51 users, more than the 50"), "{why}");
    }
}
