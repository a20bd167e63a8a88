"""The ASGI app the svseg MONAI Label server runs: MONAI Label's FastAPI app with client errors as 4xx.

MONAI Label 0.8.5 answers a request for an unknown model, a request without an image and an
unreadable image with HTTP 500; it accepts ``POST /train/<a model that does not exist>`` with 200
and starts a training subprocess that can only fail, and ignores ``params`` it cannot parse. For an
annotation client those are the caller's mistakes, so this module (passed to ``monailabel
start_server --uvicorn_app svseg.label.asgi:app``) answers them with 400/404 and a message naming
the problem, before anything is started; real server faults stay 500. The server keeps serving.
"""
from __future__ import annotations

import json
import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from monailabel.app import app
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.utils.app import app_instance
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

__all__ = ["app"]

_CLIENT_ERRORS = {MONAILabelError.INVALID_INPUT}


@app.exception_handler(MONAILabelException)
async def _monailabel_exception(request: Request, exc: MONAILabelException) -> JSONResponse:
    if exc.error in _CLIENT_ERRORS:
        status = 404 if "no model" in exc.msg.lower() or "not found" in exc.msg.lower() else 400
    else:
        status = 500
    logger.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc.msg)
    return JSONResponse(status_code=status, content={"error": exc.error.value, "detail": exc.msg})


@app.middleware("http")
async def _require_image_for_infer(request: Request, call_next):
    # POST /infer/<model> needs ?image=<id>, a session, or an uploaded file (multipart)
    if request.method == "POST" and request.url.path.startswith("/infer/"):
        q = request.query_params
        multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
        if not q.get("image") and not q.get("session_id") and not multipart:
            return JSONResponse(
                status_code=400,
                content={"error": "INVALID_INPUT", "detail": "no image: pass ?image=<study id> or upload a file"},
            )
    return await call_next(request)


def _bad_request(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": "INVALID_INPUT", "detail": detail})


def _known_models(kind: str) -> set[str]:
    info = app_instance().info()
    return set((info.get("trainers") if kind == "train" else info.get("models")) or {})


@app.middleware("http")
async def _refuse_unknown_models_and_bad_params(request: Request, call_next):
    parts = request.url.path.strip("/").split("/")
    if request.method != "POST" or len(parts) != 2 or parts[0] not in ("infer", "train"):
        return await call_next(request)
    kind, model = parts
    known = _known_models(kind)
    if model not in known:
        return _bad_request(404, f"no model {model!r} to {kind}; available: {', '.join(sorted(known)) or 'none'}")
    raw = None
    content_type = request.headers.get("content-type", "")
    if kind == "train" and content_type.startswith("application/json"):
        raw = (await request.body()).decode("utf-8", "replace") or None
    elif kind == "infer" and content_type.startswith("multipart/form-data"):
        body = await request.body()  # cached: the endpoint still receives it

        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        raw = (await Request(request.scope, replay).form()).get("params")
    elif kind == "infer" and content_type.startswith("application/json"):
        return _bad_request(400, "infer takes params as the multipart form field 'params', not a JSON body")
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError as e:
            return _bad_request(400, f"params is not valid JSON: {e}")
        if parsed is not None and not isinstance(parsed, dict):
            return _bad_request(400, f"params must be a JSON object, got {type(parsed).__name__}")
    return await call_next(request)


@app.exception_handler(StarletteHTTPException)
async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})
