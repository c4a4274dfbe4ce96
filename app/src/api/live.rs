//! The instance's Scope API (topology views, node details, probes, live updates): only the map
//! uses it, so only the full bundle (feature `map`) has it.

use shared::ApiError;
use std::collections::BTreeMap;

use shared::topology::{
    Changes, Diff, NodeAnswer, NodeDetails, NodeSummary, ProbeStatus, Timeline, TopologyAnswer,
    TopologyDesc,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use super::{get_json, js_sys_encode, unreachable_server};

fn app_path(instance: &str, rest: &str) -> String {
    format!("/api/app/{}/api/{rest}", js_sys_encode(instance))
}

fn with_query(path: String, query: &str) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

/// Any parameter makes the collector apply the options' defaults (Scope's rule), as the websocket
/// always does with its tick: so counts and details match what the live view shows.
fn with_defaults(query: &str) -> String {
    if query.is_empty() {
        "t=2s".to_owned()
    } else {
        format!("t=2s&{query}")
    }
}

/// The views with their options and node counts (`query` holds the view options, URL-encoded).
pub async fn topologies(instance: &str, query: &str) -> Result<Vec<TopologyDesc>, ApiError> {
    get_json(&with_query(
        app_path(instance, "topology"),
        &with_defaults(query),
    ))
    .await
}

pub async fn node_details(
    instance: &str,
    view: &str,
    node: &str,
    query: &str,
) -> Result<NodeDetails, ApiError> {
    let path = app_path(
        instance,
        &format!("topology/{}/{}", js_sys_encode(view), js_sys_encode(node)),
    );
    let answer: NodeAnswer = get_json(&with_query(path, &with_defaults(query))).await?;
    Ok(answer.node)
}

/// Asks the probe `probe` to carry out `control` on `node` (a container's restart…); answers the
/// probe's reply (`removedNode` when the node is gone, `pipe` when it opened a terminal).
pub async fn control(
    instance: &str,
    probe: &str,
    node: &str,
    control: &str,
) -> Result<serde_json::Value, ApiError> {
    control_with(instance, probe, node, control, &serde_json::json!({})).await
}

/// A control with arguments (a terminal's resize: `pipeID`, `height`, `width`).
pub async fn control_with(
    instance: &str,
    probe: &str,
    node: &str,
    control: &str,
    args: &serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let path = app_path(
        instance,
        &format!(
            "control/{}/{}/{}",
            js_sys_encode(probe),
            js_sys_encode(node),
            js_sys_encode(control)
        ),
    );
    crate::api::send("POST", &path, Some(args)).await
}

/// Closes a terminal or log stream (the probe's end is told).
pub async fn close_pipe(instance: &str, pipe: &str) -> Result<(), ApiError> {
    let path = app_path(instance, &format!("pipe/{}", js_sys_encode(pipe)));
    crate::api::send_empty("DELETE", &path, None::<&()>).await
}

/// A view's nodes once (`query` holds its options, URL-encoded): for the resource view, which
/// shows three views at once.
pub async fn topology_nodes(
    instance: &str,
    view: &str,
    query: &str,
) -> Result<BTreeMap<String, NodeSummary>, ApiError> {
    let path = app_path(instance, &format!("topology/{}", js_sys_encode(view)));
    let answer: TopologyAnswer = get_json(&with_query(path, &with_defaults(query))).await?;
    Ok(answer.nodes)
}

/// A view as it was at `at` (RFC 3339), with what history had for that moment.
pub async fn topology_at(
    instance: &str,
    view: &str,
    query: &str,
    at: &str,
) -> Result<TopologyAnswer, ApiError> {
    let path = app_path(instance, &format!("topology/{}", js_sys_encode(view)));
    let query = format!("{}&timestamp={}", with_defaults(query), js_sys_encode(at));
    get_json(&with_query(path, &query)).await
}

/// The history kept between `from` and `to` (ms since the epoch), with node counts over it.
pub async fn timeline(instance: &str, from: i64, to: i64) -> Result<Timeline, ApiError> {
    get_json(&format!(
        "{}?from={from}&to={to}&points=120",
        app_path(instance, "history")
    ))
    .await
}

/// What appeared and vanished in a view between two moments (RFC 3339).
pub async fn changes(
    instance: &str,
    view: &str,
    query: &str,
    from: &str,
    to: &str,
) -> Result<Changes, ApiError> {
    let path = app_path(
        instance,
        &format!("topology/{}/changes", js_sys_encode(view)),
    );
    let query = format!(
        "{}&from={}&to={}",
        with_defaults(query),
        js_sys_encode(from),
        js_sys_encode(to)
    );
    get_json(&with_query(path, &query)).await
}

/// The probes that reported recently (`lastSeen` is RFC 3339).
pub async fn probes(instance: &str) -> Result<Vec<ProbeStatus>, ApiError> {
    get_json(&app_path(instance, "probes")).await
}

/// A live view: frames of the topology websocket until dropped (which closes it).
pub struct TopologySocket {
    socket: web_sys::WebSocket,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_close: Closure<dyn FnMut(web_sys::CloseEvent)>,
}

impl Drop for TopologySocket {
    fn drop(&mut self) {
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }
}

/// Opens `…/api/topology/{view}/ws?t=…&query`; `on_frame` gets each diff, `on_close` runs once when
/// the server or the network ends it (not when the socket is dropped).
pub fn topology_socket(
    instance: &str,
    view: &str,
    query: &str,
    mut on_frame: impl FnMut(Diff) + 'static,
    mut on_close: impl FnMut() + 'static,
) -> Result<TopologySocket, ApiError> {
    let location = web_sys::window()
        .map(|w| w.location())
        .ok_or_else(|| unreachable_server("no window"))?;
    let scheme = match location.protocol().ok().as_deref() {
        Some("https:") => "wss",
        _ => "ws",
    };
    let host = location.host().map_err(|_| unreachable_server("no host"))?;
    let path = app_path(instance, &format!("topology/{}/ws", js_sys_encode(view)));
    let ticks = with_defaults(query);
    let socket = web_sys::WebSocket::new(&format!("{scheme}://{host}{path}?{ticks}"))
        .map_err(|_| unreachable_server("the live connection could not be opened"))?;
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            if let Some(text) = event.data().as_string()
                && let Ok(diff) = serde_json::from_str::<Diff>(&text)
            {
                on_frame(diff);
            }
        });
    let on_close =
        Closure::<dyn FnMut(web_sys::CloseEvent)>::new(move |_: web_sys::CloseEvent| on_close());
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    Ok(TopologySocket {
        socket,
        _on_message: on_message,
        _on_close: on_close,
    })
}
