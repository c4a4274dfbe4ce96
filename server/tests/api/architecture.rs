//! The rooms of the roles, checked on the source: a role module reaches another role only through
//! that role's contract, the collector touches no database, and no two roles import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROLES: [&str; 6] = [
    "users",
    "provisioning",
    "collector",
    "frontend",
    "ui",
    "monitoring",
];

/// What each role may use of the others (and of the crate's shared layers it must not touch).
fn allowed(role: &str, path: &str) -> bool {
    let contract = |prefixes: &[&str]| prefixes.iter().any(|p| path.starts_with(p));
    match role {
        "collector" => !contract(&["store", "app"]),
        "provisioning" => contract(&["users::directory", "collector::shard"]) || !is_role(path),
        "frontend" => {
            contract(&[
                "users::directory",
                "provisioning::directory",
                "collector::ReadAccess",
            ]) || (!is_role(path) && !path.starts_with("store"))
        }
        "monitoring" => {
            contract(&["users::directory"]) || (!is_role(path) && !path.starts_with("store"))
        }
        _ => !is_role(path) && !path.starts_with("app"),
    }
}

fn is_role(path: &str) -> bool {
    ROLES
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}::")))
        || path.starts_with("app")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::…` path a file names, with `crate::{a, b::c}` groups expanded one level.
fn crate_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    paths.push(item.to_owned());
                }
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(rest[..end].trim_end_matches(':').to_owned());
        }
    }
    paths
}

#[test]
fn roles_reach_each_other_only_through_contracts() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for role in ROLES {
        let mut files = Vec::new();
        sources(&src.join(role), &mut files);
        assert!(!files.is_empty(), "no sources for {role}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for path in crate_paths(&text) {
                if !allowed(role, &path) {
                    violations.push(format!("{}: crate::{path}", file.display()));
                }
                for other in ROLES {
                    if other != role && (path == other || path.starts_with(&format!("{other}::"))) {
                        edges.entry(role).or_default().insert(other);
                    }
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    for (role, uses) in &edges {
        for other in uses {
            assert!(
                !edges.get(other).is_some_and(|back| back.contains(role)),
                "{role} and {other} import each other"
            );
        }
    }
    // What the graph is today, so that a new edge is a decision, not an accident.
    let graph: Vec<String> = edges
        .iter()
        .map(|(role, uses)| {
            format!(
                "{role} -> {}",
                uses.iter().copied().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    assert_eq!(
        graph,
        [
            "frontend -> collector,provisioning,users",
            "monitoring -> users",
            "provisioning -> collector,users",
        ]
    );
}

#[test]
fn the_path_scanner_sees_grouped_and_plain_imports() {
    assert_eq!(
        crate_paths(
            "use crate::{store, users::directory::Directory};\nlet x = crate::app::router();"
        ),
        ["store", "users::directory::Directory", "app::router"]
    );
    assert!(!allowed("collector", "store::Store"));
    assert!(!allowed("users", "provisioning::api"));
    assert!(allowed("provisioning", "users::directory::Directory"));
    assert!(!allowed("provisioning", "users::accounts"));
}
