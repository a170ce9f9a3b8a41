"""Prometheus metrics, in a registry of the app's own (several apps may live in one process).

Gauges are read from the store at scrape time. The two histograms are fed from terminal
tasks this gateway process renders (status reads, lists, subscriptions), each task once: they
describe the tasks the gateway's users looked at, not every task the system ran.
"""

from __future__ import annotations

from collections import OrderedDict

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from conveyor.clock import from_us
from conveyor.server.store.base import Store
from conveyor.server.store.records import TaskRecord
from conveyor.tasks import TaskStatus, is_terminal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How many task ids are remembered to observe each task once.
_SEEN_LIMIT = 100_000
_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["workspace", "queue"]
        self.tasks = Gauge(
            "conveyor_tasks", "Tasks by status.", [*labels, "status"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "conveyor_queue_depth", "Tasks waiting to run (PENDING + RETRY).", labels,
            registry=self.registry,
        )
        self.containers = Gauge(
            "conveyor_active_containers", "Live containers.", labels, registry=self.registry
        )
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

    async def render(self, store: Store) -> bytes:
        """Refresh the gauges from the store and return the exposition text."""
        workspace_ids = {stub.workspace_id for stub in await store.list_stubs()}
        self.tasks.clear()
        self.queue_depth.clear()
        self.containers.clear()
        for workspace_id in sorted(workspace_ids):
            workspace = await store.get_workspace(workspace_id)
            ws_name = workspace.name if workspace else workspace_id
            for summary in await store.queue_summaries(workspace_id):
                self.queue_depth.labels(ws_name, summary.name).set(summary.queue_depth)
                self.containers.labels(ws_name, summary.name).set(summary.active_containers)
                for status in TaskStatus:
                    count = summary.counts.get(status, 0)
                    self.tasks.labels(ws_name, summary.name, status.value).set(count)
        return generate_latest(self.registry)
