//! The map's search language. A query is terms, all of which a node must match:
//!
//! - `text`: the node's label, minor label, id, metadata values or parents' labels contain it
//!   (case-insensitive; a valid regular expression is used as one, e.g. `^web.*`);
//! - `field:value`: a metadata row whose label or id starts with `field` has a matching value
//!   (`label:`, `id:` and `minor:` look at the node itself), e.g. `image:nginx`, `pid:42`;
//! - `metric OP number` with `OP` one of `<`, `<=`, `>`, `>=`, `=` and an optional unit
//!   ([`parse_number`]: `k`/`m`/`g`, `MB`/`GiB`…, `%`), e.g. `cpu > 1%`, `memory >= 512MB`.
//!
//! Pinned terms are terms too: the page keeps them and adds them to every query.

use regex_lite::{Regex, RegexBuilder};
use shared::topology::NodeSummary;

/// Text, matched as a case-insensitive regular expression when it is one, else as a substring.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    regex: Option<Regex>,
}

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_lowercase(),
            regex: RegexBuilder::new(text)
                .case_insensitive(true)
                .size_limit(1 << 16)
                .build()
                .ok(),
        }
    }

    pub fn matches(&self, haystack: &str) -> bool {
        match &self.regex {
            Some(r) => r.is_match(haystack),
            None => haystack.to_lowercase().contains(&self.text),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Term {
    Text(Pattern),
    Field { field: String, value: Pattern },
    Metric { field: String, op: Op, value: f64 },
}

/// A number with an optional unit, case-insensitive: `k`/`m`/`g`/`t` (thousands… trillions, so
/// `512m` is 512,000,000), bytes as the map shows them (`KB`, `MB`, `GB`, `TB` in thousands,
/// `KiB`, `MiB`, `GiB`, `TiB` in 1,024s, `B`), and `%` (a percentage is its number: CPU metrics
/// are percentages). `1.5k` → 1,500; `100MB` → 100,000,000; `1%` → 1.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let unit_at = s
        .find(|c: char| c.is_ascii_alphabetic() || c == '%')
        .unwrap_or(s.len());
    let (digits, unit) = s.split_at(unit_at);
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "%" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let n: f64 = digits.trim().parse().ok()?;
    n.is_finite().then_some(n * scale)
}

fn split_comparison(s: &str) -> Option<(&str, Op, &str)> {
    let at = s.find(['<', '>', '='])?;
    let rest = &s[at..];
    let (op, len) = if rest.starts_with("<=") {
        (Op::Le, 2)
    } else if rest.starts_with(">=") {
        (Op::Ge, 2)
    } else if rest.starts_with('<') {
        (Op::Lt, 1)
    } else if rest.starts_with('>') {
        (Op::Gt, 1)
    } else {
        (Op::Eq, 1)
    };
    Some((s[..at].trim(), op, rest[len..].trim()))
}

/// The query's words, with comparisons written with spaces (`cpu > 1`, `cpu> 1`, `cpu >1`) joined
/// into one word.
fn joined_words(query: &str) -> Vec<String> {
    let tokens: Vec<&str> = query.split_whitespace().collect();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        let is_op = |s: &str| matches!(s, "<" | "<=" | ">" | ">=" | "=");
        let next = tokens.get(i + 1).copied();
        if i + 2 < tokens.len() && next.is_some_and(is_op) {
            // `cpu > 1`
            words.push(format!("{t}{}{}", tokens[i + 1], tokens[i + 2]));
            i += 3;
        } else if let Some(n) = next.filter(|n| {
            t.ends_with(['<', '>', '=']) || (n.starts_with(['<', '>', '=']) && !is_op(n))
        }) {
            // `cpu> 1`, `cpu >1`
            words.push(format!("{t}{n}"));
            i += 2;
        } else {
            words.push(t.to_owned());
            i += 1;
            continue;
        }
        // `memory > 500 MB`: a unit on its own after a comparison's number belongs to it.
        if let (Some(unit), Some(word)) = (tokens.get(i), words.last_mut())
            && unit.chars().all(|c| c.is_ascii_alphabetic() || c == '%')
            && word.ends_with(|c: char| c.is_ascii_digit())
            && parse_number(&format!("1{unit}")).is_some()
        {
            word.push_str(unit);
            i += 1;
        }
    }
    words
}

/// Parses a query into terms. Never fails: what is not a comparison or `field:value` is text
/// ([`problems`] says which comparisons did not parse).
pub fn parse(query: &str) -> Vec<Term> {
    let words = joined_words(query);
    words
        .iter()
        .map(|w| {
            if let Some((field, op, value)) = split_comparison(w)
                && !field.is_empty()
                && let Some(value) = parse_number(value)
            {
                return Term::Metric {
                    field: field.to_lowercase(),
                    op,
                    value,
                };
            }
            match w.split_once(':') {
                Some((field, value)) if !field.is_empty() && !value.is_empty() => Term::Field {
                    field: field.to_lowercase(),
                    value: Pattern::new(value),
                },
                _ => Term::Text(Pattern::new(w)),
            }
        })
        .collect()
}

fn field_is(field: &str, id: &str, label: &str) -> bool {
    let squash = |s: &str| s.to_lowercase().replace([' ', '_', '#'], "");
    let f = squash(field);
    !f.is_empty() && (squash(label).starts_with(&f) || squash(id).starts_with(&f))
}

impl Term {
    pub fn matches(&self, n: &NodeSummary) -> bool {
        match self {
            Term::Text(p) => {
                p.matches(&n.label)
                    || p.matches(&n.label_minor)
                    || p.matches(&n.id)
                    || n.metadata.iter().any(|m| p.matches(&m.value))
                    || n.parents.iter().any(|m| p.matches(&m.label))
            }
            Term::Field { field, value } => match field.as_str() {
                "label" | "name" => value.matches(&n.label),
                "id" => value.matches(&n.id),
                "minor" => value.matches(&n.label_minor),
                _ => {
                    n.metadata
                        .iter()
                        .any(|m| field_is(field, &m.id, &m.label) && value.matches(&m.value))
                        || n.parents
                            .iter()
                            .any(|p| field_is(field, &p.topology_id, "") && value.matches(&p.label))
                }
            },
            Term::Metric { field, op, value } => {
                n.metrics
                    .iter()
                    .any(|m| field_is(field, &m.id, &m.label) && op.holds(m.value, *value))
                    || n.metadata.iter().any(|m| {
                        field_is(field, &m.id, &m.label)
                            && m.value.parse::<f64>().is_ok_and(|v| op.holds(v, *value))
                    })
            }
        }
    }
}

/// What is wrong with a query, for the page to say instead of silently matching nothing: a
/// comparison whose value is not a number (`memory > lots`, `cpu > 1x`).
pub fn problems(query: &str) -> Vec<String> {
    joined_words(query)
        .iter()
        .filter_map(|w| {
            let (field, _, value) = split_comparison(w)?;
            if field.is_empty() || w.contains(':') || parse_number(value).is_some() {
                return None;
            }
            Some(format!(
                "`{w}`: “{value}” is not a number (try 100MB, 1.5k or 20%)."
            ))
        })
        .collect()
}

/// Whether `n` matches every term (an empty query matches everything).
pub fn matches_all(terms: &[Term], n: &NodeSummary) -> bool {
    terms.iter().all(|t| t.matches(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::topology::{MetadataRow, MetricRow, Parent};

    fn node(id: &str, label: &str, cpu: f64, mem: f64, image: &str) -> NodeSummary {
        let metric = |id: &str, label: &str, value: f64| MetricRow {
            id: id.into(),
            label: label.into(),
            format: String::new(),
            group: String::new(),
            value,
            priority: 0.0,
            samples: None,
            min: 0.0,
            max: 0.0,
            url: String::new(),
        };
        NodeSummary {
            id: id.into(),
            label: label.into(),
            label_minor: "host-1".into(),
            rank: String::new(),
            shape: String::new(),
            tag: String::new(),
            stack: false,
            pseudo: false,
            metadata: vec![
                MetadataRow {
                    id: "docker_image_name".into(),
                    label: "Image".into(),
                    value: image.into(),
                    priority: 0.0,
                    data_type: String::new(),
                    truncate: 0,
                },
                MetadataRow {
                    id: "pid".into(),
                    label: "PID".into(),
                    value: "42".into(),
                    priority: 0.0,
                    data_type: "number".into(),
                    truncate: 0,
                },
            ],
            parents: vec![Parent {
                id: "h;<host>".into(),
                label: "host-1".into(),
                topology_id: "hosts".into(),
            }],
            metrics: vec![
                metric("process_cpu_usage_percent", "CPU", cpu),
                metric("process_memory_usage_bytes", "Memory", mem),
            ],
            tables: vec![],
            adjacency: vec![],
        }
    }

    fn hits(query: &str, nodes: &[NodeSummary]) -> Vec<String> {
        let terms = parse(query);
        nodes
            .iter()
            .filter(|n| matches_all(&terms, n))
            .map(|n| n.label.clone())
            .collect()
    }

    #[test]
    fn text_fields_metrics_and_suffixes() {
        let nodes = [
            node("a", "webapp", 0.5, 200e6, "nginx:1.25"),
            node("b", "fakedb", 3.0, 900e6, "postgres:15"),
            node("c", "Cache", 1.5, 50e6, "redis:7"),
        ];
        assert_eq!(hits("", &nodes), ["webapp", "fakedb", "Cache"]);
        assert_eq!(hits("cache", &nodes), ["Cache"]);
        assert_eq!(hits("^(web|fake)", &nodes), ["webapp", "fakedb"]);
        // An invalid regular expression is plain text.
        assert!(hits("web(", &nodes).is_empty());
        assert_eq!(hits("image:postgres", &nodes), ["fakedb"]);
        assert_eq!(hits("pid:42", &nodes).len(), 3);
        assert_eq!(hits("hosts:host-1", &nodes).len(), 3);
        assert_eq!(hits("cpu > 1", &nodes), ["fakedb", "Cache"]);
        assert_eq!(hits("cpu>1", &nodes), ["fakedb", "Cache"]);
        assert_eq!(hits("cpu >1", &nodes), ["fakedb", "Cache"]);
        assert_eq!(hits("cpu> 1", &nodes), ["fakedb", "Cache"]);
        assert_eq!(hits("memory >= 200m", &nodes), ["webapp", "fakedb"]);
        assert_eq!(hits("memory < 0.1g", &nodes), ["Cache"]);
        assert_eq!(hits("pid = 42", &nodes).len(), 3);
        // Terms combine: all must match.
        assert_eq!(hits("cpu > 1 image:redis", &nodes), ["Cache"]);
        assert!(hits("cpu > 1 image:nginx", &nodes).is_empty());
        assert!(hits("nothing-like-this", &nodes).is_empty());
    }

    #[test]
    fn numbers_with_suffixes() {
        assert_eq!(parse_number("1.5k"), Some(1500.0));
        assert_eq!(parse_number("512M"), Some(512e6));
        assert_eq!(parse_number("2g"), Some(2e9));
        assert_eq!(parse_number("7"), Some(7.0));
        assert_eq!(parse_number("x"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("100MB"), Some(100e6));
        assert_eq!(parse_number("1.5 GB"), Some(1.5e9));
        assert_eq!(parse_number("2MiB"), Some(2.0 * 1024.0 * 1024.0));
        assert_eq!(parse_number("1%"), Some(1.0));
        assert_eq!(parse_number("10b"), Some(10.0));
        assert_eq!(parse_number("100XB"), None);
        assert_eq!(parse_number("MB"), None);
    }

    #[test]
    fn metrics_compare_with_the_units_the_map_shows() {
        let nodes = [
            node("a", "webapp", 0.5, 200e6, "nginx:1.25"),
            node("b", "fakedb", 3.0, 900e6, "postgres:15"),
        ];
        assert_eq!(hits("memory > 100MB", &nodes), ["webapp", "fakedb"]);
        assert_eq!(hits("memory > 500 MB", &nodes), ["fakedb"]);
        assert_eq!(hits("cpu > 1%", &nodes), ["fakedb"]);
        assert_eq!(hits("memory<0.5GB", &nodes), ["webapp"]);
    }

    #[test]
    fn comparisons_that_do_not_parse_are_reported() {
        assert!(problems("cpu > 1% memory>100MB image:nginx web").is_empty());
        let said = problems("memory > lots cpu>1x");
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].contains("“lots” is not a number"), "{said:?}");
        assert!(said[1].contains("“1x”"), "{said:?}");
    }
}
