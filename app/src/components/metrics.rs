//! Metric values as people read them, and sparklines of their samples (the map's; `ValuesLine`
//! also draws the System page's).

use leptos::prelude::*;
#[cfg(feature = "map")]
use shared::topology::Sample;

#[cfg(feature = "map")]
/// A metric's value in its format: `percent` (12.5%), `filesize` (1.2 GB), `integer`, else as is.
pub fn format_metric(value: f64, format: &str) -> String {
    match format {
        "percent" => format!("{value:.1}%"),
        "filesize" => {
            let units = ["B", "KB", "MB", "GB", "TB", "PB"];
            let mut v = value;
            let mut unit = 0;
            while v.abs() >= 1000.0 && unit + 1 < units.len() {
                v /= 1000.0;
                unit += 1;
            }
            if unit == 0 {
                format!("{v:.0} {}", units[unit])
            } else {
                format!("{v:.1} {}", units[unit])
            }
        }
        "integer" => format!("{value:.0}"),
        _ if value.fract() == 0.0 => format!("{value:.0}"),
        _ => format!("{value:.2}"),
    }
}

/// A small line of the samples, scaled between the metric's own min and max when it has them.
#[cfg(feature = "map")]
#[component]
pub fn Sparkline(samples: Vec<Sample>, min: f64, max: f64) -> impl IntoView {
    let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
    view! { <ValuesLine values=values min=min max=max /> }
}

/// A small line of `values`, as `Sparkline` draws samples.
#[component]
pub fn ValuesLine(values: Vec<f64>, min: f64, max: f64) -> impl IntoView {
    let (w, h) = (120.0, 28.0);
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(min);
    // Probes set `max` to capacity; a line pressed flat against the bottom says little, so scale to
    // what was seen unless that is nearly all of the capacity.
    let seen_hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let hi = if max.is_finite() && max > lo && seen_hi > 0.5 * max {
        max
    } else {
        seen_hi
    };
    let span = (hi - lo).max(f64::EPSILON);
    let n = values.len().max(2) - 1;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i as f64 / n as f64 * w;
            let y = h - 2.0 - (v - lo) / span * (h - 4.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    view! {
        <svg class="sparkline" width=w height=h viewBox=format!("0 0 {w} {h}") aria-hidden="true">
            <polyline points=points.join(" ") />
        </svg>
    }
}
