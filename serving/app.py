"""The OpenAI-compatible HTTP API over a MIRACLE model (FastAPI): `POST /v1/chat/completions`, `GET /v1/models`.

MIRACLE's options travel as extra body fields (`personality`, `attribute_weights`, `use_ebm`,
`latent_guidance_scale`, `latent_guidance_plausibility`, `sampler_*`, `top_k`), which the official `openai` client
sends with `extra_body=`. Every error is answered with the protocol's error object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import BatchingEngine, EngineSettings
from .protocol import APIError, Limits, chunk_body, completion_body, models_body, parse_chat_request, usage


def create_app(model, processor, model_id: str = "miracle", limits: Limits | None = None,
               engine_settings: EngineSettings | None = None) -> FastAPI:
    """A FastAPI app serving `model` as `model_id`; its batching engine starts and stops with the app."""
    limits = limits or Limits()
    engine = BatchingEngine(model, processor, engine_settings)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine.start()
        try:
            yield
        finally:
            await asyncio.to_thread(engine.stop)

    app = FastAPI(title="MIRACLE chat completions", lifespan=lifespan)
    app.state.engine = engine

    @app.exception_handler(APIError)
    async def api_error(request, error: APIError):
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, error: StarletteHTTPException):
        return JSONResponse(APIError(error.status_code, str(error.detail)).body(), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(request, error: Exception):
        return JSONResponse(APIError(500, f"Internal error: {type(error).__name__}: {error}").body(), status_code=500)

    @app.get("/v1/models")
    async def list_models():
        return models_body(model_id, created)

    @app.post("/v1/chat/completions")
    async def chat_completions(http_request: Request):
        raw = await http_request.body()
        if len(raw) > limits.max_body_bytes:
            raise APIError(413, f"The request body has {len(raw)} bytes; this server takes at most "
                                f"{limits.max_body_bytes}.", code="request_too_large")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(400, f"The request body is not valid JSON: {error}.") from error
        request = parse_chat_request(body, model.config, limits)
        if isinstance(body, dict) and body.get("model") not in (None, model_id):
            raise APIError(404, f"The model {body.get('model')!r} does not exist; this server serves {model_id!r}.",
                           "model", "model_not_found")
        engine.check_fits(request)
        events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        job = engine.submit(request, lambda kind, payload: loop.call_soon_threadsafe(events.put_nowait, (kind, payload)))
        if request.stream:
            return StreamingResponse(_stream(request, job, events), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            while True:
                kind, payload = await events.get()
                if kind == "done":
                    return completion_body(request, model_id, payload)
                if kind == "error":
                    raise payload
        finally:
            engine.cancel(job)  # the client went away, or the reply is done (then a no-op)

    async def _stream(request, job, events):
        def event(data) -> str:
            return f"data: {json.dumps(data)}\n\n"

        try:
            yield event(chunk_body(request, model_id, {"role": "assistant", "content": ""}))
            while True:
                kind, payload = await events.get()
                if kind == "delta":
                    yield event(chunk_body(request, model_id, {"content": payload}))
                    continue
                if kind == "done":
                    yield event(chunk_body(request, model_id, {}, payload.finish_reason, usage=usage(payload),
                                           personality=request.personality,
                                           latent_diagnostics=payload.latent_diagnostics))
                else:
                    yield event(payload.body())
                yield "data: [DONE]\n\n"
                return
        finally:
            engine.cancel(job)

    return app


__all__ = ["create_app"]
