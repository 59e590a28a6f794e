"""POST /hooks/{github|bitbucket|azure-devops}/{app}: verify, parse, deploy the branch head.

A verified push to the tracked branch triggers a head check, and the head is what deploys
(deploying.sync.deploy_head), so a replayed or late delivery cannot put an older revision
live. 202 with what was done (queued, already covered, ignored and why; `revision` is what
deploys, `pushed` what the delivery named); 200 for a ping; 401 for a bad or missing
signature or password, with no hint which; 404 for an unknown app or an app whose source
does not take this provider's hooks; 413 over 5 MiB; 400 for a body the provider would not
send (a pushed revision that is not a full commit id); 502 when the head cannot be read. A
redelivery (same delivery id) never queues a second deployment.
"""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from orchestrator.api.errors import error_response
from orchestrator.config.sources import AzureDevOpsSourceConfig, BitbucketSourceConfig, GitHubSourceConfig
from orchestrator.core import keys
from orchestrator.core.errors import SluiceError
from orchestrator.deploying.sync import deploy_head
from orchestrator.runtime.services import Services
from orchestrator.triggers import webhooks

router = APIRouter()
MAX_BODY = 5 * 1024 * 1024
DELIVERY_MEMORY = 7 * 24 * 3600      # providers redeliver within days, not weeks
PARSERS = {"github": webhooks.parse_github, "bitbucket": webhooks.parse_bitbucket,
           "azure-devops": webhooks.parse_azure_devops}
WebhookSource = GitHubSourceConfig | BitbucketSourceConfig | AzureDevOpsSourceConfig


class TooLarge(Exception):
    pass


@router.post("/hooks/{provider}/{app}")
async def receive(provider: str, app: str, request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    config = services.config.apps.get(app)
    source = config.source if config else None
    if provider not in PARSERS or not isinstance(source, WebhookSource) or source.type != provider:
        return error_response(404, f"no {provider} webhook for app {app!r}")
    try:
        body = await _body(request)
    except TooLarge:
        return error_response(413, f"body larger than {MAX_BODY // (1024 * 1024)} MiB")
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not _authentic(source, body, headers):
        return error_response(401, "delivery not authenticated")
    try:
        delivery = PARSERS[provider](headers, body)
    except webhooks.BadDelivery as exc:
        return error_response(400, str(exc))
    return await run_in_threadpool(_act, services, app, source.branch, delivery)


def _act(services: Services, app: str, branch: str, delivery: webhooks.Delivery) -> JSONResponse:
    pushed, reason = webhooks.decide(delivery, branch)
    if delivery.event == "ping":
        return JSONResponse({"status": "ok", "message": reason}, 200)
    if pushed is None:
        return JSONResponse({"status": "ignored", "reason": reason}, 202)
    seen = keys.hook_delivery(delivery.provider, delivery.delivery_id) if delivery.delivery_id else None
    if seen and not services.redis.set(seen, app, nx=True, ex=DELIVERY_MEMORY):
        return JSONResponse({"status": "duplicate", "reason": f"delivery {delivery.delivery_id} "
                             "was received before", "pushed": pushed}, 202)
    try:
        queued = deploy_head(services, app, "webhook")
    except SluiceError as exc:      # forget the delivery, so that redelivering it works
        if seen:
            services.redis.delete(seen)
        return error_response(502, f"the push was verified, but the head of {branch!r} could "
                              f"not be read: {exc}")
    if queued.revision != pushed:
        reason = (f"{reason}: pushed {pushed[:12]}, but {branch!r} is at {queued.revision[:12]} "
                  "now; the branch head is what deploys")
    return JSONResponse({"status": "queued" if queued.new else "covered",
                         "deployment_id": queued.deployment_id, "revision": queued.revision,
                         "pushed": pushed, "reason": queued.reason or reason}, 202)


def _authentic(source: WebhookSource, body: bytes, headers: dict) -> bool:
    if source.type == "github":
        return webhooks.github_signature_valid(source.secret, body, headers)
    if source.type == "bitbucket":
        return webhooks.hub_signature_valid(source.secret, body, headers.get("x-hub-signature"))
    checks = []
    if source.basic_auth:
        checks.append(webhooks.basic_auth_valid(source.basic_auth.username,
                                                source.basic_auth.password,
                                                headers.get("authorization")))
    if source.header:
        checks.append(webhooks.header_valid(source.header.value,
                                            headers.get(source.header.name.lower())))
    return bool(checks) and all(checks)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
