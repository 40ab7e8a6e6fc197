//! Table tests for [`super::schema`]: validation messages, pruning and defaulting.

use serde_json::{Value, json};

use super::schema::{apply_defaults, prune, validate};

/// A CR root schema with `spec` holding `props` (and `required`).
fn spec_schema(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props, "required": required}}})
}

/// (reason, field, message) of each cause.
type Causes = Vec<(String, String, String)>;

fn causes(schema: &Value, object: &Value) -> Causes {
    validate(schema, object)
        .into_iter()
        .map(|c| (c.reason, c.field, c.message))
        .collect()
}

fn one(reason: &str, field: &str, message: &str) -> Causes {
    vec![(reason.into(), field.into(), message.into())]
}

#[test]
fn validation_table() {
    let cases: Vec<(Value, Value, Causes)> = vec![
        (
            json!({"replicas": {"type": "integer"}}),
            json!({"replicas": "string"}),
            one(
                "FieldValueTypeInvalid",
                "spec.replicas",
                "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ),
        ),
        (
            json!({"replicas": {"type": "integer"}}),
            json!({"replicas": 1.5}),
            one(
                "FieldValueTypeInvalid",
                "spec.replicas",
                "Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\"",
            ),
        ),
        (
            json!({"replicas": {"type": "integer"}}),
            json!({"replicas": 1.0}),
            vec![],
        ),
        (
            json!({"step": {"type": "number", "multipleOf": 0.25}}),
            json!({"step": 1.5}),
            vec![],
        ),
        (
            json!({"n": {"type": "integer", "multipleOf": 5}}),
            json!({"n": 15}),
            vec![],
        ),
        (json!({"ratio": {"type": "number"}}), json!({"ratio": 3}), vec![]),
        (
            json!({"name": {"type": "string"}}),
            json!({"name": null}),
            one(
                "FieldValueTypeInvalid",
                "spec.name",
                "Invalid value: \"null\": spec.name in body must be of type string: \"null\"",
            ),
        ),
        (
            json!({"name": {"type": "string", "nullable": true}}),
            json!({"name": null}),
            vec![],
        ),
        (
            json!({"size": {"type": "string"}}),
            json!({}),
            one("FieldValueRequired", "spec.size", "Required value"),
        ),
        (
            json!({"mode": {"type": "string", "enum": ["a", "b"]}}),
            json!({"mode": "x"}),
            one(
                "FieldValueNotSupported",
                "spec.mode",
                "Unsupported value: \"x\": supported values: \"a\", \"b\"",
            ),
        ),
        (
            json!({"n": {"type": "integer", "enum": [1, 2]}}),
            json!({"n": 3}),
            one(
                "FieldValueNotSupported",
                "spec.n",
                "Unsupported value: 3: supported values: \"1\", \"2\"",
            ),
        ),
        (
            json!({"name": {"type": "string", "pattern": "^[a-z]+$"}}),
            json!({"name": "Abc"}),
            one(
                "FieldValueInvalid",
                "spec.name",
                "Invalid value: \"Abc\": spec.name in body should match '^[a-z]+$'",
            ),
        ),
        (
            json!({"replicas": {"type": "integer", "minimum": 1}}),
            json!({"replicas": 0}),
            one(
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            ),
        ),
        (
            json!({"replicas": {"type": "integer", "minimum": 1, "exclusiveMinimum": true}}),
            json!({"replicas": 1}),
            one(
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: 1: spec.replicas in body should be greater than 1",
            ),
        ),
        (
            json!({"replicas": {"type": "integer", "maximum": 5}}),
            json!({"replicas": 6}),
            one(
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: 6: spec.replicas in body should be less than or equal to 5",
            ),
        ),
        (
            json!({"replicas": {"type": "integer", "maximum": 5, "exclusiveMaximum": true}}),
            json!({"replicas": 5}),
            one(
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: 5: spec.replicas in body should be less than 5",
            ),
        ),
        (
            json!({"step": {"type": "number", "multipleOf": 0.5}}),
            json!({"step": 0.7}),
            one(
                "FieldValueInvalid",
                "spec.step",
                "Invalid value: 0.7: spec.step in body should be a multiple of 0.5",
            ),
        ),
        (
            json!({"name": {"type": "string", "maxLength": 3}}),
            json!({"name": "abcd"}),
            one(
                "FieldValueTooLong",
                "spec.name",
                "Too long: may not be more than 3 bytes",
            ),
        ),
        (
            json!({"name": {"type": "string", "minLength": 2}}),
            json!({"name": "a"}),
            one(
                "FieldValueInvalid",
                "spec.name",
                "Invalid value: \"a\": spec.name in body should be at least 2 chars long",
            ),
        ),
        (
            json!({"name": {"type": "string", "maxLength": 2}}),
            json!({"name": "äö"}),
            vec![],
        ),
        (
            json!({"l": {"type": "array", "items": {"type": "string"}, "minItems": 1}}),
            json!({"l": []}),
            one(
                "FieldValueInvalid",
                "spec.l",
                "Invalid value: 0: spec.l in body should have at least 1 items",
            ),
        ),
        (
            json!({"l": {"type": "array", "items": {"type": "string"}, "maxItems": 1}}),
            json!({"l": ["a", "b"]}),
            one(
                "FieldValueTooMany",
                "spec.l",
                "Too many: 2: must have at most 1 item",
            ),
        ),
        (
            json!({"l": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}}),
            json!({"l": ["a", "a"]}),
            one(
                "FieldValueInvalid",
                "spec.l",
                "Invalid value: \"\": spec.l in body shouldn't contain duplicates",
            ),
        ),
        (
            json!({"m": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1}}),
            json!({"m": {}}),
            one(
                "FieldValueInvalid",
                "spec.m",
                "Invalid value: 0: spec.m in body should have at least 1 properties",
            ),
        ),
        (
            json!({"m": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1}}),
            json!({"m": {"a": "1", "b": "2"}}),
            one(
                "FieldValueTooMany",
                "spec.m",
                "Too many: 2: must have at most 1 item",
            ),
        ),
        (
            json!({"labels": {"type": "object", "additionalProperties": {"type": "string"}}}),
            json!({"labels": {"app": 1}}),
            one(
                "FieldValueTypeInvalid",
                "spec.labels.app",
                "Invalid value: \"integer\": spec.labels.app in body must be of type string: \"integer\"",
            ),
        ),
        (
            json!({"items": {"type": "array", "items": {"type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"}}}}}),
            json!({"items": [{"name": "a"}, {}]}),
            one("FieldValueRequired", "spec.items[1].name", "Required value"),
        ),
        (
            json!({"at": {"type": "string", "format": "date-time"}}),
            json!({"at": "soon"}),
            one(
                "FieldValueTypeInvalid",
                "spec.at",
                "Invalid value: \"soon\": spec.at in body must be of type date-time: \"soon\"",
            ),
        ),
        (
            json!({"port": {"x-kubernetes-int-or-string": true}}),
            json!({"port": "http"}),
            vec![],
        ),
        (
            json!({"port": {"x-kubernetes-int-or-string": true}}),
            json!({"port": 80}),
            vec![],
        ),
        (
            json!({"port": {"x-kubernetes-int-or-string": true}}),
            json!({"port": true}),
            one(
                "FieldValueTypeInvalid",
                "spec.port",
                "Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
            ),
        ),
        (
            json!({"raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}),
            json!({"raw": {"anything": [1, {"x": null}]}}),
            vec![],
        ),
        (
            json!({"tmpl": {"type": "object", "x-kubernetes-embedded-resource": true,
                    "x-kubernetes-preserve-unknown-fields": true}}),
            json!({"tmpl": {"kind": "", "metadata": {}}}),
            vec![
                (
                    "FieldValueRequired".into(),
                    "spec.tmpl.apiVersion".into(),
                    "Required value: must not be empty".into(),
                ),
                (
                    "FieldValueInvalid".into(),
                    "spec.tmpl.kind".into(),
                    "Invalid value: \"\": must not be empty".into(),
                ),
            ],
        ),
        (
            json!({"s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}),
            json!({"s": ["a", "b", "a"]}),
            one("FieldValueDuplicate", "spec.s[2]", "Duplicate value: \"a\""),
        ),
        (
            json!({"c": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}),
            json!({"c": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]}),
            one(
                "FieldValueDuplicate",
                "spec.c[1]",
                "Duplicate value: {\"type\":\"Ready\"}",
            ),
        ),
        (
            json!({"a": {"type": "string"}, "b": {"type": "string"}}),
            json!({}),
            vec![],
        ),
    ];
    for (props, spec, want) in cases {
        let required: Vec<&str> = if props.get("size").is_some() {
            vec!["size"]
        } else {
            vec![]
        };
        let schema = spec_schema(props.clone(), &required);
        let got = causes(
            &schema,
            &json!({"apiVersion": "example.com/v1", "kind": "W", "spec": spec}),
        );
        assert_eq!(got, want, "schema {props}");
    }
}

#[test]
fn combinators_table() {
    let any_of = json!({"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
                        "properties": {"a": {"type": "string"}, "b": {"type": "string"}}});
    assert!(validate(&any_of, &json!({"a": "x"})).is_empty());
    let errs = validate(&any_of, &json!({}));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .message
            .ends_with("must validate at least one schema (anyOf)"),
        "{errs:?}"
    );
    let one_of = json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                        "properties": {"a": {"type": "string"}, "b": {"type": "string"}}});
    assert!(validate(&one_of, &json!({"a": "x"})).is_empty());
    assert_eq!(validate(&one_of, &json!({"a": "x", "b": "y"})).len(), 1);
    let not = json!({"type": "object", "not": {"required": ["forbidden"]}});
    assert!(validate(&not, &json!({})).is_empty());
    assert_eq!(validate(&not, &json!({"forbidden": 1})).len(), 1);
    let all_of = json!({"type": "object", "allOf": [{"required": ["a"]}, {"required": ["b"]}]});
    assert_eq!(validate(&all_of, &json!({})).len(), 2);
}

#[test]
fn root_metadata_and_type_meta_are_always_allowed() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
    let obj = json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"}, "spec": {}});
    assert!(validate(&schema, &obj).is_empty());
    let mut pruned = obj.clone();
    assert!(prune(&schema, &mut pruned).is_empty());
    assert_eq!(pruned, obj);
    let declared = json!({"type": "object", "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
        "metadata": {"type": "object"}, "spec": {"type": "object"}}});
    let mut kept = obj.clone();
    assert!(
        prune(&declared, &mut kept).is_empty(),
        "declared `metadata: {{type: object}}` does not prune it"
    );
    assert_eq!(kept, obj);
    let named = json!({"type": "object", "properties": {"metadata": {"type": "object",
        "properties": {"name": {"type": "string", "maxLength": 3}}}}});
    let errs = validate(
        &named,
        &json!({"metadata": {"name": "toolong", "labels": {"a": "b"}}}),
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "metadata.name");
}

#[test]
fn prune_table() {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "known": {"type": "string"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
            "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                "strict": {"type": "object", "properties": {"a": {"type": "string"}}}}},
            "tmpl": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}}
        }},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
    }});
    let mut obj = json!({
        "apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"},
        "extra": 1,
        "spec": {
            "known": "k", "foo": 1,
            "items": [{"name": "a", "bar": 2}],
            "labels": {"x": {"v": "1", "w": "2"}},
            "raw": {"free": {"deep": true}, "strict": {"a": "1", "b": "2"}},
            "tmpl": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "bogus": 1}, "spec": {}, "data": {}}
        },
        "status": {"phase": "Ready", "junk": true}
    });
    let mut removed = prune(&schema, &mut obj);
    removed.sort();
    assert_eq!(
        removed,
        vec![
            "extra",
            "spec.foo",
            "spec.items[0].bar",
            "spec.labels.x.w",
            "spec.raw.strict.b",
            "spec.tmpl.data",
            "status.junk"
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"},
            "spec": {
                "known": "k",
                "items": [{"name": "a"}],
                "labels": {"x": {"v": "1"}},
                "raw": {"free": {"deep": true}, "strict": {"a": "1"}},
                "tmpl": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "spec": {}}
            },
            "status": {"phase": "Ready"}
        })
    );
}

#[test]
fn defaults_table() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "replicas": {"type": "integer", "default": 1},
        "mode": {"type": "string", "default": "auto"},
        "opt": {"type": "string", "nullable": true, "default": "d"},
        "nodefault": {"type": "string"},
        "nested": {"type": "object", "default": {}, "properties": {"inner": {"type": "string", "default": "x"}}},
        "absentParent": {"type": "object", "properties": {"inner": {"type": "string", "default": "y"}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "integer", "default": 80}}}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"q": {"type": "boolean", "default": true}}}}
    }}}});
    let cases = [
        (
            json!({}),
            json!({"replicas": 1, "mode": "auto", "opt": "d", "nested": {"inner": "x"}}),
        ),
        (
            json!({"replicas": 3, "mode": null, "opt": null, "nodefault": null}),
            json!({"replicas": 3, "mode": "auto", "opt": null, "nested": {"inner": "x"}}),
        ),
        (
            json!({"list": [{}, {"p": 8080}], "map": {"a": {}}, "absentParent": {}}),
            json!({"replicas": 1, "mode": "auto", "opt": "d", "nested": {"inner": "x"},
                   "list": [{"p": 80}, {"p": 8080}], "map": {"a": {"q": true}}, "absentParent": {"inner": "y"}}),
        ),
    ];
    for (spec, want) in cases {
        let mut obj = json!({"spec": spec.clone()});
        apply_defaults(&schema, &mut obj);
        assert_eq!(obj, json!({"spec": want}), "spec {spec}");
    }
    // A default inside an object applies only if that object exists.
    let mut no_spec = json!({"metadata": {"name": "w"}});
    apply_defaults(&schema, &mut no_spec);
    assert_eq!(no_spec, json!({"metadata": {"name": "w"}}));
}

#[test]
fn validation_accepts_kube_derive_style_schema() {
    let schema = json!({
        "type": "object", "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {"type": "object", "required": ["projectPath"], "properties": {
                "projectPath": {"type": "string", "minLength": 1},
                "scopes": {"type": "array", "items": {"type": "string", "enum": ["read_repository", "api"]}},
                "ttl": {"type": "string", "nullable": true}
            }}
        }
    });
    let good = json!({"apiVersion": "x/v1", "kind": "T", "metadata": {"name": "t"},
                      "spec": {"projectPath": "g/p", "scopes": ["api"], "ttl": null}});
    assert!(validate(&schema, &good).is_empty());
    let bad = json!({"apiVersion": "x/v1", "kind": "T", "metadata": {"name": "t"},
                     "spec": {"scopes": ["write"]}});
    let got: Vec<String> = validate(&schema, &bad).into_iter().map(|c| c.field).collect();
    assert_eq!(got, vec!["spec.scopes[0]", "spec.projectPath"]);
    assert_eq!(validate(&schema, &json!({})).len(), 1);
}
