"""The ASGI app the svseg MONAI Label server runs: MONAI Label's FastAPI app with client errors as 4xx.

MONAI Label 0.8.5 answers a request for an unknown model, a request without an image and an
unreadable image with HTTP 500. For an annotation client those are the caller's mistakes, so this
module (passed to ``monailabel start_server --uvicorn_app svseg.label.asgi:app``) maps them to
400/404 with a message naming the problem; real server faults stay 500. The server keeps serving.
"""
from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from monailabel.app import app
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
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


@app.exception_handler(StarletteHTTPException)
async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})
