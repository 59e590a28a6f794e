"""POST /hooks/{github|bitbucket|azure-devops}/{app}: verify, parse, deploy the branch head.

A verified push to the tracked branch is a trigger: it takes its place in the app's head
checks and is answered 202 `accepted` at once; the check follows off the request, and the
branch's head is what deploys (deploying.sync), so a replayed or late delivery cannot put an
older revision live, and a burst of deliveries costs a few checks and no waiting. The app
is made due for the poller too: a check this process never made is made there. 200 for a
ping; 202 `ignored` (and why) for pushes that do not move the tracked branch; 401 for a bad
or missing signature or password, with no hint which; 404 for an unknown app or an app
whose source does not take this provider's hooks; 413 over 5 MiB; 400 for a body the
provider would not send (a pushed revision that is not a full commit id). A redelivery
(same delivery id) is answered `duplicate` and triggers nothing.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from orchestrator.api.errors import error_response
from orchestrator.api.threads import in_own_threads
from orchestrator.config.sources import AzureDevOpsSourceConfig, BitbucketSourceConfig, GitHubSourceConfig
from orchestrator.core import keys
from orchestrator.deploying.sync import answer_head_check, ask_head_check
from orchestrator.runtime.services import Services
from orchestrator.triggers import webhooks
from orchestrator.triggers.poller import make_due

router = APIRouter()
log = logging.getLogger("sluice.api")
# Head checks after deliveries run here, off the request: a delivery is answered once it is
# verified and has its place in the app's head checks, however many arrive at once.
_CHECKS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hook-head-check")
MAX_BODY = 5 * 1024 * 1024
HOOK_THREADS = 4
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
    return await in_own_threads(request.app, "hooks", HOOK_THREADS, _act, services, app,
                                source.branch, delivery)


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
    ticket = ask_head_check(services, app)     # before answering: the check begins after this
    make_due(services.redis, app)              # should this process die first, a poller checks
    _CHECKS.submit(_check, services, app, ticket)
    return JSONResponse({"status": "accepted", "pushed": pushed,
                         "reason": f"{reason}: the head of {branch!r} is checked now and deployed "
                                   "unless it is live already"}, 202)


def _check(services: Services, app: str, ticket: int) -> None:
    try:
        queued = answer_head_check(services, app, ticket, "webhook")
    except Exception as exc:        # the poller, made due, checks again at its next round
        log.warning("%s: head check after a webhook failed: %s", app, exc)
        return
    log.info("%s: webhook: head at %s, %s", app, queued.revision[:12],
             f"deployment {queued.deployment_id} queued" if queued.new else queued.reason)


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
