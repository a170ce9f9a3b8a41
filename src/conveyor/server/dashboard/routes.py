"""The dashboard's route table, added to the gateway's (``routes``)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from conveyor.server.dashboard import live, pages
from conveyor.server.dashboard.session import PREFIX
from conveyor.server.dashboard.session import live as live_route
from conveyor.server.dashboard.session import page as page_route
from conveyor.server.dashboard.session import write as write_route

STATIC = Path(__file__).parent / "static"


async def _home(request: Request) -> Response:
    return RedirectResponse(PREFIX + "/", 307)


_pages = Mount(
    PREFIX,
    routes=[
        Route("/", page_route(pages.queues_page), methods=["GET"]),
        Route("/queues/rows", page_route(pages.queue_rows), methods=["GET"]),
        Route("/tasks", page_route(pages.tasks_page), methods=["GET"]),
        Route("/tasks/{task_id}", page_route(pages.task_page), methods=["GET"]),
        Route("/tasks/{task_id}/detail", page_route(pages.task_detail), methods=["GET"]),
        Route("/signin", pages.signin_form, methods=["GET"]),
        Route("/signin", pages.signin, methods=["POST"]),
        # A POST with the session's CSRF token; a GET answers 405 and signs no one out.
        Route("/signout", pages.signout, methods=["POST"]),
        Route("/live/tasks", live_route(live.subscribe), methods=["GET"]),
        Route("/live/tasks/{task_id}/logs", live_route(live.logs), methods=["GET"]),
        Route("/live/cancel", write_route(live.cancel), methods=["POST"]),
        Route("/live/replay", write_route(live.replay), methods=["POST"]),
        Route("/live/deployments/{stub_id}/{action}", write_route(live.version_action),
              methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ],
)

#: What the gateway's route table adds: ``/dashboard`` itself, then everything under it.
routes: list[BaseRoute] = [Route(PREFIX, _home, methods=["GET"]), _pages]
