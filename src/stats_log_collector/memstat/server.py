"""memstat's HTTP face on HTTP_PORT: the dashboard, its JSON API, health, metrics and the logs browser.

The original served the CSV at any path; ``GET /`` still returns it (``curl http://localhost:8099 > file``
keeps working), and everything else lives at a named path. The CSV routes themselves come from the CSV
store (``csv_routes``), so this module only reads the live state (``state``): the latest samples and
poll health (``/healthz``: the loop is not stuck; ``/readyz``: polls succeed). Long downloads share the
app's transfer pool (``transfers``). Why: docs/memstat.md, "The HTTP server".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..metrics_server import metrics_handler
from .console_log import console_tail
from .csv_routes import parse_when
from .logs_browser import LogsBrowser
from .metrics import registry_for
from .sample import Sample
from .series import CHART_FIGURES, Query, process_series_name, series_name
from .state import LiveState
from .transfers import TransferPool, transfers_of
from .vm_figures import VmFigures

STATIC = resources.files("stats_log_collector.memstat") / "static"


def _json_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def sample_json(sample: Sample) -> dict[str, Any]:
    row = dataclasses.asdict(sample)
    row.pop("status_kb")
    row["timestamp"] = _json_time(sample.timestamp)
    return row


_VM_FIELDS = ("namespace", "vm", "pod", "node", "source")


def vms_json(figures: Sequence[VmFigures], samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """``GET /api/vms``: one object per VM (its figures), with its latest samples as ``processes``.

    Sorted by namespace and VM; processes by name and PID. The shape is documented in docs/memstat.md,
    "GET /api/vms".
    """
    processes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sample in sorted(samples, key=lambda s: (s.process, s.pid or 0)):
        row = sample_json(sample)
        for field in _VM_FIELDS:
            row.pop(field)
        processes.setdefault((sample.namespace, sample.vm), []).append(row)
    answer = []
    for vm in sorted(figures, key=lambda f: (f.namespace, f.vm)):
        entry = dataclasses.asdict(vm)
        entry["timestamp"] = _json_time(vm.timestamp)
        entry["processes"] = processes.get((vm.namespace, vm.vm), [])
        answer.append(entry)
    return answer


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log, where a request it cannot parse (a client's garbage, answered 400) is one
    debug line instead of a traceback; anything else (a bug: a 500) keeps its traceback.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            reason = error.message.splitlines()[0] if error.message else ""
            self.logger.debug("unreadable request", extra={"status": error.code, "reason": reason})
            return
        super().log(level, msg, *args, **kwargs)  # type: ignore[arg-type]


def build_app(
    state: LiveState,
    logs_dir: Path,
    add_csv_routes: Callable[[web.Application], None] | None = None,
    transfers: TransferPool | None = None,
) -> web.Application:
    registry = registry_for(state.collector)

    async def healthz(request: web.Request) -> web.Response:
        if (reason := state.not_alive()) is not None:
            return web.Response(status=503, text=f"{reason}\n")
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if (reason := state.not_ready()) is not None:
            return web.Response(status=503, text=f"{reason}\n")
        return web.Response(text="ready\n")

    async def api_vms(request: web.Request) -> web.Response:
        collector = state.collector
        return web.json_response(vms_json(collector.latest_vms, collector.latest))

    async def api_series(request: web.Request) -> web.Response:
        """Per-VM series for the dashboard, from memory: a VM's processes summed per sample, bucket maxima."""
        query = request.query
        now = datetime.now(UTC)
        try:
            since = parse_when(query.get("since", "-1h"), now)
            until = parse_when(query["until"], now) if "until" in query else now
            points = max(10, min(5000, int(query.get("points", "600"))))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        figure = query.get("figure", "rss_bytes")
        if figure not in CHART_FIGURES:
            raise web.HTTPBadRequest(text=f"figure must be one of {', '.join(CHART_FIGURES)}\n")
        if since >= until:
            raise web.HTTPBadRequest(text="since must be before until\n")
        result = state.series.query(
            Query(since.timestamp(), until.timestamp(), points, figure, query.get("vm", ""))
        )
        return web.json_response(
            {
                "figure": figure,
                "label": CHART_FIGURES[figure],
                "times": result.times,
                "series": result.values,
                "complete": state.series.seeded,  # False while the history on disk is still being read
            }
        )

    def known_vm(request: web.Request) -> VmFigures:
        """The VM a ``/vms/<namespace>/<vm>`` path names (``_``: no namespace), among those polled since
        the start (a stopped VM's history stays); the names are only looked up, never used as paths. 404
        for any other."""
        namespace = request.match_info["namespace"]
        namespace = "" if namespace == "_" else namespace
        if (figures := state.last_seen.get((namespace, request.match_info["vm"]))) is None:
            raise web.HTTPNotFound(text="no such VM polled since the start\n")
        return figures

    async def api_vm(request: web.Request) -> web.Response:
        """One VM for its page: its ``/api/vms`` entry, its processes' RSS and its overhead over time."""
        figures = known_vm(request)
        now = datetime.now(UTC)
        try:
            since = parse_when(request.query.get("since", "-1h"), now)
            points = max(10, min(5000, int(request.query.get("points", "600"))))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        if since >= now:
            raise web.HTTPBadRequest(text="since must be in the past\n")
        name = series_name(figures.namespace, figures.vm)
        entry = vms_json(
            [figures],
            [s for s in state.collector.latest if (s.namespace, s.vm) == (figures.namespace, figures.vm)],
        )[0]
        # A VM gone from the latest poll (stopped, or moved out of reach): its last figures and history.
        latest = state.collector.latest_vms
        entry["in_latest_poll"] = bool(latest) and latest[0].timestamp == figures.timestamp
        answer: dict[str, Any] = {"vm": entry}
        window = (since.timestamp(), now.timestamp(), points)
        for key, cache, query in (
            (
                "processes",
                state.process_series,
                Query(*window, "rss_bytes", prefix=process_series_name(figures.namespace, figures.vm, "")),
            ),
            ("overhead", state.series, Query(*window, "overhead_bytes", prefix=name)),
            ("headroom", state.series, Query(*window, "headroom_bytes", prefix=name)),
        ):
            result = cache.query(query)
            # A VM's own figures are named exactly the prefix ("" once cut); a longer name is another VM.
            values = (
                result.values if key == "processes" else {k: v for k, v in result.values.items() if not k}
            )
            answer[key] = {"times": result.times, "series": values}
        # The newest guest console file logs-collector wrote, where LOGS_DIR has one (a thread: gunzip).
        console = await asyncio.to_thread(console_tail, logs_dir, figures.namespace, figures.vm)
        answer["console"] = None if console is None else {"file": console[0], "lines": console[1]}
        return web.json_response(answer)

    async def vm_page(request: web.Request) -> web.Response:
        try:
            known_vm(request)
        except web.HTTPNotFound:
            # No name is echoed back: the page says only that it is not there.
            return web.Response(
                status=404, text=(STATIC / "vm-404.html").read_text(), content_type="text/html"
            )
        return web.Response(text=(STATIC / "vm.html").read_text(), content_type="text/html")

    async def dashboard(request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "dashboard.html").read_text(), content_type="text/html")

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC_FILES:
            raise web.HTTPNotFound()
        return web.FileResponse(Path(str(STATIC / name)))  # the package is installed as files

    app = web.Application(handler_args={"logger": ServerLog(logging.getLogger("aiohttp.server"))})
    transfers_of(app, transfers)  # before the routes that use it take the default
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(registry))
    app.router.add_get("/api/vms", api_vms)
    app.router.add_get("/api/series", api_series)
    app.router.add_get("/api/vms/{namespace}/{vm:.+}", api_vm)
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/vms/{namespace}/{vm:.+}", vm_page)
    app.router.add_get("/static/{name:.+}", static)
    LogsBrowser(logs_dir).add_routes(app)
    if add_csv_routes is not None:
        add_csv_routes(app)
    return app


_STATIC_FILES = frozenset(
    {
        "dashboard.js",
        "dashboard.css",
        "vm.js",
        "vendor/uPlot.iife.min.js",
        "vendor/uPlot.min.css",
        "vendor/uPlot.LICENSE",
    }
)
