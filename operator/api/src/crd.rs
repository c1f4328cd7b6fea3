//! The CustomResourceDefinitions, as the apiserver gets them: kube's derived schema with every
//! unsigned integer format (`uint32`, `uint64`, ...) rewritten to one the apiserver recognises.
//! schemars writes `format: uint32` for `u32` fields, and apiservers ≥ 1.34 warn on unknown
//! formats (../shared/notes/rust-stack.md, pitfall table); `minimum: 0` stays.

use crate::load_test::LoadTest;
use crate::model_endpoint::ModelEndpoint;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

/// Both CRDs, ModelEndpoint first.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![model_endpoints(), load_tests()]
}

/// The ModelEndpoint CRD.
pub fn model_endpoints() -> CustomResourceDefinition {
    fix_formats(ModelEndpoint::crd())
}

/// The LoadTest CRD.
pub fn load_tests() -> CustomResourceDefinition {
    fix_formats(LoadTest::crd())
}

fn fix_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(crd).expect("a CRD serialises; this is a bug");
    rewrite(&mut value);
    serde_json::from_value(value).expect("the rewritten CRD deserialises; this is a bug")
}

fn rewrite(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get_mut("format") {
                match format.as_str() {
                    "uint8" | "uint16" | "uint32" | "int8" | "int16" => *format = "int32".into(),
                    "uint64" | "uint" | "int" => *format = "int64".into(),
                    _ => {}
                }
            }
            map.values_mut().for_each(rewrite);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_unsigned_formats_remain() {
        for crd in all() {
            let text = serde_json::to_string(&crd).unwrap();
            for bad in ["uint8", "uint16", "uint32", "uint64", "\"uint\""] {
                assert!(
                    !text.contains(bad),
                    "{} still has {bad}",
                    crd.metadata.name.unwrap()
                );
            }
        }
    }
}
