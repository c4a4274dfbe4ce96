//! Alert rules over what the scrapes found, with `for` durations as Prometheus has them: a
//! condition must hold on every scrape for the rule's duration before its alert fires, and the
//! alert resolves on the first scrape where it no longer holds. Only changes of state are events
//! (one per firing, one per resolution: no storm), kept as a bounded history. Pure: the caller
//! tells the time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use shared::monitoring::{AlertEvent, FiringAlert, TargetStatus};

const MINUTE: i64 = 60_000;

/// Events kept (a day of a flapping target at most; the page shows the latest).
const HISTORY: usize = 1_000;

/// What a rule looks at on one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// `/readyz` does not answer 200 (or the target does not answer at all).
    NotReady,
    /// A collector shard's `/metrics` does not answer: its instances are unreachable.
    CollectorDown,
    /// The share of 5xx answers since the scrape before is above this.
    ErrorRatioAbove(f64),
    /// The p99 latency since the scrape before is above this many seconds.
    P99Above(f64),
    /// The reconciler's oldest unconverged change is older than this many seconds.
    ReconcileLagAbove(f64),
    /// Mail waits in the outbox after a failed delivery attempt.
    MailFailing,
    /// A collector dropped reports' history since the scrape before: its buffer is full, for its
    /// store has failed or been too slow for long enough to fill it.
    HistoryDropping,
    /// A collector's oldest report waiting for its history store has waited longer than this many
    /// seconds: the store has not taken it at any flush since (a level, so it holds through a store
    /// whose writes time out, whose failures only show on every other scrape).
    HistoryWaitingAbove(f64),
}

impl Condition {
    fn holds(self, t: &TargetStatus) -> bool {
        match self {
            Condition::NotReady => !t.ready,
            Condition::CollectorDown => t.role == "collector" && !t.up,
            Condition::ErrorRatioAbove(limit) => t.error_ratio.is_some_and(|r| r > limit),
            Condition::P99Above(limit) => t.p99_seconds.is_some_and(|p| p > limit),
            Condition::ReconcileLagAbove(limit) => {
                t.reconcile_lag_seconds.is_some_and(|l| l > limit)
            }
            Condition::MailFailing => t.mail_failing.is_some_and(|n| n > 0.0),
            Condition::HistoryDropping => t
                .history_per_second
                .get("dropped_buffer_full")
                .is_some_and(|r| *r > 0.0),
            Condition::HistoryWaitingAbove(limit) => {
                t.history_oldest_waiting_seconds.is_some_and(|s| s > limit)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: &'static str,
    pub condition: Condition,
    /// How long the condition must hold before the alert fires, in milliseconds.
    pub for_ms: i64,
    /// What it means, for the page and the notifications.
    pub summary: &'static str,
}

/// The rules of issue 16 (and `k8s/monitoring/` says the same to Prometheus).
pub fn default_rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "RoleNotReady",
            condition: Condition::NotReady,
            for_ms: MINUTE,
            summary: "A role replica has not been ready for a minute.",
        },
        Rule {
            name: "CollectorShardDown",
            condition: Condition::CollectorDown,
            for_ms: MINUTE,
            summary: "A collector shard has not answered for a minute: its instances' maps are down.",
        },
        Rule {
            name: "HighErrorRatio",
            condition: Condition::ErrorRatioAbove(0.01),
            for_ms: 5 * MINUTE,
            summary: "More than 1% of a role's answers have been server errors for 5 minutes.",
        },
        Rule {
            name: "SlowResponses",
            condition: Condition::P99Above(1.0),
            for_ms: 5 * MINUTE,
            summary: "A role's p99 latency has been above 1 s for 5 minutes.",
        },
        Rule {
            name: "ReconcileLag",
            condition: Condition::ReconcileLagAbove(60.0),
            for_ms: MINUTE,
            summary: "The reconciler has left an instance change unconverged for over 60 s.",
        },
        Rule {
            name: "MailFailing",
            condition: Condition::MailFailing,
            for_ms: 10 * MINUTE,
            summary: "Mail has been failing to reach the SMTP server for 10 minutes: sign-ups, \
                      invites and password resets are not arriving.",
        },
        Rule {
            name: "HistoryDropping",
            condition: Condition::HistoryDropping,
            for_ms: MINUTE,
            summary: "A collector has been dropping reports' history for a minute: its history \
                      store has failed or been too slow long enough to fill its buffer, so past \
                      moments from now on are missing.",
        },
        Rule {
            name: "HistoryStalled",
            condition: Condition::HistoryWaitingAbove(300.0),
            for_ms: 5 * MINUTE,
            summary: "A collector's history store has taken none of its oldest waiting reports \
                      for over 5 minutes: they wait in its buffer, and once that is full reports' \
                      history is dropped.",
        },
    ]
}

/// One rule on one target: since when its condition holds, and whether it fired.
#[derive(Debug, Clone, Copy)]
struct State {
    holds_since: i64,
    firing: bool,
}

/// Every rule's state on every target, and the events so far.
#[derive(Debug)]
pub struct Alerts {
    rules: Vec<Rule>,
    states: BTreeMap<(usize, String, String), State>,
    history: VecDeque<AlertEvent>,
}

impl Alerts {
    pub fn new(rules: Vec<Rule>) -> Alerts {
        Alerts {
            rules,
            states: BTreeMap::new(),
            history: VecDeque::new(),
        }
    }

    /// Takes the targets as scraped at `now`; returns the alerts that fired or resolved, in
    /// order. A target no longer listed resolves its alerts.
    pub fn evaluate(&mut self, now: i64, targets: &[TargetStatus]) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let mut seen = BTreeSet::new();
        for t in targets {
            for (index, rule) in self.rules.iter().enumerate() {
                let key = (index, t.role.clone(), t.instance.clone());
                if rule.condition.holds(t) {
                    let state = self.states.entry(key.clone()).or_insert(State {
                        holds_since: now,
                        firing: false,
                    });
                    if !state.firing && now - state.holds_since >= rule.for_ms {
                        state.firing = true;
                        events.push(event(rule, t, "firing", state.holds_since, now));
                    }
                    seen.insert(key);
                } else if let Some(state) = self.states.remove(&key)
                    && state.firing
                {
                    events.push(event(rule, t, "resolved", state.holds_since, now));
                }
            }
        }
        // Targets gone from the list: their alerts end.
        let gone: Vec<_> = self
            .states
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(state) = self.states.remove(&key)
                && state.firing
            {
                let rule = &self.rules[key.0];
                events.push(AlertEvent {
                    rule: rule.name.to_owned(),
                    role: key.1.clone(),
                    instance: key.2.clone(),
                    state: "resolved".to_owned(),
                    summary: rule.summary.to_owned(),
                    since_ms: state.holds_since,
                    at_ms: now,
                });
            }
        }
        for e in &events {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(e.clone());
        }
        events
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<FiringAlert> {
        self.states
            .iter()
            .filter(|(_, s)| s.firing)
            .map(|((index, role, instance), s)| FiringAlert {
                rule: self.rules[*index].name.to_owned(),
                role: role.clone(),
                instance: instance.clone(),
                summary: self.rules[*index].summary.to_owned(),
                since_ms: s.holds_since,
            })
            .collect()
    }

    /// The latest events, newest first.
    pub fn history(&self, at_most: usize) -> Vec<AlertEvent> {
        self.history.iter().rev().take(at_most).cloned().collect()
    }
}

fn event(rule: &Rule, t: &TargetStatus, state: &str, since: i64, now: i64) -> AlertEvent {
    AlertEvent {
        rule: rule.name.to_owned(),
        role: t.role.clone(),
        instance: t.instance.clone(),
        state: state.to_owned(),
        summary: rule.summary.to_owned(),
        since_ms: since,
        at_ms: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(role: &str, ready: bool) -> TargetStatus {
        TargetStatus {
            role: role.into(),
            instance: "10.0.0.1:4040".into(),
            up: ready,
            ready,
            ..TargetStatus::default()
        }
    }

    fn states(events: &[AlertEvent]) -> Vec<(&str, &str)> {
        events
            .iter()
            .map(|e| (e.rule.as_str(), e.state.as_str()))
            .collect()
    }

    #[test]
    fn an_alert_fires_after_its_duration_and_resolves_once() {
        let mut alerts = Alerts::new(default_rules());
        let down = [target("users", false)];
        let up = [target("users", true)];
        assert!(alerts.evaluate(0, &down).is_empty());
        assert!(
            alerts.evaluate(30_000, &down).is_empty(),
            "not for a minute yet"
        );
        assert_eq!(
            states(&alerts.evaluate(60_000, &down)),
            [("RoleNotReady", "firing")]
        );
        // Still down: no second notification.
        assert!(alerts.evaluate(75_000, &down).is_empty());
        assert_eq!(alerts.firing().len(), 1);
        assert_eq!(alerts.firing()[0].since_ms, 0);
        let resolved = alerts.evaluate(90_000, &up);
        assert_eq!(states(&resolved), [("RoleNotReady", "resolved")]);
        assert!(alerts.evaluate(105_000, &up).is_empty());
        assert!(alerts.firing().is_empty());
        assert_eq!(alerts.history(10).len(), 2);
        assert_eq!(alerts.history(10)[0].state, "resolved");
    }

    #[test]
    fn a_blip_shorter_than_the_duration_fires_nothing() {
        let mut alerts = Alerts::new(default_rules());
        assert!(alerts.evaluate(0, &[target("users", false)]).is_empty());
        assert!(alerts.evaluate(45_000, &[target("users", true)]).is_empty());
        assert!(
            alerts
                .evaluate(60_000, &[target("users", false)])
                .is_empty()
        );
        assert!(
            alerts
                .evaluate(100_000, &[target("users", false)])
                .is_empty()
        );
        assert_eq!(alerts.evaluate(120_000, &[target("users", false)]).len(), 1);
    }

    #[test]
    fn each_rule_watches_its_signal() {
        let mut alerts = Alerts::new(default_rules());
        let mut bad = target("collector", false);
        bad.error_ratio = Some(0.02);
        bad.p99_seconds = Some(1.5);
        bad.reconcile_lag_seconds = Some(61.0);
        bad.mail_failing = Some(3.0);
        bad.history_per_second = [("dropped_buffer_full".to_owned(), 2.0)].into();
        bad.history_oldest_waiting_seconds = Some(301.0);
        alerts.evaluate(0, std::slice::from_ref(&bad));
        let mut fired = states(&alerts.evaluate(10 * MINUTE, std::slice::from_ref(&bad)))
            .into_iter()
            .map(|(rule, _)| rule.to_owned())
            .collect::<Vec<_>>();
        fired.sort();
        assert_eq!(
            fired,
            [
                "CollectorShardDown",
                "HighErrorRatio",
                "HistoryDropping",
                "HistoryStalled",
                "MailFailing",
                "ReconcileLag",
                "RoleNotReady",
                "SlowResponses"
            ]
        );
        // Just at the limits: nothing.
        let mut fine = target("users", true);
        fine.error_ratio = Some(0.01);
        fine.p99_seconds = Some(1.0);
        fine.mail_failing = Some(0.0);
        fine.mail_queue = Some(40.0);
        // Writes failing are retried from the buffer: history is not lost yet.
        fine.history_per_second = [
            ("write_failed".to_owned(), 5.0),
            ("dropped_buffer_full".to_owned(), 0.0),
        ]
        .into();
        fine.history_oldest_waiting_seconds = Some(300.0);
        let mut calm = Alerts::new(default_rules());
        calm.evaluate(0, std::slice::from_ref(&fine));
        assert!(calm.evaluate(10 * MINUTE, &[fine]).is_empty());
    }

    #[test]
    fn a_target_that_goes_away_resolves_its_alerts() {
        let mut alerts = Alerts::new(default_rules());
        alerts.evaluate(0, &[target("ui", false)]);
        alerts.evaluate(MINUTE, &[target("ui", false)]);
        assert_eq!(
            states(&alerts.evaluate(2 * MINUTE, &[])),
            [("RoleNotReady", "resolved")]
        );
    }
}
