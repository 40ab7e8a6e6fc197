//! What the operator's caches (reflectors) keep of each object: everything it reads, nothing it
//! never reads. At 10,000 sources the bookkeeping fields the API server adds to every object
//! (`managedFields`, and the copy of the whole object `kubectl apply` leaves in an annotation)
//! are most of each cached object's size.

use kube::Resource;

/// The annotation `kubectl apply` (client-side) stores the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the fields no controller reads from an object before it is cached.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::ConfigMap,
        apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta},
    };

    use super::*;

    #[test]
    fn bookkeeping_goes_and_what_controllers_read_stays() {
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("app".into()),
                annotations: Some(
                    [
                        (LAST_APPLIED.to_string(), "{\"big\":true}".to_string()),
                        ("gitlabtokens.io/inject".to_string(), "true".to_string()),
                    ]
                    .into(),
                ),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..Default::default()
            },
            ..Default::default()
        };
        slim(&mut cm);
        assert_eq!(cm.metadata.managed_fields, None);
        let annotations = cm.metadata.annotations.expect("annotations kept");
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            vec!["gitlabtokens.io/inject"]
        );
        assert_eq!(cm.metadata.name.as_deref(), Some("app"));
    }
}
