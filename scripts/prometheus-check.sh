#!/usr/bin/env bash
# `make prometheus-check`: k8s/monitoring's alert rules checked and unit-tested with promtool
# (Debian's `prometheus` package), and the Grafana dashboard's queries checked as PromQL (each
# becomes a recording rule that `promtool check rules` parses). Skips with a warning without
# promtool, fails instead with REQUIRE_PROMTOOL=1 (as CI sets).
set -euo pipefail
cd "$(dirname "$0")/../k8s/monitoring"
if ! command -v promtool >/dev/null 2>&1; then
    if [ "${REQUIRE_PROMTOOL:-0}" = 1 ]; then
        echo "prometheus-check: REQUIRE_PROMTOOL=1 but promtool is missing (apt-get install prometheus)" >&2
        exit 1
    fi
    echo "WARNING: promtool missing (apt-get install prometheus): the Prometheus rules are not checked"
    exit 0
fi
promtool check rules rules.yaml
promtool test rules rules_test.yaml
queries=$(mktemp --suffix=.yaml)
trap 'rm -f "$queries"' EXIT
python3 - "$queries" <<'PY'
import json, sys
dashboard = json.load(open("grafana-dashboard.json"))
rules = []
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": target["expr"]})
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
PY
promtool check rules "$queries"
