"""What a study checks before it writes anything or loads its model: that the model can do
what the study asks (its declared capabilities), that the store is not an empty file, and that
the dataset has every condition's shots."""

from __future__ import annotations

from pathlib import Path

from vlmalign.config import StudyConfig
from vlmalign.data.dataset import Dataset, check_shots, load_dataset
from vlmalign.errors import ConfigError, ModelError
from vlmalign.models.registry import capabilities, require_capability
from vlmalign.models.spec import Capability
from vlmalign.store.connection import refuse_empty_file

#: What a study that finetunes a model that cannot be trained is told to do instead.
NO_FINETUNING = (
    "run the study without finetuning (--no-finetune, or `finetune: null` in the config)"
)
#: What a study or eval given an adapter for a model that takes none is told to do instead.
NO_ADAPTER = (
    "drop the adapter (--adapter, or `adapter:` in the config), or choose a model that takes "
    "one (`vlmalign models`)"
)
#: Either capability lets a model take an adapter folder: loaded into it, or served as it is.
ADAPTER_CAPABILITIES: tuple[Capability, ...] = ("train", "serve_adapter")


def _trains(config: StudyConfig) -> bool:
    """Whether the study finetunes its model itself (finetuning on, no adapter given)."""
    return config.finetune is not None and config.adapter is None


def _uses_adapter(config: StudyConfig, adapter: Path | None) -> bool:
    """Whether the model runs with an adapter folder (the config's, or an eval's `adapter`)."""
    return config.adapter is not None or adapter is not None


def require_capabilities(config: StudyConfig, adapter: Path | None = None) -> None:
    """Refuse, in one line naming what is missing, a study its model cannot run: finetuning
    needs 'train'; an adapter (the config's, or an eval's `adapter`) needs 'train' or
    'serve_adapter' (on `engine: vllm`, the engine's capabilities). Asked before anything is
    loaded or written: a model that cannot do the work is refused, never skipped."""
    if _trains(config):
        require_capability(config.model, "train", NO_FINETUNING, engine=config.engine)
    if _uses_adapter(config, adapter):
        has = capabilities(config.model, config.engine)
        if has.isdisjoint(ADAPTER_CAPABILITIES):
            shown = (
                config.model
                if config.engine == "hf"
                else f"{config.model} (engine {config.engine})"
            )
            raise ModelError(
                f"model {shown!r} cannot take an adapter: it lacks the 'train' and the "
                f"'serve_adapter' capability, either of which would do (it has: "
                f"{', '.join(sorted(has))}); {NO_ADAPTER}"
            )


def used_roles(config: StudyConfig, adapter: Path | None) -> list[Capability]:
    """The declared capabilities the study uses beyond generating: the loaded model must fill
    each one's role (a declared role it lacks is an error, `check_role`)."""
    if _trains(config):
        return ["train"]
    if _uses_adapter(config, adapter):
        has = capabilities(config.model, config.engine)
        return [capability for capability in ADAPTER_CAPABILITIES if capability in has]
    return []


def validate_for_study(config: StudyConfig, adapter: Path | None = None) -> Dataset:
    """Check the model can do what the study asks (`require_capabilities`), load the dataset and
    check every condition can be asked: all before anything is written or the model loaded."""
    if config.engine == "vllm" and _trains(config):
        raise ConfigError(
            "--engine vllm only generates: pass --no-finetune, or finetune first "
            "(`vlmalign finetune`, engine hf) and pass --adapter RUN_DIR/adapter"
        )
    require_capabilities(config, adapter)
    refuse_empty_file(config.out)  # before the model loads: the store would refuse it later
    dataset = load_dataset(config.dataset)
    conditions = list(config.conditions)
    if config.finetune is not None or config.adapter is not None:
        conditions += config.finetuned_conditions
    for condition in conditions:
        check_shots(dataset, condition.shots, condition.split)
    return dataset
