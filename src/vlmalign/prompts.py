"""n-shot prompt construction (pure text; no model code).

A prompt is the image followed by text. In MAGMA's few-shot format the text is one
`Q: <question> A: <answer>` line per shot, then `Q: <question> A:`. The image's position is
marked with IMAGE_TOKEN so that prompts can be stored and hashed as plain strings.

A multiple-choice question (or shot) lists its options after the question, one `B. <text>` line
each, then `Answer:` (never `A:`, which would read as option A); a shot's answer is its correct
option, `B. <text>`:

    Q: Is this wrong?
    A. Not morally wrong
    B. Morally wrong
    Answer:

In chat turns the user's turn is that text without `Q: `, and a shot's assistant turn is its
correct option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlmalign.data.choices import choice_index, format_option
from vlmalign.data.schema import Item, Shot

IMAGE_TOKEN = "<|image|>"
PromptFormat = Literal["magma", "chat"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = ("magma", "chat")
# In the chat format, shots go either inside the one user turn (MAGMA's `Q: … A: …` lines after
# the image) or as earlier user/assistant turns.
ShotsAs = Literal["inline", "turns"]
SHOTS_AS: tuple[ShotsAs, ...] = ("inline", "turns")


@dataclass(frozen=True)
class Prompt:
    """What the model is asked: the first `n` shots of an item, then its question."""

    shots: tuple[Shot, ...]
    question: str
    choices: tuple[str, ...] = ()  # a multiple-choice question's options, in order

    def qa_text(self) -> str:
        """The text after the image in MAGMA's few-shot format."""
        lines = [_shot_text(shot) for shot in self.shots]
        if self.choices:
            lines.append(f"Q: {choice_question(self.question, self.choices)}")
        else:
            lines.append(f"Q: {self.question} A:")
        return "\n".join(lines)

    def magma_text(self) -> str:
        return f"{IMAGE_TOKEN}{self.qa_text()}"

    def chat_messages(self, shots_as: ShotsAs = "turns") -> list[dict[str, str]]:
        """Chat turns: the image opens the first user turn; each shot is a user/assistant pair
        (`turns`), or the shots and the question are MAGMA's lines in one user turn (`inline`)."""
        if shots_as == "inline":
            return [{"role": "user", "content": self.magma_text()}]
        messages = []
        for shot in self.shots:
            messages += [
                {"role": "user", "content": choice_question(shot.question, shot.choices)},
                {"role": "assistant", "content": _shot_answer(shot)},
            ]
        messages.append({"role": "user", "content": choice_question(self.question, self.choices)})
        messages[0] = {"role": "user", "content": IMAGE_TOKEN + messages[0]["content"]}
        return messages


def prompt_messages(
    prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None = None
) -> list[dict[str, str]]:
    """The turns a model is sent: MAGMA's text as one user turn, or the chat turns."""
    if prompt_format == "magma":
        return [{"role": "user", "content": prompt.magma_text()}]
    return prompt.chat_messages(shots_as or "turns")


def plain_rendering(
    prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None = None
) -> str:
    """A prompt's text for a backend without a chat template of its own (scripted and remote
    models): MAGMA's text, or the chat turns as `role: text` lines ending in `assistant:`."""
    if prompt_format == "magma":
        return prompt.magma_text()
    lines = [f"{m['role']}: {m['content']}" for m in prompt.chat_messages(shots_as or "turns")]
    return "\n".join([*lines, "assistant:"])


def choice_question(question: str, choices: tuple[str, ...]) -> str:
    """A question with its options, one `B. <text>` line each, then `Answer:`; a question
    without options as it is."""
    if not choices:
        return question
    options = [format_option(index, text) for index, text in enumerate(choices)]
    return "\n".join([question, *options, "Answer:"])


def _shot_answer(shot: Shot) -> str:
    """A multiple-choice shot answers with its correct option (`B. <text>`)."""
    if not shot.choices:
        return shot.answer
    index = choice_index(shot.answer)  # the schema stores the letter
    return format_option(index, shot.choices[index])


def _shot_text(shot: Shot) -> str:
    if not shot.choices:
        return f"Q: {shot.question} A: {shot.answer}"
    return f"Q: {choice_question(shot.question, shot.choices)} {_shot_answer(shot)}"


def build_prompt(item: Item, shots: int) -> Prompt:
    """The n-shot prompt of an item (1-shot is a prefix of 2-shot)."""
    if shots < 0:
        raise ValueError("shots must be >= 0")
    if len(item.shots) < shots:
        raise ValueError(f"item {item.id!r} has {len(item.shots)} shots, {shots} requested")
    return Prompt(shots=item.shots[:shots], question=item.question, choices=item.choices)


def condition_name(split: str, shots: int) -> str:
    """Stable condition label used in seeds and reports, e.g. `train/1-shot`."""
    return f"{split}/{shots}-shot"
