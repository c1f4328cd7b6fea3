//! Pure builders of the Kubernetes objects the operator owns: no I/O, so each is unit-tested on
//! its output. Controllers apply them with server-side apply under [`FIELD_MANAGER`].

pub mod load_test;
pub mod model_endpoint;

use k8s_openapi::api::core::v1::{Capabilities, SeccompProfile, SecurityContext};
use std::collections::BTreeMap;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "loadgate";

/// Label naming what a pod runs (`model-server`, `loadrunner`).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label naming the object a child belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the operator as manager.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

fn labels(name: &str, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), name.to_owned()),
        (INSTANCE_LABEL.to_owned(), instance.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), "loadgate".to_owned()),
    ])
}

/// Non-root, read-only root filesystem, no capabilities, no privilege escalation, the runtime's
/// default seccomp profile: the "restricted" Pod Security Standard.
fn hardened() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// True when `obj` names `owner_uid` as its controller (a `controller: true` owner reference).
/// Owner references are not authenticated, but a child the operator did not create and that
/// does not point at its owner is never taken over.
pub fn controlled_by(obj: &impl kube::Resource, owner_uid: Option<&str>) -> bool {
    owner_uid.is_some_and(|uid| {
        obj.meta()
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.uid == uid)
    })
}

/// Why `obj` (a `kind` the operator would write) must be left alone: it exists and is not
/// controlled by `owner`. `None` when it is missing or the owner's own.
pub fn not_owned<K: kube::Resource, O: kube::Resource<DynamicType = ()>>(
    obj: Option<&K>,
    kind: &str,
    owner: &O,
) -> Option<String> {
    use kube::ResourceExt;
    let obj = obj?;
    (!controlled_by(obj, owner.meta().uid.as_deref())).then(|| {
        format!(
            "{kind} {} already exists and is not controlled by {} {}; nothing was changed \
             (delete or rename it)",
            obj.name_any(),
            O::kind(&()),
            owner.name_any()
        )
    })
}

/// A DNS-1123 label of at most `max` characters: `base` cut short, then `-suffix`.
fn bounded_name(base: &str, suffix: &str, max: usize) -> String {
    let room = max.saturating_sub(suffix.len() + 1);
    let base = base[..base.len().min(room)].trim_end_matches('-');
    format!("{base}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_within_63_characters() {
        let long = "a".repeat(80);
        let name = bounded_name(&long, "ramp-up-1a2b3c4d", 63);
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("-ramp-up-1a2b3c4d"));
        assert_eq!(bounded_name("lt", "spike", 63), "lt-spike");
    }
}
