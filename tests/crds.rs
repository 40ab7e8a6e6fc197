//! The committed `crds/*.yaml` must be exactly what the Rust types generate.

use gitlab_token_operator::crd;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let crds = crd::all_crds();
    assert_eq!(crds.len(), 3);
    for c in &crds {
        let name = c.metadata.name.clone().expect("generated CRDs are named");
        let want = crd::crds_to_yaml(std::slice::from_ref(c)).expect("CRDs serialise");
        let path = dir.join(format!("{name}.yaml"));
        let have = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); run `make crds`", path.display()));
        assert!(
            have == want,
            "{} drifted from the Rust types; run `make crds` and commit",
            path.display()
        );
    }
    let committed = std::fs::read_dir(&dir).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "yaml")
    });
    assert_eq!(
        committed.count(),
        crds.len(),
        "crds/ holds a file no type generates"
    );
}

#[test]
fn crds_have_status_subresource_print_columns_and_short_names() {
    for c in crd::all_crds() {
        let v = &c.spec.versions[0];
        assert!(
            v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "{:?}",
            c.metadata.name
        );
        assert!(
            !v.additional_printer_columns
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        );
        assert!(c.spec.names.short_names.as_ref().is_some_and(|s| !s.is_empty()));
    }
    let token = crd::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "GitLabToken")
        .unwrap();
    let cols: Vec<_> = token.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    for want in ["Ready", "Project", "Expires", "Renewal", "Age"] {
        assert!(cols.iter().any(|c| c == want), "missing print column {want}");
    }
}
