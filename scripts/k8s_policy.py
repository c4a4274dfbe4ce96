#!/usr/bin/env python3
"""The rules every rendered overlay of k8s/ keeps, and what may differ between overlays.

Usage: k8s_policy.py AIRPLANE.yaml STAGING.yaml PRODUCTION.yaml   (kubectl kustomize output)
       k8s_policy.py --self-test AIRPLANE.yaml STAGING.yaml PRODUCTION.yaml

Policy (each overlay): every container has CPU and memory requests and limits and the hardened
security context; every long-running container has startup, liveness and readiness probes; pods run
as non-root with seccomp RuntimeDefault; Deployments roll with maxUnavailable 0 and maxSurge 1; the
grace period covers the shutdown delay and drain; every workload has a PodDisruptionBudget (Jobs
aside) and a NetworkPolicy of its own besides the default deny; Secrets are never committed, except
airplane's database location.

Invariant (between overlays): the same objects, the same image name, and differences only in the
allowed fields (replicas, resources, namespace, image tag, settings values, the Ingress host, and
airplane's host network, ports, data volume).

--self-test breaks the manifests in each of those ways and checks that every break is caught.
"""

import copy
import sys

import yaml

GRACE_NEEDED = 5 + 30  # --shutdown-delay + --shutdown-timeout defaults, in seconds
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def component(obj):
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component")


def policy_errors(docs, overlay):
    errors = []
    err = errors.append
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    if not workloads:
        err("no workloads")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    if not any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} for p in policies):
        err("no default-deny NetworkPolicy for ingress and egress")
    for w in workloads:
        name = f'{w["kind"]}/{w["metadata"]["name"]}'
        spec = pod_spec(w)
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("runAsNonRoot") is not True:
            err(f"{name}: pod does not set runAsNonRoot")
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            err(f"{name}: pod seccomp profile is not RuntimeDefault")
        long_running = w["kind"] != "Job"
        if long_running and spec.get("terminationGracePeriodSeconds", 30) <= GRACE_NEEDED:
            err(f"{name}: terminationGracePeriodSeconds does not exceed shutdown delay + drain ({GRACE_NEEDED} s)")
        for c in spec.get("containers", []):
            cname = f'{name} container {c["name"]}'
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        err(f"{cname}: no {r} {kind}")
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                err(f"{cname}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                err(f"{cname}: privilege escalation allowed")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                err(f"{cname}: capabilities not all dropped")
            if long_running:
                errors.extend(f"{cname}: {e}" for e in metrics_port_errors(w, c, docs))
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if probe not in c:
                        err(f"{cname}: no {probe}")
                if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                    err(f"{cname}: readiness is not /readyz")
                if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                    err(f"{cname}: liveness is not /healthz")
        if w["kind"] == "Deployment":
            ru = w["spec"].get("strategy", {}).get("rollingUpdate", {})
            if w["spec"].get("strategy", {}).get("type") != "RollingUpdate" or ru.get("maxUnavailable") != 0 or ru.get("maxSurge") != 1:
                err(f"{name}: not RollingUpdate with maxUnavailable 0, maxSurge 1")
        comp = component(w)
        covered = [
            p for p in policies
            if p["spec"].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == comp
        ]
        if not covered:
            err(f"{name}: no NetworkPolicy of its own (component {comp})")
        if long_running and not any(
            p["spec"]["selector"].get("matchLabels", {}).get("app.kubernetes.io/component") == comp for p in pdbs
        ):
            err(f"{name}: no PodDisruptionBudget")
    for s in (d for d in docs if d["kind"] == "Secret"):
        allowed = overlay == "airplane" and s["metadata"]["name"] == "scopehub-database"
        if not allowed:
            err(f'Secret/{s["metadata"]["name"]}: Secrets with values are never committed')
    # Only the frontend takes traffic from outside the namespace.
    for p in policies:
        comp = p["spec"].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for rule in p["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer and comp != "frontend":
                    err(f'NetworkPolicy/{p["metadata"]["name"]}: {comp} takes traffic from another namespace')
    return errors


def metrics_port_errors(workload, container, docs):
    """/metrics is on the operational port only (SCOPEHUB_OPS_LISTEN, the container port named
    `ops`), which Prometheus' annotation names and no Service exposes; the public port answers it
    404."""
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    ops = ports.get("ops")
    if ops is None or ops == ports.get("http"):
        return ["no port named ops apart from http (/metrics would be on the public port)"]
    errors = []
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    settings = next((d.get("data", {}) for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "scopehub-settings"), {})
    listen = env.get("SCOPEHUB_OPS_LISTEN") or settings.get("SCOPEHUB_OPS_LISTEN") or ""
    if not listen.endswith(f":{ops}"):
        errors.append(f"SCOPEHUB_OPS_LISTEN {listen!r} is not its ops port {ops}")
    annotations = workload["spec"]["template"].get("metadata", {}).get("annotations", {})
    if annotations.get("prometheus.io/port") != str(ops):
        errors.append(f"prometheus.io/port is not its ops port {ops}")
    for svc in (d for d in docs if d["kind"] == "Service"):
        for p in svc["spec"].get("ports", []):
            if p.get("targetPort") in ("ops", ops):
                errors.append(f'Service/{svc["metadata"]["name"]} exposes the operational port')
    return errors


def image_name(image):
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def normalise(obj, overlay):
    """The object with every field an overlay may change taken out."""
    o = copy.deepcopy(obj)
    o["metadata"].pop("namespace", None)
    kind = o["kind"]
    if kind == "ConfigMap":
        o["data"] = sorted(o.get("data", {}))
    if kind == "Ingress":
        for rule in o["spec"].get("rules", []):
            rule.pop("host", None)
    if kind in WORKLOADS:
        o["spec"].pop("replicas", None)
        tmpl = o["spec"]["template"]
        tmpl.get("metadata", {}).get("annotations", {}).pop("prometheus.io/port", None)
        spec = tmpl["spec"]
        if overlay == "airplane":
            spec.pop("hostNetwork", None)
            spec.pop("volumes", None)
        for c in spec["containers"]:
            c.pop("resources", None)
            c["image"] = image_name(c["image"])
            if overlay == "airplane":
                c.pop("volumeMounts", None)
                c["env"] = [e for e in c.get("env", []) if e["name"] not in ("SCOPEHUB_LISTEN", "SCOPEHUB_OPS_LISTEN")] or None
                if c["env"] is None:
                    c.pop("env")
                for port in c.get("ports", []):
                    port.pop("containerPort", None)
    return o


def invariant_errors(overlays):
    errors = []
    keyed = {
        name: {(d["kind"], d["metadata"]["name"]): d for d in docs}
        for name, docs in overlays.items()
    }
    reference_name = "production"
    reference = keyed[reference_name]
    for name, objs in keyed.items():
        extra = set(objs) - set(reference) - ({("Secret", "scopehub-database")} if name == "airplane" else set())
        missing = set(reference) - set(objs)
        for k in sorted(extra):
            errors.append(f"{name}: {k[0]}/{k[1]} is not in {reference_name}")
        for k in sorted(missing):
            errors.append(f"{name}: lacks {k[0]}/{k[1]}")
        for k in sorted(set(objs) & set(reference)):
            # What the compared overlay may change is left out on both sides.
            if normalise(objs[k], name) != normalise(reference[k], name):
                errors.append(f"{name}: {k[0]}/{k[1]} differs from {reference_name} beyond the allowed fields")
    images = {
        image_name(c["image"])
        for docs in overlays.values()
        for d in docs if d["kind"] in WORKLOADS
        for c in pod_spec(d)["containers"]
    }
    if len(images) != 1:
        errors.append(f"overlays use several image names: {sorted(images)}")
    return errors


def check(overlays):
    errors = []
    for name, docs in overlays.items():
        errors += [f"{name}: {e}" for e in policy_errors(docs, name)]
    return errors + invariant_errors(overlays)


def workload(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def self_test(overlays):
    """Each break below must be caught; the manifests as they are must pass."""
    breaks = {
        "a probe removed": lambda o: pod_spec(workload(o["staging"], "Deployment", "users"))["containers"][0].pop("readinessProbe"),
        "a limit removed": lambda o: pod_spec(workload(o["production"], "StatefulSet", "collector"))["containers"][0]["resources"].pop("limits"),
        "a writable root": lambda o: pod_spec(workload(o["airplane"], "Deployment", "ui"))["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
        "a role without its NetworkPolicy": lambda o: o["staging"].remove(workload(o["staging"], "NetworkPolicy", "ui")),
        "maxUnavailable 1": lambda o: workload(o["production"], "Deployment", "frontend")["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable=1),
        "another image name": lambda o: pod_spec(workload(o["staging"], "Deployment", "ui"))["containers"][0].update(image="example.com/other:1"),
        "a committed Secret": lambda o: o["production"].append({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "scopehub-internal"}, "data": {"internal-secret": "eA=="}}),
        "a different command": lambda o: pod_spec(workload(o["staging"], "Deployment", "users"))["containers"][0].update(args=["serve"]),
        "a workload only in one overlay": lambda o: o["airplane"].remove(workload(o["airplane"], "Deployment", "monitoring")),
        "a short grace period": lambda o: pod_spec(workload(o["staging"], "StatefulSet", "collector")).update(terminationGracePeriodSeconds=30),
        "metrics scraped on the public port": lambda o: workload(o["staging"], "Deployment", "frontend")["spec"]["template"]["metadata"]["annotations"].update({"prometheus.io/port": "4040"}),
        "an operational listener on another port": lambda o: next(e for e in pod_spec(workload(o["airplane"], "Deployment", "users"))["containers"][0]["env"] if e["name"] == "SCOPEHUB_OPS_LISTEN").update(value="127.0.0.1:4059"),
        "a Service exposing the operational port": lambda o: workload(o["production"], "Service", "frontend")["spec"]["ports"][0].update(targetPort="ops"),
        "a role open to other namespaces": lambda o: workload(o["production"], "NetworkPolicy", "users")["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}}),
    }
    failures = []
    base = check(overlays)
    if base:
        failures.append(f"the manifests as they are fail: {base}")
    for what, breaking in breaks.items():
        broken = copy.deepcopy(overlays)
        breaking(broken)
        if not check(broken):
            failures.append(f"not caught: {what}")
    return failures


def main(argv):
    self_testing = argv[:1] == ["--self-test"]
    paths = argv[1:] if self_testing else argv
    if len(paths) != 3:
        sys.exit(__doc__)
    overlays = dict(zip(("airplane", "staging", "production"), (load(p) for p in paths)))
    problems = self_test(overlays) if self_testing else check(overlays)
    for p in problems:
        print(f"k8s: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("k8s: self-test passed: every break is caught" if self_testing else "k8s: policy and invariant hold for airplane, staging and production")


if __name__ == "__main__":
    main(sys.argv[1:])
