"""Kubernetes manifests for an exported project (``nb2api export --k8s``).

A Deployment of the project's image with the three probes (start-up and liveness on
``/healthz``, readiness on ``/readyz``), the start-up probe's patience sized from the time the
notebook's cells took when the export ran them, resource requests from the memory the export
process held with the notebook loaded, Prometheus scrape annotations for ``/metrics``, and the
token as a reference to a Secret (never its value); a Service; a HorizontalPodAutoscaler on CPU;
a PodDisruptionBudget. Written as YAML without a YAML library: JSON scalars are YAML scalars.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

PORT = 8000  # where the Dockerfile's uvicorn listens
PROBE_PERIOD = 5  # seconds between start-up probes
CONTAINER_USER = 10001  # the Dockerfile's unprivileged user
_MI = 1024 * 1024
MIN_MEMORY = 256 * _MI


def peak_memory() -> int:
    """The most memory (resident, in bytes) this process has held; 0 where unknown.

    On Linux that is the ``VmHWM`` of ``/proc/self/status``: ``getrusage``'s ``ru_maxrss``
    also counts what the process held before its ``exec``, that is the size of whatever
    started it (a Jupyter server, a test runner)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts KiB


def resource_name(stem: str) -> str:
    """A name every kind takes (an RFC 1035 label, 63 characters at most, with room for the
    ``-token`` suffix): lower-case letters, digits and dashes, starting with a letter."""
    name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-") or "notebook"
    if not name[0].isalpha():
        name = f"api-{name}"
    return name[:50].rstrip("-")


def startup_failures(load_seconds: float) -> int:
    """How many failed start-up probes, ``PROBE_PERIOD`` apart, the pod gets before it is
    restarted: three times the measured setup time, plus 30 s for the interpreter and imports
    (a cold node, a slower CPU)."""
    return max(6, math.ceil((3 * load_seconds + 30) / PROBE_PERIOD))


def memory_request(peak: int) -> int:
    """Bytes to request: the export's peak with a quarter more, at least 256 MiB, in MiB."""
    return max(MIN_MEMORY, math.ceil(peak * 1.25 / _MI) * _MI)


def manifests(stem: str, load_seconds: float, peak: int) -> dict[str, dict[str, Any]]:
    """The manifests, by file name under ``k8s/``."""
    name = resource_name(stem)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "nb2api"}
    selector = {"app.kubernetes.io/name": name}
    memory = memory_request(peak)

    def probe(path: str, period: int, failures: int, timeout: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
                "timeoutSeconds": timeout, "failureThreshold": failures}

    container = {
        "name": "api",
        "image": f"{name}:latest",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{
            # The token's value lives in the Secret, created apart (see the README).
            "name": "API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": f"{name}-token", "key": "token"}},
        }],
        "resources": {
            "requests": {"cpu": "250m", "memory": f"{memory // _MI}Mi"},
            "limits": {"memory": f"{2 * memory // _MI}Mi"},
        },
        "startupProbe": probe("/healthz", PROBE_PERIOD, startup_failures(load_seconds), 3),
        "livenessProbe": probe("/healthz", 10, 3, 5),
        "readinessProbe": probe("/readyz", 5, 2, 3),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": CONTAINER_USER,
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"nb2api.io/setup-seconds": f"{load_seconds:.2f}"}},
        "spec": {
            # No replicas: the autoscaler sets them, and a re-apply must not undo its work.
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"prometheus.io/scrape": "true",
                                    "prometheus.io/port": str(PORT),
                                    "prometheus.io/path": "/metrics"},
                },
                "spec": {
                    "containers": [container],
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": "http",
                            "protocol": "TCP"}]},
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }
    disruption = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}},
    }
    return {"deployment.yaml": deployment, "service.yaml": service, "hpa.yaml": autoscaler,
            "pdb.yaml": disruption}


def kubernetes_manifests(stem: str, load_seconds: float, peak: int) -> dict[str, str]:
    """The files ``nb2api export --k8s`` writes: ``k8s/<kind>.yaml``."""
    header = (f"# Written by nb2api export --k8s for {resource_name(stem)}; "
              f"apply with: kubectl apply -f k8s/\n")
    return {f"k8s/{file}": header + to_yaml(manifest)
            for file, manifest in manifests(stem, load_seconds, peak).items()}


def kubernetes_readme(stem: str) -> str:
    """The exported README's section on deploying to Kubernetes."""
    name = resource_name(stem)
    return f"""
## On Kubernetes

`k8s/` holds a Deployment (probes on `/healthz` and `/readyz`, a start-up probe sized from the
time the cells took at export, resource requests, Prometheus scrape annotations for `/metrics`),
a Service, a HorizontalPodAutoscaler and a PodDisruptionBudget. Build and push the image, set
`image:` in `k8s/deployment.yaml` to it, create the token's Secret, then apply:

```
docker build -t registry.example.com/{name}:1 .
docker push registry.example.com/{name}:1
kubectl create secret generic {name}-token --from-literal=token="$(openssl rand -hex 32)"
kubectl apply -f k8s/
kubectl rollout status deployment/{name}
```

On a local cluster (kind, minikube), `docker build -t {name}:latest .` and load the image into
it (`kind load docker-image {name}:latest`) instead of pushing: the manifests name that image.

Callers send `Authorization: Bearer <token>`; the probes, the docs and `/metrics` stay open
inside the cluster, so keep `/metrics` off a public ingress.
"""


_PLAIN_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-/]*$")
# Words YAML 1.1 readers (PyYAML) take for booleans or null: quoted when they are keys.
_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "empty"})


# Characters YAML does not take raw in a double-quoted scalar (C1 controls, line separators,
# non-characters), which JSON leaves raw without ensure_ascii; ensure_ascii would write an
# astral character as a surrogate pair, which YAML readers do not join.
_RAW_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def _scalar(value: Any) -> str:
    """A YAML flow scalar: JSON's, with a string double-quoted as YAML reads it back."""
    if not isinstance(value, str):
        return json.dumps(value)
    return _RAW_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(value, ensure_ascii=False))


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and JSON scalars (strings always quoted)."""
    return "\n".join(_lines(value, indent)) + "\n"


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            plain = _PLAIN_KEY.match(key) and key.lower() not in _WORDS
            label = key if plain else _scalar(key)
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{label}:")
                lines += _lines(item, indent + 2)
            else:
                lines.append(f"{pad}{label}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = _lines(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines
