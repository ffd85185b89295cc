"""The annotation web app: sign in, label one response at a time, revise, finish.

Security, since responses are untrusted model output and the app may face a network:
- templates autoescape everything, and a Content-Security-Policy forbids inline script;
- images are served by item id, looked up in the run's store: the client never names a path;
- every state-changing request carries the session's CSRF token (synchronizer pattern);
- labels outside LABELS are refused with 422; the CLI binds 127.0.0.1 unless told otherwise.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' Annotated[..., Depends(f)]
# at definition time, and `f` is a closure it could not resolve from a string.

import io
import re
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from vlmalign.annotate.queue import (
    SAMPLE_SEED,
    AnnotationQueue,
    AnnotatorView,
    stratified_sample,
)
from vlmalign.data.images import load_image
from vlmalign.data.schema import Item
from vlmalign.labels import MAX_NOTE, validate_annotator, validate_label
from vlmalign.store import LABELS, GenerationRow, LabelRow, RunStore, now

SESSION_COOKIE = "vlmalign_session"
MAX_SESSIONS = 10_000
KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_PACKAGE = resources.files("vlmalign.annotate")


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    annotator: str | None = None


@dataclass
class AppState:
    store: RunStore
    queue: AnnotationQueue
    token: str | None
    sessions: dict[str, Session] = field(default_factory=dict)
    items: dict[str, dict[str, Item]] = field(default_factory=dict)  # by dataset hash, then id
    responses: int = 0  # all responses of the run (the queue offers them, or a --budget sample)

    def new_session(self, session: Session) -> str:
        if len(self.sessions) >= MAX_SESSIONS:  # anonymous visitors must not grow it forever
            self.sessions.pop(next(iter(self.sessions)))
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = session
        return sid


def run_keys(store: RunStore) -> list[str]:
    """The responses of the newest finished study run (all responses for older stores)."""
    latest = store.latest_run()
    keys = store.run_generation_keys(latest[0]) if latest else []
    return keys or store.all_generation_keys()


def create_app(
    run_dir: Path,
    token: str | None = None,
    overlap: int | None = None,
    seed: int | None = None,
    budget: int | None = None,
) -> FastAPI:
    """The app for one run; with `budget`, only a stratified sample of that many responses
    (seeded by `seed`, else SAMPLE_SEED, so a restart offers the same ones) is offered."""
    # Endpoints are async: every store access runs on the event loop's thread, one at a time.
    store = RunStore(run_dir, check_same_thread=False)
    keys = list(dict.fromkeys(run_keys(store)))
    offered = keys
    if budget is not None:
        sample_seed = SAMPLE_SEED if seed is None else seed
        offered = stratified_sample(store.generations(keys), budget, sample_seed)
    queue = AnnotationQueue(store, offered, overlap, seed)
    state = AppState(store, queue, token, responses=len(keys))
    templates = Jinja2Templates(directory=str(_PACKAGE / "templates"))
    app = FastAPI(title="vlmalign annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(_PACKAGE / "static")), name="static")
    app.state.vlmalign = state

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def session(request: Request) -> tuple[str, Session]:
        sid = request.cookies.get(SESSION_COOKIE, "")
        if sid not in state.sessions:
            sid = state.new_session(Session())
        return sid, state.sessions[sid]

    async def signed_in(current: Annotated[tuple[str, Session], Depends(session)]) -> str:
        annotator = current[1].annotator
        if annotator is None:
            raise HTTPException(303, headers={"Location": "/"})
        return annotator

    def check_csrf(current: tuple[str, Session], csrf: str | None) -> None:
        if not csrf or not secrets.compare_digest(csrf, current[1].csrf):
            raise HTTPException(403, "missing or wrong CSRF token; reload the page")

    def page(
        request: Request,
        current: tuple[str, Session],
        name: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> HTMLResponse:
        context = {"csrf": current[1].csrf, "annotator": current[1].annotator, **context}
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.set_cookie(SESSION_COOKIE, current[0], httponly=True, samesite="strict", path="/")
        return response

    def item_of(generation: GenerationRow) -> Item:
        sha = generation.dataset_sha256
        if sha not in state.items:
            state.items[sha] = store.items(sha)
        return state.items[sha][generation.item_id]

    def viewable(view: AnnotatorView, key: str) -> GenerationRow:
        if not KEY_PATTERN.fullmatch(key) or not view.can_view(key):
            raise HTTPException(404, "no such response")
        return store.generations([key])[0]

    @app.get("/", response_class=HTMLResponse)
    async def home(
        request: Request, current: Annotated[tuple[str, Session], Depends(session)]
    ) -> Response:
        if current[1].annotator is not None:
            return RedirectResponse("/next", status_code=303)
        return page(request, current, "login.html", {"needs_token": state.token is not None})

    @app.post("/login", response_class=HTMLResponse)
    async def login(
        request: Request,
        current: Annotated[tuple[str, Session], Depends(session)],
        name: Annotated[str, Form()] = "",
        token: Annotated[str, Form()] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        check_csrf(current, csrf)
        name = name.strip()
        problem = validate_annotator(name)
        status = 422
        wrong_token = state.token is not None and not secrets.compare_digest(
            token.encode(), state.token.encode()
        )
        if problem is None and wrong_token:
            problem, status = "wrong access token", 403
        if problem is not None:
            context = {"needs_token": state.token is not None, "error": problem, "name": name}
            return page(request, current, "login.html", context, status)
        # A fresh session id and CSRF token at sign-in (no session fixation).
        state.sessions.pop(current[0], None)
        sid = state.new_session(Session(annotator=name))
        state.queue.register(name)
        response = RedirectResponse("/next", status_code=303)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/logout")
    async def logout(
        current: Annotated[tuple[str, Session], Depends(session)],
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        check_csrf(current, csrf)
        state.sessions.pop(current[0], None)
        return RedirectResponse("/", status_code=303)

    @app.get("/next")
    async def next_response(annotator: Annotated[str, Depends(signed_in)]) -> Response:
        key = state.queue.view(annotator).next_key()
        return RedirectResponse(f"/r/{key}" if key else "/done", status_code=303)

    @app.get("/r/{key}", response_class=HTMLResponse)
    async def show(
        request: Request,
        key: str,
        annotator: Annotated[str, Depends(signed_in)],
        current: Annotated[tuple[str, Session], Depends(session)],
    ) -> Response:
        view = state.queue.view(annotator)
        generation = viewable(view, key)
        history = view.history
        position = history.index(key) if key in history else len(history)
        context = {
            "key": key,
            "item": item_of(generation),
            "response": generation.response,
            "labels": LABELS,
            "current": view.mine.get(key),
            "back": history[position - 1] if position > 0 else None,
            "forward": history[position + 1] if position + 1 < len(history) else None,
            "progress": view.progress(),
            "max_note": MAX_NOTE,
        }
        return page(request, current, "response.html", context)

    @app.post("/r/{key}")
    async def label(
        key: str,
        current: Annotated[tuple[str, Session], Depends(session)],
        label: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        # Refusals in a fixed order: CSRF (403), signed in (403), label (422), response (404).
        check_csrf(current, csrf)
        annotator = current[1].annotator
        if annotator is None:
            raise HTTPException(403, "sign in first")
        problem = validate_label(label) or (
            f"note is longer than {MAX_NOTE} characters" if len(note) > MAX_NOTE else None
        )
        if problem:
            raise HTTPException(422, problem)
        viewable(state.queue.view(annotator), key)
        store.add_labels([LabelRow(key, annotator, label, note.strip(), now())])
        return RedirectResponse("/next", status_code=303)

    @app.get("/done", response_class=HTMLResponse)
    async def done(
        request: Request,
        annotator: Annotated[str, Depends(signed_in)],
        current: Annotated[tuple[str, Session], Depends(session)],
    ) -> Response:
        view = state.queue.view(annotator)
        context = {"progress": view.progress(), "last": view.history[-1] if view.mine else None}
        return page(request, current, "done.html", context)

    @app.get("/image/{item_id:path}")
    async def image(
        item_id: str, current: Annotated[tuple[str, Session], Depends(session)]
    ) -> Response:
        found = store.item(item_id)  # an id from the store, never a path from the client
        if found is None:
            raise HTTPException(404, "no such item")
        if current[1].annotator is None:
            raise HTTPException(403, "sign in first")
        item, base_dir = found
        try:
            picture = load_image(item.image, base_dir).image
        except Exception as exc:  # a moved file or a dead URL is the run's problem, not a 500
            raise HTTPException(404, "image not available") from exc
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, format="JPEG", quality=90)
        return Response(buffer.getvalue(), media_type="image/jpeg")

    return app
