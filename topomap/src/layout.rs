//! Layered layout of a directed graph for the topology map.
//!
//! Clients are drawn above servers, as Scope does: nodes are ranked by the longest path from the
//! nodes nothing connects to (cycles broken first), ordered within each rank by the barycenter of
//! their neighbours to cut crossings, and spread out so that no two nodes overlap. Nodes with no
//! edges go to a grid below the graph.
//!
//! [`update`] keeps the positions of nodes that are still there and places new ones in free spots
//! near their neighbours, so a live map does not reshuffle when a node comes or goes. Everything is
//! deterministic: the same graph gives the same layout, whatever order it is given in.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Horizontal distance between neighbours in a rank (at least a node's width plus a gap).
    pub node_sep: f64,
    /// Vertical distance between ranks.
    pub rank_sep: f64,
    /// Barycenter sweeps (more: fewer crossings, slower).
    pub sweeps: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // Room for a label of `LABEL_CHARS` (about 150 px) and a gap: neighbours' labels
            // never overlap.
            node_sep: 160.0,
            rank_sep: 130.0,
            sweeps: 6,
        }
    }
}

/// Node positions (centres) by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    pub positions: BTreeMap<String, Point>,
}

impl Layout {
    /// The smallest rectangle holding every centre: `(min, max)`.
    pub fn bounds(&self) -> Option<(Point, Point)> {
        let mut it = self.positions.values();
        let first = *it.next()?;
        Some(it.fold((first, first), |(lo, hi), p| {
            (
                Point {
                    x: lo.x.min(p.x),
                    y: lo.y.min(p.y),
                },
                Point {
                    x: hi.x.max(p.x),
                    y: hi.y.max(p.y),
                },
            )
        }))
    }
}

/// The graph as indices: sorted ids, and deduplicated edges without self-loops.
struct Graph {
    ids: Vec<String>,
    out: Vec<Vec<usize>>,
    inc: Vec<Vec<usize>>,
}

impl Graph {
    fn new<'a>(ids: impl IntoIterator<Item = &'a str>, edges: &[(String, String)]) -> Graph {
        let ids: Vec<String> = ids
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut set = BTreeSet::new();
        for (a, b) in edges {
            if let (Some(&a), Some(&b)) = (index.get(a.as_str()), index.get(b.as_str()))
                && a != b
            {
                set.insert((a, b));
            }
        }
        let mut out = vec![Vec::new(); ids.len()];
        let mut inc = vec![Vec::new(); ids.len()];
        for (a, b) in set {
            out[a].push(b);
            inc[b].push(a);
        }
        Graph { ids, out, inc }
    }

    fn degree(&self, v: usize) -> usize {
        self.out[v].len() + self.inc[v].len()
    }
}

/// Ranks by longest path from sources, after reversing the edges that close cycles (found by a
/// depth-first search in id order).
fn ranks(g: &Graph, nodes: &[usize]) -> HashMap<usize, usize> {
    let members: HashSet<usize> = nodes.iter().copied().collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; g.ids.len()];
    let mut acyclic: Vec<Vec<usize>> = vec![Vec::new(); g.ids.len()];
    for &root in nodes {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&w) = g.out[v].get(*next) {
                *next += 1;
                if !members.contains(&w) {
                    continue;
                }
                match state[w] {
                    0 => {
                        acyclic[v].push(w);
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => acyclic[w].push(v), // a back edge: reversed
                    _ => acyclic[v].push(w),
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    let mut indegree: HashMap<usize, usize> = nodes.iter().map(|&v| (v, 0)).collect();
    for &v in nodes {
        for &w in &acyclic[v] {
            *indegree.entry(w).or_default() += 1;
        }
    }
    let mut rank: HashMap<usize, usize> = HashMap::new();
    let mut queue: VecDeque<usize> = nodes.iter().copied().filter(|v| indegree[v] == 0).collect();
    while let Some(v) = queue.pop_front() {
        let r = *rank.entry(v).or_insert(0);
        for &w in &acyclic[v] {
            let e = rank.entry(w).or_insert(0);
            *e = (*e).max(r + 1);
            let d = indegree.get_mut(&w).expect("member");
            *d -= 1;
            if *d == 0 {
                queue.push_back(w);
            }
        }
    }
    rank
}

/// Orders each rank by the barycenter of neighbours in the ranks above (downward sweeps) or below
/// (upward sweeps); ties keep their order, so the result is deterministic.
fn order(g: &Graph, layers: &mut [Vec<usize>], rank: &HashMap<usize, usize>, sweeps: usize) {
    let mut pos: HashMap<usize, f64> = HashMap::new();
    let place = |layers: &[Vec<usize>], pos: &mut HashMap<usize, f64>| {
        for layer in layers {
            let width = layer.len() as f64;
            for (i, &v) in layer.iter().enumerate() {
                pos.insert(v, i as f64 - (width - 1.0) / 2.0);
            }
        }
    };
    place(layers, &mut pos);
    for sweep in 0..sweeps {
        let down = sweep % 2 == 0;
        let indices: Vec<usize> = if down {
            (1..layers.len()).collect()
        } else {
            (0..layers.len().saturating_sub(1)).rev().collect()
        };
        for li in indices {
            let mut keyed: Vec<(f64, usize, usize)> = layers[li]
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let neighbours = g.inc[v].iter().chain(&g.out[v]).filter(|w| {
                        let r = rank[w];
                        if down { r < li } else { r > li }
                    });
                    let (sum, n) = neighbours.fold((0.0, 0usize), |(s, n), w| (s + pos[w], n + 1));
                    let key = if n == 0 { pos[&v] } else { sum / n as f64 };
                    (key, i, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            layers[li] = keyed.into_iter().map(|(_, _, v)| v).collect();
            let width = layers[li].len() as f64;
            for (i, &v) in layers[li].iter().enumerate() {
                pos.insert(v, i as f64 - (width - 1.0) / 2.0);
            }
        }
    }
}

/// The width-to-height ratio folded layouts aim at (a laptop's map area).
const TARGET_ASPECT: f64 = 1.6;

/// How many ranks a band holds when `layers` are folded into bands side by side: the count whose
/// drawing is closest to `TARGET_ASPECT` (no folding for a graph already as wide). At least three
/// ranks a band, so that folding never scatters a shallow graph.
fn band_rows(layers: &[Vec<usize>], opts: &Options) -> usize {
    let depth = layers.len();
    let mut best = (f64::INFINITY, depth.max(1));
    let mut rows = depth.max(1);
    loop {
        let width: f64 = layers
            .chunks(rows)
            .map(|band| (band.iter().map(Vec::len).max().unwrap_or(0).max(1) + 1) as f64)
            .sum::<f64>()
            * opts.node_sep;
        let height = rows as f64 * opts.rank_sep;
        let miss = (width / height / TARGET_ASPECT).ln().abs();
        if miss < best.0 {
            best = (miss, rows);
        }
        if rows <= 3 {
            break;
        }
        // Fewer rows a band: the next count that changes the number of bands.
        let bands = depth.div_ceil(rows);
        rows = depth.div_ceil(bands + 1).max(3);
        if depth.div_ceil(rows) == bands {
            break;
        }
    }
    best.1
}

/// Lays a graph out from scratch. `ids` are the nodes; edges to unknown ids are ignored.
pub fn layout<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    edges: &[(String, String)],
    opts: &Options,
) -> Layout {
    let g = Graph::new(ids, edges);
    let (connected, lonely): (Vec<usize>, Vec<usize>) =
        (0..g.ids.len()).partition(|&v| g.degree(v) > 0);
    let rank = ranks(&g, &connected);
    let depth = rank.values().copied().max().map_or(0, |r| r + 1);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); depth];
    // Start from a breadth-first order per component, so related nodes begin close together.
    let mut seen = vec![false; g.ids.len()];
    for &start in &connected {
        if seen[start] {
            continue;
        }
        let mut queue = VecDeque::from([start]);
        seen[start] = true;
        while let Some(v) = queue.pop_front() {
            layers[rank[&v]].push(v);
            for &w in g.out[v].iter().chain(&g.inc[v]) {
                if !seen[w] {
                    seen[w] = true;
                    queue.push_back(w);
                }
            }
        }
    }
    order(&g, &mut layers, &rank, opts.sweeps);
    // A graph far deeper than wide (long chains, rings of services) would be a thin column: its
    // ranks are folded into bands set side by side, as many as bring the drawing closest to a
    // screen's shape.
    let rows = band_rows(&layers, opts);
    let bands: Vec<&[Vec<usize>]> = layers.chunks(rows).collect();
    let mut positions = BTreeMap::new();
    let mut left = 0.0;
    let mut total_width = 0.0;
    for band in &bands {
        let band_width = band.iter().map(Vec::len).max().unwrap_or(0).max(1) as f64;
        for (r, layer) in band.iter().enumerate() {
            let width = layer.len() as f64;
            for (i, &v) in layer.iter().enumerate() {
                positions.insert(
                    g.ids[v].clone(),
                    Point {
                        x: left
                            + ((band_width - 1.0) / 2.0 + i as f64 - (width - 1.0) / 2.0)
                                * opts.node_sep,
                        y: r as f64 * opts.rank_sep,
                    },
                );
            }
        }
        left += (band_width + 1.0) * opts.node_sep;
        total_width = left - opts.node_sep;
    }
    // Centre the graph on x = 0, as the grid below is.
    let shift = (total_width - opts.node_sep) / 2.0;
    if bands.len() > 1 {
        for p in positions.values_mut() {
            p.x -= shift;
        }
    } else if let Some(band) = bands.first() {
        let band_width = band.iter().map(Vec::len).max().unwrap_or(0).max(1) as f64;
        for p in positions.values_mut() {
            p.x -= (band_width - 1.0) / 2.0 * opts.node_sep;
        }
    }
    let depth = bands.first().map_or(0, |b| b.len());
    // Unconnected nodes: a grid under the graph, about as wide as its widest rank.
    let widest = layers.iter().map(Vec::len).max().unwrap_or(0) * bands.len().max(1);
    let columns = widest
        .max((lonely.len() as f64).sqrt().ceil() as usize)
        .max(1);
    let top = depth as f64 * opts.rank_sep;
    for (k, &v) in lonely.iter().enumerate() {
        let (row, col) = (k / columns, k % columns);
        let in_row = (lonely.len() - row * columns).min(columns) as f64;
        positions.insert(
            g.ids[v].clone(),
            Point {
                x: (col as f64 - (in_row - 1.0) / 2.0) * opts.node_sep,
                y: top + row as f64 * opts.rank_sep,
            },
        );
    }
    Layout { positions }
}

/// Lays out a changed graph without moving the nodes `previous` already placed: they keep their
/// positions, removed ones disappear, and each new node goes to the free spot nearest to where its
/// neighbours suggest (one rank below what connects to it, or above what it connects to). When most
/// of the graph is new, it is laid out afresh instead.
pub fn update<'a>(
    previous: &Layout,
    ids: impl IntoIterator<Item = &'a str>,
    edges: &[(String, String)],
    opts: &Options,
) -> Layout {
    let g = Graph::new(ids, edges);
    let mut positions: BTreeMap<String, Point> = BTreeMap::new();
    for id in &g.ids {
        if let Some(p) = previous.positions.get(id) {
            positions.insert(id.clone(), *p);
        }
    }
    if positions.is_empty() {
        return layout(g.ids.iter().map(String::as_str), edges, opts);
    }
    let bottom = positions.values().map(|p| p.y).fold(f64::MIN, f64::max);
    let mut occupied = Occupancy {
        rows: HashMap::new(),
        opts: *opts,
    };
    for p in positions.values() {
        occupied.insert(*p);
    }
    // Place new nodes with placed neighbours first, so chains of new nodes follow each other.
    let pending: Vec<usize> = (0..g.ids.len())
        .filter(|&v| !positions.contains_key(&g.ids[v]))
        .collect();
    // When most of the graph is new (a first report, a filter change), a fresh layout reads better
    // than new nodes squeezed around a few old ones.
    if pending.len() > 64 && pending.len() * 2 > g.ids.len() {
        return layout(g.ids.iter().map(String::as_str), edges, opts);
    }
    // Breadth-first from what is placed, so a chain of new nodes follows its placed end; new nodes
    // that touch nothing placed come last, in id order.
    let mut queued = vec![false; g.ids.len()];
    let touches_placed = |v: usize| {
        g.inc[v]
            .iter()
            .chain(&g.out[v])
            .any(|w| positions.contains_key(&g.ids[*w]))
    };
    let mut queue: VecDeque<usize> = pending
        .iter()
        .copied()
        .filter(|&v| touches_placed(v))
        .collect();
    for &v in &queue {
        queued[v] = true;
    }
    let mut order = Vec::with_capacity(pending.len());
    let mut rest = pending.iter().copied();
    loop {
        while let Some(v) = queue.pop_front() {
            order.push(v);
            for &w in g.inc[v].iter().chain(&g.out[v]) {
                if !queued[w] && !positions.contains_key(&g.ids[w]) {
                    queued[w] = true;
                    queue.push_back(w);
                }
            }
        }
        match rest.find(|&v| !queued[v]) {
            Some(v) => {
                queued[v] = true;
                queue.push_back(v);
            }
            None => break,
        }
    }
    for v in order {
        let at = |w: &usize| positions.get(&g.ids[*w]).copied();
        let above: Vec<Point> = g.inc[v].iter().filter_map(at).collect();
        let below: Vec<Point> = g.out[v].iter().filter_map(at).collect();
        let want = if !above.is_empty() {
            Point {
                x: above.iter().map(|p| p.x).sum::<f64>() / above.len() as f64,
                y: above.iter().map(|p| p.y).fold(f64::MIN, f64::max) + opts.rank_sep,
            }
        } else if !below.is_empty() {
            Point {
                x: below.iter().map(|p| p.x).sum::<f64>() / below.len() as f64,
                y: below.iter().map(|p| p.y).fold(f64::MAX, f64::min) - opts.rank_sep,
            }
        } else {
            Point {
                x: 0.0,
                y: bottom + opts.rank_sep,
            }
        };
        let spot = occupied.nearest_free(want);
        occupied.insert(spot);
        positions.insert(g.ids[v].clone(), spot);
    }
    Layout { positions }
}

/// Occupied grid cells: rows are `rank_sep` apart, columns half a `node_sep` (layouts centre ranks
/// of even width on half steps). Two nodes overlap when on one row less than two columns apart.
struct Occupancy {
    rows: HashMap<i64, HashSet<i64>>,
    opts: Options,
}

impl Occupancy {
    fn cell(&self, p: Point) -> (i64, i64) {
        (
            (p.y / self.opts.rank_sep).round() as i64,
            (p.x / (self.opts.node_sep / 2.0)).round() as i64,
        )
    }

    fn insert(&mut self, p: Point) {
        let (row, col) = self.cell(p);
        self.rows.entry(row).or_default().insert(col);
    }

    fn free(&self, row: i64, col: i64) -> bool {
        self.rows
            .get(&row)
            .is_none_or(|cols| !(col - 1..=col + 1).any(|c| cols.contains(&c)))
    }

    /// The free spot nearest to `want` on its row, searching outwards; then the rows below.
    fn nearest_free(&self, want: Point) -> Point {
        let (row0, col0) = self.cell(want);
        let step = self.opts.node_sep / 2.0;
        for row in row0.. {
            let widest = self.rows.get(&row).map_or(0, |c| c.len() as i64 * 2 + 2);
            for k in 0..=widest * 2 {
                let offset = if k % 2 == 0 { k / 2 } else { -(k / 2 + 1) };
                if self.free(row, col0 + offset) {
                    return Point {
                        x: (col0 + offset) as f64 * step,
                        y: row as f64 * self.opts.rank_sep,
                    };
                }
            }
        }
        unreachable!("a row always has room beyond its widest node")
    }
}

/// Characters of a node's label the map shows (the rest is cut with "…"; the whole label is in the
/// tooltip and the details).
pub const LABEL_CHARS: usize = 20;
/// Characters of a node's minor label the map shows.
pub const MINOR_CHARS: usize = 24;
/// Width on screen of a label of `chars` characters at scale 1: 13 px bold for labels, 11 px for
/// minor labels (a generous average glyph width, so that real labels fit inside).
pub fn label_width(chars: usize, minor: bool) -> f64 {
    chars as f64 * if minor { 6.0 } else { 7.5 }
}

/// How readable a layout is: edges crossing each other (as straight lines between centres; edges
/// sharing a node do not count), and pairs of labels (drawn centred under their nodes, cut as the
/// map cuts them) that overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quality {
    pub crossings: usize,
    pub label_overlaps: usize,
}

/// Measures `layout` (see [`Quality`]); `labels` are the nodes' (label, minor label) by id, and
/// `label_chars` the characters of each the map shows. Quadratic in the edges: for tests and
/// benchmarks, not for the page.
pub fn quality(
    layout: &Layout,
    edges: &[(String, String)],
    labels: &BTreeMap<String, (String, String)>,
    label_chars: (usize, usize),
) -> Quality {
    let segments: Vec<(&str, &str, Point, Point)> = edges
        .iter()
        .filter(|(a, b)| a != b)
        .filter_map(|(a, b)| {
            Some((
                a.as_str(),
                b.as_str(),
                *layout.positions.get(a)?,
                *layout.positions.get(b)?,
            ))
        })
        .collect();
    let cross = |p: Point, q: Point, r: Point, s: Point| {
        let side =
            |a: Point, b: Point, c: Point| (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
        let (d1, d2) = (side(p, q, r), side(p, q, s));
        let (d3, d4) = (side(r, s, p), side(r, s, q));
        d1 * d2 < 0.0 && d3 * d4 < 0.0
    };
    let mut crossings = 0;
    for (i, &(a, b, p, q)) in segments.iter().enumerate() {
        for &(c, d, r, t) in &segments[i + 1..] {
            if a != c && a != d && b != c && b != d && cross(p, q, r, t) {
                crossings += 1;
            }
        }
    }
    // Label boxes: (left, right, top, bottom), the label 16–30 px and the minor label 30–44 px
    // below the centre (as `app/src/components/graph.rs` draws them).
    let mut boxes: Vec<(f64, f64, f64, f64)> = Vec::new();
    for (id, p) in &layout.positions {
        let Some((label, minor)) = labels.get(id) else {
            continue;
        };
        for (text, chars, minor_label, top) in [
            (label, label_chars.0, false, 30.0),
            (minor, label_chars.1, true, 44.0),
        ] {
            let n = text.chars().count().min(chars);
            if n == 0 {
                continue;
            }
            let half = label_width(n, minor_label) / 2.0;
            boxes.push((p.x - half, p.x + half, p.y + top, p.y + top + 14.0));
        }
    }
    boxes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut label_overlaps = 0;
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            if b.0 >= a.1 {
                break;
            }
            if a.2 < b.3 && b.2 < a.3 {
                label_overlaps += 1;
            }
        }
    }
    Quality {
        crossings,
        label_overlaps,
    }
}

/// A synthetic service graph of `n` nodes for tests and benchmarks: four tiers (clients →
/// frontends → backends → databases) of `n / 5` nodes, each node fed by two of the tier above, and
/// the rest unconnected.
pub fn sample_graph(n: usize) -> (Vec<String>, Vec<(String, String)>) {
    let mut ids = Vec::new();
    let mut edges = Vec::new();
    let tiers = ["client", "frontend", "backend", "db"];
    let per = (n / 5).max(1);
    for (t, tier) in tiers.iter().enumerate() {
        for i in 0..per {
            ids.push(format!("{tier}-{i}"));
            if t > 0 {
                for from in [(i * 7) % per, (i * 13 + 1) % per] {
                    edges.push((format!("{}-{from}", tiers[t - 1]), format!("{tier}-{i}")));
                }
            }
        }
    }
    for i in 0..n.saturating_sub(ids.len()) {
        ids.push(format!("lonely-{i}"));
    }
    ids.truncate(n);
    (ids, edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    fn assert_no_overlap(l: &Layout, opts: &Options) {
        let ps: Vec<(&String, &Point)> = l.positions.iter().collect();
        for (i, (a, p)) in ps.iter().enumerate() {
            for (b, q) in &ps[i + 1..] {
                let apart = (p.x - q.x).abs() >= opts.node_sep * 0.999
                    || (p.y - q.y).abs() >= opts.rank_sep * 0.999;
                assert!(apart, "{a} at {p:?} overlaps {b} at {q:?}");
            }
        }
    }

    fn tiered(n: usize) -> (Vec<String>, Vec<(String, String)>) {
        sample_graph(n)
    }

    #[test]
    fn clients_are_above_servers() {
        let opts = Options::default();
        let edges = [e("loadgen", "web"), e("web", "db"), e("web", "cache")];
        let l = layout(["db", "web", "cache", "loadgen"], &edges, &opts);
        let y = |id: &str| l.positions[id].y;
        assert!(y("loadgen") < y("web"));
        assert!(y("web") < y("db") && y("db") == y("cache"));
        assert_no_overlap(&l, &opts);
    }

    #[test]
    fn cycles_and_self_loops_are_laid_out() {
        let opts = Options::default();
        let edges = [
            e("a", "b"),
            e("b", "c"),
            e("c", "a"),
            e("a", "a"),
            e("c", "missing"),
        ];
        let l = layout(["a", "b", "c", "alone"], &edges, &opts);
        assert_eq!(l.positions.len(), 4);
        assert_no_overlap(&l, &opts);
        // The loner sits below the graph.
        assert!(l.positions["alone"].y > l.positions["a"].y.max(l.positions["c"].y));
    }

    #[test]
    fn layouts_are_deterministic_whatever_the_input_order() {
        let opts = Options::default();
        let (ids, mut edges) = tiered(500);
        let a = layout(ids.iter().map(String::as_str), &edges, &opts);
        let mut reversed = ids.clone();
        reversed.reverse();
        edges.reverse();
        let b = layout(reversed.iter().map(String::as_str), &edges, &opts);
        assert_eq!(a, b);
        assert_no_overlap(&a, &opts);
    }

    #[test]
    fn two_thousand_nodes_do_not_overlap() {
        let opts = Options::default();
        let (ids, edges) = tiered(2000);
        let l = layout(ids.iter().map(String::as_str), &edges, &opts);
        assert_eq!(l.positions.len(), 2000);
        assert_no_overlap(&l, &opts);
    }

    #[test]
    fn updates_keep_the_nodes_that_stay() {
        let opts = Options::default();
        let (mut ids, mut edges) = tiered(200);
        let before = layout(ids.iter().map(String::as_str), &edges, &opts);
        // A new backend behind frontend-3, a new client of it, and one node gone.
        ids.push("backend-new".into());
        ids.push("client-new".into());
        edges.push(e("frontend-3", "backend-new"));
        edges.push(e("client-new", "frontend-3"));
        ids.retain(|id| id != "db-5");
        let after = update(&before, ids.iter().map(String::as_str), &edges, &opts);
        for (id, p) in &before.positions {
            if id != "db-5" {
                assert_eq!(after.positions[id], *p, "{id} moved");
            }
        }
        assert!(!after.positions.contains_key("db-5"));
        assert_no_overlap(&after, &opts);
        // New nodes go where their neighbours suggest.
        let f3 = after.positions["frontend-3"];
        assert_eq!(after.positions["backend-new"].y, f3.y + opts.rank_sep);
        assert!(after.positions["client-new"].y < f3.y);
        // And an update with nothing new is the identity.
        let same = update(&after, ids.iter().map(String::as_str), &edges, &opts);
        assert_eq!(same, after);
    }

    #[test]
    fn deep_graphs_fold_into_bands() {
        // A ring of 600 services, each calling the next two: hundreds of ranks deep.
        let opts = Options::default();
        let ids: Vec<String> = (0..600).map(|i| format!("s{i:03}")).collect();
        let edges: Vec<(String, String)> = (0..600)
            .flat_map(|i| [(i, (i + 1) % 600), (i, (i + 2) % 600)])
            .map(|(a, b)| (ids[a].clone(), ids[b].clone()))
            .collect();
        let l = layout(ids.iter().map(String::as_str), &edges, &opts);
        assert_no_overlap(&l, &opts);
        let (lo, hi) = l.bounds().unwrap();
        let (w, h) = (hi.x - lo.x + opts.node_sep, hi.y - lo.y + opts.rank_sep);
        assert!(h / w < 3.0 && w / h < 3.0, "{w} × {h}");
        // Within a band, what a node calls is still below it.
        let (a, b) = (l.positions["s010"], l.positions["s011"]);
        assert!(b.y > a.y || b.x > a.x, "{a:?} {b:?}");
    }

    /// A containers view the size of the load generator's (20 hosts × 10 containers, 3 connections
    /// each to containers of other hosts) with Kubernetes-length names: measured at the old spacing
    /// and label lengths and at the new ones (docs/map.md has the numbers).
    #[test]
    fn labels_of_a_two_hundred_container_map_do_not_overlap() {
        let (hosts, per_host) = (20, 10);
        let mut ids = Vec::new();
        let mut labels = BTreeMap::new();
        let mut edges = Vec::new();
        for h in 0..hosts {
            for c in 0..per_host {
                let id = format!("{h:04x}{c:04x}cafe;<container>");
                // Names as Kubernetes gives containers: longer than a node is wide.
                labels.insert(
                    id.clone(),
                    (
                        format!("k8s_app-{c}_web-7f9c6d5b8-x{h}_default_0"),
                        format!("ip-10-0-{h}-17.ec2.internal"),
                    ),
                );
                ids.push(id);
                for k in 1..=3 {
                    let (th, tc) = ((h + k) % hosts, (c + k) % per_host);
                    edges.push((id_of(h, c), id_of(th, tc)));
                }
            }
        }
        fn id_of(h: usize, c: usize) -> String {
            format!("{h:04x}{c:04x}cafe;<container>")
        }
        let measure = |opts: &Options, chars: (usize, usize)| {
            let l = layout(ids.iter().map(String::as_str), &edges, opts);
            quality(&l, &edges, &labels, chars)
        };
        let before = measure(
            &Options {
                node_sep: 110.0,
                ..Options::default()
            },
            (24, 28),
        );
        let after = measure(&Options::default(), (LABEL_CHARS, MINOR_CHARS));
        eprintln!("200 containers, 600 edges: before {before:?}, after {after:?}");
        assert!(before.label_overlaps > 0, "{before:?}");
        assert_eq!(after.label_overlaps, 0, "{after:?}");
        // The spacing changes the geometry, not the order: no more crossings than before.
        assert!(after.crossings <= before.crossings, "{before:?} {after:?}");
    }

    #[test]
    fn crossings_and_overlaps_are_counted() {
        let p = |x: f64, y: f64| Point { x, y };
        let layout = Layout {
            positions: BTreeMap::from([
                ("a".to_owned(), p(0.0, 0.0)),
                ("b".to_owned(), p(100.0, 100.0)),
                ("c".to_owned(), p(100.0, 0.0)),
                ("d".to_owned(), p(0.0, 100.0)),
                ("e".to_owned(), p(50.0, 300.0)),
            ]),
        };
        let edges = [e("a", "b"), e("c", "d"), e("a", "d"), e("e", "b")];
        let labels = BTreeMap::from([
            (
                "a".to_owned(),
                ("a-rather-long-label".to_owned(), String::new()),
            ),
            (
                "c".to_owned(),
                ("another-long-label".to_owned(), String::new()),
            ),
            ("e".to_owned(), ("x".to_owned(), String::new())),
        ]);
        let q = quality(&layout, &edges, &labels, (20, 24));
        // a–b crosses c–d; a–d shares a node with both; e–b crosses nothing.
        assert_eq!(q.crossings, 1);
        // a's and c's labels (19 and 18 characters, 100 apart) overlap; e's is far below.
        assert_eq!(q.label_overlaps, 1);
    }

    #[test]
    fn updating_from_nothing_is_a_full_layout() {
        let opts = Options::default();
        let edges = [e("a", "b")];
        assert_eq!(
            update(&Layout::default(), ["a", "b"], &edges, &opts),
            layout(["a", "b"], &edges, &opts)
        );
    }
}
