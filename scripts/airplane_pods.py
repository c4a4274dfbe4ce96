#!/usr/bin/env python3
"""Turns the rendered airplane overlay into what Debian's `podman kube play` (4.3) runs.

Usage: airplane_pods.py RENDERED.yaml SECRETS_DIR OUT_DIR [DATA_DIR]

Podman 4.3 plays Pods, Deployments and ConfigMaps; it has no StatefulSet, Job, Service, Ingress,
NetworkPolicy or PodDisruptionBudget, and reads `secretKeyRef` from its own secret store. So, with
nothing about the workloads changed:
- the StatefulSet becomes one Deployment per pod (`collector-0`…), whose `SCOPEHUB_SHARD` (the pod
  name in Kubernetes) is written in;
- the migrate Job becomes a Pod (`migrate.yaml`), played and waited for first;
- each `secretKeyRef` is filled from SECRETS_DIR/<secret>/<key> (made by `make airplane`, never
  committed), or from a Secret in the rendered output (airplane's database location); an optional
  one that is missing is left out;
- declared ports go (on the host network podman refuses port mappings; probes get the number);
- objects podman cannot play are left out (they matter on a cluster, not on one machine);
- with DATA_DIR, the overlay's host folder for the SQLite file is that folder instead (a test's
  own, for example).
Writes OUT_DIR/migrate.yaml and OUT_DIR/roles.yaml.
"""

import base64
import copy
import os
import sys

import yaml


def secret_value(name, key, secrets_dir, rendered_secrets):
    path = os.path.join(secrets_dir, name, key)
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    secret = rendered_secrets.get(name)
    if secret:
        if key in secret.get("stringData", {}):
            return secret["stringData"][key]
        if key in secret.get("data", {}):
            return base64.b64decode(secret["data"][key]).decode()
    return None


AIRPLANE_DATA = "/var/lib/scopehub-airplane"


def move_data(pod_spec, data_dir):
    for volume in pod_spec.get("volumes", []):
        host = volume.get("hostPath")
        if data_dir and host and host.get("path") == AIRPLANE_DATA:
            host["path"] = data_dir


def fill_env(pod_spec, secrets_dir, rendered_secrets, pod_name):
    for c in pod_spec["containers"]:
        env = []
        for e in c.get("env", []):
            source = e.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = secret_value(ref["name"], ref["key"], secrets_dir, rendered_secrets)
                if value is None:
                    if ref.get("optional"):
                        continue
                    sys.exit(f"airplane: no value for Secret {ref['name']} key {ref['key']}")
                env.append({"name": e["name"], "value": value})
            elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env.append({"name": e["name"], "value": pod_name})
            else:
                env.append(e)
        if env:
            c["env"] = env
    # On the host network podman refuses port mappings, and it maps every declared port: the
    # ports go, and the probes name their port by number.
    for c in pod_spec["containers"]:
        named = {p["name"]: p["containerPort"] for p in c.pop("ports", []) if "name" in p}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c.get(probe, {}).get("httpGet")
            if get and get.get("port") in named:
                get["port"] = named[get["port"]]
    # Kubernetes-only fields podman 4.3 does not know.
    pod_spec.pop("enableServiceLinks", None)
    pod_spec.pop("automountServiceAccountToken", None)


def main(rendered, secrets_dir, out_dir, data_dir=None):
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
    roles, migrate = list(config_maps), None
    for d in docs:
        if d["kind"] == "Deployment" and d["spec"].get("replicas", 1) > 0:
            d = copy.deepcopy(d)
            fill_env(d["spec"]["template"]["spec"], secrets_dir, secrets, d["metadata"]["name"])
            move_data(d["spec"]["template"]["spec"], data_dir)
            roles.append(d)
        elif d["kind"] == "StatefulSet":
            for ordinal in range(d["spec"].get("replicas", 1)):
                name = f'{d["metadata"]["name"]}-{ordinal}'
                one = {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "labels": d["metadata"].get("labels", {})},
                    "spec": {
                        "replicas": 1,
                        "selector": d["spec"]["selector"],
                        "template": copy.deepcopy(d["spec"]["template"]),
                    },
                }
                fill_env(one["spec"]["template"]["spec"], secrets_dir, secrets, name)
                move_data(one["spec"]["template"]["spec"], data_dir)
                roles.append(one)
        elif d["kind"] == "Job":
            template = copy.deepcopy(d["spec"]["template"])
            fill_env(template["spec"], secrets_dir, secrets, d["metadata"]["name"])
            move_data(template["spec"], data_dir)
            template["spec"]["restartPolicy"] = "Never"
            migrate = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": d["metadata"]["name"], "labels": template["metadata"].get("labels", {})},
                "spec": template["spec"],
            }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "roles.yaml"), "w") as f:
        yaml.safe_dump_all(roles, f, sort_keys=False)
    if migrate:
        with open(os.path.join(out_dir, "migrate.yaml"), "w") as f:
            yaml.safe_dump_all(config_maps + [migrate], f, sort_keys=False)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    main(*sys.argv[1:])
