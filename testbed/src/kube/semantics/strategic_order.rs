//! List ordering of strategic merge patch, as apimachinery `strategicpatch` enforces it after a
//! merge: the items the patch names keep the patch's order, server-only items keep their
//! previous order, and the two are interleaved by the positions the items had before.

use serde_json::Value;

/// Where `item` sits in `list` (by merge key for object lists, by value for scalars).
fn index_of(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    match merge_key {
        Some(k) => list.iter().position(|o| o.get(k) == item.get(k)),
        None => list.iter().position(|o| o == item),
    }
}

/// Go's insertion sort with the library's comparator ("less when both are found and earlier,
/// and also whenever one of them is not found").
fn sort_by_order(items: &mut [Value], order: &[Value], merge_key: Option<&str>) {
    let less = |a: &Value, b: &Value| match (index_of(order, a, merge_key), index_of(order, b, merge_key)) {
        (Some(i), Some(j)) => i < j,
        _ => true,
    };
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && less(&items[j], &items[j - 1]) {
            items.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Orders a merged list: partitions it into items present in `patch_order` and server-only
/// items, sorts each, and interleaves them by their positions in `server_order`.
pub(super) fn order_like_patch(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let (mut patch_items, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| index_of(patch_order, item, merge_key).is_some());
    sort_by_order(&mut patch_items, patch_order, merge_key);
    sort_by_order(&mut server_only, server_order, merge_key);
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patch_items.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    index_of(server_order, l, merge_key),
                    index_of(server_order, r, merge_key),
                ) {
                    (Some(i), Some(j)) => i < j,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::order_like_patch;
    use serde_json::{Value, json};

    fn v(items: &[&str]) -> Vec<Value> {
        items.iter().map(|s| json!(s)).collect()
    }

    #[test]
    fn ordering_table() {
        // (merged, patch order, server order, want)
        let cases = [
            (
                v(&["a", "b", "c"]),
                v(&["c", "a"]),
                v(&["a", "b"]),
                v(&["c", "a", "b"]),
            ),
            // New items go before server-only ones (apimachinery prepends them).
            (
                v(&["a", "b", "c"]),
                v(&["c"]),
                v(&["a", "b"]),
                v(&["c", "a", "b"]),
            ),
            (
                v(&["a", "b", "c"]),
                v(&["b", "a"]),
                v(&["a", "b", "c"]),
                v(&["b", "a", "c"]),
            ),
            (v(&["x", "y"]), v(&[]), v(&["x", "y"]), v(&["x", "y"])),
        ];
        for (merged, patch, server, want) in cases {
            assert_eq!(
                order_like_patch(merged.clone(), &patch, &server, None),
                want,
                "{merged:?} {patch:?}"
            );
        }
        let objs = vec![json!({"type": "A", "s": 1}), json!({"type": "B", "s": 2})];
        let order = vec![json!({"type": "B"}), json!({"type": "A"})];
        assert_eq!(
            order_like_patch(objs.clone(), &order, &objs, Some("type")),
            vec![json!({"type": "B", "s": 2}), json!({"type": "A", "s": 1})]
        );
    }
}
