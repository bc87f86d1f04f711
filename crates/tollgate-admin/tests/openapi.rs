//! docs/openapi.yaml describes exactly the routes the server has.

use std::collections::BTreeSet;

#[test]
fn the_openapi_document_lists_exactly_the_routes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut in_paths = false;
    let mut current = None;
    let mut documented = BTreeSet::new();
    for line in doc.lines() {
        if line == "paths:" {
            in_paths = true;
            continue;
        }
        if !in_paths || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        if let Some(p) = line.strip_prefix("  /") {
            current = Some(format!("/{}", p.trim_end_matches(':')));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && !m.starts_with(' ')
        {
            let path = current.clone().expect("a method before any path");
            documented.insert((m.to_uppercase(), path));
        }
    }
    let served: BTreeSet<(String, String)> = tollgate_admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
}
