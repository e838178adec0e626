"""Static configuration of an emulator: durations, costs, balances, link lifetimes.

Everything here is fixed when the emulator is built; runtime knobs live in :class:`Faults`.
Durations and link TTLs are in *emulator* seconds and are divided by ``time_scale``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from gptunnel_async.catalog import MODELS


@dataclass(frozen=True, slots=True)
class DurationDist:
    """How long a task takes (emulator seconds): log-uniform in ``[lo, hi]``, or fixed if equal."""

    lo: float
    hi: float

    @classmethod
    def fixed(cls, seconds: float) -> DurationDist:
        return cls(seconds, seconds)

    @classmethod
    def log_uniform(cls, lo: float, hi: float) -> DurationDist:
        if not 0 < lo <= hi:
            raise ValueError("need 0 < lo <= hi")
        return cls(lo, hi)

    def sample(self, rng: random.Random) -> float:
        if self.lo == self.hi or self.lo <= 0:
            return self.hi
        return math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))


#: Default task durations in emulator seconds (log-uniform between the bounds), by model kind:
#: images 5-60 s, videos 60-300 s, audio (Suno) 30-120 s. Unknown models count as images.
IMAGE = DurationDist(5.0, 60.0)
VIDEO = DurationDist(60.0, 300.0)
AUDIO = DurationDist(30.0, 120.0)
_BY_KIND = {"image": IMAGE, "video": VIDEO, "audio": AUDIO}

#: Defaults for non-media task families (keys usable in ``EmulatorConfig.durations`` too):
#: Midjourney 30-90 s (an upsample 5-15 s), FaceSwap 1-30 s, BGRemover 1-10 s.
FAMILY_DURATIONS: dict[str, DurationDist] = {
    "midjourney": DurationDist(30.0, 90.0),
    "midjourney/upsample": DurationDist(5.0, 15.0),
    "faceswap": DurationDist(1.0, 30.0),
    "bgremover": DurationDist(1.0, 10.0),
}

MJ_COSTS: dict[str, float] = {
    "midjourney/imagine": 18.0,
    "midjourney/variation": 18.0,
    "midjourney/inpaint": 18.0,
    "midjourney/reroll": 18.0,
    "midjourney/outpaint": 18.0,
    "midjourney/pan": 18.0,
    "midjourney/upscale": 18.0,
    "midjourney/upsample": 0.0,
}


@dataclass
class EmulatorConfig:
    """Build-time settings of an :class:`Emulator` (runtime knobs live in ``emu.faults``).

    Times are in *emulator* seconds, divided by ``time_scale`` to get real seconds. Keys of
    ``durations`` and ``costs``: a media model id (``"google-imagen-3"``), ``"midjourney"``
    (every Midjourney action) or ``"midjourney/<action>"``, ``"faceswap"``, ``"bgremover"``.
    """

    #: Accepted API keys (raw or ``Bearer``); ``None`` accepts any non-empty key.
    api_keys: set[str] | None = None
    #: Emulator seconds per real second: 20 makes a 60 s video take 3 s. Announced to clients.
    time_scale: float = 1.0
    #: Seeds task durations, ids and fault draws, for repeatable runs.
    seed: int | None = None
    #: Duration overrides by model id or family key (see ``DurationDist.fixed``).
    durations: dict[str, DurationDist] = field(default_factory=dict)
    #: Cost overrides by model id or family key; Midjourney actions cost 18 (upsample 0).
    costs: dict[str, float] = field(default_factory=dict)
    #: What any other create costs.
    default_cost: float = 1.0
    #: Starting balances; a create the balance cannot pay is answered 402.
    org_balance: float = 1_000_000.0
    wallet_balance: float = 1_000_000.0
    #: How far below zero the organisation may go (``/v1/balance``'s ``creditLimit``).
    credit_limit: float = 0.0
    org_id: str = "emulator-org"
    #: How long result links of ``/media/create`` tasks live after the task ends (48 h).
    link_ttl: float = 48 * 3600.0
    #: The same for ``/media/generate`` images (24 h).
    generate_link_ttl: float = 24 * 3600.0
    #: Share of its duration a task stays ``idle`` before ``processing``.
    processing_after: float = 0.1
    #: Real seconds of tolerance before a request during a 429 pause counts as a
    #: ``Retry-After`` violation.
    retry_after_grace: float = 0.05
    #: At most this many request arrival times are kept for the rate counters.
    max_arrivals: int = 2_000_000

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError("time_scale must be > 0")

    def duration_dist(self, key: str) -> DurationDist:
        """The distribution for a model id or family key (overrides first, then defaults)."""
        family = key.split("/", 1)[0]
        for k in (key, family):
            if k in self.durations:
                return self.durations[k]
        if key in FAMILY_DURATIONS:
            return FAMILY_DURATIONS[key]
        if family in FAMILY_DURATIONS:
            return FAMILY_DURATIONS[family]
        spec = MODELS.get(key)
        return _BY_KIND[spec.kind] if spec is not None else IMAGE

    def cost(self, key: str) -> float:
        """What a create of this model/action costs."""
        if key in self.costs:
            return self.costs[key]
        family = key.split("/", 1)[0]
        if family in self.costs:
            return self.costs[family]
        return MJ_COSTS.get(key, self.default_cost)

    def real(self, emulator_seconds: float) -> float:
        """Emulator seconds -> real seconds."""
        return emulator_seconds / self.time_scale
