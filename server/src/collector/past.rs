//! Reads of a past moment (`?timestamp=RFC 3339`, Scope's time travel) and what the timeline
//! asks: the window ending then, made again from history (`history/`), rendered as live reads are
//! and cached (the past does not change); the timeline's samples; what changed between two
//! moments.

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::value::RawValue;
use shared::ErrorCode;
use shared::instances::Limits;
use shared::topology::{HistoryNote, Timeline, TimelinePoint};

use super::CollectorState;
use super::api::{Render, blocking, check_view, over_budget, unknown_view, view_render};
use super::fold::Samples;
use super::history::{Coverage, HistoryError, MAX_TIMELINE_POINTS, PastRender, PastWindow};
use super::render::topologies::Query;
use super::report::Time;
use super::slot::{Rendered, Summaries};
use crate::error::{Error, Json, Result};
use crate::identity::InstanceReader;

/// A moment this recent (or later) is the live window.
pub const LIVE_WITHIN_MS: i64 = 1_000;

/// The past moment a read asks for, taken out of its query (`timestamp=RFC 3339`), in whole
/// seconds; `None` for the live window (no timestamp, or one within the last second or later).
pub fn moment(state: &CollectorState, query: &mut Query) -> Result<Option<i64>> {
    let Some(raw) = query.params.remove("timestamp") else {
        return Ok(None);
    };
    query.any = !query.params.is_empty();
    parse_moment(state, &raw)
}

fn parse_moment(state: &CollectorState, raw: &str) -> Result<Option<i64>> {
    let at = Time::parse_rfc3339(raw)
        .filter(|t| *t != Time::ZERO)
        .ok_or_else(|| {
            Error::bad_request(format!(
                "Invalid timestamp {:?}: use RFC 3339, e.g. 2026-12-02T08:30:00Z.",
                raw.chars().take(64).collect::<String>()
            ))
        })?;
    let ms = at.0.div_euclid(1_000_000);
    let ms = ms - ms.rem_euclid(1_000);
    Ok((ms < state.clock.now() - LIVE_WITHIN_MS).then_some(ms))
}

fn history_failed(e: HistoryError) -> Error {
    tracing::warn!(error = %e, "a read of history failed");
    Error::client(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "The history of this instance cannot be read now; the live map still works. Retry shortly.",
    )
}

fn no_history() -> Error {
    Error::not_found("This collector keeps no history.")
}

/// The window of `instance` ending at `at` (ms), from history, its metrics with the `samples`
/// asked for (views show the newest only; details draw them all).
pub async fn window(
    state: &CollectorState,
    instance: &str,
    at: i64,
    samples: Samples,
) -> Result<PastWindow> {
    let history = state.shard.history().ok_or_else(no_history)?;
    // The instance's limits bound decoding its kept reports; an instance this shard does not
    // hold (yet: after a restart, or a move) is read under the most any instance may have.
    let limits = state.shard.limits_of(instance).unwrap_or(Limits {
        max_probes: i64::MAX,
        max_report_bytes: 64 << 20,
        max_reports_per_second: i64::MAX,
    });
    history
        .window_at(
            instance,
            at,
            state.clock.now(),
            limits,
            state.config.max_nodes_per_topology,
            samples,
        )
        .await
        .map_err(history_failed)
}

fn note(at: i64, coverage: Coverage, kept_from: Option<i64>) -> HistoryNote {
    let rfc = |ms: i64| Time(ms.saturating_mul(1_000_000)).to_rfc3339();
    HistoryNote {
        at: rfc(at),
        state: coverage.as_str().to_owned(),
        kept_from: kept_from.map(rfc),
    }
}

/// `render` of the window ending at `at`: made once per moment, view and options, then served
/// from the cache (bounded) like a live render that has not changed.
pub async fn render(
    state: &CollectorState,
    instance: &str,
    at: i64,
    key: String,
    render: Render,
) -> Result<Option<Rendered>> {
    let history = state.shard.history().ok_or_else(no_history)?;
    if let Some(kept) = history.past_render(instance, at, &key) {
        state.metrics.record_render(true);
        return Ok(Some(kept.rendered));
    }
    let past = window(state, instance, at, Samples::Last).await?;
    let budget = state.config.render_budget;
    let note = note(at, past.coverage, past.kept_from_ms);
    let report = past.report.clone();
    let rendered = blocking(move || {
        super::render::budget::within(budget, || {
            render(&report, Time(at.saturating_mul(1_000_000)), Some(&note))
        })
    })
    .await?
    .map_err(|_| over_budget(budget))??;
    state.metrics.record_render(false);
    if let Some(rendered) = &rendered {
        let kept = PastRender {
            rendered: rendered.clone(),
            coverage: past.coverage,
            kept_from_ms: past.kept_from_ms,
        };
        history.keep_past_render(instance, at, &key, kept);
    }
    Ok(rendered)
}

#[derive(Debug, serde::Deserialize)]
pub struct TimelineQuery {
    from: Option<i64>,
    to: Option<i64>,
    points: Option<usize>,
}

/// `GET /api/app/{instance}/api/history?from=&to=&points=` (ms since the epoch; default the last
/// hour, at most 240 points): the span history keeps and node counts over the range.
pub async fn timeline(
    State(state): State<CollectorState>,
    InstanceReader { instance, .. }: InstanceReader,
    axum::extract::Query(q): axum::extract::Query<TimelineQuery>,
) -> Result<Json<Timeline>> {
    check_view(&state, &instance, None)?;
    let history = state.shard.history().ok_or_else(no_history)?;
    let now = state.clock.now();
    let to = q.to.unwrap_or(now).min(now);
    let from = q.from.unwrap_or(to.saturating_sub(3_600_000));
    if from >= to || to.saturating_sub(from) > 400 * 24 * 3_600_000 {
        return Err(Error::bad_request(
            "`from` must be before `to`, at most 400 days apart.",
        ));
    }
    let kept = history.kept(&instance).await.map_err(history_failed)?;
    // Nothing is kept before the oldest report: no need to list those hours.
    let from_listed = kept.from_ms.map_or(to, |f| from.max(f));
    let points = if from_listed < to {
        history
            .timeline(
                &instance,
                from_listed,
                to,
                q.points.unwrap_or(120).min(MAX_TIMELINE_POINTS),
                now,
            )
            .await
            .map_err(history_failed)?
    } else {
        Vec::new()
    };
    Ok(Json(Timeline {
        from,
        to,
        kept_from: kept.from_ms,
        kept_to: kept.to_ms,
        kept_bytes: kept.bytes,
        points: points
            .into_iter()
            .map(|h| TimelinePoint {
                at: h.last_ms,
                counts: h.window.counts,
                views: h.window.views,
                views_at: h.window.views_at_ms,
            })
            .collect(),
    }))
}

/// `GET /api/app/{instance}/api/topology/{view}/changes?from=&to=&<options>`: the nodes and edges
/// of the view that appeared or vanished between two moments (RFC 3339; a recent one is live).
pub async fn changes(
    State(state): State<CollectorState>,
    InstanceReader { instance, .. }: InstanceReader,
    Path((_, view)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ChangesAnswer>> {
    check_view(&state, &instance, Some(&view))?;
    let mut query = Query::parse(raw.as_deref());
    let mut moment_of = |name: &str| -> Result<(String, Option<i64>)> {
        let raw = query
            .params
            .remove(name)
            .ok_or_else(|| Error::bad_request(format!("`{name}` (RFC 3339) is required.")))?;
        let at = parse_moment(&state, &raw)?;
        Ok((raw, at))
    };
    let (from_raw, from) = moment_of("from")?;
    let (to_raw, to) = moment_of("to")?;
    query.any = !query.params.is_empty();
    let (before, _) = view_render(&state, &instance, &view, &query, from)
        .await?
        .ok_or_else(unknown_view)?;
    let (after, _) = view_render(&state, &instance, &view, &query, to)
        .await?
        .ok_or_else(unknown_view)?;
    let changes = blocking(move || -> Result<ChangesAnswer> {
        let (edges_before, edges_after) = (edges(&before)?, edges(&after)?);
        let only_in = |a: &Summaries, b: &Summaries| -> Vec<Box<RawValue>> {
            a.iter()
                .filter(|(id, _)| !b.contains_key(*id))
                .map(|(_, n)| n.clone())
                .collect()
        };
        Ok(ChangesAnswer {
            from: from_raw,
            to: to_raw,
            appeared: only_in(&after, &before),
            vanished: only_in(&before, &after),
            edges_appeared: edges_after.difference(&edges_before).cloned().collect(),
            edges_vanished: edges_before.difference(&edges_after).cloned().collect(),
        })
    })
    .await??;
    Ok(Json(changes))
}

/// [`shared::topology::Changes`]' shape, its nodes as the view's render keeps them: serialised.
#[derive(serde::Serialize)]
pub struct ChangesAnswer {
    from: String,
    to: String,
    appeared: Vec<Box<RawValue>>,
    vanished: Vec<Box<RawValue>>,
    edges_appeared: Vec<(String, String)>,
    edges_vanished: Vec<(String, String)>,
}

/// A view's edges (source, target), read from its nodes' summaries.
fn edges(nodes: &Summaries) -> Result<BTreeSet<(String, String)>> {
    #[derive(serde::Deserialize)]
    struct Adjacent {
        #[serde(default)]
        adjacency: Vec<String>,
    }
    let mut edges = BTreeSet::new();
    for (id, node) in nodes {
        let node: Adjacent =
            serde_json::from_str(node.get()).map_err(|e| Error::Internal(e.into()))?;
        edges.extend(node.adjacency.into_iter().map(|to| (id.clone(), to)));
    }
    Ok(edges)
}
