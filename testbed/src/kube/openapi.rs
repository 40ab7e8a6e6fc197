//! `/openapi/v3`: the index of group-versions and, per group-version, an OpenAPI 3 document with
//! the schemas of its custom resources as the real server publishes them (named
//! `<reversed group>.<version>.<Kind>`, with `x-kubernetes-group-version-kind`, `apiVersion`/`kind`
//! descriptions and `metadata` referring to `ObjectMeta`). kubectl ≥ 1.27 reads these for
//! `kubectl explain`. Built-in kinds are not described (their group-versions are not listed).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::{resources::ResourceDef, state::State};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// `<reversed group>.<version>.<Kind>`, e.g. `io.gitlabtokens.v1alpha1.GitLabToken`.
pub fn schema_name(def: &ResourceDef) -> String {
    let reversed: Vec<&str> = def.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), def.version, def.kind)
}

/// The published schema of one custom resource version.
fn published(def: &ResourceDef, schema: &Value) -> Value {
    let mut s = schema.as_object().cloned().unwrap_or_default();
    s.entry("type").or_insert_with(|| json!("object"));
    let props = s
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut props: Map<String, Value> = props;
    props.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}),
    );
    props.insert(
        "kind".into(),
        json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}),
    );
    props.insert(
        "metadata".into(),
        json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "default": {},
               "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
    );
    s.insert("properties".into(), Value::Object(props));
    s.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": def.group, "kind": def.kind, "version": def.version}]),
    );
    Value::Object(s)
}

/// The collection and item paths of a resource with their `get` operations, each carrying
/// `x-kubernetes-group-version-kind` (kubectl explain finds a resource's kind through them).
fn resource_paths(def: &ResourceDef) -> Map<String, Value> {
    let base = format!("/apis/{}/{}", def.group, def.version);
    let collection = if def.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{base}/{}", def.plural)
    };
    let gvk = json!({"group": def.group, "kind": def.kind, "version": def.version});
    let schema_ref = json!({"$ref": format!("#/components/schemas/{}", schema_name(def))});
    let operation = |action: &str, id: String, schema: Value| {
        json!({"get": {"operationId": id, "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}}})
    };
    let mut out = Map::new();
    out.insert(
        collection.clone(),
        operation("list", format!("list{}", def.kind), json!({"type": "object"})),
    );
    out.insert(
        format!("{collection}/{{name}}"),
        operation("get", format!("read{}", def.kind), schema_ref),
    );
    out
}

/// A short `ObjectMeta` (the fields a CR's metadata is read for; the real one has all of them).
fn object_meta() -> Value {
    let string = |d: &str| json!({"type": "string", "default": "", "description": d});
    json!({"type": "object",
    "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
    "properties": {
        "name": string("Name must be unique within a namespace."),
        "namespace": string("Namespace defines the space within which each name must be unique."),
        "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                   "description": "Map of string keys and values that can be used to organize and categorize (scope and select) objects."},
        "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                        "description": "Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata."},
        "uid": string("UID is the unique in time and space value for this object."),
        "resourceVersion": string("An opaque value that represents the internal version of this object."),
        "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
        "creationTimestamp": {"type": "string", "format": "date-time", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}
    }})
}

/// `GET /openapi/v3/apis/<group>/<version>`; None when no custom resource is served there.
pub fn group_version(st: &State, group: &str, version: &str) -> Option<Value> {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for def in st.registry.all() {
        if def.group != group || def.version != version {
            continue;
        }
        if let Some(crd) = def.crd.as_ref().filter(|c| c.schema.is_object()) {
            schemas.insert(schema_name(&def), published(&def, &crd.schema));
            paths.extend(resource_paths(&def));
        }
    }
    if schemas.is_empty() {
        return None;
    }
    schemas.insert(OBJECT_META.into(), object_meta());
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
                "paths": paths, "components": {"schemas": schemas}}),
    )
}

/// `GET /openapi/v3`: every group-version with custom resources, each with a
/// `serverRelativeURL` whose `hash` changes when its document does (kubectl caches by URL).
pub fn index(st: &State) -> Value {
    let mut gvs: Vec<(String, String)> = st
        .registry
        .all()
        .iter()
        .filter(|d| d.crd.is_some())
        .map(|d| (d.group.clone(), d.version.clone()))
        .collect();
    gvs.sort();
    gvs.dedup();
    let mut paths = Map::new();
    for (g, v) in gvs {
        let Some(doc) = group_version(st, &g, &v) else {
            continue;
        };
        let digest = Sha512::digest(doc.to_string().as_bytes());
        let hash: String = digest.iter().map(|b| format!("{b:02X}")).collect();
        paths.insert(
            format!("apis/{g}/{v}"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_reverse_the_group() {
        let crd = json!({"metadata": {"name": "gitlabtokens.gitlabtokens.io"}, "spec": {"group": "gitlabtokens.io",
            "scope": "Namespaced", "names": {"plural": "gitlabtokens", "kind": "GitLabToken"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        let defs = crate::kube::resources::defs_from_crd(&crd);
        let def = defs.first().expect("a def");
        assert_eq!(schema_name(def), "io.gitlabtokens.v1alpha1.GitLabToken");
        let s = published(
            def,
            &json!({"type": "object", "properties": {"spec": {"type": "object"}}}),
        );
        assert_eq!(
            s["x-kubernetes-group-version-kind"],
            json!([{"group": "gitlabtokens.io", "kind": "GitLabToken", "version": "v1alpha1"}])
        );
        assert_eq!(s["properties"]["spec"], json!({"type": "object"}));
        assert!(
            s["properties"]["metadata"]["allOf"][0]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with("ObjectMeta"))
        );
    }
}
