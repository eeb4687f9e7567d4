"""Composition root: the controller of a controller.yaml, its HTTP API, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from common.audit import AuditLog
from common.metrics import CollectorRegistry, MetricsServer
from common.tracing import Tracer
from controller.api import Controller
from controller.api_token import ApiRole, ApiTokens, TokenError, load_api_token
from controller.buffer_service import BufferService
from controller.config import ConfigError, ControllerConfig, load
from controller.intents.service import IntentEvent
from controller.interdomain.runtime import Interdomain, accepted_tokens
from controller.metrics import ControllerMetrics
from controller.rest import api_server
from controller.steering_service import SteeringService
from controller.topology.events import TopologyEvent, TopologyEventType

log = logging.getLogger("controller")


def log_intent(controller: Controller, event: IntentEvent) -> None:
    intent = event.intent
    snapshot = controller.topology()
    path = " > ".join(snapshot.name_of(n) for n in intent.path.nodes) if intent.path else "-"
    log.info(
        "intent %s %s: %s, path %s, %d bit/s %s",
        intent.intent_id,
        event.type.value,
        intent.request.label(snapshot.name_of),
        path,
        intent.bandwidth,
        intent.reason,
    )


def trace_intent(controller: Controller, tracer: Tracer, event: IntentEvent) -> None:
    """The lab timeline's view of an intent: names only, in the order nodes see them."""
    intent = event.intent
    snapshot = controller.topology()
    tracer.emit(
        f"intent.{event.type.value.lower()}",
        intent_id=str(intent.intent_id),
        master=intent.request.server_app_id,
        slaves=list(intent.request.client_app_ids),
        path=[snapshot.name_of(n) for n in intent.path.nodes] if intent.path else [],
        bandwidth=intent.bandwidth,
        reason=intent.reason,
    )


def log_topology(event: TopologyEvent) -> None:
    if event.type is not TopologyEventType.LINK_UPDATED:  # perf updates are frequent
        log.info("topology %s %s %s", event.type.value, event.subject, event.reason)


def api_tokens_of(config: ControllerConfig) -> ApiTokens:
    """The tokens of `api_tokens` (one file per role), or `api_token_file` alone as admin."""
    if config.api_tokens:
        return ApiTokens.from_files({ApiRole.named(r): p for r, p in config.api_tokens.items()})
    if config.api_token_file is None:
        raise TokenError("controller config: neither api_tokens nor api_token_file: calls need one")
    return ApiTokens.single(load_api_token(config.api_token_file))


async def serve(
    config: ControllerConfig,
    policy: str | None = None,
    force_path: Sequence[str] | None = None,
    allow_preemption: bool | None = None,
) -> None:
    tokens = api_tokens_of(config)  # before anything connects
    if config.domain is not None:
        tokens = tokens.with_peers(accepted_tokens(config.domain))
    audit = AuditLog("controller", config.audit_log)
    controller = Controller.from_config(
        config, policy=policy, force_path=force_path, allow_preemption=allow_preemption
    )
    interdomain = (
        Interdomain.of(config.domain, controller, audit) if config.domain is not None else None
    )
    controller.intent_events.add(lambda event: log_intent(controller, event))
    tracer = Tracer.from_env("controller")
    controller.intent_events.add(lambda event: trace_intent(controller, tracer, event))
    controller.topology_events.add(log_topology)
    metrics = None
    metrics_family: ControllerMetrics | None = None
    if config.metrics is not None:
        metrics_family = ControllerMetrics(CollectorRegistry(auto_describe=True), controller)
        metrics = MetricsServer.start(
            metrics_family.registry,
            config.metrics,
        )
        print(f"metrics {metrics.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await controller.start()
    steering: SteeringService | None = None
    steering_task: asyncio.Task[None] | None = None
    if config.steering.data_driven:
        steering = SteeringService(
            controller.topology,
            controller.intent_service,
            config.steering.settings,
            config.steering.interval_s,
            consumption=controller.consumption.rates,
        )
        steering_task = asyncio.create_task(steering.run())
    buffers: BufferService | None = None
    buffers_task: asyncio.Task[None] | None = None
    if config.buffers.adaptive:
        buffers = BufferService(
            controller.topology,
            controller.intent_service,
            controller.consumption.rates,
            config.buffers.settings,
            config.buffers.interval_s,
        )
        if metrics_family is not None:
            buffers.listeners.add(metrics_family.on_buffer)
        buffers_task = asyncio.create_task(buffers.run())
    server = api_server(
        controller,
        config.api,
        tokens,
        audit,
        steering,
        buffers,
        interdomain.service if interdomain is not None else None,
    )
    if interdomain is not None:
        interdomain.start()
    http = asyncio.create_task(server.serve())
    connected = sum(1 for _, _, up in controller.device_status() if up)
    log.info(
        "controller up: %d/%d nodes, %d intents rebuilt, API %s, %s control, %s buffers",
        connected,
        len(config.nodes),
        len(controller.intents()),
        config.api_url,
        config.steering.mode,
        config.buffers.mode,
    )
    try:
        done, _ = await asyncio.wait(
            [http, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if http in done:
            http.result()  # the API could not start (port taken): say so
    finally:
        for task in (steering_task, buffers_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        server.should_exit = True
        await asyncio.gather(http, return_exceptions=True)
        if interdomain is not None:
            await interdomain.stop()
        await controller.stop()
        if metrics is not None:
            await asyncio.to_thread(metrics.stop)  # off the loop: a scrape may wait for it


def run(
    config_file: Path,
    policy: str | None = None,
    force_path: Sequence[str] | None = None,
    allow_preemption: bool | None = None,
) -> int:
    """`qkdsdn controller run --config FILE`: 2 on a bad file (every bad field named)."""
    try:
        config = load(config_file)
    except ConfigError as error:
        print(f"cannot start the controller:\n{error}", flush=True)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("ncclient").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(config, policy, force_path, allow_preemption))
    except TokenError as error:
        print(f"cannot start the controller: {error}", flush=True)
        return 2
    except OSError as error:  # a metrics address that cannot be listened on
        print(f"cannot start the controller: {error}", flush=True)
        return 1
    return 0
