#!/usr/bin/env bash
# `make airplane` (up) and `make airplane-down` (down): Airplane Mode in containers. Renders
# k8s/overlays/airplane — the manifests that go to production, at one replica, on the host network
# — and plays it with podman (`podman kube play --network host`) from the image `make image` built.
# The frontend is then at http://127.0.0.1:4040. Needs podman, runc, kubectl and PyYAML.
#
# AIRPLANE_STATE (default target/airplane) holds the rendered and converted manifests and the
# generated internal secret; AIRPLANE_DATA (default the overlay's /var/lib/scopehub-airplane) the
# SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${AIRPLANE_STATE:-target/airplane}
DATA=${AIRPLANE_DATA:-/var/lib/scopehub-airplane}
IMAGE_NAME=ghcr.io/scopehub/scopehub
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
# Debian's podman here: runc, cgroupfs, no default ulimits (checked on these machines).
if [ -z "${CONTAINERS_CONF:-}" ]; then
    export CONTAINERS_CONF=$STATE/containers.conf
    cat >"$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi

# Podman runs liveness probes as healthchecks through systemd timers; without systemd it says so
# for every container, and nothing else is wrong. Its output goes to a file, not a pipe: the
# containers' monitors keep the descriptors they inherit open for as long as they run.
quiet() {
    local log=$STATE/podman.log status=0
    "$@" >"$log" 2>&1 || status=$?
    grep -v "systemd connection" "$log" >&2 || true
    return $status
}
down() {
    for file in roles migrate; do
        if [ -f "$STATE/play/$file.yaml" ]; then
            quiet podman kube down "$STATE/play/$file.yaml" || true
        fi
    done
}

if [ "${1:-up}" = down ]; then
    down
    echo "airplane: stopped"
    exit 0
fi

tag=$(cat target/image/tag 2>/dev/null) || { echo "airplane: no image (make image)" >&2; exit 1; }
# The overlay names the image by the one name every environment uses, at tag "dev".
podman tag "$tag" "$IMAGE_NAME:dev"

kubectl kustomize k8s/overlays/airplane >"$STATE/rendered.yaml"
secret=$STATE/secrets/scopehub-internal/internal-secret
if [ ! -s "$secret" ]; then
    mkdir -p "$(dirname "$secret")"
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$secret")
fi
python3 scripts/airplane_pods.py "$STATE/rendered.yaml" "$STATE/secrets" "$STATE/play" "$DATA"
mkdir -p "$DATA"
chown 65532:65532 "$DATA"

down
# Migrations first, as the Job runs before a rollout on a cluster.
quiet podman kube play --network host "$STATE/play/migrate.yaml"
status=$(podman wait migrate-scopehub)
if [ "$status" != 0 ]; then
    podman logs migrate-scopehub >&2 || true
    echo "airplane: migrations failed" >&2
    exit 1
fi
quiet podman kube play --network host "$STATE/play/roles.yaml"
for _ in $(seq 1 60); do
    if curl -fsS http://127.0.0.1:4040/readyz >/dev/null 2>&1; then
        echo "airplane: Scopehub is running at http://127.0.0.1:4040/ (make airplane-down stops it)"
        echo "airplane: make a site admin with: podman exec users-pod-0-scopehub /scopehub admin create --email you@example.com --database-url sqlite:///data/scopehub.db --public-url http://127.0.0.1:4040/"
        exit 0
    fi
    sleep 1
done
echo "airplane: the frontend did not become ready" >&2
podman ps -a >&2
exit 1
