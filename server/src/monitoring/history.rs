//! An hour of one target's scrapes, bounded: a ring of points, one per scrape interval.
//!
//! Memory: a point holds a `Reading` (16 latency buckets of our histograms, a few report outcomes:
//! about 0.5 KB, at most ~2 KB for a target that sends the most `signals` keeps) and a short error;
//! an hour at the default 15 s interval is 241 points, so about 120 KB per target, at most ~0.5 MB.
//! A collector's instances (up to `signals::MAX_INSTANCES`, ~100 bytes each) are kept by the
//! latest two points only, for their ingest rates: at most ~0.4 MB more per collector.

use std::collections::VecDeque;
use std::time::Duration;

use shared::monitoring::{HistoryPoint, ShardInstance, TargetStatus};

use super::scrape::Scrape;
use super::signals::{Rates, rates};

/// One scrape, when it was taken.
#[derive(Debug, Clone)]
pub struct Point {
    pub at_ms: i64,
    pub scrape: Scrape,
}

#[derive(Debug, Clone)]
pub struct History {
    points: VecDeque<Point>,
    capacity: usize,
}

impl History {
    /// Enough room for `keep` of scrapes every `interval`.
    pub fn new(keep: Duration, interval: Duration) -> History {
        let capacity = (keep.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as usize + 1;
        History {
            points: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.clamp(2, 100_000),
        }
    }

    pub fn push(&mut self, point: Point) {
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        // The point before the last no longer needs its instances: rates only look one back.
        if self.points.len() >= 2 {
            let older = self.points.len() - 2;
            if let Some(reading) = &mut self.points[older].scrape.reading {
                reading.instances = Default::default();
            }
        }
        self.points.push_back(point);
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn last_at_ms(&self) -> Option<i64> {
        self.points.back().map(|p| p.at_ms)
    }

    /// Each point with the rates since the reading before it (none for the first, or after a
    /// scrape without a reading).
    fn with_rates(&self) -> impl Iterator<Item = (&Point, Option<Rates>)> {
        let mut before: Option<&Point> = None;
        self.points.iter().map(move |p| {
            let r = match (before, &p.scrape.reading) {
                (Some(b), Some(now)) => b
                    .scrape
                    .reading
                    .as_ref()
                    .map(|was| rates(was, now, (p.at_ms - b.at_ms) as f64 / 1000.0)),
                _ => None,
            };
            before = Some(p);
            (p, r)
        })
    }

    /// What the status page shows of this target.
    pub fn status(&self, role: &str, instance: &str) -> TargetStatus {
        let mut history = Vec::with_capacity(self.points.len());
        let mut last_rates = None;
        for (p, r) in self.with_rates() {
            history.push(HistoryPoint {
                at_ms: p.at_ms,
                up: p.scrape.up,
                ready: p.scrape.ready,
                requests_per_second: r.as_ref().map(|r| r.requests_per_second),
                error_ratio: r.as_ref().and_then(|r| r.error_ratio),
                p99_seconds: r.as_ref().and_then(|r| r.p99),
                reports_per_second: r
                    .as_ref()
                    .and_then(|r| r.reports_per_second.get("accepted").copied()),
            });
            last_rates = r;
        }
        let last = self.points.back();
        let rates = last_rates.unwrap_or_default();
        let reading = last.and_then(|p| p.scrape.reading.as_ref());
        let mut instances: Vec<ShardInstance> = reading
            .map(|r| {
                r.instances
                    .iter()
                    .map(|(id, i)| ShardInstance {
                        instance: id.clone(),
                        probes: i.probes,
                        reports_per_second: rates.instance_reports_per_second.get(id).copied(),
                        window_bytes: i.window_bytes,
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Busiest first.
        instances.sort_by(|a, b| {
            b.reports_per_second
                .unwrap_or(0.0)
                .total_cmp(&a.reports_per_second.unwrap_or(0.0))
                .then_with(|| a.instance.cmp(&b.instance))
        });
        TargetStatus {
            role: role.to_owned(),
            instance: instance.to_owned(),
            up: last.is_some_and(|p| p.scrape.up),
            ready: last.is_some_and(|p| p.scrape.ready),
            error: last.and_then(|p| p.scrape.error.clone()),
            last_scrape_ms: last.map(|p| p.at_ms),
            requests_per_second: history.last().and_then(|h| h.requests_per_second),
            error_ratio: rates.error_ratio,
            p50_seconds: rates.p50,
            p99_seconds: rates.p99,
            reports_per_second: rates.reports_per_second,
            reconcile_lag_seconds: reading.and_then(|r| r.reconcile_lag_seconds),
            websockets: reading.and_then(|r| r.websockets),
            reconcile_errors_per_second: rates.reconcile_errors_per_second,
            shard: reading.and_then(|r| r.shard.clone()),
            probes: reading.and_then(|r| r.probes),
            instances,
            mail_queue: reading.and_then(|r| r.mail_queue),
            mail_failing: reading.and_then(|r| r.mail_failing),
            mail_failures_per_second: rates.mail_failures_per_second,
            database_errors_per_second: rates.database_errors_per_second,
            history_per_second: rates.history_per_second,
            history_buffer_bytes: reading.and_then(|r| r.history_buffer_bytes),
            history_oldest_waiting_seconds: reading.and_then(|r| r.history_oldest_waiting_seconds),
            history,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::signals::{InstanceReading, Reading};
    use super::*;

    fn point(at_s: i64, requests: f64) -> Point {
        Point {
            at_ms: at_s * 1000,
            scrape: Scrape {
                up: true,
                ready: true,
                reading: Some(Reading {
                    requests,
                    latency_buckets: vec![(0.01, requests), (f64::INFINITY, requests)],
                    ..Reading::default()
                }),
                error: None,
            },
        }
    }

    #[test]
    fn an_hour_is_kept_and_no_more() {
        let mut h = History::new(Duration::from_secs(3600), Duration::from_secs(15));
        for i in 0..1000 {
            h.push(point(i * 15, (i * 30) as f64));
        }
        assert_eq!(h.len(), 241);
        let s = h.status("users", "10.0.0.1:4041");
        assert_eq!(s.history.len(), 241);
        assert_eq!(s.history[0].at_ms, (1000 - 241) * 15 * 1000);
        // 30 requests every 15 s.
        assert_eq!(s.requests_per_second, Some(2.0));
        assert!(s.history[0].requests_per_second.is_none());
        assert!((s.p99_seconds.unwrap() - 0.0099).abs() < 1e-12, "{s:?}");
        assert!(s.up && s.ready);
    }

    fn collector_point(at_s: i64, reports: &[(&str, f64)]) -> Point {
        let mut p = point(at_s, 0.0);
        let reading = p.scrape.reading.as_mut().unwrap();
        for (id, n) in reports {
            reading.instances.insert(
                (*id).to_owned(),
                InstanceReading {
                    probes: 1.0,
                    reports: *n,
                    window_bytes: 10.0,
                },
            );
        }
        p
    }

    #[test]
    fn a_collectors_instances_are_listed_busiest_first_and_kept_only_for_the_last_rate() {
        let mut h = History::new(Duration::from_secs(3600), Duration::from_secs(15));
        h.push(collector_point(0, &[("a", 0.0), ("b", 0.0)]));
        h.push(collector_point(15, &[("a", 15.0), ("b", 150.0)]));
        h.push(collector_point(30, &[("a", 45.0), ("b", 165.0)]));
        let s = h.status("collector", "x");
        let listed: Vec<_> = s
            .instances
            .iter()
            .map(|i| (i.instance.as_str(), i.reports_per_second))
            .collect();
        assert_eq!(listed, [("a", Some(2.0)), ("b", Some(1.0))]);
        // Only the latest two points hold instances.
        let held: Vec<usize> = h
            .points
            .iter()
            .map(|p| p.scrape.reading.as_ref().unwrap().instances.len())
            .collect();
        assert_eq!(held, [0, 2, 2]);
    }

    #[test]
    fn a_failed_scrape_breaks_the_rates_but_not_the_history() {
        let mut h = History::new(Duration::from_secs(60), Duration::from_secs(15));
        h.push(point(0, 0.0));
        h.push(Point {
            at_ms: 15_000,
            scrape: Scrape {
                up: false,
                ready: false,
                reading: None,
                error: Some("/metrics: connection refused or unreachable".into()),
            },
        });
        let s = h.status("users", "x");
        assert!(!s.up && !s.ready);
        assert_eq!(
            s.error.as_deref(),
            Some("/metrics: connection refused or unreachable")
        );
        assert_eq!(s.requests_per_second, None);
        h.push(point(30, 10.0));
        // After the gap: no rate until two readings follow each other.
        assert_eq!(h.status("users", "x").requests_per_second, None);
        h.push(point(45, 40.0));
        assert_eq!(h.status("users", "x").requests_per_second, Some(2.0));
    }
}
