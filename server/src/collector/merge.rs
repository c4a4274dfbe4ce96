//! Merging reports as Scope does (scope-protocol.md §2 "Merging"): the earliest `TS`, summed
//! `Window`, topologies merged node by node — sets, adjacency, parents and children unioned, latest
//! values newest-timestamp-wins per key, metric samples merged by time. Deltas (nodes without id or
//! topology) complete the nodes of an earlier full report; nodes still incomplete after merging a
//! window are dropped before rendering.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::keyed::merge_sorted;
use super::name::Name;

use super::report::{
    Latest, LatestEntry, Metric, Metrics, Node, Report, Sample, StringSets, Time, Topology,
    merge_template,
};

impl Report {
    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &Report) {
        if self.ts == Time::ZERO || (other.ts != Time::ZERO && other.ts < self.ts) {
            self.ts = other.ts;
        }
        self.window = self.window.saturating_add(other.window);
        self.shortcut |= other.shortcut;
        if self.id.is_empty() {
            self.id = other.id.clone();
        }
        for (name, topology) in &other.topologies {
            self.topologies
                .entry(name.clone())
                .or_default()
                .merge(topology);
        }
        if self.dns.is_null() {
            self.dns = other.dns.clone();
        }
        if self.plugins.is_null() {
            self.plugins = other.plugins.clone();
        }
    }

    /// Merges a window of reports, oldest first, and drops nodes that only deltas described.
    pub fn merge_all<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Report {
        let mut merged = Report::merge_window(reports);
        merged.remove_part_merged();
        merged
    }

    /// Merges one probe's reports, oldest first, as they are: a part of the window for
    /// [`Report::merge_all`] to combine with the other probes' (merging is associative, so merging
    /// the parts in the window's order is merging the window).
    pub fn merge_plain<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Report {
        let mut merged = Report::default();
        for report in reports {
            merged.merge(report);
        }
        merged
    }

    /// Merges a window of reports, oldest first, onto Scope's empty report (default shapes and
    /// labels per topology), and upgrades what older probes sent (Scope's `Upgrade`).
    pub fn merge_window<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Report {
        let mut merged = Report::with_defaults();
        for report in reports {
            merged.merge(report);
        }
        merged.upgrade_pods();
        merged
    }

    /// Scope's `MakeReport`: every topology present, with its shape, tag and labels.
    pub fn with_defaults() -> Report {
        const DEFAULTS: [(&str, &str, &str, &str, &str); 23] = [
            ("Endpoint", "", "", "", ""),
            ("Process", "square", "", "process", "processes"),
            ("Container", "hexagon", "", "container", "containers"),
            ("ContainerImage", "hexagon", "", "image", "images"),
            ("Pod", "heptagon", "", "pod", "pods"),
            ("Service", "heptagon", "", "service", "services"),
            ("Deployment", "heptagon", "", "deployment", "deployments"),
            ("ReplicaSet", "triangle", "", "replica set", "replica sets"),
            ("DaemonSet", "pentagon", "", "daemonset", "daemonsets"),
            (
                "StatefulSet",
                "octagon",
                "",
                "stateful set",
                "stateful sets",
            ),
            ("CronJob", "triangle", "", "cron job", "cron jobs"),
            ("Namespace", "", "", "", ""),
            ("Host", "circle", "", "host", "hosts"),
            ("Overlay", "circle", "", "peer", "peers"),
            ("ECSTask", "heptagon", "", "task", "tasks"),
            ("ECSService", "heptagon", "", "service", "services"),
            ("SwarmService", "heptagon", "", "service", "services"),
            (
                "PersistentVolume",
                "cylinder",
                "",
                "persistent volume",
                "persistent volumes",
            ),
            (
                "PersistentVolumeClaim",
                "dottedcylinder",
                "",
                "persistent volume claim",
                "persistent volume claims",
            ),
            (
                "StorageClass",
                "sheet",
                "",
                "storage class",
                "storage classes",
            ),
            (
                "VolumeSnapshot",
                "dottedcylinder",
                "camera",
                "volume snapshot",
                "volume snapshots",
            ),
            (
                "VolumeSnapshotData",
                "cylinder",
                "camera",
                "volume snapshot data",
                "volume snapshot data",
            ),
            ("Job", "dottedtriangle", "", "job", "jobs"),
        ];
        let mut report = Report::default();
        for (name, shape, tag, label, plural) in DEFAULTS {
            report.topologies.insert(
                name.to_owned(),
                Topology {
                    shape: shape.to_owned(),
                    tag: tag.to_owned(),
                    label: label.to_owned(),
                    label_plural: plural.to_owned(),
                    ..Topology::default()
                },
            );
        }
        report
    }

    /// Pods whose parents are replica sets get those replica sets' deployments as parents instead
    /// (probes stopped reporting replica sets when they started naming deployments).
    pub fn upgrade_pods(&mut self) {
        let replica_sets = match self.topologies.get_mut("ReplicaSet") {
            Some(t) if !t.nodes.is_empty() => std::mem::take(&mut t.nodes),
            _ => return,
        };
        let Some(pods) = self.topologies.get_mut("Pod") else {
            return;
        };
        for pod in pods.nodes.values_mut() {
            let Some(sets) = pod.parents_mut().remove("replica_set") else {
                continue;
            };
            // Gathered, then sorted once: a pod naming many replica sets costs their deployments.
            let mut deployments: Vec<Name> = sets
                .iter()
                .filter_map(|set| replica_sets.get(set.as_str()))
                .flat_map(|set| set.parents.get("deployment").into_iter().flatten())
                .cloned()
                .collect();
            if deployments.is_empty() {
                continue;
            }
            let parents = pod.parents_mut();
            if let Some(mine) = parents.remove("deployment") {
                deployments.extend(mine);
            }
            deployments.sort_unstable();
            deployments.dedup();
            parents.insert("deployment", deployments);
        }
    }

    /// Drops nodes that never got a topology (deltas whose full report left the window).
    pub fn remove_part_merged(&mut self) {
        for topology in self.topologies.values_mut() {
            topology.nodes.retain(|_, node| !node.topology.is_empty());
        }
    }
}

fn keep_first<T: Clone + std::ops::Deref<Target = str>>(mine: &mut T, theirs: &T) {
    if mine.is_empty() {
        *mine = theirs.clone();
    }
}

impl Topology {
    pub fn merge(&mut self, other: &Topology) {
        keep_first(&mut self.shape, &other.shape);
        keep_first(&mut self.tag, &other.tag);
        keep_first(&mut self.label, &other.label);
        keep_first(&mut self.label_plural, &other.label_plural);
        for (id, node) in &other.nodes {
            self.nodes.entry(id.clone()).or_default().merge(node);
        }
        for (mine, theirs) in [
            (&mut self.controls, &other.controls),
            (&mut self.metadata_templates, &other.metadata_templates),
            (&mut self.metric_templates, &other.metric_templates),
            (&mut self.table_templates, &other.table_templates),
        ] {
            for (id, template) in theirs {
                merge_template(mine, id, template);
            }
        }
    }
}

fn union<T: Clone + Ord>(mine: &mut Vec<T>, theirs: &[T]) {
    if theirs.is_empty() {
        return;
    }
    mine.extend(theirs.iter().cloned());
    mine.sort();
    mine.dedup();
}

/// Unions `theirs` into `mine` (each set sorted, without duplicates), copying a shared `mine` only
/// if `theirs` adds to it.
pub fn union_sets(mine: &mut Arc<StringSets>, theirs: &Arc<StringSets>) {
    if theirs.is_empty() || Arc::ptr_eq(mine, theirs) {
        return;
    }
    Arc::make_mut(mine).merge_with(
        theirs,
        |set, items| union(set, items),
        |items| {
            let mut set = Vec::new();
            union(&mut set, items);
            set
        },
    );
}

/// Latest values: the newest timestamp wins, `theirs` on a tie. An empty `mine` takes `theirs`
/// shared; a shared `mine` is copied only if `theirs` has anything.
pub fn merge_latest(mine: &mut Arc<Latest>, theirs: &Arc<Latest>) {
    if theirs.is_empty() || Arc::ptr_eq(mine, theirs) {
        return;
    }
    if mine.is_empty() {
        *mine = Arc::clone(theirs);
        return;
    }
    Arc::make_mut(mine).merge_with(
        theirs,
        |existing, entry| {
            if existing.timestamp <= entry.timestamp {
                existing.clone_from(entry);
            }
        },
        LatestEntry::clone,
    );
}

/// Metrics merged by key (`Metric::merge`), a shared `mine` copied only if `theirs` has any.
pub fn merge_metrics(mine: &mut Arc<Metrics>, theirs: &Arc<Metrics>) {
    if theirs.is_empty() || Arc::ptr_eq(mine, theirs) {
        return;
    }
    Arc::make_mut(mine).merge_with(theirs, Metric::merge, |metric| {
        let mut merged = Metric::default();
        merged.merge(metric);
        merged
    });
}

impl Node {
    pub fn merge(&mut self, other: &Node) {
        keep_first(&mut self.id, &other.id);
        keep_first(&mut self.topology, &other.topology);
        union_sets(&mut self.sets, &other.sets);
        union(&mut self.adjacency, &other.adjacency);
        union_sets(&mut self.parents, &other.parents);
        merge_latest(&mut self.latest, &other.latest);
        merge_metrics(&mut self.metrics, &other.metrics);
        merge_children(&mut self.children, &other.children);
    }
}

/// `Node::merge`'s rule for children: each of `theirs` merged into the first of `mine` with its
/// (non-empty) id, or added. Ids are looked up in an index made once, not by scanning `mine` for
/// each child (which cost the square of a hostile node's hundred thousand children).
pub fn merge_children(mine: &mut Vec<Node>, theirs: &[Node]) {
    if theirs.is_empty() {
        return;
    }
    let mut first: std::collections::HashMap<Name, usize> =
        std::collections::HashMap::with_capacity(mine.len() + theirs.len());
    for (at, child) in mine.iter().enumerate() {
        if !child.id.is_empty() {
            first.entry(child.id.clone()).or_insert(at);
        }
    }
    for child in theirs {
        match first.get(&child.id) {
            Some(&at) if !child.id.is_empty() => mine[at].merge(child),
            _ => {
                if !child.id.is_empty() {
                    first.insert(child.id.clone(), mine.len());
                }
                mine.push(child.clone());
            }
        }
    }
}

impl Metric {
    /// Scope's `Metric.Merge`: a metric without samples gives way to the other, bounds and all
    /// (and stays as it is when the other has none); otherwise samples merged by time (one per
    /// date, the later report's value), min and max widened. Samples taken over are put in date
    /// order, one per date (a probe sends them so; Scope would keep a disordered list as it came).
    pub fn merge(&mut self, other: &Metric) {
        if self.samples.is_empty() {
            self.clone_from(other);
            if !self.samples.is_sorted_by(|a, b| a.date < b.date) {
                self.samples.reverse();
                // Stable, on the reversed list: of equal dates the last that came is first.
                self.samples.sort_by_key(|s| s.date);
                self.samples.dedup_by_key(|s| s.date);
            }
            return;
        }
        if other.samples.is_empty() {
            return;
        }
        let by_date = |samples: &[Sample]| samples.is_sorted_by(|a, b| a.date < b.date);
        if by_date(&self.samples) && by_date(&other.samples) {
            // As a probe and the window keep them: one pass, no map (a window of a probe that
            // reports fast holds hundreds of samples per metric).
            self.samples = merge_sorted(
                std::mem::take(&mut self.samples),
                &other.samples,
                |mine, theirs| mine.date.cmp(&theirs.date),
                |_, theirs| theirs.clone(),
            );
        } else {
            let mut by_date: BTreeMap<Time, f64> =
                self.samples.iter().map(|s| (s.date, s.value)).collect();
            by_date.extend(other.samples.iter().map(|s| (s.date, s.value)));
            self.samples = by_date
                .into_iter()
                .map(|(date, value)| Sample { date, value })
                .collect();
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::decode::read_fixture;
    use crate::collector::report::{LatestEntry, Sample};

    /// Scope's `Metric.Merge`: a metric without samples gives way to the other, bounds and all,
    /// and one with samples ignores a metric without (its bounds do not widen to 0).
    #[test]
    fn a_metric_without_samples_gives_way_as_in_scope() {
        let sample = |d: i64| Sample {
            date: Time(d),
            value: 7.0,
        };
        let metric = |samples: Vec<Sample>, min: f64, max: f64| Metric { samples, min, max };
        let mut with = metric(vec![sample(1)], 5.0, 10.0);
        with.merge(&metric(Vec::new(), 0.0, 0.0));
        assert_eq!(with, metric(vec![sample(1)], 5.0, 10.0));
        let mut without = metric(Vec::new(), 3.0, 4.0);
        without.merge(&metric(Vec::new(), 1.0, 2.0));
        assert_eq!(without, metric(Vec::new(), 1.0, 2.0));
        let mut without = metric(Vec::new(), 0.0, 0.0);
        without.merge(&metric(vec![sample(2)], 6.0, 9.0));
        assert_eq!(without, metric(vec![sample(2)], 6.0, 9.0));
        let mut both = metric(vec![sample(1)], 5.0, 10.0);
        both.merge(&metric(vec![sample(2)], 6.0, 12.0));
        assert_eq!(both, metric(vec![sample(1), sample(2)], 5.0, 12.0));
    }

    /// Samples merge by date, the other metric's value winning a date both have, whether the
    /// lists come sorted (merged in one pass) or not.
    #[test]
    fn samples_merge_by_date_sorted_or_not() {
        let mut seed = 11u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        for round in 0..500 {
            let mut list = |sorted: bool| {
                let mut dates: Vec<i64> = (0..next(8)).map(|_| next(12) as i64).collect();
                if sorted {
                    dates.sort_unstable();
                    dates.dedup();
                }
                dates
                    .into_iter()
                    .map(|d| Sample {
                        date: Time(d),
                        value: next(100) as f64,
                    })
                    .collect::<Vec<_>>()
            };
            let sorted = round % 3 != 0;
            let (mine, theirs) = (list(sorted), list(sorted || round % 2 == 0));
            // Scope's rule: a side without samples leaves the other's as they are.
            if theirs.is_empty() {
                let kept: Vec<(Time, f64)> = mine.iter().map(|s| (s.date, s.value)).collect();
                let mut unchanged = Metric {
                    samples: mine,
                    min: 0.0,
                    max: 1.0,
                };
                unchanged.merge(&Metric::default());
                let got: Vec<(Time, f64)> = unchanged
                    .samples
                    .iter()
                    .map(|s| (s.date, s.value))
                    .collect();
                assert_eq!(got, kept, "round {round}");
                continue;
            }
            let mut expected: BTreeMap<Time, f64> =
                mine.iter().map(|s| (s.date, s.value)).collect();
            expected.extend(theirs.iter().map(|s| (s.date, s.value)));
            let mut merged = Metric {
                samples: mine,
                min: 0.0,
                max: 1.0,
            };
            merged.merge(&Metric {
                samples: theirs,
                min: 0.0,
                max: 1.0,
            });
            let got: Vec<(Time, f64)> = merged.samples.iter().map(|s| (s.date, s.value)).collect();
            assert_eq!(
                got,
                expected.into_iter().collect::<Vec<_>>(),
                "round {round}"
            );
        }
    }

    #[test]
    fn deltas_complete_the_full_report_they_follow() {
        let full = read_fixture("probe-full-1.msgpack.gz");
        let d2 = read_fixture("probe-delta-2.msgpack.gz");
        let d3 = read_fixture("probe-delta-3.msgpack.gz");
        let merged = Report::merge_all([&full, &d2, &d3]);
        assert_eq!(merged.ts, full.ts, "the earliest TS");
        assert_eq!(merged.window, full.window + d2.window + d3.window);
        let processes = &merged.topology("Process").unwrap().nodes;
        assert_eq!(processes.len(), 9);
        for (id, node) in processes {
            assert_eq!(&node.id, id);
            assert_eq!(node.topology, "process");
            // Samples from the full report and both deltas, one per date, in order.
            let samples = &node.metrics["process_memory_usage_bytes"].samples;
            assert!(samples.len() > full.topology("Process").unwrap().nodes[id].metrics["process_memory_usage_bytes"].samples.len());
            assert!(samples.windows(2).all(|w| w[0].date < w[1].date));
        }
        // The delta's new endpoints are whole nodes; the full report's are kept.
        let endpoints = merged.topology("Endpoint").unwrap().nodes.len();
        assert!(endpoints > full.topology("Endpoint").unwrap().nodes.len());
        // Latest values: the newest wins.
        let host = &merged.topology("Host").unwrap().nodes["scope-fixture-host;<host>"];
        let newest_uptime = d3.topology("Host").unwrap().nodes["scope-fixture-host;<host>"].latest
            ["uptime"]
            .clone();
        assert_eq!(host.latest["uptime"], newest_uptime);
        // Templates survive the deltas, which blank them.
        assert!(!merged.topology("Host").unwrap().metric_templates.is_empty());
    }

    #[test]
    fn merging_parts_is_merging_the_window() {
        let full = read_fixture("probe-full-1.msgpack.gz");
        let d2 = read_fixture("probe-delta-2.msgpack.gz");
        let d3 = read_fixture("probe-delta-3.msgpack.gz");
        let f4 = read_fixture("probe-full-4.msgpack.gz");
        let whole = Report::merge_all([&full, &d2, &d3, &f4]);
        let first = Report::merge_plain([&full, &d2]);
        let second = Report::merge_plain([&d3, &f4]);
        assert_eq!(Report::merge_all([&first, &second]), whole);
        // A delta whose full report is in an earlier part is still completed by it.
        let alone = Report::merge_plain([&d2]);
        assert_eq!(
            Report::merge_all([&Report::merge_plain([&full]), &alone]),
            Report::merge_all([&full, &d2])
        );
    }

    #[test]
    fn a_delta_without_its_full_report_leaves_nothing_half_made() {
        let d2 = read_fixture("probe-delta-2.msgpack.gz");
        let merged = Report::merge_all([&d2]);
        assert!(
            merged
                .topology("Process")
                .is_none_or(|t| t.nodes.is_empty())
        );
        // Its whole (new) endpoint nodes stay.
        assert_eq!(
            merged.topology("Endpoint").unwrap().nodes.len(),
            d2.topology("Endpoint").unwrap().nodes.len()
        );
    }

    #[test]
    fn templates_of_one_id_keep_the_higher_priority() {
        let topology = |label: &str, priority: f64| Topology {
            metadata_templates: BTreeMap::from([(
                "os".to_owned(),
                serde_json::json!({"id": "os", "label": label, "priority": priority}),
            )]),
            ..Topology::default()
        };
        let mut a = topology("OS", 12.0);
        a.merge(&topology("Operating system", 3.0));
        assert_eq!(a.metadata_templates["os"]["label"], "OS");
        a.merge(&topology("System", 20.0));
        assert_eq!(a.metadata_templates["os"]["label"], "System");
    }

    /// Every node summary is made from all its topology's templates: a window keeps at most
    /// `MAX_TEMPLATES` of each kind, and none larger than `MAX_TEMPLATE_BYTES`.
    #[test]
    fn a_window_keeps_a_bounded_number_of_templates_of_bounded_size() {
        use crate::collector::report::{MAX_TEMPLATE_BYTES, MAX_TEMPLATES};
        let template = |id: String, label: String| {
            let value = serde_json::json!({"id": id, "label": label, "priority": 1});
            (id, value)
        };
        let probe = |from: usize| Topology {
            table_templates: (from..from + 40)
                .map(|i| template(format!("t{i:03}"), "x".into()))
                .collect(),
            ..Topology::default()
        };
        let mut window = probe(0);
        window.merge(&probe(40));
        window.merge(&probe(80));
        assert_eq!(window.table_templates.len(), MAX_TEMPLATES);
        // A template of an id already kept still takes its place by priority.
        let mut better = probe(0);
        better.table_templates.insert(
            "t000".into(),
            serde_json::json!({"id": "t000", "label": "better", "priority": 2}),
        );
        window.merge(&better);
        assert_eq!(window.table_templates["t000"]["label"], "better");
        // Too large: dropped, whether new or replacing.
        let huge = "x".repeat(MAX_TEMPLATE_BYTES);
        let mut large = Topology::default();
        large.table_templates.insert(
            "t001".into(),
            serde_json::json!({"id": "t001", "label": huge, "priority": 9}),
        );
        window.merge(&large);
        assert_eq!(window.table_templates["t001"]["label"], "x");
    }

    #[test]
    fn a_report_brings_a_bounded_number_of_templates_of_bounded_size() {
        use crate::collector::decode::{Format, decode};
        use crate::collector::report::{MAX_TEMPLATE_BYTES, MAX_TEMPLATES};
        let mut templates = serde_json::Map::new();
        for i in 0..1_000 {
            let label = if i == 0 {
                "x".repeat(MAX_TEMPLATE_BYTES)
            } else {
                "x".into()
            };
            templates.insert(
                format!("m{i:04}"),
                serde_json::json!({"id": i, "label": label}),
            );
        }
        let body = serde_json::json!({
            "Host": {"nodes": {}, "metadata_templates": templates, "controls": templates},
        });
        let body = serde_json::to_vec(&body).unwrap();
        let report = decode(&body, Format::Json, false, 1 << 20).unwrap();
        let host = &report.topologies["Host"];
        for kept in [&host.metadata_templates, &host.controls] {
            assert_eq!(kept.len(), MAX_TEMPLATES);
            assert!(!kept.contains_key("m0000") && kept.contains_key("m0001"));
        }
    }

    #[test]
    fn node_merge_rules() {
        let entry = |t: i64, v: &str| LatestEntry {
            timestamp: Time(t),
            value: v.into(),
        };
        let mut a = Node {
            id: "n".into(),
            topology: "process".into(),
            ..Node::default()
        };
        a.sets_mut().insert("ips", vec!["b".into(), "a".into()]);
        a.adjacency = vec!["x".into()];
        a.latest_mut().insert("name", entry(2, "new"));
        a.metrics_mut().insert(
            "cpu",
            Metric {
                samples: vec![Sample {
                    date: Time(1),
                    value: 1.0,
                }],
                min: 1.0,
                max: 1.0,
            },
        );
        let mut b = Node::default();
        b.sets_mut().insert("ips", vec!["c".into(), "a".into()]);
        b.adjacency = vec!["y".into(), "x".into()];
        b.latest_mut().insert("name", entry(1, "old"));
        b.latest_mut().insert("pid", entry(1, "7"));
        b.metrics_mut().insert(
            "cpu",
            Metric {
                samples: vec![Sample {
                    date: Time(2),
                    value: 3.0,
                }],
                min: 0.0,
                max: 3.0,
            },
        );
        a.merge(&b);
        assert_eq!(a.sets["ips"], vec!["a", "b", "c"]);
        assert_eq!(a.adjacency, vec!["x", "y"]);
        assert_eq!(a.latest["name"].value, "new", "newest timestamp wins");
        assert_eq!(a.latest["pid"].value, "7");
        let cpu = &a.metrics["cpu"];
        assert_eq!(cpu.samples.len(), 2);
        assert_eq!((cpu.min, cpu.max), (0.0, 3.0));
        assert_eq!(a.id, "n");
    }
}
