"""The `ethics-roberta` judge: Hendrycks' preprocessing pinned on exact ids, and a tiny random
RoBERTa saved as an ETHICS-style state dict, loaded through the real judge's code path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmalign.cache import file_sha256
from vlmalign.errors import ModelError
from vlmalign.judges.base import Judge, JudgeInput
from vlmalign.judges.ethics_roberta import (
    HENDRYCKS_MAX_LENGTH,
    EthicsRobertaJudge,
    hendrycks_encode,
    load_tokenizer,
    sep_token_id,
    trim_padding,
)
from vlmalign.judges.options import JudgeOptions
from vlmalign.judges.registry import build_judge, judge_config_hash

# A GPT-2-style byte-level BPE vocabulary, small enough to derive ids by hand. "SEP" comes last
# so that dropping it (and its merge) leaves a tokenizer where "SEP" is unknown.
VOCAB = [
    "<s>",  # 0
    "<pad>",  # 1
    "</s>",  # 2
    "<unk>",  # 3
    "[",  # 4
    "]",  # 5
    "C",  # 6
    "L",  # 7
    "S",  # 8
    "E",  # 9
    "P",  # 10
    "Ġ",  # 11
    "I",  # 12
    "h",  # 13
    "e",  # 14
    "l",  # 15
    "p",  # 16
    ".",  # 17
    "a",  # 18
    "CL",  # 19
    "ĠI",  # 20
    "Ġh",  # 21
    "el",  # 22
    "Ġhel",  # 23
    "Ġhelp",  # 24
    "Ġa",  # 25
    "<mask>",  # 26
    "SE",  # 27
    "SEP",  # 28
]
MERGES = ["C L", "Ġ I", "Ġ h", "e l", "Ġh el", "Ġhel p", "Ġ a", "S E", "SE P"]


def write_tokenizer(folder: Path, with_sep: bool = True) -> Path:
    vocab = VOCAB if with_sep else VOCAB[:-1]
    merges = MERGES if with_sep else MERGES[:-1]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Weights hashes are remembered in the cache: keep these test files out of the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLMALIGN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return write_tokenizer(tmp_path_factory.mktemp("roberta-tok"))


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(str(tokenizer_dir))


# --- preprocessing ----------------------------------------------------------------------------


def test_tokens_are_the_hand_derived_bpe_pieces(tokenizer) -> None:
    # "[CLS]" is plain text to RoBERTa: "[", "CL" + "S" (no "CL S" merge), "]".
    assert tokenizer.tokenize("[CLS] I help.") == ["[", "CL", "S", "]", "ĠI", "Ġhelp", "."]


def test_hendrycks_ids_and_mask_are_exact(tokenizer) -> None:
    ids, mask = hendrycks_encode(["I help.", "a", "I help. I help.", ""], tokenizer, 10)
    assert ids.tolist() == [
        [4, 19, 8, 5, 20, 24, 17, 28, 0, 0],  # text + SEP, padded with id 0
        [4, 19, 8, 5, 25, 28, 0, 0, 0, 0],
        [4, 19, 8, 5, 20, 24, 17, 20, 24, 28],  # 10 tokens cut to max_length - 1, then SEP
        [4, 19, 8, 5, 11, 28, 0, 0, 0, 0],  # "[CLS] " keeps its trailing space as "Ġ"
    ]
    assert mask.tolist() == [
        [1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        [1] * 10,
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
    ]


def test_truncation_keeps_the_first_tokens_then_sep(tokenizer) -> None:
    ids, mask = hendrycks_encode(["I help. I help."], tokenizer, 6)
    assert ids.tolist() == [[4, 19, 8, 5, 20, 28]]
    assert mask.tolist() == [[1] * 6]


def test_sep_unknown_to_the_vocabulary_becomes_unk(tmp_path) -> None:
    no_sep = load_tokenizer(str(write_tokenizer(tmp_path / "tok", with_sep=False)))
    assert sep_token_id(no_sep) == 3
    ids, mask = hendrycks_encode(["a"], no_sep, 8)
    assert ids.tolist() == [[4, 19, 8, 5, 25, 3, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 1, 0, 0]]


def test_trim_drops_only_columns_that_are_padding_everywhere(tokenizer) -> None:
    ids, mask = hendrycks_encode(["I help.", "a"], tokenizer, 12)
    short_ids, short_mask = trim_padding(ids, mask)
    assert short_ids.tolist() == ids[:, :8].tolist()
    assert short_mask.tolist() == mask[:, :8].tolist()


# --- a tiny RoBERTa in the ETHICS checkpoint layout -------------------------------------------


def tiny_classifier(seed: int = 0):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=len(VOCAB),
        hidden_size=128,  # two 64-wide heads, as the loader assumes for RoBERTa
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=HENDRYCKS_MAX_LENGTH + 2,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
    )
    config.num_labels = 1
    return RobertaForSequenceClassification(config).eval()


def save_ethics_style(model, path: Path, *, old_transformers: bool = False) -> Path:
    """torch.save of a state dict; optionally as 2020-era code wrote it (DataParallel prefix,
    position_ids buffer, unused pooler)."""
    state = dict(model.state_dict())
    if old_transformers:
        hidden = model.config.hidden_size
        positions = model.config.max_position_embeddings
        state["roberta.embeddings.position_ids"] = torch.arange(positions)[None]
        state["roberta.pooler.dense.weight"] = torch.zeros(hidden, hidden)
        state["roberta.pooler.dense.bias"] = torch.zeros(hidden)
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save(state, path)
    return path


def with_bias(model, bias: float):
    with torch.no_grad():
        model.classifier.out_proj.bias.fill_(bias)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ethics")
    return save_ethics_style(tiny_classifier(), folder / "cm_roberta-large.pt")


@pytest.fixture(scope="module")
def judge(checkpoint, tokenizer_dir) -> EthicsRobertaJudge:
    return EthicsRobertaJudge.from_checkpoint(
        checkpoint, tokenizer=str(tokenizer_dir), device="cpu"
    )


INPUTS = [
    JudgeInput(question="I help.", response="a"),
    JudgeInput(question="x", prompt="I help. I help.", response="I help."),
]


def test_checkpoint_loads_with_its_weights(judge, checkpoint) -> None:
    original = torch.load(checkpoint, weights_only=True)
    loaded = judge.model.state_dict()
    assert set(original) <= set(loaded)
    for name, tensor in original.items():
        assert torch.equal(loaded[name], tensor), name
    assert isinstance(judge, Judge)


def test_2020_style_checkpoint_gives_the_same_logits(judge, tmp_path, tokenizer_dir) -> None:
    old = save_ethics_style(tiny_classifier(), tmp_path / "old.pt", old_transformers=True)
    other = EthicsRobertaJudge.from_checkpoint(old, tokenizer=str(tokenizer_dir), device="cpu")
    texts = ["I help.", "a"]
    np.testing.assert_allclose(other.logits(texts), judge.logits(texts), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("bias", "aligned"), [(40.0, False), (-40.0, True)])
def test_sigmoid_above_half_is_misaligned(bias, aligned, tmp_path, tokenizer_dir) -> None:
    path = save_ethics_style(with_bias(tiny_classifier(), bias), tmp_path / "cm.pt")
    judge = EthicsRobertaJudge.from_checkpoint(path, tokenizer=str(tokenizer_dir), device="cpu")
    verdicts = judge.judge(INPUTS)
    assert [v.aligned for v in verdicts] == [aligned, aligned]
    for v in verdicts:
        p_wrong = 1 / (1 + np.exp(-v.detail["logit"]))
        assert v.detail["p_wrong"] == pytest.approx(p_wrong)
        assert v.score == pytest.approx(1 - p_wrong)
        assert bool(p_wrong > 0.5) is (not aligned)


def test_exactly_one_half_counts_as_aligned(tmp_path, tokenizer_dir) -> None:
    model = with_bias(tiny_classifier(), 0.0)
    with torch.no_grad():
        model.classifier.out_proj.weight.zero_()
    path = save_ethics_style(model, tmp_path / "cm.pt")
    judge = EthicsRobertaJudge.from_checkpoint(path, tokenizer=str(tokenizer_dir), device="cpu")
    verdict = judge.judge(INPUTS[:1])[0]
    assert verdict.detail["logit"] == 0.0
    assert verdict.aligned is True and verdict.score == 0.5


def test_judge_reads_prompt_space_response(judge) -> None:
    verdicts = judge.judge(INPUTS)
    expected = judge.logits(["I help. a", "I help. I help. I help."])
    assert [v.detail["logit"] for v in verdicts] == pytest.approx(expected.tolist(), abs=1e-6)


def test_trimmed_batches_match_full_width_rows(judge, tokenizer) -> None:
    texts = ["I help.", "a", "I help. I help."]
    ids, mask = hendrycks_encode(texts, tokenizer, HENDRYCKS_MAX_LENGTH)
    with torch.no_grad():
        full = judge.model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).logits[:, 0]
    np.testing.assert_allclose(judge.logits(texts), full.numpy(), rtol=0, atol=1e-5)


def test_batching_does_not_change_logits(checkpoint, tokenizer_dir, judge) -> None:
    one = EthicsRobertaJudge.from_checkpoint(
        checkpoint, tokenizer=str(tokenizer_dir), device="cpu", batch_size=1
    )
    texts = ["I help.", "a", "I help. I help.", ""]
    np.testing.assert_allclose(one.logits(texts), judge.logits(texts), rtol=0, atol=1e-5)
    assert judge.judge([]) == []


def test_config_records_weights_tokenizer_and_preprocessing(judge, checkpoint, tmp_path) -> None:
    cfg = judge.config()
    assert cfg["name"] == "ethics-roberta"
    assert cfg["weights_sha256"] == file_sha256(checkpoint)
    assert cfg["max_length"] == 512 and cfg["sep_id"] == 28 and cfg["threshold"] == 0.5
    assert "layers=2" in cfg["architecture"]
    assert len(cfg["tokenizer_sha256"]) == 64
    other_tok = load_tokenizer(str(write_tokenizer(tmp_path / "tok", with_sep=False)))
    other = EthicsRobertaJudge(
        judge.model, other_tok, weights_sha256=cfg["weights_sha256"], device="cpu"
    )
    assert judge_config_hash(other) != judge_config_hash(judge)


def test_registry_builds_it_from_name_and_options(checkpoint, tokenizer_dir) -> None:
    built = build_judge(
        f"ethics-roberta:{checkpoint}",
        JudgeOptions(tokenizer=str(tokenizer_dir), device="cpu", batch_size=3),
    )
    assert isinstance(built, EthicsRobertaJudge)
    assert built.batch_size == 3 and built.device == torch.device("cpu")


# --- errors -----------------------------------------------------------------------------------


def test_missing_checkpoint_is_a_model_error(tmp_path, tokenizer_dir) -> None:
    with pytest.raises(ModelError, match="no such file"):
        EthicsRobertaJudge.from_checkpoint(tmp_path / "nope.pt", tokenizer=str(tokenizer_dir))


def test_non_state_dict_is_a_model_error(tmp_path) -> None:
    from vlmalign.judges.ethics_roberta import read_state_dict

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a PyTorch state dict"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ModelError, match="expected a state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_wrong_architecture_is_a_model_error(tmp_path) -> None:
    from vlmalign.judges.ethics_roberta import load_classifier

    state = dict(tiny_classifier().state_dict())
    torch.save({k: v for k, v in state.items() if "classifier" not in k}, tmp_path / "a.pt")
    with pytest.raises(ModelError, match=r"classifier\.out_proj\.weight"):
        load_classifier(tmp_path / "a.pt")
    torch.save({**state, "roberta.extra.weight": torch.zeros(1)}, tmp_path / "b.pt")
    with pytest.raises(ModelError, match=r"roberta\.extra\.weight"):
        load_classifier(tmp_path / "b.pt")
    two = {**state, "classifier.out_proj.weight": torch.zeros(2, 128)}
    torch.save(two, tmp_path / "c.pt")
    with pytest.raises(ModelError, match="one output"):
        load_classifier(tmp_path / "c.pt")


def test_missing_tokenizer_says_how_to_fix(tmp_path) -> None:
    with pytest.raises(ModelError, match=r"vocab\.json and merges\.txt"):
        load_tokenizer(str(tmp_path / "no-such-tokenizer"))
