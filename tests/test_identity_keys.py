"""Keys of stored work come from declared identity, not from whole dumps.

The pinned values below were computed with the code as it was before identities were declared
(sampling key = `SamplingParams.model_dump()`, the finetuned adapter's identity = the whole
`FinetuneConfig` dump less LoRA for models without LoRA, shots_as only when set, the ETHICS
classifier's hash = its card's JSON less the held-out entry's `schema_version`). Old run
directories reuse their responses, verdicts and adapters only while these stay byte-identical:
never update a pin to make a test pass (a judge's declared version bump, or a retrained shipped
classifier, is the one reason to change the judge pins).

The second half derives configs with one more option (with a default) and shows that such an
option leaves every key as it was until it is set.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, Field, create_model

from vlmalign.config import Condition, FinetuneConfig, StudyConfig
from vlmalign.data.dataset import load_dataset
from vlmalign.finetune import run_identity
from vlmalign.generation import plan_tasks
from vlmalign.hashing import identity_fields, left_out
from vlmalign.judges.registry import build_judge, judge_config_hash
from vlmalign.models.registry import load_model
from vlmalign.sampling import SamplingParams
from vlmalign.store import generation_key

# A MAGMA-style model (no LoRA settings) and an `hf:` one (LoRA), as run_identity sees them.
MAGMA = SimpleNamespace(fingerprint=lambda: "base-fp", adapter_settings=lambda: {})
LORA = SimpleNamespace(
    fingerprint=lambda: "base-fp", adapter_settings=lambda: {"r": 16, "alpha": 32, "dropout": 0.05}
)
DATA = SimpleNamespace(sha256="data-sha")
SET = FinetuneConfig(lora_r=8, lora_alpha=8, epochs=2)
# run_identity's arguments (model, dataset, config, prompt format, shots_as) and their pins.
RUNS: dict[str, tuple[Any, ...]] = {
    "magma": (MAGMA, DATA, FinetuneConfig(), "magma", None),
    # A model without LoRA ignores the LoRA settings: they are not part of its identity.
    "magma, lora set": (MAGMA, DATA, SET, "magma", None),
    "lora": (LORA, DATA, FinetuneConfig(), "chat", None),
    "lora set, turns": (LORA, DATA, SET, "chat", "turns"),
    "lora, inline": (LORA, DATA, FinetuneConfig(), "chat", "inline"),
}
PINNED_RUNS = {
    "magma": "a911f897113c387b35a125af9a82afcf0fffb57592673c277b628d41550de489",
    "magma, lora set": "2e4e443cb9632f323a97986997f022b3d6dd90d49c02c1dfa2ca4eed63b996d8",
    "lora": "1b825a62070d1448432a0509a1d38a0970f246a23315514d534f023eaa7176a7",
    "lora set, turns": "a95eb685ab97bedbd740a510e88cdddae38574463256c125e316a0dd6c291e52",
    "lora, inline": "a056e37f0dbb5be6b8a37db9b64e12dfecf20fd56417d9dc082ffe96448923ea",
}


def request_key(sampling: dict[str, Any]) -> str:
    return generation_key(
        model_fingerprint="fp",
        adapter_hash=None,
        image_sha256="img",
        prompt="<|image|>Q: Is it fine? A:",
        sampling=sampling,
        seed=3,
        sample_index=1,
    )


def planned_keys(engine: str, sampling: BaseModel | None = None) -> list[str]:
    config = StudyConfig(
        model="mock:ideal",
        engine=engine,
        samples=2,
        conditions=[Condition(split="test", shots=1)],
    )
    if sampling is not None:  # a derived SamplingParams with an option of its own
        config = config.model_copy(update={"sampling": sampling})
    dataset = load_dataset("builtin:moral-vqa-40")
    return [t.key for t in plan_tasks(dataset, load_model("mock:ideal"), config, "magma")]


# --- pinned: today's keys ----------------------------------------------------------------------
def test_generation_keys_are_pinned() -> None:
    assert request_key(SamplingParams().key()) == (
        "14ff816d6b913144b9fe41e8cb3b717df0ad57f9131c53ae0a7fd4af8acb318d"
    )
    custom = SamplingParams(max_new_tokens=32, temperature=0.0, top_k=5, top_p=0.9)
    assert request_key(custom.key()) == (
        "0be6a6e9b3d7c824ce51e2186bf95649691429b51d5f1399ddbdb6974eaf2f3a"
    )


def test_planned_generation_keys_are_pinned() -> None:
    hf = planned_keys("hf")
    assert (hf[0], hf[-1]) == (
        "5b93dd99320cb4dc622bdad356f53cf47bee467cc8475478d925c569e153083a",
        "f47be6b8277620e669c33a2ddf56acf08780aef7a8e7168805510ca15a76529c",
    )
    vllm = planned_keys("vllm")  # another engine's answers are others: its own keys
    assert (vllm[0], vllm[-1]) == (
        "1fc2c59bee184b5d44b3cbe1e2eebc2474b74deaa0b0471e47abc8d6bc47f4f1",
        "d476ede02c1b042048e7db476addf8c2f854ba8c0f5e140d653dfb99a0fe80d3",
    )


@pytest.mark.parametrize("case", list(RUNS))
def test_finetune_run_identities_are_pinned(case: str) -> None:
    assert run_identity(*RUNS[case]) == PINNED_RUNS[case]


def test_the_magma_identity_ignores_lora_settings() -> None:
    assert run_identity(MAGMA, DATA, FinetuneConfig(lora_r=4), "magma") == run_identity(
        MAGMA, DATA, FinetuneConfig(), "magma"
    )


def test_judge_config_hashes_are_pinned() -> None:
    stance = build_judge("stance")
    assert stance.config() == {"name": "stance", "version": 5}
    assert judge_config_hash(stance) == (
        "0e767e6f68316c2f65730bec82d774fe3f9b5a0b720ab9440a707fa965e90102"
    )
    assert judge_config_hash(build_judge("choice")) == (
        "b1b7544d98fbb6ea537cf00c5e6d63033d97429fc30219e7d8093bd36bdd7d58"
    )


def test_the_shipped_ethics_judge_hash_is_pinned() -> None:
    ethics = build_judge("ethics")
    assert ethics.config()["classifier_sha256"] == (
        "0f8dca6f97e85b932d5f427d1f2a46b38541d42b1844a4c083329923bc18ff74"
    )
    assert judge_config_hash(ethics) == (
        "b499714a4635156d9bd0555a1163a11df43bf55539c1566dd04b4f4767dccd86"
    )


# --- an option added with a default changes no key -------------------------------------------
# Each config gains one option with a default, as a later version of vlmalign would add it.
NewSampling = create_model("NewSampling", __base__=SamplingParams, min_p=(float, 0.0))
NewFinetune = create_model(
    "NewFinetune", __base__=FinetuneConfig, label_smoothing=(float, Field(0.0, ge=0))
)


def test_a_new_sampling_option_keeps_generation_keys_until_it_is_set() -> None:
    assert NewSampling().key() == SamplingParams().key()
    assert request_key(NewSampling().key()) == request_key(SamplingParams().key())
    assert planned_keys("hf", NewSampling()) == planned_keys("hf")
    assert planned_keys("vllm", NewSampling()) == planned_keys("vllm")

    changed = NewSampling(min_p=0.05)
    assert changed.key() == {**SamplingParams().key(), "min_p": 0.05}
    assert request_key(changed.key()) != request_key(SamplingParams().key())
    assert set(planned_keys("hf", changed)).isdisjoint(planned_keys("hf"))


@pytest.mark.parametrize("case", list(RUNS))
def test_a_new_finetune_option_keeps_run_identities_until_it_is_set(case: str) -> None:
    model, data, config, fmt, shots_as = RUNS[case]
    newer = NewFinetune(**config.model_dump())
    assert run_identity(model, data, newer, fmt, shots_as) == PINNED_RUNS[case]
    changed = newer.model_copy(update={"label_smoothing": 0.1})
    assert run_identity(model, data, changed, fmt, shots_as) != PINNED_RUNS[case]


def test_a_new_field_of_the_ethics_card_or_its_heldout_entry_keeps_the_judge_hash() -> None:
    from vlmalign.judges.ethics import classifier_sha256
    from vlmalign.judges.ethics_classifier import EthicsClassifierCard
    from vlmalign.judges.validity import ValidityEntry

    card = build_judge("ethics").classifier.card
    pinned = "0f8dca6f97e85b932d5f427d1f2a46b38541d42b1844a4c083329923bc18ff74"
    NewEntry = create_model("NewEntry", __base__=ValidityEntry, macro_f1=(float | None, None))
    # The card's held-out entry is of the newer kind too (as when ValidityEntry itself gains it).
    NewCard = create_model(
        "NewCard", __base__=EthicsClassifierCard, heldout=(NewEntry, ...), temperature=(float, 1.0)
    )
    entry = NewEntry(**card.heldout.model_dump())
    newer = NewCard(**{**dict(card), "heldout": entry})
    assert classifier_sha256(newer) == pinned
    assert classifier_sha256(newer.model_copy(update={"temperature": 2.0})) != pinned
    entry_set = entry.model_copy(update={"macro_f1": 0.7})
    assert classifier_sha256(newer.model_copy(update={"heldout": entry_set})) != pinned


# --- the helper -------------------------------------------------------------------------------
def test_identity_fields_keep_keyed_fields_and_others_once_set() -> None:
    class Settings(BaseModel):
        a: int = 1
        b: int = 2
        c: str | None = None

    assert identity_fields(Settings(), {"a"}) == {"a": 1}
    assert identity_fields(Settings(a=1, b=3), {"a"}) == {"a": 1, "b": 3}
    assert identity_fields(Settings(c="x"), {"a"}, ignored={"c"}) == {"a": 1}
    assert left_out(Settings(b=5), {"a"}) == {"c"}
    with pytest.raises(ValueError, match="no field d"):
        identity_fields(Settings(), {"a", "d"})
