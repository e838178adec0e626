"""The reliability campaigns' emulator: a separate, long-lived process with a control route.

Like ``benchmarks/common.py``, the emulator runs in its own process on loopback
(``gptunnel_async.testing.EmulatorProcess``), so its CPU does not distort the SDK's and its
counters survive a client that is SIGKILLed. On top of the
plain emulator it has:

- a control route ``/_rel/<op>`` answered before the emulator sees the request (never counted):
  ``faults`` (set knobs, ``burst_429``), ``config`` (``time_scale``, ``link_ttl``),
  ``link_expiry`` (a share of new tasks whose link is dead when they finish), ``counters``,
  ``tasks`` (the emulator's view of every task: prompt, fate, status, link state, file size),
  ``reset``;
- ``link_expiry_rate``: at create, that share of tasks gets a dead link, half with a zero TTL
  (the link's own ``expires`` is already past) and half revoked at finish (the link claims to
  live but the host answers 403) — both "the link expired before the download".

Run as a script it is the emulator process (prints its URL on the first line);
``EmulatorProcess`` starts one and ``Control`` talks to it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async.testing import Emulator, EmulatorConfig, Faults, serve_forever  # noqa: E402
from gptunnel_async.testing import EmulatorProcess as ChildEmulator  # noqa: E402
from gptunnel_async.testing._counters import Counters  # noqa: E402
from gptunnel_async.testing._files import content  # noqa: E402
from gptunnel_async.testing._http import Request, json_response  # noqa: E402
from gptunnel_async.testing._state import Task, TaskStore  # noqa: E402

API_KEY = "reliability-key"
MODEL = "flux-dev"  # an image model: log-uniform 5..60 emulator seconds


class _Store(TaskStore):
    """A task store that kills the link of a share of new tasks (decided at create)."""

    def __init__(self, config: EmulatorConfig, faults: Faults, rate: float = 0.0) -> None:
        super().__init__(config, faults)
        self.link_expiry_rate = rate
        self.expiry_rng = random.Random((config.seed or 0) + 7)
        self.dead_links: dict[str, str] = {}

    def create(self, *args: Any, **kwargs: Any) -> Task:
        task = super().create(*args, **kwargs)
        rate = self.link_expiry_rate
        if rate > 0 and task.fate == "done" and self.expiry_rng.random() < rate:
            if self.expiry_rng.random() < 0.5:
                task.link_ttl = 0.0  # expires the moment it finishes
                self.dead_links[task.id] = "ttl0"
            else:
                task.expired_at = task.t_end  # revoked at finish; the link still claims to live
                self.dead_links[task.id] = "revoked"
        return task


class _Counters(Counters):
    """Counters that also note, for each Retry-After violation, how late after the 429 it was."""

    def reset(self) -> None:
        super().reset()
        self.violation_lags: list[float] = []

    def on_request(self, route: str, now: float, *, api: bool) -> None:
        before = self.retry_after_violations
        super().on_request(route, now, api=api)
        if self.retry_after_violations > before:
            last = max((t for t, _ in self.sent_429 if t <= now), default=now)
            self.violation_lags.append(round(now - last, 4))


CREATE_PATH = "/v1/media/create"
_PROMPT = re.compile(r'"prompt"\s*:\s*"((?:[^"\\]|\\.)*)"')


class _Faults(Faults):
    """Faults whose random 5xx and drops can spare creates (``faulty_creates = False``).

    A create answered 5xx or dropped is reported "outcome unknown" by design; the kill campaign
    turns that off so that every unknown it sees comes from a kill.
    """

    faulty_creates = True

    def decide(self, method: str, path: str, now: float, *, is_file: bool = False) -> Any:
        if self.faulty_creates or path != CREATE_PATH:
            return super().decide(method, path, now, is_file=is_file)
        saved = self.drop_rate, self.drop_after_rate, self.error_rate
        self.drop_rate = self.drop_after_rate = self.error_rate = 0.0
        try:
            return super().decide(method, path, now, is_file=is_file)
        finally:
            self.drop_rate, self.drop_after_rate, self.error_rate = saved


class CampaignEmulator(Emulator):
    """An emulator with the ``/_rel/*`` control route, dead links on demand, and a log of every
    create (prompt, arrival, answer and when: ``monotonic`` times, comparable across processes
    on one machine) so a campaign can tell which creates were on the wire at a kill."""

    def __init__(self, config: EmulatorConfig) -> None:
        super().__init__(config)
        self.faults = _Faults(config.seed)
        self.create_log: list[dict[str, Any]] = []
        self.cut_log: list[dict[str, Any]] = []  # creates cut off midway (never processed)
        self._install_store(0.0)

    def _install_store(self, rate: float) -> None:
        store = _Store(self.config, self.faults, rate)
        self.store = store
        self.counters = _Counters(
            store, grace=self.config.retry_after_grace, max_arrivals=self.config.max_arrivals
        )

    async def handle(self, request: Request) -> Any:
        if request.path.startswith("/_rel/"):
            body = json.loads(request.body or b"{}")
            return json_response(self.control(request.path[len("/_rel/") :], body))
        if request.path != CREATE_PATH:
            return await super().handle(request)
        try:
            prompt = json.loads(request.body).get("prompt")
        except (ValueError, AttributeError):
            prompt = None
        # "arrived": the request's first byte reached the server (before parsing, latency or
        # any fault); "handled": it was whole and handed to the emulator.
        entry: dict[str, Any] = {
            "prompt": prompt,
            "arrived": request.received or time.monotonic(),
            "handled": time.monotonic(),
            "connection": request.connection,
        }
        self.create_log.append(entry)
        answer = await super().handle(request)
        entry["answered"] = time.monotonic()
        entry["status"] = getattr(answer, "status", "drop")
        return answer

    def request_cut_off(self, partial: Request) -> None:
        """A request whose bytes had started to arrive when its connection ended: on the wire,
        never processed. Logged when it may have been a create (its path is the create's, or
        its headers never arrived whole); the prompt when enough of the body had come."""
        if partial.path not in ("", CREATE_PATH):
            return
        found = _PROMPT.search(partial.body.decode("utf-8", "replace"))
        self.cut_log.append(
            {
                "prompt": json.loads(f'"{found.group(1)}"') if found else None,
                "arrived": partial.received,
                "path": partial.path,
                "bytes": len(partial.body),
                "connection": partial.connection,
            }
        )

    def control(self, op: str, body: dict[str, Any]) -> Any:
        c = self.counters
        if op == "reset":
            if "seed" in body:
                self.config.seed = int(body["seed"])
            self.reset()
            self._install_store(0.0)
            self.create_log.clear()
            self.cut_log.clear()
            return {"ok": True}
        if op == "create_log":
            return self.create_log
        if op == "wire_log":  # creates (whole, cut off) logged since the given positions
            since = body.get("since", [0, 0])
            return {
                "creates": self.create_log[since[0] :],
                "cut_off": self.cut_log[since[1] :],
                "next": [len(self.create_log), len(self.cut_log)],
            }
        if op == "pauses":  # every 429 answered: (monotonic time, Retry-After)
            return list(c.sent_429)
        if op == "config":
            for key in ("time_scale", "link_ttl"):
                if key in body:
                    setattr(self.config, key, float(body[key]))
            return {"ok": True}
        if op == "link_expiry":
            assert isinstance(self.store, _Store)
            self.store.link_expiry_rate = float(body["rate"])
            return {"ok": True}
        if op == "faults":
            f = self.faults
            for key, value in body.items():
                if key == "burst_429":
                    f.burst_429(float(value[0]), float(value[1]))
                elif key == "error_statuses":
                    f.error_statuses = tuple(int(s) for s in value)
                elif key == "reset":
                    f.reset()
                elif key == "latency" and isinstance(value, list):
                    f.latency = (float(value[0]), float(value[1]))
                else:
                    setattr(f, key, value)
            return {"ok": True}
        if op == "counters":
            return {
                "requests_total": c.requests_total,
                "api_requests_total": c.api_requests_total,
                "requests_by_route": dict(c.requests_by_route),
                "responses_by_status": {str(k): v for k, v in c.responses_by_status.items()},
                "creates_total": c.creates_total,
                "creates_by_prompt": dict(c.creates_by_prompt),
                "retry_after_violations": c.retry_after_violations,
                "violation_lags": getattr(c, "violation_lags", []),
                "sent_429": len(c.sent_429),
                "drops": c.drops,
                "max_in_flight": c.max_in_flight,
                "max_requests_in_window_1s": c.max_requests_in_window(1.0),
                "internal_errors": [repr(e) for e in self.internal_errors],
            }
        if op == "tasks":
            now = time.monotonic()
            dead = self.store.dead_links if isinstance(self.store, _Store) else {}
            out = {}
            for task in self.store.tasks.values():
                out[task.id] = {
                    "prompt": task.prompt,
                    "fate": task.fate,
                    "status": task.status(now),
                    "ext": task.ext,
                    "size": len(content(task, task.ext)),
                    "dead_link": dead.get(task.id),
                    "link_expired": now >= task.link_expires_at(),
                }
            return out
        return {"error": f"unknown op {op}"}


def _serve_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--time-scale", type=float, default=200.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    config = EmulatorConfig(api_keys={API_KEY}, time_scale=args.time_scale, seed=args.seed)
    serve_forever(CampaignEmulator(config))
    return 0


class Control:
    """A synchronous client of the control route (call it from a thread inside async code)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(timeout=60.0)

    def __call__(self, op: str, **payload: Any) -> Any:
        r = self._http.post(f"{self.url}/_rel/{op}", json=payload)
        r.raise_for_status()
        return r.json()

    def close(self) -> None:
        self._http.close()


class EmulatorProcess(ChildEmulator):
    """``with EmulatorProcess(time_scale=200) as emu: emu.url, emu.control("counters")``."""

    def __init__(self, *, time_scale: float = 200.0, seed: int = 1) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve())]
        cmd += ["--time-scale", str(time_scale), "--seed", str(seed)]
        super().__init__(command=cmd, cwd=ROOT)
        self.ctl: Control | None = None

    def __enter__(self) -> EmulatorProcess:
        super().__enter__()
        self.ctl = Control(self.url)
        return self

    def control(self, op: str, **payload: Any) -> Any:
        assert self.ctl is not None
        return self.ctl(op, **payload)

    def stop(self) -> None:
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        super().stop()


if __name__ == "__main__":
    sys.exit(_serve_main(sys.argv[1:]))
