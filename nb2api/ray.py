"""Serve a notebook's app on Ray Serve: replicas on one machine or across a cluster.

:func:`build` is a Ray Serve application builder, for ``serve run nb2api.ray:build
notebook=/abs/path.ipynb num_replicas=2`` and for the ``import_path`` of a Serve config
(:func:`config_text` writes one). It reads the notebook once, where the application is built, and
ships its text, without saved outputs, to the replicas; each replica builds its own FastAPI app
from that text with :func:`nb2api.create_app`, so no FastAPI app is ever pickled and the nodes
need no copy of the notebook file (they do need nb2api and the packages the notebook imports).

Ray is an optional dependency (``pip install "nb2api[ray]"``); this module imports it only inside
the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .load import parse_notebook, without_outputs
from .settings import Settings

# Where a local cluster is started, Ray must keep its own traffic on loopback: with this unset,
# Ray on Linux picks the machine's outward address for its processes even on a single machine.
# Ray reads it when it is first imported, so it is set before that.
LOCAL_CLUSTER_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class RayArgs(BaseModel):
    """The arguments of :func:`build`, as ``serve run`` passes them or a Serve config holds them."""

    model_config = ConfigDict(extra="forbid")

    notebook: Path = Field(description="The notebook; absolute, as seen where the app is built.")
    name: str | None = Field(None, description="Deployment name [default: the notebook's name].")
    num_replicas: int | None = Field(None, ge=1, description="A fixed number of replicas.")
    min_replicas: int | None = Field(None, ge=0, description="Autoscaling: fewest replicas.")
    max_replicas: int | None = Field(None, ge=1, description="Autoscaling: most replicas.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for each replica.")
    max_ongoing_requests: int = Field(
        100, ge=1, description="Requests one replica handles at once (its thread pool bounds work)."
    )
    settings: Settings = Field(
        default_factory=Settings, description="nb2api settings for each replica (debug, ...)."
    )

    @model_validator(mode="after")
    def _check(self) -> RayArgs:
        autoscaling = self.min_replicas is not None or self.max_replicas is not None
        if autoscaling and self.num_replicas is not None:
            raise ValueError("give num_replicas, or min_replicas/max_replicas, not both")
        if autoscaling:
            low = self.min_replicas if self.min_replicas is not None else 1
            high = self.max_replicas if self.max_replicas is not None else max(low, 1)
            if high < max(low, 1):
                raise ValueError(f"max_replicas ({high}) is below min_replicas ({low})")
        return self

    def deployment_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "name": self.name or _deployment_name(self.notebook.stem),
            "ray_actor_options": {"num_cpus": self.num_cpus},
            "max_ongoing_requests": self.max_ongoing_requests,
        }
        if self.min_replicas is not None or self.max_replicas is not None:
            low = self.min_replicas if self.min_replicas is not None else 1
            high = self.max_replicas if self.max_replicas is not None else max(low, 1)
            options["autoscaling_config"] = {"min_replicas": low, "max_replicas": high}
        else:
            options["num_replicas"] = self.num_replicas or 1
        return options


def build(args: RayArgs | dict[str, Any]):
    """The Ray Serve application for a notebook: one ingress deployment serving its FastAPI app.

    ``args`` is a :class:`RayArgs` or a plain dict of its fields (what ``serve run`` and a Serve
    config pass). Raises :class:`nb2api.NotebookError` when the notebook cannot be read or parsed;
    errors in running its cells surface when the replicas start.
    """
    from ray import serve

    args = args if isinstance(args, RayArgs) else RayArgs.model_validate(args)
    path = args.notebook.expanduser().resolve()
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    if text is None:
        from .errors import NotebookReadError

        raise NotebookReadError("no such notebook file", path=str(path))
    parse_notebook(text, path)  # fail here, once, on a file that is not a servable notebook
    text = without_outputs(text)  # a saved plot or table would be shipped to every replica
    ingress = serve.ingress(replica_app_builder(text, str(path), args.settings))()
    return serve.deployment(**args.deployment_options())(ingress).bind()


def replica_app_builder(text: str, path: str, settings: Settings) -> Callable[[], Any]:
    """A function, shipped to each replica with the notebook's text, that builds the app there."""

    def build_notebook_app():
        _keep_replica_on_loopback()
        return notebook_app(text, path, settings)

    return build_notebook_app


def notebook_app(text: str, path: str, settings: Settings):
    """The FastAPI app for a notebook given as text; ``path`` names it and sets its folder."""
    from .load import load_parsed
    from .serve import create_app

    where = Path(path)
    if not where.parent.is_dir():  # a node that has no copy of the notebook's folder
        where = Path.cwd() / where.name
    return create_app(load_parsed(parse_notebook(text, where)), settings)


def _keep_replica_on_loopback() -> None:
    """On a loopback-only node, bind the replica's internal gRPC server to 127.0.0.1.

    Ray Serve (2.5x) binds it on every interface (``[::]:0``) whatever the node's address; on a
    node whose Ray address is 127.0.0.1 only local processes can use it, so bind it there. Runs in
    the replica, before Serve starts that server; on any other node Ray's choice stands.
    """
    try:
        import ray
        from ray.serve._private import replica
    except ImportError:
        return
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "nb2api_loopback", False):
        return
    if ray.util.get_node_ip_address() != "127.0.0.1":
        return

    def add_port(server, address: str):
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.removeprefix("[::]:")
        return original(server, address)

    add_port.nb2api_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port


def config_text(args: RayArgs, *, app_name: str | None = None, route_prefix: str = "/",
                host: str = "127.0.0.1", port: int = 8000) -> str:
    """A Ray Serve config (YAML) for ``serve deploy`` or ``serve run`` of ``args``."""
    fields = args.model_dump(mode="json", exclude_defaults=True, exclude={"settings"})
    # The token never goes into a file: replicas read it from NB2API_TOKEN where they run.
    settings = args.settings.model_dump(mode="json", exclude_defaults=True, exclude={"token"})
    if settings:
        fields["settings"] = settings
    fields["notebook"] = str(args.notebook.expanduser().resolve())
    name = app_name or _deployment_name(args.notebook.stem)
    # JSON scalars and flow collections are valid YAML, which keeps PyYAML out of nb2api.
    lines = [
        f"# Ray Serve config for {args.notebook.name}, written by nb2api.",
        "# Deploy it on a running cluster with: serve deploy <this file>",
        "# Every node needs nb2api and the packages the notebook imports; the notebook file is",
        "# read where the application is built (the head node), at the absolute path below.",
        "http_options:",
        f"  host: {json.dumps(host)}  # 0.0.0.0 to take traffic from other machines",
        f"  port: {port}",
        "applications:",
        f"  - name: {json.dumps(name)}",
        f"    route_prefix: {json.dumps(route_prefix)}",
        "    import_path: nb2api.ray:build",
        "    args:",
        *(f"      {key}: {json.dumps(value)}" for key, value in fields.items()),
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def local_cluster(*, address: str | None = None, num_cpus: int | None = None,
                  host: str = "127.0.0.1", port: int = 8000) -> Iterator[str]:
    """Start a local Ray cluster (or join ``address``) and Serve; shut both down on exit.

    Yields the folder Ray keeps its session files in. A local cluster keeps every socket on
    loopback and leaves nothing in the home folder. Inside the block SIGTERM raises
    ``KeyboardInterrupt``, as Ctrl-C does, so that either one unwinds through the shutdown below.
    """
    temp_dir = None
    if address is None:
        for key, value in LOCAL_CLUSTER_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        # A short path: Ray's unix sockets live under it and their paths are limited in length.
        temp_dir = tempfile.mkdtemp(prefix="nb2api-ray-", dir="/tmp" if os.name == "posix"
                                    else None)
    import ray
    from ray import serve

    try:
        with _sigterm_interrupts():
            if address is None:
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    _temp_dir=temp_dir,
                    _node_ip_address="127.0.0.1",
                )
            else:
                ray.init(address=address, log_to_driver=False)
            # ray.init installs its own SIGTERM handlers (one of them aborts the process, which
            # skips every cleanup): take SIGTERM back once it has returned.
            _interrupt_on_sigterm()
            try:
                serve.start(http_options={"host": host, "port": port})
                yield temp_dir or ""
            finally:
                _shutdown(serve, ray, local=address is None)
    finally:
        if temp_dir:
            _remove_session_folder(temp_dir)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the block (main thread only); restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    _interrupt_on_sigterm()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt_on_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _shutdown(serve: Any, ray: Any, *, local: bool) -> None:
    """Stop Serve and disconnect; a second Ctrl-C or SIGTERM meanwhile is not let in.

    On a local cluster ``ray.shutdown`` ends every Ray process, replicas included, so Serve's
    graceful drain (seconds per replica) is skipped there; on a joined cluster the app must be
    taken down properly, since the cluster outlives this process.
    """
    interrupts = [signal.SIGINT, signal.SIGTERM]
    main = threading.current_thread() is threading.main_thread()
    previous = [signal.getsignal(s) for s in interrupts] if main else []
    if main:
        for s in interrupts:
            signal.signal(s, signal.SIG_IGN)
    try:
        if not local:
            serve.shutdown()
    finally:
        try:
            ray.shutdown()
        finally:
            for s, handler in zip(interrupts, previous, strict=False):
                signal.signal(s, handler)


def _remove_session_folder(temp_dir: str, timeout: float = 10.0) -> None:
    """Remove Ray's session folder; its processes may still write logs while they exit."""
    import shutil

    deadline = time.monotonic() + timeout
    while True:
        shutil.rmtree(temp_dir, ignore_errors=True)
        time.sleep(0.2)
        if not os.path.exists(temp_dir) or time.monotonic() > deadline:
            return


def run(args: RayArgs, *, app_name: str | None = None, route_prefix: str = "/") -> float:
    """Deploy ``args`` on the connected cluster and wait until it serves; returns the seconds."""
    from ray import serve

    started = time.perf_counter()
    serve.run(build(args), name=app_name or _deployment_name(args.notebook.stem),
              route_prefix=route_prefix)
    return time.perf_counter() - started


def _deployment_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or "notebook"
