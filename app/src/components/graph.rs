//! The topology graph: SVG nodes and directed edges at positions from `topomap::layout`, with pan
//! (drag the background), zoom (wheel, buttons), fit to screen, hover highlighting of neighbours and
//! click to select.

use std::collections::{BTreeMap, BTreeSet};

use leptos::html;
use leptos::prelude::*;
use topomap::layout::{Layout, Point};
use topomap::{Look, Structure};

/// Below this zoom, labels are too small to read: only the hovered or selected node and its
/// neighbours keep theirs (semantic zoom).
const LABELS_FROM_SCALE: f64 = 0.55;
/// With more edges than this, edges are drawn faint, and those of the hovered or selected node in
/// full.
const BUSY_EDGES: usize = 150;

/// Room around the outermost centres for shapes and labels, in layout units.
const FRAME_MARGIN: f64 = 200.0;

/// Radius of a node's shape, in layout units (the layout keeps nodes 160 apart).
const R: f64 = 26.0;
/// How far below a node's centre its two labels end.
const LABELS: f64 = R + 36.0;

/// The SVG path of a node's shape, centred on 0,0.
pub fn shape_path(shape: &str, r: f64) -> String {
    let polygon = |sides: usize, rotate: f64| {
        let mut d = String::new();
        for i in 0..sides {
            let a = rotate + i as f64 * std::f64::consts::TAU / sides as f64;
            let (x, y) = (r * a.cos(), r * a.sin());
            d.push_str(&format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" }));
        }
        d.push('Z');
        d
    };
    let up = -std::f64::consts::FRAC_PI_2;
    match shape {
        "square" => format!("M{a},{a}h{s}v{s}h-{s}Z", a = -r * 0.85, s = r * 1.7),
        "hexagon" => polygon(6, 0.0),
        "heptagon" => polygon(7, up),
        "pentagon" => polygon(5, up),
        "octagon" => polygon(8, std::f64::consts::PI / 8.0),
        "triangle" | "dottedtriangle" => polygon(3, up),
        "cloud" => format!(
            "M{x0},{y0}a{a},{a} 0 0,1 {r1},-{r2}a{b},{b} 0 0,1 {r3},{r4}a{a},{a} 0 0,1 0,{r5}Z",
            x0 = -r,
            y0 = r * 0.45,
            a = r * 0.45,
            b = r * 0.6,
            r1 = r * 0.55,
            r2 = r * 0.75,
            r3 = r * 1.0,
            r4 = r * 0.1,
            r5 = r * 1.1,
        ),
        "cylinder" | "dottedcylinder" => format!(
            "M{x},{y}v{h}a{r},{e} 0 0,0 {w},0v-{h}a{r},{e} 0 0,0 -{w},0a{r},{e} 0 0,0 {w},0",
            x = -r,
            y = -r * 0.6,
            h = r * 1.2,
            e = r * 0.3,
            w = r * 2.0,
        ),
        "sheet" => format!(
            "M{x},{y}h{w}l{f},{f}v{h}h-{W}Z",
            x = -r * 0.8,
            y = -r,
            w = r * 1.2,
            f = r * 0.4,
            h = r * 1.6,
            W = r * 1.6,
        ),
        _ => format!(
            "M{},0a{r},{r} 0 1,0 {},0a{r},{r} 0 1,0 -{},0",
            -r,
            2.0 * r,
            2.0 * r
        ),
    }
}

/// Pan and zoom: screen = layout × scale + offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub x: f64,
    pub y: f64,
    pub k: f64,
}

impl Default for View {
    fn default() -> Self {
        View {
            x: 0.0,
            y: 0.0,
            k: 1.0,
        }
    }
}

/// The view that shows all of `layout` in a `width`×`height` box.
pub fn fit(layout: &Layout, width: f64, height: f64) -> View {
    let Some((lo, hi)) = layout.bounds() else {
        return View {
            x: width / 2.0,
            y: height / 2.0,
            k: 1.0,
        };
    };
    let margin = 3.0 * R;
    let (w, h) = (hi.x - lo.x + 2.0 * margin, hi.y - lo.y + 2.0 * margin);
    let k = (width / w).min(height / h).clamp(0.05, 1.5);
    View {
        x: width / 2.0 - (lo.x + hi.x) / 2.0 * k,
        y: height / 2.0 - (lo.y + hi.y) / 2.0 * k,
        k,
    }
}

fn zoom_at(v: View, factor: f64, cx: f64, cy: f64) -> View {
    let k = (v.k * factor).clamp(0.05, 4.0);
    let f = k / v.k;
    View {
        x: cx - (cx - v.x) * f,
        y: cy - (cy - v.y) * f,
        k,
    }
}

/// An edge's path: from the source towards the target's border, slightly curved so that edges
/// both ways stay apart. Downward edges leave from below the source's labels, not across them.
fn edge_path(a: Point, b: Point) -> String {
    let downward = b.y > a.y + R;
    let origin = if downward {
        Point {
            x: a.x,
            y: a.y + LABELS,
        }
    } else {
        a
    };
    let (dx, dy) = (b.x - origin.x, b.y - origin.y);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let (ux, uy) = (dx / len, dy / len);
    let gap = if downward { 4.0 } else { R };
    let start = (origin.x + ux * gap, origin.y + uy * gap);
    let end = (b.x - ux * (R + 6.0), b.y - uy * (R + 6.0));
    let bend = (len * 0.08).min(30.0);
    let mid = (
        (start.0 + end.0) / 2.0 - uy * bend,
        (start.1 + end.1) / 2.0 + ux * bend,
    );
    format!(
        "M{:.1},{:.1}Q{:.1},{:.1} {:.1},{:.1}",
        start.0, start.1, mid.0, mid.1, end.0, end.1
    )
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// A node's hue, from its label as Scope colours nodes (so a service keeps its colour across views,
/// hosts and reloads): FNV-1a of the label, on the colour wheel.
pub fn hue_of(label: &str) -> u32 {
    let hash = label.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % 360
}

#[component]
pub fn Graph(
    /// The nodes and edges to draw; set only when they change.
    #[prop(into)]
    structure: Signal<Structure>,
    /// How each node is drawn; set only when some node's look changes (not on metrics).
    #[prop(into)]
    looks: Signal<BTreeMap<String, Look>>,
    #[prop(into)] layout: Signal<Layout>,
    #[prop(into)] selected: Signal<Option<String>>,
    /// Nodes the search matched; `None` when there is no search.
    #[prop(into)]
    matches: Signal<Option<BTreeSet<String>>>,
    on_select: Callback<String>,
    /// Bumped to ask for a fit to screen (a new view, the first layout).
    #[prop(into)]
    fit_request: Signal<u64>,
    /// Nodes to mark: `appeared` or `vanished` (changes between two moments of history).
    #[prop(optional, into)]
    marks: Option<Signal<BTreeMap<String, &'static str>>>,
    /// Nodes glide to their new places (moving between moments of history).
    #[prop(optional, into)]
    animate: Option<Signal<bool>>,
) -> impl IntoView {
    let marks = marks.unwrap_or_else(|| Signal::derive(BTreeMap::new));
    let animate = animate.unwrap_or_else(|| Signal::derive(|| false));
    let mark_of = move |id: &str| marks.with(|m| m.get(id).copied());
    let container = NodeRef::<html::Div>::new();
    let view_state = RwSignal::new(View::default());
    let hovered = RwSignal::new(None::<String>);
    let drag = StoredValue::new(None::<(f64, f64, View)>);

    let size = move || {
        container
            .get_untracked()
            .map(|el| {
                let r = el.get_bounding_client_rect();
                (r.width().max(100.0), r.height().max(100.0))
            })
            .unwrap_or((800.0, 600.0))
    };
    let do_fit = move || {
        let (w, h) = size();
        view_state.set(fit(&layout.get_untracked(), w, h));
    };
    // After the browser has laid the container out, so its size is known.
    Effect::new(move |_| {
        fit_request.track();
        request_animation_frame(do_fit);
    });

    // The selected node stays in sight: opening the details narrows the graph, and a node chosen
    // elsewhere (the table, a link, the URL) may be off screen. Checked once the page is laid out.
    Effect::new(move |_| {
        let Some(id) = selected.get() else {
            return;
        };
        request_animation_frame(move || {
            let Some(p) = layout.with_untracked(|l| l.positions.get(&id).copied()) else {
                return;
            };
            let (w, h) = size();
            let v = view_state.get_untracked();
            let (sx, sy) = (p.x * v.k + v.x, p.y * v.k + v.y);
            // Its whole shape in sight, at least.
            let margin = (R * v.k).max(10.0).min(w.min(h) / 4.0);
            let inside = (margin..=w - margin).contains(&sx) && (margin..=h - margin).contains(&sy);
            if !inside {
                view_state.set(View {
                    x: w / 2.0 - p.x * v.k,
                    y: h / 2.0 - p.y * v.k,
                    k: v.k,
                });
            }
        });
    });

    // Neighbours of the hovered node (both directions), for highlighting.
    let neighbours = Memo::new(move |_| {
        let hovered = hovered.get()?;
        let mut set = BTreeSet::from([hovered.clone()]);
        structure.with(|(_, edges)| {
            for (a, b) in edges {
                if *a == hovered {
                    set.insert(b.clone());
                } else if *b == hovered {
                    set.insert(a.clone());
                }
            }
        });
        Some(set)
    });
    let edges = move || structure.with(|(_, edges)| edges.clone());
    let ids = move || structure.with(|(ids, _)| ids.clone());
    let busy = Memo::new(move |_| structure.with(|(_, edges)| edges.len() > BUSY_EDGES));

    let on_wheel = move |ev: leptos::ev::WheelEvent| {
        ev.prevent_default();
        let Some(el) = container.get_untracked() else {
            return;
        };
        let r = el.get_bounding_client_rect();
        let factor = (-ev.delta_y() * 0.0015).exp();
        view_state.update(|v| {
            *v = zoom_at(
                *v,
                factor,
                f64::from(ev.client_x()) - r.left(),
                f64::from(ev.client_y()) - r.top(),
            )
        });
    };
    let on_down = move |ev: leptos::ev::PointerEvent| {
        if ev.button() != 0 {
            return;
        }
        drag.set_value(Some((
            f64::from(ev.client_x()),
            f64::from(ev.client_y()),
            view_state.get_untracked(),
        )));
    };
    let on_move = move |ev: leptos::ev::PointerEvent| {
        if let Some((x0, y0, start)) = drag.get_value() {
            let (dx, dy) = (f64::from(ev.client_x()) - x0, f64::from(ev.client_y()) - y0);
            view_state.set(View {
                x: start.x + dx,
                y: start.y + dy,
                k: start.k,
            });
        }
    };
    let on_up = move |_: leptos::ev::PointerEvent| drag.set_value(None);
    let zoom_button = move |factor: f64| {
        let (w, h) = size();
        view_state.update(|v| *v = zoom_at(*v, factor, w / 2.0, h / 2.0));
    };

    let position = move |id: &str| layout.with(|l| l.positions.get(id).copied());
    // The drawing's box in layout units (x, y, width, height): the nodes' centres with room for
    // shapes and labels around them.
    let frame = Memo::new(move |_| {
        layout.with(|l| match l.bounds() {
            Some((lo, hi)) => (
                lo.x - FRAME_MARGIN,
                lo.y - FRAME_MARGIN,
                hi.x - lo.x + 2.0 * FRAME_MARGIN,
                hi.y - lo.y + 2.0 * FRAME_MARGIN,
            ),
            None => (0.0, 0.0, 1.0, 1.0),
        })
    });
    // The node under the pointer or selected: its edges stand out when the graph is busy, and its
    // labels show when zoomed out.
    let hot = move |id: &str| {
        hovered.with(|h| h.as_deref() == Some(id)) || selected.with(|s| s.as_deref() == Some(id))
    };
    let dimmed = move |id: &str| {
        if let Some(set) = neighbours.get() {
            return !set.contains(id);
        }
        matches.with(|m| m.as_ref().is_some_and(|m| !m.contains(id)))
    };

    view! {
        <div class="graph" node_ref=container on:wheel=on_wheel on:pointerdown=on_down
            on:pointermove=on_move on:pointerup=on_up on:pointerleave=on_up>
            // The drawing is as large as the layout and moved by a CSS transform: panning and zooming
            // move a composited layer instead of repainting thousands of paths.
            <svg class="graph-canvas" role="img" aria-label="Topology graph"
                width=move || frame.get().2.to_string() height=move || frame.get().3.to_string()
                viewBox=move || { let (x, y, w, h) = frame.get(); format!("{x:.0} {y:.0} {w:.0} {h:.0}") }
                style:transform=move || {
                    let (v, (x, y, _, _)) = (view_state.get(), frame.get());
                    format!("translate({:.1}px,{:.1}px) scale({:.4})", v.x + x * v.k, v.y + y * v.k, v.k)
                }
                class:zoomed-out=move || view_state.with(|v| v.k < LABELS_FROM_SCALE)
                class:animated=move || animate.get()
                class:busy=move || busy.get()>
                <defs>
                    <marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M0,0L10,5L0,10z" class="arrow-head" />
                    </marker>
                </defs>
                <g class="viewport">
                    <g class="edges">
                        <For each=edges key=|e| e.clone() let:edge>
                            {
                                let (a, b) = edge.clone();
                                let (a2, b2) = (a.clone(), b.clone());
                                view! {
                                    <path class="edge" marker-end="url(#arrow)"
                                        class:dim=move || dimmed(&a2) || dimmed(&b2)
                                        class:hot={
                                            let (a3, b3) = (a.clone(), b.clone());
                                            move || hot(&a3) || hot(&b3)
                                        }
                                        d=move || match (position(&a), position(&b)) {
                                            (Some(p), Some(q)) => edge_path(p, q),
                                            _ => String::new(),
                                        } />
                                }
                            }
                        </For>
                    </g>
                    <g class="nodes">
                        <For each=ids key=|id| id.clone() let:id>
                            {
                                // What the node's shape and labels are drawn from: re-read only
                                // when some node's look changed, redrawn only when its own did.
                                let node = {
                                    let id = id.clone();
                                    Memo::new(move |_| looks.with(|l| l.get(&id).cloned()))
                                };
                                let (id_pos, id_sel, id_dim, id_click, id_enter) =
                                    (id.clone(), id.clone(), id.clone(), id.clone(), id.clone());
                                let (id_style, id_new, id_gone) = (id.clone(), id.clone(), id.clone());
                                view! {
                                    <g class="node" data-id=id.clone()
                                        class:hot={ let id = id.clone(); move || hot(&id) || neighbours.with(|n| n.as_ref().is_some_and(|n| n.contains(&id))) }
                                        class:selected=move || selected.with(|s| s.as_deref() == Some(id_sel.as_str()))
                                        class:dim=move || dimmed(&id_dim)
                                        class:pseudo=move || node.with(|n| n.as_ref().is_some_and(|n| n.pseudo))
                                        class:appeared=move || mark_of(&id_new) == Some("appeared")
                                        class:vanished=move || mark_of(&id_gone) == Some("vanished")
                                        style=move || {
                                            let hue = node.with(|n| n.as_ref().map(|n| format!("--hue:{}", hue_of(&n.label))).unwrap_or_default());
                                            // The same place as the attribute, as a style a CSS transition can move.
                                            match position(&id_style).filter(|_| animate.get()) {
                                                Some(p) => format!("{hue};transform:translate({:.1}px,{:.1}px)", p.x, p.y),
                                                None => hue,
                                            }
                                        }
                                        transform=move || position(&id_pos).map(|p| format!("translate({:.1},{:.1})", p.x, p.y)).unwrap_or_default()
                                        on:click=move |ev| { ev.stop_propagation(); on_select.run(id_click.clone()) }
                                        on:pointerdown=|ev: leptos::ev::PointerEvent| ev.stop_propagation()
                                        on:mouseenter=move |_| hovered.set(Some(id_enter.clone()))
                                        on:mouseleave=move |_| hovered.set(None)>
                                        {move || node.get().map(|n| {
                                            let d = shape_path(if n.shape.is_empty() { "circle" } else { &n.shape }, R);
                                            view! {
                                                {n.stack.then(|| view! {
                                                    <path class="shape stacked" d=d.clone() transform="translate(6,6)" />
                                                    <path class="shape stacked" d=d.clone() transform="translate(3,3)" />
                                                })}
                                                <path class="shape" d=d />
                                                <text class="label" y={R + 16.0} text-anchor="middle">{shorten(&n.label, topomap::layout::LABEL_CHARS)}</text>
                                                <text class="label-minor" y={R + 30.0} text-anchor="middle">{shorten(&n.label_minor, topomap::layout::MINOR_CHARS)}</text>
                                                <title>{format!("{}\n{}", n.label, n.label_minor)}</title>
                                            }
                                        })}
                                    </g>
                                }
                            }
                        </For>
                    </g>
                </g>
            </svg>
            <div class="graph-controls">
                <button type="button" class="secondary" title="Zoom in" aria-label="Zoom in" on:click=move |_| zoom_button(1.25)>"+"</button>
                <button type="button" class="secondary" title="Zoom out" aria-label="Zoom out" on:click=move |_| zoom_button(0.8)>"−"</button>
                <button type="button" class="secondary" id="fit-graph" title="Fit to screen" on:click=move |_| do_fit()>"Fit"</button>
            </div>
        </div>
    }
}
