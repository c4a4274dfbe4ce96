#!/usr/bin/env bash
# `make k8s-check` (part of `make test`): renders every overlay of k8s/ with kubectl's kustomize,
# validates every object against Kubernetes 1.32 with kubernetes-validate --strict (a misspelt
# field fails), then checks the policy and the invariant between overlays (scripts/k8s_policy.py),
# and that the policy check catches what it should (its self-test).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.32.0}
skip() {
    if [ "${REQUIRE_K8S:-0}" = 1 ]; then
        echo "k8s-check: REQUIRE_K8S=1 but $1" >&2
        exit 1
    fi
    echo "WARNING: skipping the manifest checks: $1" >&2
    exit 0
}
command -v kubectl >/dev/null 2>&1 || skip "kubectl is not installed"
command -v kubernetes-validate >/dev/null 2>&1 || skip "kubernetes-validate is not installed (pip install kubernetes-validate)"
python3 -c 'import yaml' 2>/dev/null || skip "PyYAML is not installed"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in airplane staging production; do
    kubectl kustomize "k8s/overlays/$overlay" >"$out/$overlay.yaml"
    kubernetes-validate --strict --quiet -k "$KUBERNETES_VERSION" "$out/$overlay.yaml"
    echo "k8s-check: $overlay renders and validates against Kubernetes $KUBERNETES_VERSION ($(grep -c '^kind:' "$out/$overlay.yaml") objects)"
done
python3 scripts/k8s_policy.py "$out/airplane.yaml" "$out/staging.yaml" "$out/production.yaml"
python3 scripts/k8s_policy.py --self-test "$out/airplane.yaml" "$out/staging.yaml" "$out/production.yaml"
