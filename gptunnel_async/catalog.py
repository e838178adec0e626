"""What each known media model accepts, and how long it usually takes.

The catalogue exists so that a create which the provider would reject is refused *locally*,
before anything is billed. It is deliberately incomplete: the provider adds models often, so an
id that is not listed here is still sent as-is. Facts come from ``GPTUNNEL_API.md``; a field the
docs do not state is ``None`` ("unknown") and is not validated — except the prompt's length,
which is always bounded (``prompt_limit``).

Each model also carries a duration prior that the poller starts from before it has seen any task
of that model finish.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

ModelKind = Literal["image", "video", "audio"]
Endpoint = Literal["create", "generate"]

#: The longest prompt sent for a model without a documented limit (known or not). The
#: longest any image model we know of takes is 32,000 characters (OpenAI's gpt-image-1, behind
#: the gpt-image-1-* ids); beyond that a "prompt" is a stray file, not a description, and would
#: be billed as one create and stored in every journal and manifest.
PROMPT_MAX_LEN = 32_000

AR_ALL = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")
AR_FIVE = ("1:1", "16:9", "9:16", "4:3", "3:4")
AR_VIDEO = ("1:1", "16:9", "9:16")
SUNO_VERSIONS = ("chirp-v3-5", "chirp-v4", "chirp-v4-5")


@dataclass(frozen=True)
class DurationPrior:
    """Seconds from create to done: ``low`` ~ 5th, ``median``, ``high`` ~ 95th percentile."""

    low: float
    median: float
    high: float


IMAGE_PRIOR = DurationPrior(low=5.0, median=15.0, high=60.0)
VIDEO_PRIOR = DurationPrior(low=60.0, median=140.0, high=300.0)
AUDIO_PRIOR = DurationPrior(low=20.0, median=60.0, high=180.0)
PRIORS: Mapping[ModelKind, DurationPrior] = MappingProxyType(
    {"image": IMAGE_PRIOR, "video": VIDEO_PRIOR, "audio": AUDIO_PRIOR}
)


@dataclass(frozen=True)
class ModelSpec:
    """One model id and what the docs say it accepts.

    ``ar``: allowed aspect ratios; ``()`` means the model takes none; ``None`` means unknown.
    ``max_images``: how many ``images`` it takes; ``0`` none; ``None`` unknown (not checked).
    ``documented``: stated on a provider page ([doc]) rather than only seen in client code.
    ``prompt_max_len``: the documented prompt limit in characters; ``None``: none documented
    (then ``PROMPT_MAX_LEN`` applies, see ``prompt_limit``).
    """

    id: str
    kind: ModelKind
    ar: tuple[str, ...] | None
    max_images: int | None
    documented: bool = True
    endpoint: Endpoint = "create"
    prompt_max_len: int | None = None
    note: str = ""

    @property
    def prior(self) -> DurationPrior:
        return PRIORS[self.kind]


def _specs() -> list[ModelSpec]:
    doc = [
        ModelSpec("google-imagen-3", "image", AR_ALL, 0),
        ModelSpec("gpt-image-1-high", "image", AR_FIVE, None, note="images: context image URLs"),
        ModelSpec("gpt-image-1-low", "image", AR_FIVE, None, note="images: context image URLs"),
        ModelSpec("yandex-art", "image", (), 0),
        ModelSpec("flux-dev", "image", AR_ALL, 0, note="images only for kontext models"),
        ModelSpec("seedream-3", "image", AR_FIVE, 1, note="one image to edit; then ar is ignored"),
        ModelSpec("glabs-veo-3", "video", None, 1, note="image = first frame"),
        ModelSpec("glabs-veo-3-1-fast", "video", AR_VIDEO, 1, note="~8 s mp4; image = first frame"),
        ModelSpec("seedance-1-lite-480P-5s", "video", AR_VIDEO, 1, note="image = first frame"),
        ModelSpec("seedance-1-pro-1080P-5s", "video", None, None),
        ModelSpec(
            "suno", "audio", (), 0, prompt_max_len=400, note="version: " + ", ".join(SUNO_VERSIONS)
        ),
        ModelSpec(
            "seedream-4",
            "image",
            None,
            None,
            endpoint="generate",
            note="synchronous /media/generate",
        ),
    ]
    seen_images = [
        "gpt-image-1-medium", "gpt-image-1", "gpt-image-1.5", "gpt-image-1.5-low", "nano-banana",
        "nano-banana-2", "nano-banana-2-2k", "flux-kontext-max", "qwen-image", "grok-imagine",
    ]  # fmt: skip
    seen = [ModelSpec(m, "image", None, None, documented=False) for m in seen_images]
    seen[0] = ModelSpec("gpt-image-1-medium", "image", AR_FIVE, None, documented=False)
    seen += [
        ModelSpec(m, "video", None, None, documented=False)
        for m in ("glabs-veo-3-1", "glabs-veo-3-fast")
    ]
    seen += [
        ModelSpec(m, "audio", None, None, documented=False)
        for m in ("suno-cover", "suno-edit", "suno-extend")
    ]
    return doc + seen


MODELS: Mapping[str, ModelSpec] = MappingProxyType({s.id: s for s in _specs()})


def get_model(model_id: str) -> ModelSpec | None:
    """A known model's spec, or ``None`` for an id the SDK has not heard of (still sendable)."""
    return MODELS.get(model_id)


def prompt_limit(model_id: str) -> int:
    """The most characters a prompt for ``model_id`` may have: its documented limit, else the
    general ``PROMPT_MAX_LEN`` (which also bounds ids the catalogue does not know)."""
    spec = MODELS.get(model_id)
    if spec is not None and spec.prompt_max_len is not None:
        return min(spec.prompt_max_len, PROMPT_MAX_LEN)
    return PROMPT_MAX_LEN


def kind_of(model_id: str) -> ModelKind:
    """Best guess of a model's kind, also for unknown ids (by name), defaulting to image."""
    spec = MODELS.get(model_id)
    if spec is not None:
        return spec.kind
    low = model_id.lower()
    if any(k in low for k in ("veo", "seedance", "video", "kling", "sora", "hailuo", "wan")):
        return "video"
    if any(k in low for k in ("suno", "audio", "music", "tts")):
        return "audio"
    return "image"
