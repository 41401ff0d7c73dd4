//! The OpenAPI document and the router's table must list the same endpoints.

use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::api::ROUTES;

const DOCUMENT: &str = include_str!("../../../docs/api/openapi.yaml");

/// `(METHOD, path)` for every operation under `paths:`, read by indentation: paths at two
/// spaces, operations at four, as the document is written.
fn documented_operations() -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in DOCUMENT.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')).and_then(|l| l.strip_suffix(':')) {
            path = Some(key.trim_matches(|c| c == '\'' || c == '"').to_string());
        } else if let Some(key) =
            line.strip_prefix("    ").filter(|l| !l.starts_with(' ')).and_then(|l| l.strip_suffix(':'))
        {
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&key) {
                let path = path.clone().expect("an operation under a path");
                operations.insert((key.to_uppercase(), path));
            }
        }
    }
    operations
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let routed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|r| (r.method.as_str().to_string(), r.pattern.to_string())).collect();
    let documented = documented_operations();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routes missing from docs/api/openapi.yaml: {undocumented:?}");
    assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");
    assert_eq!(documented.len(), ROUTES.len());
}

#[test]
fn the_document_is_openapi_3_and_requires_bearer_tokens() {
    assert!(DOCUMENT.starts_with("openapi: 3."));
    assert!(DOCUMENT.contains("scheme: bearer"));
    assert!(DOCUMENT.contains("\nsecurity:\n  - bearer: []"));
}
