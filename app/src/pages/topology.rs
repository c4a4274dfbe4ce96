//! An instance's live map (Scope's UI): the views from `api/topology`, their options, graph or
//! table, search, node details, and live updates over the topology websocket. Everything the user
//! chooses lives in the URL (`/instances/{id}/map?view=…&mode=…&node=…&q=…&pins=…&<options>`), so a
//! view can be shared and reloaded.

use std::collections::{BTreeMap, BTreeSet};

use leptos::prelude::*;
use leptos_router::NavigateOptions;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use shared::ErrorCode;
use shared::topology::{Diff, NodeSummary, TopologyDesc};
use topomap::layout::{Layout, Options as LayoutOptions, layout, update};
use topomap::resources::Metric;
use topomap::{Change, Look, Structure, apply, clusters, search};

use crate::api;
use crate::components::async_view::ErrorNotice;
use crate::components::graph::Graph;
use crate::components::node_details::{NodeDetailsPanel, NodeLink};
use crate::components::node_table::NodeTable;
use crate::components::resources::ResourceView;
use crate::components::ticker::ticker;
use crate::components::timeline::{self, ChangeCounts, Timeline};

/// Views with more nodes than this open as a table (`?mode=graph` still draws them). Each browser
/// can change it (kept in local storage under `GRAPH_LIMIT_KEY`).
pub const GRAPH_LIMIT: usize = 1_000;
const GRAPH_LIMIT_KEY: &str = "scopehub.graphLimit";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

fn saved_graph_limit() -> usize {
    storage()
        .and_then(|s| s.get_item(GRAPH_LIMIT_KEY).ok()?)
        .and_then(|v| v.parse().ok())
        .unwrap_or(GRAPH_LIMIT)
}
/// Query keys that are the page's own; every other key is a view option passed to the API.
const PAGE_KEYS: [&str; 8] = ["view", "mode", "metric", "group", "node", "q", "pins", "at"];
/// Scope's window: with no report for longer, the map is stale.
const STALE_AFTER_MS: f64 = 15_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Connecting,
    Live,
    Reconnecting,
}

/// The page's state as the URL holds it.
#[derive(Debug, Clone, PartialEq, Default)]
struct MapState {
    view: Option<String>,
    mode: Option<String>,
    /// What the resource view sizes boxes by: `cpu` (the default) or `memory`.
    metric: Option<String>,
    /// `host`: the graph draws each host's nodes as one group.
    group: Option<String>,
    node: Option<String>,
    q: String,
    pins: Vec<String>,
    /// The moment shown (RFC 3339), when the map is history rather than live.
    at: Option<String>,
    options: BTreeMap<String, String>,
}

fn encode(value: &str) -> String {
    js_sys::encode_uri_component(value)
        .as_string()
        .unwrap_or_default()
}

impl MapState {
    fn url(&self, instance: &str) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.view {
            parts.push(format!("view={}", encode(v)));
        }
        if let Some(m) = &self.mode {
            parts.push(format!("mode={}", encode(m)));
        }
        if let Some(m) = &self.metric {
            parts.push(format!("metric={}", encode(m)));
        }
        if let Some(g) = &self.group {
            parts.push(format!("group={}", encode(g)));
        }
        if let Some(n) = &self.node {
            parts.push(format!("node={}", encode(n)));
        }
        if !self.q.is_empty() {
            parts.push(format!("q={}", encode(&self.q)));
        }
        if !self.pins.is_empty() {
            parts.push(format!("pins={}", encode(&self.pins.join("\n"))));
        }
        if let Some(at) = &self.at {
            parts.push(format!("at={}", encode(at)));
        }
        for (k, v) in &self.options {
            parts.push(format!("{}={}", encode(k), encode(v)));
        }
        let query = parts.join("&");
        format!(
            "/instances/{instance}/map{}{query}",
            if query.is_empty() { "" } else { "?" }
        )
    }

    /// The view options as the API takes them.
    fn option_query(&self) -> String {
        self.options
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn find_view<'a>(list: &'a [TopologyDesc], id: &str) -> Option<&'a TopologyDesc> {
    list.iter()
        .flat_map(|t| std::iter::once(t).chain(t.sub_topologies.iter()))
        .find(|t| t.view_id() == id)
}

/// The view to open when the URL names none: the first of containers, processes, hosts with nodes.
fn default_view(list: &[TopologyDesc]) -> String {
    ["containers", "processes", "hosts"]
        .into_iter()
        .find(|v| find_view(list, v).is_some_and(|t| t.stats.node_count > 0))
        .unwrap_or("processes")
        .to_owned()
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[component]
pub fn TopologyMap() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let navigate = use_navigate();
    let instance = Signal::derive(move || params.with(|p| p.get("id").unwrap_or_default()));
    let state = Memo::new(move |_| {
        query.with(|q| {
            let get = |k: &str| q.get(k).filter(|v| !v.is_empty());
            MapState {
                view: get("view"),
                mode: get("mode"),
                metric: get("metric"),
                group: get("group"),
                node: get("node"),
                q: get("q").unwrap_or_default(),
                at: get("at"),
                pins: get("pins")
                    .map(|p| {
                        p.split('\n')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                options: q
                    .clone()
                    .into_iter()
                    .filter(|(k, _)| !PAGE_KEYS.contains(&k.as_ref()))
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            }
        })
    });
    let go = {
        let navigate = navigate.clone();
        move |next: MapState, replace: bool| {
            navigate(
                &next.url(&instance.get_untracked()),
                NavigateOptions {
                    replace,
                    ..Default::default()
                },
            );
        }
    };

    // The view list, refreshed for its counts.
    let tick = ticker(std::time::Duration::from_secs(10));
    let options_query = Memo::new(move |_| state.with(MapState::option_query));
    let topologies = LocalResource::new(move || {
        tick.track();
        let (i, q) = (instance.get(), options_query.get());
        async move { api::topologies(&i, &q).await }
    });
    let list = RwSignal::new(Vec::<TopologyDesc>::new());
    let list_loaded = RwSignal::new(false);
    let list_error = RwSignal::new(None::<shared::ApiError>);
    Effect::new(move |_| match topologies.get() {
        Some(Ok(l)) => {
            list.set(l);
            list_loaded.set(true);
            list_error.set(None);
        }
        Some(Err(e)) => list_error.set(Some(e)),
        None => {}
    });
    // The instance does not exist or is not the caller's: the page says only that.
    let fatal = Memo::new(move |_| {
        list_error.with(|e| {
            e.as_ref()
                .filter(|e| {
                    matches!(
                        e.code,
                        ErrorCode::NotFound | ErrorCode::Forbidden | ErrorCode::Unauthorized
                    )
                })
                .cloned()
        })
    });
    let view_id = Memo::new(move |_| {
        state
            .with(|s| s.view.clone())
            .unwrap_or_else(|| list.with(|l| default_view(l)))
    });
    // The moment shown, when the map is history (`?at=`), in ms.
    let moment =
        Memo::new(move |_| state.with(|s| s.at.as_deref().and_then(timeline::parse_rfc3339)));
    // A view the URL names that this instance does not have (once the list is known).
    let unknown_view = Memo::new(move |_| {
        let named = state.with(|s| s.view.clone())?;
        let known = list.with(|l| l.is_empty() || find_view(l, &named).is_some());
        (list_loaded.get() && !known).then_some(named)
    });
    let probes = LocalResource::new(move || {
        tick.track();
        let i = instance.get();
        async move { api::probes(&i).await }
    });

    // Live nodes. Frames are applied to `shown` in place; what depends on them hears of it once a
    // tick (at the frame without `more`), and only of what changed (`topomap::Change`): a tick
    // that moves metrics leaves the layout and the drawing of nodes alone. While paused, frames go
    // into `held` instead (a copy taken at the pause), which is shown on resume.
    let shown = RwSignal::new(BTreeMap::<String, NodeSummary>::new());
    let held = StoredValue::new(None::<BTreeMap<String, NodeSummary>>);
    // The host groups opened into their members (`?group=host`).
    let opened = RwSignal::new(BTreeSet::<String>::new());
    let pending = StoredValue::new(Change::default());
    let this_tick = StoredValue::new(Change::default());
    let structure = RwSignal::new(Structure::default());
    let looks = RwSignal::new(BTreeMap::<String, Look>::new());
    let paused = RwSignal::new(false);
    let link = RwSignal::new(Link::Connecting);
    let received_first = RwSignal::new(false);
    // Ticks that changed the map, shown on the link status (`data-updates`), and when the last did.
    let updates = RwSignal::new(0u64);
    let last_change = StoredValue::new(now_ms());
    // Bumped when the drawn graph (structure or looks) must be made again from `shown`.
    let redraw = RwSignal::new(0u64);
    let publish = move || {
        let change = pending.try_update_value(std::mem::take).unwrap_or_default();
        if change.nodes {
            shown.notify();
        }
        if change.structure || change.looks {
            redraw.update(|r| *r += 1);
        }
    };
    let set_paused = move |pause: bool| {
        if pause == paused.get_untracked() {
            return;
        }
        if pause {
            held.set_value(Some(shown.get_untracked()));
        } else if let Some(live) = held.try_update_value(Option::take).flatten() {
            shown.update_untracked(|m| *m = live);
            pending.set_value(Change::ALL);
            publish();
        }
        paused.set(pause);
    };
    let reconnect = RwSignal::new(0u32);
    let attempts = StoredValue::new(0u32);
    let socket = StoredValue::new_local(None::<api::TopologySocket>);
    Effect::new(move |_| {
        reconnect.track();
        let (i, v, q) = (instance.get(), view_id.get(), options_query.get());
        socket.set_value(None);
        // Nothing to stream from an instance or a view that is not there, nor while the map shows
        // a moment of history.
        if fatal.with(Option::is_some)
            || unknown_view.with(Option::is_some)
            || moment.with(Option::is_some)
        {
            return;
        }
        link.set(Link::Connecting);
        let on_frame = move |diff: Diff| {
            attempts.set_value(0);
            link.set(Link::Live);
            let more = diff.more;
            let change = if paused.get_untracked() {
                held.try_update_value(|h| apply(h.get_or_insert_with(BTreeMap::new), diff))
                    .unwrap_or_default()
            } else {
                let change = shown
                    .try_update_untracked(|m| apply(m, diff))
                    .unwrap_or_default();
                pending.update_value(|p| *p |= change);
                change
            };
            this_tick.update_value(|t| *t |= change);
            if more {
                return;
            }
            // The tick is complete. One that changed nothing (most ticks of a quiet map) touches
            // nothing on the page.
            let tick = this_tick
                .try_update_value(std::mem::take)
                .unwrap_or_default();
            if !received_first.get_untracked() {
                received_first.set(true);
            }
            if tick == Change::default() {
                return;
            }
            updates.update(|u| *u += 1);
            last_change.set_value(now_ms());
            if !paused.get_untracked() {
                publish();
            }
        };
        let on_close = move || {
            link.set(Link::Reconnecting);
            let n = attempts.get_value();
            attempts.set_value(n + 1);
            let delay = (1_000u64 << n.min(5)).min(30_000);
            set_timeout(
                move || reconnect.update(|r| *r += 1),
                std::time::Duration::from_millis(delay),
            );
        };
        match api::topology_socket(&i, &v, &q, on_frame, on_close) {
            Ok(s) => socket.set_value(Some(s)),
            Err(_) => on_close(),
        }
    });
    // A new view or new options: start from nothing.
    Effect::new(move |_| {
        view_id.track();
        options_query.track();
        held.set_value(paused.get_untracked().then(BTreeMap::new));
        opened.set(BTreeSet::new());
        this_tick.set_value(Change::default());
        shown.update_untracked(BTreeMap::clear);
        pending.set_value(Change::ALL);
        publish();
        received_first.set(false);
    });
    on_cleanup(move || socket.set_value(None));

    // History: the view as it was at the moment, and (with "changes since") what appeared and
    // vanished before it, marked on the map with the vanished nodes drawn as ghosts.
    let note = RwSignal::new(None::<shared::topology::HistoryNote>);
    let compare = RwSignal::new(None::<i64>);
    let marks = RwSignal::new(BTreeMap::<String, &'static str>::new());
    let change_counts = RwSignal::new(None::<ChangeCounts>);
    let animate = RwSignal::new(false);
    let asked = StoredValue::new(0u64);
    let was_past = StoredValue::new(false);
    Effect::new(move |_| {
        let (i, v, q, since) = (
            instance.get(),
            view_id.get(),
            options_query.get(),
            compare.get(),
        );
        let n = asked.get_value() + 1;
        asked.set_value(n);
        let Some(at) = moment.get() else {
            note.set(None);
            marks.set(BTreeMap::new());
            change_counts.set(None);
            animate.set(false);
            // Back to live: the websocket's first frame fills the map again.
            if was_past.get_value() {
                was_past.set_value(false);
                shown.update_untracked(BTreeMap::clear);
                pending.set_value(Change::ALL);
                publish();
                received_first.set(false);
            }
            return;
        };
        leptos::task::spawn_local(async move {
            let when = timeline::rfc3339(at);
            let answer = api::topology_at(&i, &v, &q, &when).await;
            let changes = match since {
                Some(before) => api::changes(&i, &v, &q, &timeline::rfc3339(at - before), &when)
                    .await
                    .ok(),
                None => None,
            };
            if asked.get_value() != n {
                return;
            }
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    list_error.set(Some(e));
                    return;
                }
            };
            let mut nodes = answer.nodes;
            let mut marked = BTreeMap::new();
            if let Some(c) = &changes {
                for node in &c.appeared {
                    marked.insert(node.id.clone(), "appeared");
                }
                for node in &c.vanished {
                    marked.insert(node.id.clone(), "vanished");
                    nodes.entry(node.id.clone()).or_insert_with(|| node.clone());
                }
            }
            change_counts.set(changes.map(|c| ChangeCounts {
                appeared: c.appeared.len(),
                vanished: c.vanished.len(),
                edges_appeared: c.edges_appeared.len(),
                edges_vanished: c.edges_vanished.len(),
            }));
            marks.set(marked);
            note.set(answer.history);
            // The first moment after live jumps; later ones glide.
            animate.set(was_past.get_value());
            was_past.set_value(true);
            shown.update_untracked(|m| *m = nodes);
            pending.set_value(Change::ALL);
            publish();
            received_first.set(true);
        });
    });
    let set_moment = {
        let go = go.clone();
        Callback::new(move |at: Option<i64>| {
            let mut next = state.get_untracked();
            next.at = at.map(timeline::rfc3339);
            go(next, true);
        })
    };

    let map_is_empty = Memo::new(move |_| shown.with(BTreeMap::is_empty));

    // What the graph draws: the nodes as they are, or grouped by host (`?group=host`) with the
    // groups in `opened` drawn as their members. Made again only when the structure or looks of
    // `shown` changed, or the grouping did; set only where it differs.
    let grouping = Memo::new(move |_| state.with(|s| s.group.as_deref() == Some("host")));
    let members = RwSignal::new(BTreeMap::<String, Vec<String>>::new());
    Effect::new(move |_| {
        redraw.track();
        let noun = match view_id.get_untracked().as_str() {
            v if v.starts_with("containers") => "containers",
            v if v.starts_with("processes") => "processes",
            "pods" => "pods",
            _ => "nodes",
        };
        let drawn = if grouping.get() {
            opened.with(|open| shown.with_untracked(|m| clusters::grouped(m, "hosts", open, noun)))
        } else {
            shown.with_untracked(|m| clusters::Grouped {
                structure: topomap::structure(m),
                looks: topomap::looks(m),
                members: BTreeMap::new(),
            })
        };
        if structure.with_untracked(|s| *s != drawn.structure) {
            structure.set(drawn.structure);
        }
        if looks.with_untracked(|l| *l != drawn.looks) {
            looks.set(drawn.looks);
        }
        if members.with_untracked(|m| *m != drawn.members) {
            members.set(drawn.members);
        }
    });

    // Layout: recomputed only when nodes or edges change, keeping placed nodes where they are.
    let positions = RwSignal::new(Layout::default());
    let fit_request = RwSignal::new(0u64);
    let last_structure = StoredValue::new(Structure::default());
    Effect::new(move |_| {
        let same = structure.with(|now| last_structure.with_value(|last| now == last));
        if same {
            return;
        }
        let now = structure.get_untracked();
        let opts = LayoutOptions::default();
        let ids = now.0.iter().map(String::as_str);
        let previous = positions.get_untracked();
        // Mostly new nodes (a first frame, groups turned on or off): a fresh layout, fitted.
        let kept = now
            .0
            .iter()
            .filter(|id| previous.positions.contains_key(*id))
            .count();
        let fresh = kept * 2 < now.0.len();
        let next = if fresh {
            layout(ids, &now.1, &opts)
        } else {
            update(&previous, ids, &now.1, &opts)
        };
        positions.set(next);
        last_structure.set_value(now);
        if fresh {
            fit_request.update(|f| *f += 1);
        }
    });
    Effect::new(move |_| {
        view_id.track();
        options_query.track();
        positions.set(Layout::default());
        last_structure.set_value(Structure::default());
    });

    // Search: the query plus pinned terms, all of which must match.
    let search_text = Memo::new(move |_| {
        let (q, pins) = state.with(|s| (s.q.clone(), s.pins.clone()));
        pins.into_iter()
            .chain(std::iter::once(q))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let search_problems = Memo::new(move |_| search_text.with(|t| search::problems(t)));
    let matches = Memo::new(move |_| {
        let terms = search_text.with(|t| search::parse(t));
        if terms.is_empty() {
            return None;
        }
        Some(shown.with(|ns| {
            ns.values()
                .filter(|n| search::matches_all(&terms, n))
                .map(|n| n.id.clone())
                .collect::<BTreeSet<_>>()
        }))
    });

    // On the graph a group matches when one of its members does.
    let graph_matches = Memo::new(move |_| {
        let mut m = matches.get()?;
        members.with(|groups| {
            for (group, ids) in groups {
                if ids.iter().any(|id| m.contains(id)) {
                    m.insert(group.clone());
                }
            }
        });
        Some(m)
    });

    let graph_limit = RwSignal::new(saved_graph_limit());
    let set_graph_limit = move |value: String| {
        if let Ok(n) = value.trim().parse::<usize>() {
            graph_limit.set(n);
            if let Some(s) = storage() {
                let _ = s.set_item(GRAPH_LIMIT_KEY, &n.to_string());
            }
        }
    };
    let mode = Memo::new(move |_| {
        state.with(|s| s.mode.clone()).unwrap_or_else(|| {
            if shown.with(BTreeMap::len) > graph_limit.get() {
                "table".into()
            } else {
                "graph".into()
            }
        })
    });
    let selected = Memo::new(move |_| state.with(|s| s.node.clone()));

    let select = {
        let go = go.clone();
        Callback::new(move |id: String| {
            // A group opens into its members.
            if clusters::is_group(&id) {
                opened.update(|o| {
                    o.insert(id);
                });
                return;
            }
            let mut s = state.get_untracked();
            s.view = Some(view_id.get_untracked());
            s.node = Some(id);
            go(s, false);
        })
    };
    let open_link = {
        let go = go.clone();
        Callback::new(move |l: NodeLink| {
            let mut s = state.get_untracked();
            if !l.view.is_empty() && l.view != view_id.get_untracked() {
                s.options.clear();
            }
            s.view = Some(if l.view.is_empty() {
                view_id.get_untracked()
            } else {
                l.view
            });
            s.node = Some(l.node);
            go(s, false);
        })
    };
    let close_details = {
        let go = go.clone();
        Callback::new(move |()| {
            let mut s = state.get_untracked();
            s.node = None;
            go(s, false);
        })
    };
    let set_view = {
        let go = go.clone();
        move |v: String| {
            let s = MapState {
                view: Some(v),
                mode: state.with_untracked(|s| s.mode.clone()),
                metric: state.with_untracked(|s| s.metric.clone()),
                group: state.with_untracked(|s| s.group.clone()),
                q: state.with_untracked(|s| s.q.clone()),
                pins: state.with_untracked(|s| s.pins.clone()),
                ..MapState::default()
            };
            go(s, false);
        }
    };
    // Changes within the current view (options, mode, search, pins) replace the history entry.
    let change = {
        let go = go.clone();
        move |f: &dyn Fn(&mut MapState)| {
            let mut s = state.get_untracked();
            s.view = Some(view_id.get_untracked());
            f(&mut s);
            go(s, true);
        }
    };
    let set_option = {
        let change = change.clone();
        move |key: String, value: String| {
            change(&|s| {
                s.options.insert(key.clone(), value.clone());
            })
        }
    };
    let set_mode = {
        let change = change.clone();
        move |m: &str| change(&|s| s.mode = Some(m.to_owned()))
    };
    let metric =
        Memo::new(move |_| state.with(|s| Metric::parse(s.metric.as_deref().unwrap_or_default())));
    let set_group = {
        let change = change.clone();
        move |on: bool| change(&|s| s.group = on.then(|| "host".to_owned()))
    };
    let set_metric = {
        let change = change.clone();
        move |m: String| change(&|s| s.metric = Some(m.clone()))
    };
    let select_resource =
        Callback::new(move |(view, node): (String, String)| open_link.run(NodeLink { view, node }));
    let set_search = {
        let change = change.clone();
        move |q: String| change(&|s| s.q = q.clone())
    };
    let pin = {
        let change = change.clone();
        move || {
            change(&|s| {
                let q = s.q.trim().to_owned();
                if !q.is_empty() && !s.pins.contains(&q) {
                    s.pins.push(q);
                }
                s.q.clear();
            })
        }
    };
    let unpin = move |term: String| change(&|s| s.pins.retain(|p| *p != term));

    let stale_for = Memo::new(move |_| {
        let list = probes.get().and_then(Result::ok)?;
        let newest = list
            .iter()
            .map(|p| js_sys::Date::parse(&p.last_seen))
            .filter(|t| t.is_finite())
            .fold(f64::NAN, f64::max);
        let age = now_ms() - newest;
        (newest.is_finite() && age > STALE_AFTER_MS).then_some((age / 1000.0).round() as u64)
    });
    let no_probe = Memo::new(move |_| {
        probes
            .get()
            .and_then(Result::ok)
            .is_some_and(|l| l.is_empty())
    });

    let menu = move || {
        let current = view_id.get();
        let set_view = set_view.clone();
        list.get()
            .into_iter()
            .filter(|t| {
                !(t.hide_if_empty
                    && t.stats.node_count == 0
                    && t.sub_topologies.iter().all(|s| s.stats.node_count == 0))
            })
            .map(|t| {
                let entry = |t: &TopologyDesc, sub: bool| {
                    let id = t.view_id().to_owned();
                    let active = id == current;
                    let set_view = set_view.clone();
                    let target = id.clone();
                    view! {
                        <button type="button" class=if sub { "view-tab sub" } else { "view-tab" }
                            class:active=active data-view=id.clone()
                            on:click=move |_| set_view(target.clone())>
                            {t.name.clone()}<span class="count">{t.stats.node_count}</span>
                        </button>
                    }
                };
                view! {
                    <div class="view-group">
                        {entry(&t, false)}
                        {t.sub_topologies.iter().map(|s| entry(s, true)).collect_view()}
                    </div>
                }
            })
            .collect_view()
    };
    let options_bar = move || {
        let v = view_id.get();
        let set_option = set_option.clone();
        let current = state.with(|s| s.options.clone());
        list.with(|l| find_view(l, &v).map(|t| t.options.clone()))
            .unwrap_or_default()
            .into_iter()
            .map(|g| {
                let value = current.get(&g.id).cloned().unwrap_or_else(|| g.default_value.clone());
                let key = g.id.clone();
                let set_option = set_option.clone();
                let none = g.none_label.clone();
                view! {
                    <label class="option-group">
                        <span class="visually-hidden">{g.id.clone()}</span>
                        <select data-option=g.id.clone() on:change=move |ev| set_option(key.clone(), event_target_value(&ev))>
                            {none.map(|label| view! { <option value="" selected=value.is_empty()>{label}</option> })}
                            {g.options.iter().map(|o| view! {
                                <option value=o.value.clone() selected=o.value == value>{o.label.clone()}</option>
                            }).collect_view()}
                        </select>
                    </label>
                }
            })
            .collect_view()
    };

    let details_view = Signal::derive(move || view_id.get());
    let details_options = Signal::derive(move || {
        let options = options_query.get();
        match moment.get() {
            Some(at) => format!("{options}&timestamp={}", timeline::rfc3339(at)),
            None => options,
        }
    });
    let set_search_input = set_search.clone();
    let pin_key = pin.clone();

    // Keyboard: `?` help, `/` search, Esc closes help or details, `g`/`t`/`r` graph, table or
    // resources. Keys
    // typed into a field are the field's.
    let help = RwSignal::new(false);
    let keys = {
        let set_mode = set_mode.clone();
        window_event_listener(leptos::ev::keydown, move |ev: leptos::ev::KeyboardEvent| {
            if ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
                return;
            }
            let document = web_sys::window().and_then(|w| w.document());
            let html = |e: web_sys::Element| {
                wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(e).ok()
            };
            let focused = document.as_ref().and_then(|d| d.active_element());
            let key = ev.key();
            if focused
                .as_ref()
                .is_some_and(|e| matches!(e.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"))
            {
                if key == "Escape"
                    && let Some(field) = focused.and_then(html)
                {
                    let _ = field.blur();
                }
                return;
            }
            match key.as_str() {
                "?" => help.update(|h| *h = !*h),
                "/" => {
                    ev.prevent_default();
                    let search = document.and_then(|d| d.get_element_by_id("map-search"));
                    if let Some(search) = search.and_then(html) {
                        let _ = search.focus();
                    }
                }
                "Escape" if help.get_untracked() => help.set(false),
                "Escape" if state.with_untracked(|s| s.node.is_some()) => close_details.run(()),
                "g" => set_mode("graph"),
                "t" => set_mode("table"),
                "r" => set_mode("resource"),
                _ => {}
            }
        })
    };
    on_cleanup(move || keys.remove());
    // Troubleshooting: back to the defaults (view, options, search, graph limit).
    let reset_view = {
        let navigate = navigate.clone();
        move || {
            if let Some(s) = storage() {
                let _ = s.remove_item(GRAPH_LIMIT_KEY);
            }
            graph_limit.set(saved_graph_limit());
            navigate(
                &format!("/instances/{}/map", instance.get_untracked()),
                NavigateOptions {
                    replace: true,
                    ..Default::default()
                },
            );
        }
    };
    // Nodes the view's options leave out (Scope's "N nodes hidden by filters").
    let hidden_by_filters = Memo::new(move |_| {
        let v = view_id.get();
        list.with(|l| find_view(l, &v).map_or(0, |t| t.stats.filtered_nodes))
    });

    view! {
        {move || fatal.get().map(|e| view! {
            <section class="map-missing" id="map-missing">
                <ErrorNotice error=e />
                <p><A href="/orgs">"Your orgs"</A></p>
            </section>
        })}
        <section class="map" style:display=move || if fatal.with(Option::is_some) { "none" } else { "" }>
            <div class="map-bar">
                <A href=move || format!("/instances/{}", instance.get())>"← Instance"</A>
                <nav class="views" aria-label="Views">{menu}</nav>
            </div>
            <div class="map-bar secondary-bar">
                <div class="options">{options_bar}</div>
                <div class="search">
                    <input type="search" id="map-search" placeholder="Search: name, field:value, cpu > 1"
                        aria-label="Search" prop:value=move || state.with(|s| s.q.clone())
                        on:input=move |ev| set_search_input(event_target_value(&ev))
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Enter" { pin_key() } />
                    {move || state.with(|s| s.pins.clone()).into_iter().map(|p| {
                        let unpin = unpin.clone();
                        let term = p.clone();
                        view! { <button type="button" class="chip pinned" title="Unpin" on:click=move |_| unpin(term.clone())>{p}" ×"</button> }
                    }).collect_view()}
                    {move || matches.with(|m| m.as_ref().map(BTreeSet::len)).map(|n| {
                        let total = shown.with(BTreeMap::len);
                        view! { <span class="search-count" id="search-count" role="status">{format!("{n} of {total} match")}</span> }
                    })}
                </div>
                <div class="modes" role="group" aria-label="Mode">
                    <button type="button" id="mode-graph" class="tab" class:active=move || mode.get() == "graph"
                        on:click={let set_mode = set_mode.clone(); move |_| set_mode("graph")}>"Graph"</button>
                    <button type="button" id="mode-table" class="tab" class:active=move || mode.get() == "table"
                        on:click={let set_mode = set_mode.clone(); move |_| set_mode("table")}>"Table"</button>
                    <button type="button" id="mode-resource" class="tab" class:active=move || mode.get() == "resource"
                        title="Hosts, containers and processes sized by CPU or memory"
                        on:click={let set_mode = set_mode.clone(); move |_| set_mode("resource")}>"Resources"</button>
                    {move || (mode.get() == "resource").then(|| {
                        let set_metric = set_metric.clone();
                        view! {
                            <select id="resource-metric" aria-label="Size by" on:change=move |ev| set_metric(event_target_value(&ev))>
                                <option value="cpu" selected=move || metric.get() == Metric::Cpu>"CPU"</option>
                                <option value="memory" selected=move || metric.get() == Metric::Memory>"Memory"</option>
                            </select>
                        }
                    })}
                    {move || (mode.get() == "graph").then(|| {
                        let set_group = set_group.clone();
                        view! {
                            <label class="group-toggle" title="Draw each host's nodes as one; click a group to open it">
                                <input type="checkbox" id="group-by-host" prop:checked=move || grouping.get()
                                    on:change=move |ev| set_group(event_target_checked(&ev)) />" Group by host"
                            </label>
                            {move || (!opened.with(BTreeSet::is_empty)).then(|| view! {
                                <button type="button" class="secondary" id="close-groups" on:click=move |_| opened.set(BTreeSet::new())>"Close groups"</button>
                            })}
                        }
                    })}
                    <label class="graph-limit" title="Views with more nodes open as a table">"Graph up to "
                        <input type="number" id="graph-limit" min="0" step="100" prop:value=move || graph_limit.get().to_string()
                            on:change=move |ev| set_graph_limit(event_target_value(&ev)) />" nodes"</label>
                    <button type="button" id="pause" class="tab" class:active=move || paused.get()
                        on:click=move |_| set_paused(!paused.get_untracked())>{move || if paused.get() { "Resume" } else { "Pause" }}</button>
                </div>
                {move || (hidden_by_filters.get() > 0).then(|| {
                    let n = hidden_by_filters.get();
                    view! { <span class="hidden-count" id="hidden-count">{format!("{n} {} hidden by filters", if n == 1 { "node" } else { "nodes" })}</span> }
                })}
                <details class="troubleshoot" id="troubleshoot">
                    <summary title="Troubleshooting">"⋯"</summary>
                    <div class="menu">
                        <a id="download-report" href=move || format!("/api/app/{}/api/report", instance.get())
                            download=move || format!("scope-report-{}.json", instance.get())>"Download the report (JSON)"</a>
                        <button type="button" class="link-like" id="reset-view" on:click=move |_| reset_view()>"Reset the view's settings"</button>
                    </div>
                </details>
                <button type="button" class="secondary help-button" id="help-button" title="Keyboard shortcuts (?)"
                    aria-expanded=move || help.get().to_string() on:click=move |_| help.update(|h| *h = !*h)>"?"</button>
                <span class="link-status" id="link-status" data-status=move || format!("{:?}", link.get()).to_lowercase()
                    data-updates=move || updates.get().to_string()>
                    {move || match (link.get(), paused.get()) {
                        _ if unknown_view.with(Option::is_some) => "",
                        _ if moment.with(Option::is_some) => "History",
                        (_, true) => "Paused",
                        (Link::Live, _) => "Live",
                        (Link::Connecting, _) => "Connecting…",
                        (Link::Reconnecting, _) => "Reconnecting…",
                    }}
                </span>
            </div>
            {move || { let problems = search_problems.get(); (!problems.is_empty()).then(|| view! {
                <p class="search-problem" id="search-problem" role="alert">{problems.join(" ")}</p>
            }) }}
            {move || list_error.get().map(|e| view! { <ErrorNotice error=e /> })}
            {move || (link.get() == Link::Reconnecting && !map_is_empty.get()).then(|| {
                let at = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(last_change.get_value()))
                    .to_locale_time_string("en-GB")
                    .as_string()
                    .unwrap_or_default();
                view! {
                    <p class="stale-banner" id="disconnected-banner" role="status">
                        {format!("Connection lost: this is the map as it was at {at}. Reconnecting…")}
                    </p>
                }
            })}
            {move || stale_for.get().map(|s| view! {
                <p class="stale-banner" id="stale-banner" role="status">{format!("No report for {s} s: the map may be out of date.")}</p>
            })}
            {move || help.get().then(|| view! {
                <aside class="help-overlay" id="help" role="dialog" aria-label="Keyboard shortcuts">
                    <h2>"Keyboard shortcuts"</h2>
                    <dl class="facts">
                        <dt><kbd>"?"</kbd></dt><dd>"Show or hide this help"</dd>
                        <dt><kbd>"/"</kbd></dt><dd>"Search"</dd>
                        <dt><kbd>"Esc"</kbd></dt><dd>"Close this help or the details; leave the search"</dd>
                        <dt><kbd>"g"</kbd></dt><dd>"Graph"</dd>
                        <dt><kbd>"t"</kbd></dt><dd>"Table"</dd>
                        <dt><kbd>"r"</kbd></dt><dd>"Resources: hosts, containers and processes sized by CPU or memory"</dd>
                        <dt><kbd>"Enter"</kbd></dt><dd>"In the search: pin the search"</dd>
                    </dl>
                    <p class="muted">"Search: a name, field:value (image:nginx), or a metric with a unit (cpu > 1%, memory > 100MB)."</p>
                    <button type="button" class="secondary" on:click=move |_| help.set(false)>"Close"</button>
                </aside>
            })}
            <div class="map-body" class:stale=move || link.get() == Link::Reconnecting>
                {move || {
                    if let Some(v) = unknown_view.get() {
                        return view! {
                            <p class="empty-state" id="unknown-view" role="alert">
                                {format!("This instance has no view “{v}”. Pick one of its views above.")}
                            </p>
                        }.into_any();
                    }
                    // The resource view reads its three views itself.
                    if mode.get() == "resource" {
                        return view! {
                            <ResourceView instance=instance metric=metric selected=selected on_select=select_resource />
                        }.into_any();
                    }
                    // Only whether the map is empty: the graph and table follow `shown` themselves,
                    // and are made once, keeping the viewport and the nodes under the pointer.
                    let empty = map_is_empty.get();
                    if empty && received_first.get() && no_probe.get() {
                        let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
                        view! {
                            <div class="empty-state" id="empty-state">
                                <h2>"Waiting for the first report"</h2>
                                <p>"Run a probe on each host you want to see, with this instance's probe token (shown once when the instance was made; rotate it on the "
                                    <A href=move || format!("/instances/{}", instance.get())>"instance page"</A>" to get a new one):"</p>
                                <pre class="command">{format!("scopehub probe --url {origin} --token shp_…")}</pre>
                                <pre class="command">{format!("docker run -d --name scope-probe --net=host --pid=host --privileged -v /var/run/docker.sock:/var/run/docker.sock weaveworks/scope:1.13.2 --mode=probe --probe-only --probe.token=shp_… {origin}")}</pre>
                                <p class="muted">"This page switches to the map by itself when the first report arrives."</p>
                            </div>
                        }.into_any()
                    } else if empty && received_first.get() {
                        view! { <p class="empty-state" id="empty-view">"Nothing to show in this view with these options."</p> }.into_any()
                    } else if empty {
                        view! { <p class="loading" role="status">"Loading the map…"</p> }.into_any()
                    } else if mode.get() == "table" {
                        view! { <NodeTable nodes=shown selected=selected matches=matches on_select=select /> }.into_any()
                    } else {
                        view! { <Graph structure=structure looks=looks layout=positions selected=selected matches=graph_matches on_select=select fit_request=fit_request marks=marks animate=animate /> }.into_any()
                    }
                }}
                {move || selected.get().map(|node| view! {
                    <NodeDetailsPanel instance=instance view=details_view node=Signal::derive(move || node.clone())
                        options=details_options on_close=close_details on_open=open_link />
                })}
            </div>
            <Timeline instance=instance view=Signal::derive(move || view_id.get()) at=moment
                on_moment=set_moment compare=compare note=note changes=change_counts />
        </section>
    }
}
