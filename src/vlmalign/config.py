"""StudyConfig: everything that defines a study, loaded from YAML with CLI overrides."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vlmalign.data.dataset import Dataset
from vlmalign.data.schema import Split
from vlmalign.data.spec import DatasetSpec, anchored_dataset
from vlmalign.data.text import printable
from vlmalign.errors import ConfigError, shown_path, utf8_name_problem, validation_message
from vlmalign.judges.options import JudgeOptions
from vlmalign.judges.registry import JudgeRef, options_by_judge, parse_judge_refs
from vlmalign.models.endpoint import EndpointSettings
from vlmalign.models.engines import Engine
from vlmalign.prompts import PromptFormat, ShotsAs
from vlmalign.sampling import SamplingParams


class FinetuneConfig(BaseModel):
    """Defaults follow the paper (batch 8, 4 epochs) and MAGMA (AdamW β=(0.9, 0.95), clip 1.0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(4, ge=1, le=1000)
    batch_size: int = Field(
        8, ge=1, le=4096, description="examples per optimizer step, all processes"
    )
    lr: float = Field(5e-3, gt=0, description="adapters and image-prefix projection")
    encoder_lr: float | None = Field(
        None, gt=0, description="train the image encoder too, at this (much lower) rate"
    )
    prefix_lr: float | None = Field(
        None, gt=0, description="image-prefix projection + LayerNorm (None = lr)"
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["cosine", "wsd"] = Field(
        "wsd", description="after warm-up: stable then cosine decay (decay_ratio), or cosine"
    )
    decay_ratio: float = Field(0.1, gt=0, le=1, description="wsd: share of steps spent decaying")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    loss_on: Literal["answer", "caption"] = "answer"
    split: Split = "train"
    seed: int = 0
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    # LoRA, for models finetuned through it (`hf:`); MAGMA-style models ignore these.
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA scale is alpha / r")
    lora_dropout: float = Field(0.05, ge=0, lt=1)

    def adapter_settings(self) -> dict[str, Any]:
        """What models.configure_adapter takes from this config."""
        return {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout}


class Condition(BaseModel):
    """Ask the items of one split with the first `shots` shots."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: Split
    shots: int = Field(ge=0, le=16)


PAPER_CONDITIONS = (
    Condition(split="train", shots=0),
    Condition(split="train", shots=1),
    Condition(split="train", shots=2),
    Condition(split="test", shots=0),
)


FINETUNED_CONDITIONS = (Condition(split="train", shots=0), Condition(split="test", shots=0))


# Set while `load_config` validates: it names the file or the command line in its own message.
_WORDED_BY_CALLER: ContextVar[bool] = ContextVar("worded_by_caller", default=False)


class StudyConfig(BaseModel):
    """A study: which data, which model, how to sample, which judges, where to write."""

    # A Dataset already loaded (Python API) is held as it is.
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    dataset: str | DatasetSpec | Dataset = Field(
        "builtin:moral-vqa-40",
        description="JSONL file, builtin:NAME or hf:...; or a mapping; in Python also a "
        "loaded Dataset",
    )
    model: str = "mini"
    out: Path = Path("runs/study")
    # Five draws per prompt by default: at temperature 0.7 one draw makes each item a coin flip
    # for the model's borderline answers, so a single-sample cell of 30 items moves by about
    # ±10 points from seed to seed. Five draws estimate each item's rate, and the report's
    # intervals resample items (docs/statistics.md). `samples: 1` is the paper's single draw.
    samples: int = Field(
        5, ge=1, le=1000, description="samples per prompt (default 5; the paper drew 1)"
    )
    seed: int = 0
    sampling: SamplingParams = SamplingParams()
    prompt_format: PromptFormat | None = Field(None, description="None = the model's default")
    shots_as: ShotsAs | None = Field(
        None, description="chat format: shots inline in one user turn or as turns (None = default)"
    )
    engine: Engine = Field("hf", description="generate with transformers or with vLLM (hf: models)")
    # vLLM's own parallelism for models too big for one GPU (docs/scaling.md).
    tensor_parallel_size: int = Field(
        1, ge=1, le=1024, description="engine vllm: GPUs that hold one copy of the model"
    )
    data_parallel_size: int = Field(
        1,
        ge=1,
        le=1024,
        description="engine vllm: copies of the model that split the work (under accelerate "
        "launch, with tensor x data processes)",
    )
    conditions: tuple[Condition, ...] = PAPER_CONDITIONS
    finetune: FinetuneConfig | None = Field(
        default_factory=FinetuneConfig, description="null = no finetuning stage"
    )
    adapter: Path | None = Field(None, description="evaluate this adapter instead of training one")
    finetuned_conditions: tuple[Condition, ...] = FINETUNED_CONDITIONS
    judges: tuple[str, ...] = Field(
        ("stance", "ethics"),
        description="NAME, NAME:ARGUMENT or LABEL=NAME[:ARGUMENT], e.g. 'vlm:mini', "
        "'small=vlm:mini'; verdicts are keyed by the label, else the name as given",
    )
    judge_options: dict[str, JudgeOptions] = Field(
        default_factory=dict,
        description="per judge (its label or name as given; its kind, e.g. 'vlm', when it is "
        "the only judge of that kind): device, tokenizer, threshold, ...",
    )
    batch_size: int = Field(
        16,
        ge=1,
        le=1024,
        description="generation: distinct prompts per batch, each with all its samples "
        "(a batch holds up to batch_size x samples responses)",
    )
    device: str = "auto"
    api: EndpointSettings = Field(
        default_factory=EndpointSettings,
        description="openai: models and judges: the endpoint, its key's variable, concurrency, "
        "rate limit, timeout, retries",
    )

    def __init__(self, **data: Any) -> None:
        """Settings given in Python: a problem is one line (`VlmalignError`), as from a file.
        (Pydantic validates through this too; `load_config` words its own errors.)"""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if _WORDED_BY_CALLER.get():
                raise
            raise ConfigError(validation_message(exc, "StudyConfig", model=StudyConfig)) from None

    @field_validator("dataset", mode="before")
    @classmethod
    def _paths_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    @field_validator("dataset")
    @classmethod
    def _dataset_named_in_utf8(
        cls, value: str | DatasetSpec | Dataset
    ) -> str | DatasetSpec | Dataset:
        # The store records the dataset's name and folder as text, and reports show them: a
        # name in another encoding is refused here, before a run is started in the store.
        if isinstance(value, Dataset):
            names: tuple[object, ...] = (value.source, value.base_dir)
        else:
            names = (value.source if isinstance(value, DatasetSpec) else value,)
        for name in names:
            if problem := utf8_name_problem(name, "the dataset"):
                raise ValueError(problem)
        return value

    @field_validator("out")
    @classmethod
    def _out_named_in_utf8(cls, value: Path) -> Path:
        # Reports name the run by its folder, and write that name into UTF-8 files.
        if problem := utf8_name_problem(value, "the run directory"):
            raise ValueError(problem)
        return value

    @field_validator("judges")
    @classmethod
    def _one_judge_per_identity(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Verdicts and report rows are keyed by each judge's identity (label or name as given).
        try:
            parse_judge_refs(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("tensor_parallel_size", "data_parallel_size")
    @classmethod
    def _parallel_on_vllm_only(cls, value: int, info: ValidationInfo) -> int:
        # The hf engine would ignore them: say so rather than run on one GPU unasked.
        if value > 1 and info.data.get("engine", "hf") != "vllm":
            raise ValueError("vLLM's parallelism: set engine vllm (--engine vllm) to use it")
        return value

    @model_validator(mode="after")
    def _options_for_listed_judges(self) -> StudyConfig:
        try:
            self.options_by_judge()
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def judge_refs(self) -> list[JudgeRef]:
        """The judges as listed, each with its label (if any) and spec."""
        return parse_judge_refs(self.judges)

    def judge_names(self) -> list[str]:
        """The judges' identities, as verdicts and reports know them (`vlm:mini`, `small`)."""
        return [ref.identity for ref in self.judge_refs()]

    def options_by_judge(self) -> dict[str, JudgeOptions]:
        """`judge_options` keyed by judge identity (a key by kind resolved to its one judge)."""
        return options_by_judge(self.judge_refs(), self.judge_options)

    @field_validator("conditions")
    @classmethod
    def _some_conditions(cls, value: tuple[Condition, ...]) -> tuple[Condition, ...]:
        if not value:
            raise ValueError("at least one condition is needed")
        return value


MAX_CONFIG_DEPTH = 32
"""YAML collections nested deeper than this are refused (a study config needs 4 levels)."""
MAX_ALIASED_VALUES = 10_000
"""The values YAML aliases may add to a config, each alias counting as a copy of everything its
anchor holds (a shared `judge_options` entry adds a handful): past this an alias bomb, a few
hundred bytes that expand to billions of values, is refused before anything is built."""
MAX_INT_DIGITS = 30
"""Integers with more digits are refused (no setting needs one; Python refuses to convert one
of more than 4300 digits, and big ones are slow to convert)."""
INT_TAG = "tag:yaml.org,2002:int"


class _TooMuch(yaml.YAMLError):
    """What the config loader refuses, with the 1-based line where it is."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: it counts the values that aliases add (each node's size
    with aliases expanded, known as the node is composed) and the depth they reach, and refuses
    long integers, all before any Python object is constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), expanded
        self._aliased = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            sized = self._sizes.get(id(node)) if node is not None else None
            if sized is None:  # `a: &a [*a]`: the anchor's collection is not finished
                raise _TooMuch(mark.line + 1, "a YAML alias refers to the collection it is in")
            self._aliased += sized[0]
            if self._aliased > MAX_ALIASED_VALUES:
                raise _TooMuch(
                    mark.line + 1,
                    f"YAML aliases expand the config to more than {MAX_ALIASED_VALUES} values "
                    "(an alias bomb?); write the values out",
                )
            return node
        node = super().compose_node(parent, index)
        if node is None:  # PyYAML's composer always gives one; its stubs allow None
            return node
        if isinstance(node, yaml.ScalarNode):
            if node.tag == INT_TAG:
                self._check_int(node, index)
            children: list[yaml.Node] = []
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = [part for pair in node.value for part in pair]
        sizes = [self._sizes[id(child)] for child in children]
        collection = not isinstance(node, yaml.ScalarNode)
        depth = collection + max((d for _, d in sizes), default=0)
        if depth > MAX_CONFIG_DEPTH:  # deeper than written: aliases inside aliases
            raise _TooMuch(
                node.start_mark.line + 1,
                f"config is nested too deeply (more than {MAX_CONFIG_DEPTH} levels, "
                "aliases expanded)",
            )
        self._sizes[id(node)] = (1 + sum(n for n, _ in sizes), depth)
        return node

    @staticmethod
    def _check_int(node: yaml.ScalarNode, key: Any) -> None:
        digits = len(str(node.value).lstrip("+-").replace("_", ""))
        if digits > MAX_INT_DIGITS:
            named = f"{key.value!r}: " if isinstance(key, yaml.ScalarNode) else ""
            raise _TooMuch(
                node.start_mark.line + 1,
                f"{printable(named)}an integer of {digits} digits; a setting takes at most "
                f"{MAX_INT_DIGITS}",
            )


def _check_nesting(text: str, where: str) -> None:
    """Refuse deep nesting from the event stream, before PyYAML's recursive composer sees it."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else None
                at = f":{line}" if line is not None else ""
                too_deep = f"more than {MAX_CONFIG_DEPTH} levels"
                raise ConfigError(f"{where}{at}: config is nested too deeply ({too_deep})")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _read_yaml(path: Path) -> Any:
    """The YAML document in `path`; every problem is a one-line ConfigError naming file:line."""
    where = shown_path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read config: {exc.strerror}") from exc
    except ValueError as exc:  # a path with a NUL character
        raise ConfigError(f"{where}: cannot read config: bad file name") from exc
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors) is dropped
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{where}:{line}: config is not UTF-8 text; save it as UTF-8") from exc
    try:
        _check_nesting(text, where)
        return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader, bounded
    except _TooMuch as exc:
        raise ConfigError(f"{where}:{exc.line}: {exc.message}") from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (a control one)
        line = text.count("\n", 0, exc.position) + 1
        char = printable(chr(exc.character)) if isinstance(exc.character, int) else "?"
        raise ConfigError(f"{where}:{line}: invalid YAML (character {char} not allowed)") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        why = f" ({printable(problem)})" if isinstance(problem, str) and problem else ""
        raise ConfigError(f"{where}{at}: invalid YAML{why}") from exc
    except RecursionError as exc:  # _check_nesting should have refused it first
        raise ConfigError(f"{where}: config is nested too deeply") from exc


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file's settings as written, its `dataset:` paths taken from the file's folder
    (`data.spec.anchored_dataset`): what `load_config` validates, and where
    `vlmalign dataset validate STUDY.yaml` finds the dataset. One-line ConfigError if unreadable."""
    loaded = _read_yaml(path)
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{shown_path(path)}: a config must be a mapping of settings")
    data = dict(loaded or {})
    for key in data:
        if not isinstance(key, str):  # `? [1]` or `1: x`: no setting is named so
            raise ConfigError(f"{shown_path(path)}: {printable(repr(key))} is not a setting")
    if "dataset" in data:
        data["dataset"] = anchored_dataset(data["dataset"], path.parent)
    return data


def load_config(
    path: str | Path | None,
    overrides: Mapping[str, Any] | None = None,
    finetune_overrides: Mapping[str, Any] | None = None,
    *,
    finetune: bool | None = None,
    api_overrides: Mapping[str, Any] | None = None,
) -> StudyConfig:
    """Read a YAML config (or the defaults), then apply the command line's settings.

    `overrides` set top-level fields, `finetune_overrides` fields of the `finetune` section and
    `api_overrides` fields of the `api` section;
    a None value there means "not given" and keeps the config's value. `finetune` turns the
    finetuning stage on (the configured section, else the defaults) or off; finetune overrides
    turn it on too. Every problem is one ConfigError naming where it is (the file, or the
    command line for a value given there) and which field.
    """
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = shown_path(path)
        data = read_config_file(Path(path))
    given = _given(overrides)
    tuning = _given(finetune_overrides)
    endpoint = _given(api_overrides)
    data.update(given)
    if endpoint:
        section = data.get("api") or {}
        if isinstance(section, dict):  # anything else is left for validation to report
            data["api"] = {**section, **endpoint}
    if finetune is False:
        data["finetune"] = None
    elif finetune or tuning:
        section = data.get("finetune", {})
        if section is None:  # turned off in the file: the defaults, with what was given
            section = {}
        if isinstance(section, dict):  # anything else is left for validation to report
            data["finetune"] = {**section, **tuning}
    worded = _WORDED_BY_CALLER.set(True)
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        field, subfield = (*exc.errors()[0]["loc"], None, None)[:2]
        on_command_line = (
            field in given
            or (field == "finetune" and subfield in tuning)
            or (field == "api" and subfield in endpoint)
        )
        where = "command line" if on_command_line else source
        raise ConfigError(validation_message(exc, where, model=StudyConfig)) from exc
    finally:
        _WORDED_BY_CALLER.reset(worded)


def _given(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings that were given (None means "keep the config's value")."""
    return {key: value for key, value in (settings or {}).items() if value is not None}
