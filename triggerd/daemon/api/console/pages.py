"""The console's pages: ``/ui/`` (overview), ``/ui/runs``, ``/ui/runs/{id}``, ``/ui/events``,
and the buttons an operator presses on them.

Server-rendered: every page is a GET whose filters are a plain form, so it reads without
JavaScript. The data is what the JSON API serves (``views.status``, the state file's
runs, the event log), never a second copy of it. A button is a form that POSTs to
``/ui/rules/{name}/pause`` (``resume``) or ``/ui/runs/{id}/stop`` (``replay``), which does
what ``triggerctl`` would and answers with a redirect (303) to the page, which then says
what was done once. Its form must come from the console itself (:func:`_forged`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from triggerd import __version__
from triggerd.durations import parse_since
from triggerd.errors import BackendUnavailable, NotFound, NotReady, TriggerdError
from triggerd.eventlog.schema import LEVELS
from triggerd.runstate import RunState

from ... import views
from ...state import RunRow
from ..access import OPERATOR, operator_name, role_of, same_origin
from ..base import Control, eventlog_of, status_code
from .render import environment

__all__ = ["routes"]

PAGE_SIZE = 50  # runs on one page of /ui/runs
EVENTS_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
LOG_LINES = 2000  # the run page shows the last this many lines; the events page has all
EVENTS_DEPTH = 100_000  # how far back the events page pages (the event log's largest query)
PageSize = Annotated[int | None, Query(ge=1, le=MAX_PAGE_SIZE)]
SAID_COOKIE = "triggerd_said"  # what the last button did, shown once by the next page
FORM_TOKEN = "form_token"  # the hidden field of every form that acts
MAX_SAID = 400  # characters of what a button did, kept in its cookie

# The request whose page is being rendered (set by _PageRoute): _page reads the viewer's
# role and what the last button did from it, so that the handlers need not pass it on.
_rendering: ContextVar[Request] = ContextVar("rendering")

_templates = environment()


class BadFilter(TriggerdError):
    """A filter of a page's form that cannot be read (a ``since`` that is no time)."""


class _PageRoute(APIRoute):
    """A route whose refusals are pages too: an error the daemon raises (the event log
    away, a run that does not exist) is shown in the layout with its status code."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def page_or_refusal(request: Request) -> Response:
            rendering = _rendering.set(request)
            try:
                response = await handler(request)
            except TriggerdError as exc:
                status = status_code(exc)
                response = _page("error.html", status=status, error=str(exc), code=status)
            finally:
                _rendering.reset(rendering)
            if SAID_COOKIE in request.cookies and request.method == "GET":
                response.delete_cookie(SAID_COOKIE, path="/ui")  # said once: now shown
            return response

        return page_or_refusal


routes = APIRouter(prefix="/ui", route_class=_PageRoute, include_in_schema=False)


def _page(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    request = _rendering.get(None)
    html = _templates.get_template(template).render(
        version=__version__,
        said=_said(request) if request is not None else None,
        # what the page's forms need to act; None: no buttons (a viewer)
        actions=_actions(request) if request is not None else None,
        **context,
    )
    # shown() escapes every lone surrogate before this; should one slip through, it is
    # written as its escape rather than failing the page
    body = html.encode("utf-8", "backslashreplace")
    return HTMLResponse(body, status_code=status)


def _since(text: str | None) -> float | None:
    try:
        moment = parse_since(text)
    except ValueError as exc:
        raise BadFilter(str(exc)) from None
    return None if moment is None else moment.timestamp()


def _link(path: str, query: dict[str, Any]) -> str:
    """``path`` with the filters that are set, as a query string."""
    given = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(given)}" if given else path


@routes.get("/")
async def overview(control: Control) -> Response:
    return _page("overview.html", nav="overview", status_data=views.status(control))


@routes.get("/runs")
async def runs(
    control: Control,
    state: str = "",
    rule: str = "",
    workflow: str = "",
    since: str = "",
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: PageSize = None,
) -> Response:
    """The runs in the state file (the outbox and its history), newest first, a page at a
    time: "older" asks for the runs ``before`` the last one shown."""
    filters = {"state": state, "rule": rule, "workflow": workflow, "since": since}
    size = limit or PAGE_SIZE
    rows, older = control.state.runs_page(
        states=[state] if state else [],
        rule=rule or None,
        workflow=workflow or None,
        since=_since(since),
        before=before,
        limit=size,
    )
    paging = {**filters, "limit": limit}
    rules = control.dispatcher.rules.rules if control.dispatcher is not None else []
    return _page(
        "runs.html",
        nav="runs",
        rows=rows,
        filters=filters,
        states=list(RunState),
        rule_names=sorted({r.name for r in rules}),
        workflow_names=sorted({r.workflow for r in rules}),
        older=_link("/ui/runs", {**paging, "before": older}) if older else None,
        newest=_link("/ui/runs", paging) if before else None,
    )


@routes.get("/runs/{run_id}")
async def run(control: Control, run_id: str) -> Response:
    """One run: its row in the state file, its summary and its log lines from the event
    log (as ``triggerctl show`` and ``triggerctl logs`` show them)."""
    row = control.state.run(run_id)
    summary, lines, more, unavailable = None, [], False, None
    try:
        eventlog = eventlog_of(control)
        summary = await eventlog.run(run_id)
        found = await eventlog.find(
            run=run_id,
            kinds=["log", "output", "task.failed"],
            newest_first=True,
            limit=LOG_LINES + 1,
        )
        more, lines = len(found) > LOG_LINES, found[:LOG_LINES][::-1]
    except (NotReady, BackendUnavailable) as exc:
        unavailable = str(exc)  # what the state file knows is still worth showing
    if row is None and summary is None:
        if unavailable:
            raise BackendUnavailable(unavailable)
        raise NotFound(f"no run {run_id}: neither the state file nor the event log knows it")
    return _page(
        "run.html",
        nav="runs",
        run_id=run_id,
        row=row,
        summary=summary or {},
        state=row.state if row is not None else (summary or {}).get("status"),
        stoppable=row is not None and not RunState(row.state).ended,
        took=_took(row, summary or {}),
        lines=[line.to_dict() for line in lines],
        more_lines=more,
        unavailable=unavailable,
        all_lines=_link("/ui/events", {"run": run_id, "kind": "log,output,task.failed"}),
    )


def _took(row: RunRow | None, summary: dict[str, Any]) -> float | None:
    """How long the run took: the event log's account, else the state file's times."""
    if summary.get("duration") is not None:
        return float(summary["duration"])
    if row is not None and row.started_at is not None and row.ended_at is not None:
        return row.ended_at - row.started_at
    return None


@routes.get("/events")
async def events(
    control: Control,
    run: str = "",
    rule: str = "",
    kind: str = "",
    level: str = "",
    since: str = "",
    offset: Annotated[int, Query(ge=0, le=EVENTS_DEPTH)] = 0,
    limit: PageSize = None,
) -> Response:
    """The event log, newest first. ``kind``: kinds or families, separated by commas or
    spaces. The event log is asked for the newest ``offset + limit``; "older" moves
    ``offset`` on, as deep as the event log's largest query reaches."""
    filters = {"run": run, "rule": rule, "kind": kind, "level": level, "since": since}
    size = limit or EVENTS_PAGE_SIZE
    kinds = [k for k in kind.replace(",", " ").split() if k]
    try:
        found = await eventlog_of(control).find(
            run=run or None,
            rule=rule or None,
            kinds=kinds or None,
            level=level or None,
            since=parse_since(since),
            newest_first=True,
            limit=min(offset + size + 1, EVENTS_DEPTH),
        )
    except ValueError as exc:  # an unknown level, a since that is no time
        raise BadFilter(str(exc)) from None
    shown_events = found[offset : offset + size]
    paging = {**filters, "limit": limit}
    has_older = len(found) > offset + size
    return _page(
        "events.html",
        nav="events",
        events=[e.to_dict() for e in shown_events],
        filters=filters,
        levels=LEVELS,
        older=_link("/ui/events", {**paging, "offset": offset + size}) if has_older else None,
        newest=_link("/ui/events", paging) if offset else None,
    )


# What an operator does: the buttons' forms POST here.


def _said(request: Request) -> dict[str, str] | None:
    """What the last button did (its cookie), for the page shown next (a GET):
    ``{"kind": "ok" or "bad", "text": ...}``."""
    cookie = request.cookies.get(SAID_COOKIE)
    if not cookie or request.method != "GET":
        return None
    kind, _, text = unquote(cookie).partition(" ")
    return {"kind": "bad" if kind == "bad" else "ok", "text": text}


def _actions(request: Request) -> dict[str, str] | None:
    """What a page's buttons need (the form token), for an operator; None for a viewer."""
    if role_of(request) != OPERATOR:
        return None
    return {"form_token": request.app.state.form_token}


def _who(request: Request) -> str:
    """Who pressed a button (``triggerctl ui`` names its user)."""
    return operator_name(request, "console")


async def _forged(request: Request) -> str | None:
    """Why a button's POST is not the console's own form, or None when it is. A page of
    another site can make a browser POST here, with the browser's access: its ``Origin``
    (or without one, its ``Referer``) must be this page's own, and its form must hold the
    token the console renders into each form, which another site cannot read."""
    if role_of(request) != OPERATOR:
        return "only an operator may do this"
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or not same_origin(origin, request.headers.get("host", "")):
        return f"refused: the form was not sent from this console (origin {origin or 'unknown'})"
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    given = (fields.get(FORM_TOKEN) or [""])[0]
    if not hmac.compare_digest(given.encode(), request.app.state.form_token.encode()):
        return (
            "refused: the form holds no valid form token "
            "(the daemon restarted since the page was loaded? reload it)"
        )
    return None


async def _act(request: Request, back: str, act: Callable[[], tuple[str, str]]) -> Response:
    """Do what a button asks, when its form is the console's own; then send the browser
    to ``back`` (or where ``act`` says) with what happened (a cookie: said once)."""
    refusal = await _forged(request)
    if refusal is not None:
        return _page("error.html", status=403, error=refusal, code=403)
    try:
        text, where = act()
        kind = "ok"
    except TriggerdError as exc:
        text, where, kind = str(exc), back, "bad"
    response = RedirectResponse(where, status_code=303)
    response.set_cookie(
        SAID_COOKIE,
        quote(f"{kind} {text}"[:MAX_SAID], safe=""),
        path="/ui",
        httponly=True,
        samesite="strict",
    )
    return response


def _run_page(run_id: str) -> str:
    return f"/ui/runs/{quote(run_id, safe='')}"


@routes.post("/rules/{name}/pause")
async def pause_rule(request: Request, control: Control, name: str) -> Response:
    def pause() -> tuple[str, str]:
        control.set_paused(name, True, by=_who(request))
        return f"rule {name} paused: its triggers are skipped until it is resumed", "/ui/"

    return await _act(request, "/ui/", pause)


@routes.post("/rules/{name}/resume")
async def resume_rule(request: Request, control: Control, name: str) -> Response:
    def resume() -> tuple[str, str]:
        control.set_paused(name, False, by=_who(request))
        return f"rule {name} resumed", "/ui/"

    return await _act(request, "/ui/", resume)


@routes.post("/runs/{run_id}/stop")
async def stop_run(request: Request, control: Control, run_id: str) -> Response:
    def stop() -> tuple[str, str]:
        state = control.stop_run(run_id)
        told = "stopped" if state == "stopped" else "stopping: its tasks are told to stop"
        return f"run {run_id} {told}", _run_page(run_id)

    return await _act(request, _run_page(run_id), stop)


@routes.post("/runs/{run_id}/replay")
async def replay_run(request: Request, control: Control, run_id: str) -> Response:
    def replay() -> tuple[str, str]:
        new_run = control.replay(run_id)
        return f"this run replays run {run_id}", _run_page(new_run)

    return await _act(request, _run_page(run_id), replay)
