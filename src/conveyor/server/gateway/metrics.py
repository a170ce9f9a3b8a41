"""Prometheus metrics, in a registry of the app's own (several apps may live in one process).

Gauges are read from the store at scrape time, into a registry made for that scrape: a
workspace's token sees its own queues only, an operator token every workspace's (DESIGN A13).
The two histograms are fed from terminal tasks this gateway process renders (status reads,
lists, subscriptions), each task once: they describe the tasks the gateway's users looked at,
not every task the system ran. They mix workspaces, so only an operator sees them.
"""

from __future__ import annotations

from collections import OrderedDict

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from conveyor.clock import from_us
from conveyor.server.store.base import Store
from conveyor.server.store.records import TaskRecord, Workspace
from conveyor.tasks import TaskStatus, is_terminal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How many task ids are remembered to observe each task once.
_SEEN_LIMIT = 100_000
_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.duration = Histogram(
            "conveyor_task_duration_seconds", "started_at to ended_at of finished tasks.",
            buckets=_BUCKETS, registry=self.registry,
        )
        self.pickup = Histogram(
            "conveyor_task_pickup_latency_seconds", "created_at to started_at of finished tasks.",
            buckets=_BUCKETS, registry=self.registry,
        )
        self._seen: OrderedDict[str, None] = OrderedDict()

    def observe_task(self, task: TaskRecord) -> None:
        """Feed the histograms with a terminal task, once per task id."""
        if not is_terminal(task.status) or task.id in self._seen:
            return
        self._seen[task.id] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)
        if task.started_at is not None:
            self.pickup.observe(max(0.0, from_us(task.started_at - task.created_at)))
            if task.ended_at is not None:
                self.duration.observe(max(0.0, from_us(task.ended_at - task.started_at)))

    async def render(self, store: Store, workspace: Workspace | None) -> bytes:
        """The exposition text: ``workspace``'s queues, or with None (an operator) every
        workspace's queues and the histograms."""
        registry = CollectorRegistry(auto_describe=True)
        labels = ["workspace", "queue"]
        tasks = Gauge("conveyor_tasks", "Tasks by status.", [*labels, "status"],
                      registry=registry)
        queue_depth = Gauge("conveyor_queue_depth", "Tasks waiting to run (PENDING + RETRY).",
                            labels, registry=registry)
        containers = Gauge("conveyor_active_containers", "Live containers.", labels,
                           registry=registry)
        if workspace is not None:
            workspaces = [workspace]
        else:
            ids = sorted({stub.workspace_id for stub in await store.list_stubs()})
            found = [await store.get_workspace(workspace_id) for workspace_id in ids]
            workspaces = [w for w in found if w is not None]
        for ws in workspaces:
            for summary in await store.queue_summaries(ws.id):
                queue_depth.labels(ws.name, summary.name).set(summary.queue_depth)
                containers.labels(ws.name, summary.name).set(summary.active_containers)
                for status in TaskStatus:
                    count = summary.counts.get(status, 0)
                    tasks.labels(ws.name, summary.name, status.value).set(count)
        text = generate_latest(registry)
        if workspace is None:
            text += generate_latest(self.registry)
        return text
