"""TrainConfig: the one validated description of a training run.

The CLI, the Python API and the backend's REST API all validate the very same pydantic model, so
a bad value is rejected with the same message everywhere (the field name is in the error).
Every field carries a type, a range and a help text: the dashboard's launch form is generated
from `TrainConfig.model_json_schema()` / `field_specs()`. It imports without torch (names and rules
are engine/vocabulary.py's): the dashboard server validates every launch with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from marginscope.engine.regimes import validate_regime
from marginscope.engine.vocabulary import check_dataset_name, check_model_name, selector_declaration

# a JSON array is a drop here: the only field where a list stands for a tuple
RegimeSpec = str | list[Annotated[tuple[float, float], Strict(False)]]


class TrainConfig(BaseModel):
    """Everything that decides a run. Resolved and stored in every checkpoint.

    Types are strict: `true` is not a step count, 1 is not a boolean and "5" is not a number
    (JSON, config files, Python). Command-line text goes through `from_text`, which parses numbers
    and booleans from their spelling; every other rule is the same.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)

    # --- data
    dataset: str = Field(
        "mnist",
        description="Dataset by name: mnist (offline default), digits (tiny, for tests), cifar10, "
        "cifar100, fashion-mnist, or imagefolder:<path>.",
        min_length=1,
    )
    data_dir: str = Field("data", description="Folder holding datasets, checkpoints and downloads.")
    download: bool = Field(False, description="Allow downloading a torchvision dataset that is missing.")
    train_subset: int | None = Field(
        None, ge=1, description="Train on only the first N training samples (after a seeded shuffle)."
    )
    val_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of the training set held out for validation "
        "(datasets without their own validation split)."
    )
    augment: bool = Field(True, description="Standard augmentation (CIFAR: pad 4, random crop, flip).")
    label_noise: float = Field(
        0.0, ge=0.0, lt=0.9, description="Share of training labels flipped to another class, chosen "
        "uniformly (symmetric noise, seeded by seed; validation and test stay clean). For measuring "
        "how well mislabelled samples are found."
    )
    clean_only: bool = Field(
        False, description="Oracle for label-noise studies: train only on the samples whose labels "
        "label_noise left intact. An epoch keeps the length of the whole training split, so the run "
        "takes as many steps as a noisy one. Needs label_noise above 0."
    )

    # --- model
    model: str = Field(
        "auto",
        description="Model: auto (small-cnn for MNIST-like data, resnet20 otherwise), small-cnn, "
        "resnet20/32/44/56/110, or wrn-<depth>-<width> such as wrn-28-10 (depth at most 64, width "
        "at most 16).",
        min_length=1,
    )

    # --- selection
    selector: str = Field(
        "mms", description="How the training batch is chosen from the candidates: uniform, mms, "
        "mms-runner-up, hard-negative, entropy, selective-backprop."
    )
    selector_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra options passed to the selector (see its help)."
    )
    candidates: int = Field(
        640, ge=1, le=65536, description="Candidate batch B scored at each step (uniform uses B = b)."
    )
    batch_size: int = Field(64, ge=1, le=8192, description="Training batch b back-propagated at each step.")
    score_chunk: int = Field(
        128, ge=0, le=65536, description="Score candidates in chunks of this size (0 = one batch); "
        "small chunks are faster per sample on CPU."
    )
    bn_stats: Literal["pool", "batch"] = Field(
        "pool", description="Where BatchNorm's running statistics (used to evaluate) come from: pool = "
        "the random candidates the selector scores (unbiased), batch = the selected training batch "
        "(PyTorch's usual; drifts toward hard samples under selection). Selectors that score no "
        "candidates always use batch."
    )

    # --- optimisation
    epochs: float = Field(
        1.0, gt=0.0, le=10000.0, description="Run length in epochs; one epoch = N/b training steps."
    )
    steps: int | None = Field(None, ge=1, description="Run length in steps (overrides epochs).")
    lr: float = Field(0.1, gt=0.0, le=10.0, description="Peak learning rate of SGD.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum.")
    weight_decay: float = Field(
        1e-4, ge=0.0, le=1.0, description="Weight decay (not applied to BatchNorm and biases)."
    )
    regime: RegimeSpec = Field(
        "normal", description="LR regime: normal, aggressive, constant, normal-wrn, aggressive-wrn, "
        "or a list of [epoch, factor] drops (absolute epochs of this run)."
    )
    warmup_epochs: float = Field(0.0, ge=0.0, le=1000.0, description="Linear LR warm-up length in epochs.")

    # --- monitoring and evaluation
    eval_every: int | None = Field(
        None, ge=1, description="Validate every N steps (default: every epoch, at least 10 times a run)."
    )
    eval_samples: int | None = Field(
        None, ge=1, description="Validate on at most N samples (the test at the end uses all)."
    )
    log_every: int = Field(10, ge=1, le=100000, description="Emit step metrics every N steps.")
    hist_every: int = Field(
        10, ge=0, le=100000, description="Emit margin histograms and selection statistics every N "
        "steps (0 = off)."
    )
    samples_every: int = Field(
        50, ge=0, le=100000, description="Emit a samples snapshot (lowest-margin samples, selection "
        "counts, suspect labels) every N steps (0 = off)."
    )
    samples_k: int = Field(64, ge=1, le=500, description="Lowest-margin samples in each samples snapshot.")
    hist_bins: int = Field(60, ge=4, le=1000, description="Number of histogram bins (fixed for the run).")
    system_interval: float = Field(
        5.0, ge=0.0, le=3600.0, description="Seconds between system metric readings (CPU, memory, "
        "GPU when training on CUDA), sent as system/ scalars and drawn in the run page's System "
        "panel (0 = off; otherwise at least 0.1)."
    )
    checkpoint_every: int | None = Field(
        None, ge=1, description="Save a checkpoint every N steps (default: at each validation)."
    )

    # --- machine
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed for initialisation, data order and augmentation.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Device to train on.")
    amp: bool = Field(True, description="Mixed precision on CUDA (ignored on CPU).")
    channels_last: bool = Field(True, description="Channels-last memory format for conv nets.")
    threads: int | None = Field(None, ge=1, le=1024, description="CPU threads for torch (default: all cores).")
    nproc: int = Field(
        1, ge=1, le=64, description="Processes training this run together on this machine "
        "(DistributedDataParallel under torchrun: one per GPU, or CPU processes); B and b are split "
        "evenly over them."
    )

    # --- output
    out_dir: str | None = Field(None, description="Folder for checkpoints and the event log (none = no files).")
    resume_from: str | None = Field(None, description="Checkpoint file to resume from.")

    @classmethod
    def from_text(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from command-line text ("5", "true", "0.1" parsed as what their field holds)."""
        return cls.model_validate(dict(values), strict=False)

    # The checks below are engine/vocabulary.py's: plain Python, so that the dashboard server
    # validates a launch without importing torch.

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        check_dataset_name(value)
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value != "auto":
            check_model_name(value)  # a listed name, or a Wide ResNet within the size caps
        return value

    @field_validator("selector")
    @classmethod
    def _known_selector(cls, value: str) -> str:
        selector_declaration(value)  # raises for an unknown name, naming the choices
        return value

    @field_validator("system_interval")
    @classmethod
    def _readable_interval(cls, value: float) -> float:
        if 0 < value < 0.1:  # each reading is an event sent to the dashboard
            raise ValueError("system_interval must be 0 (off) or at least 0.1 seconds")
        return value

    @field_validator("regime")
    @classmethod
    def _known_regime(cls, value: RegimeSpec) -> RegimeSpec:
        return validate_regime(value)

    @model_validator(mode="after")
    def _batch_fits(self) -> TrainConfig:
        if self.clean_only and not self.label_noise:
            raise ValueError("clean_only trains on the samples label_noise left intact: set label_noise above 0")
        selector = selector_declaration(self.selector)
        try:  # reject unknown or out-of-range selector options now, not at the first step
            selector.resolve({"chunk": self.score_chunk, **self.selector_options})
        except (TypeError, ValueError) as exc:  # a plug-in's check may raise either
            raise ValueError(f"selector_options: {exc}") from None
        if selector.uses_candidates and self.candidates < self.batch_size:
            raise ValueError(
                f"candidates (B={self.candidates}) must be at least batch_size (b={self.batch_size})"
            )
        for name in ("batch_size", "candidates") if selector.uses_candidates else ("batch_size",):
            if getattr(self, name) % self.nproc:  # each process takes B/nproc and b/nproc
                raise ValueError(f"{name} ({getattr(self, name)}) must be a multiple of nproc "
                                 f"({self.nproc}): each process draws and trains an equal share")
        return self


def field_specs() -> list[dict[str, Any]]:
    """Each field's name, JSON type, default, bounds and help text, for generated forms."""
    schema = TrainConfig.model_json_schema()
    specs = []
    for name, prop in schema["properties"].items():
        field = TrainConfig.model_fields[name]
        types = [p.get("type") for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
        bounds = {k: v for p in prop.get("anyOf", [prop]) for k, v in p.items()
                  if k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum")}
        specs.append({
            "name": name,
            "type": types[0] if types else "string",
            "nullable": any(p.get("type") == "null" for p in prop.get("anyOf", [])),
            "default": field.get_default(call_default_factory=True),
            "help": field.description or "",
            **bounds,
        })
    return specs


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it, for command-line errors."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
