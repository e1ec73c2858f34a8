"""From raw completions to ranked tactics: extraction, cleaning, score math, deduplication.

Pure functions: no Ray, no vLLM. The rules follow ../shared/CONTRACT.md: no code fences, no surrounding
whitespace, no empty strings, never a mangled tactic (`by_cases` stays `by_cases`, `simp [clean_up]`
stays whole), every output starts with the request's prefix, and every score is a finite number in [0, 1].
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from core.payloads import Completion, ScoredTactic

_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)
# The body of the first fenced block, closed or not (a sampled answer may stop inside it).
_FENCED_BODY = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LIST_MARKER = re.compile(r"^(?:\d{1,3}[.)]|[-*•])\s+")
# `by simp` answers "prove it"; the tactic is `simp`. Needs whitespace after `by`, so `by_cases` is safe.
_LEADING_BY = re.compile(r"^by\s+(?=\S)")
_INLINE_CODE = re.compile(r"^`([^`]+)`[.:]?$")
_QUOTED_CODE = re.compile(r"`([^`\n]+)`")
_ANSWER_LABEL = re.compile(r"^(?:\*\*)?(?:next\s+)?(?:tactic|answer)(?:\*\*)?\s*:(?:\*\*)?\s+", re.IGNORECASE)
# A declaration whose proof follows `:= by` (a chat model may restate the theorem before the tactic).
_DECLARATION_BY = re.compile(r"^(?:theorem|lemma|example)\b.*:=\s*by\b(.*)$")
_TRAILING_COMMENT = re.compile(r"\s+--.*$")
# A tactic starts like one: a lowercase identifier (`simp`, `nlinarith`, `norm_num`, `exact?`), a focusing
# dot, a combinator or a parenthesis. English prose and echoed hypotheses do not.
_TACTIC_HEAD = re.compile(r"^(?:[a-z_][A-Za-z0-9_'.?!]*|[·.]\s|<;>|\(|\{|all_goals|any_goals)")
# `x y : ℝ` or `h₀ : 0 < x` is an echoed hypothesis, not a tactic; these tactics do start `word name : type`.
_HYPOTHESIS_LINE = re.compile(r"^[^\s(\[{⟨]+(?:\s+[^\s(\[{⟨]+)*\s:\s")
_NAMING_TACTICS = frozenset(
    "have show obtain set by_cases let suffices rcases cases case replace generalize induction intro rintro "
    "by_contra choose lift calc conv specialize".split()
)
_AT_GOAL_LOCATION = re.compile(r"\bat\b[^⊢]*⊢\s*$")
# The whole first word must be a name (`simp`, `exact?`, `norm_num`) or a focusing dot/combinator: `n-12` is not.
_WORD = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_'.?!]*|[·.]|<;>|\(.*|\{.*)$")
_OPENING = {"(": ")", "[": "]", "{": "}", "⟨": "⟩"}
_CLOSING = frozenset(_OPENING.values())
_PROSE_OPENERS = frozenset(
    "a an the we this that to it here first since so note then now thus hence our let's i you".split()
)


def _first_nonblank_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def _strip_line_decorations(line: str) -> str:
    """A list marker, a `Tactic:` label, inline code quotes and a leading `by ` off one answer line."""
    line = _LIST_MARKER.sub("", line.strip())
    line = _ANSWER_LABEL.sub("", line)
    inline = _INLINE_CODE.match(line)
    if inline:
        line = inline.group(1).strip()
    elif line.split(maxsplit=1)[:1] and line.split(maxsplit=1)[0].lower().rstrip(",:") in _PROSE_OPENERS:
        # "The next step is `linarith`." -> the quoted code; prose without code stays (the shape check drops it).
        quoted = _QUOTED_CODE.search(line)
        if quoted:
            line = quoted.group(1).strip()
    line = _LEADING_BY.sub("", line)
    # A trailing Lean comment is not part of the tactic (`--` after whitespace; `-` inside terms stays).
    return _TRAILING_COMMENT.sub("", line).strip()


def extract_chat_tactic(answer: str) -> str:
    """The single tactic in a chat model's free-form answer ('' when there is none).

    Handles `<think>` blocks (closed or cut off), the first fenced block (```lean, ```lean4, closed or
    not), a `theorem ... := by` header before the proof, list markers, a `Tactic:` label, inline code
    quotes and a leading `by`. Only these decorations are removed: a tactic itself is never rewritten.
    """
    text = _THINK_BLOCK.sub("", answer)
    fenced = _FENCED_BODY.search(text)
    if fenced:
        text = fenced.group(1)
    lines = [line for line in text.splitlines() if line.strip()]
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        header = _DECLARATION_BY.match(line)
        if header:
            # `theorem foo : P := by simp` -> `simp`; `... := by` alone -> the proof's first line.
            line = header.group(1).strip()
            if not line:
                index += 1
                continue
        first_word = line.split(maxsplit=1)[0].lower()
        if line.endswith(":") and first_word in _PROSE_OPENERS and "`" not in line and index + 1 < len(lines):
            index += 1  # "Here is the tactic:" introduces the next line
            continue
        line = _strip_line_decorations(line)
        if line == "by" and index + 1 < len(lines):
            index += 1  # `by` on its own line: the tactic is the next line
            continue
        return line
    return ""


def continue_prefix(prefix: str, completion: str) -> str:
    """The tactic that `completion` makes of `prefix`: it ends at the first line break after the prefix."""
    return (prefix + completion.split("\n", 1)[0]).rstrip()


def clean_completion(completion: str, prefix: str = "", chat: bool = False) -> str | None:
    """One candidate tactic, or None if the completion yields none that honours the prefix."""
    if prefix:
        # The engine continued the prefix verbatim: never reformat it, only cut the completion's tail.
        tactic = continue_prefix(prefix, completion)
        # A prefix that ends in whitespace and a completion that adds nothing leave a bare prefix behind:
        # that is no continuation of what the user typed.
        return tactic if tactic.startswith(prefix) and tactic.strip() else None
    tactic = extract_chat_tactic(completion) if chat else continue_prefix("", completion).strip()
    # A fence left over (an opening "```lean" line, a bare "```") is markup, never a tactic.
    return tactic if tactic and "```" not in tactic else None


def brackets_balance(text: str) -> bool:
    """Whether (), [], {} and ⟨⟩ nest properly: a candidate cut off at max_tokens usually does not."""
    stack: list[str] = []
    for char in text:
        if char in _OPENING:
            stack.append(_OPENING[char])
        elif char in _CLOSING and (not stack or stack.pop() != char):
            return False
    return not stack


def looks_like_tactic(text: str) -> bool:
    """A cheap shape check against prose, echoed goals and cut-off candidates; it rejects few real tactics."""
    if not _TACTIC_HEAD.match(text):
        return False
    # `⊢` belongs to a tactic only as a location (`simp at h ⊢`); elsewhere the model echoed the goal.
    if "⊢" in text and not _AT_GOAL_LOCATION.search(text):
        return False
    first_word = text.split(maxsplit=1)[0]
    if first_word.lower() in _PROSE_OPENERS or not _WORD.match(first_word):
        return False
    if _HYPOTHESIS_LINE.match(text) and first_word not in _NAMING_TACTICS:
        return False
    # Sentences end in a full stop after a word; tactics never do.
    return not re.search(r"[A-Za-z]\.$", text) and brackets_balance(text)


def score_from_logprob(cumulative_logprob: float | None, num_tokens: int) -> float:
    """exp(mean token log-probability): a finite number in [0, 1], 0 when unknown."""
    if cumulative_logprob is None or num_tokens <= 0:
        return 0.0
    mean = cumulative_logprob / num_tokens
    if math.isnan(mean):
        return 0.0
    return min(1.0, max(0.0, math.exp(min(0.0, mean))))


def rank_score(rank: int) -> float:
    """The score of the candidate at `rank` (0 = best) when the engine gives no log-probabilities.

    1 / (rank + 2): 0.5, 0.333, 0.25, ... strictly decreasing, in (0, 0.5], so the order survives and no
    candidate claims certainty (Aesop reads scores as success probabilities).
    """
    if rank < 0:
        raise ValueError("rank must be >= 0")
    return 1.0 / (rank + 2)


def rank_by_agreement(tactics: list[str]) -> list[ScoredTactic]:
    """Scores for answers without log-probabilities: distinct tactics ordered by how many sampled answers
    gave them (self-consistency), ties in sampling order, then scored by rank_score."""
    votes: dict[str, int] = {}
    for tactic in tactics:
        votes[tactic] = votes.get(tactic, 0) + 1
    order = sorted(votes, key=lambda t: -votes[t])  # sorted() is stable: ties keep first appearance
    return [ScoredTactic(tactic, rank_score(rank)) for rank, tactic in enumerate(order)]


def rank_candidates(candidates: Iterable[ScoredTactic]) -> list[ScoredTactic]:
    """Deduplicate by output (keeping the best score) and sort best first; ties keep sampling order."""
    best: dict[str, ScoredTactic] = {}
    for candidate in candidates:
        kept = best.get(candidate.output)
        if kept is None or candidate.score > kept.score:
            best[candidate.output] = candidate
    order = {output: i for i, output in enumerate(best)}
    return sorted(best.values(), key=lambda c: (-c.score, order[c.output]))


def _scored(completion: Completion, tactic: str) -> ScoredTactic:
    score = completion.score
    if score is None:
        score = score_from_logprob(completion.cumulative_logprob, completion.num_tokens)
    return ScoredTactic(tactic, score)


def tactics_from_continuations(
    completions: Iterable[Completion], prefix: str = "", chat: bool = False, require_tactic_shape: bool = False
) -> list[ScoredTactic]:
    """Clean, score, filter, deduplicate and rank completions that continue the prompt (and the prefix in it).

    `chat`: the prompt was a local model's chat template, so a completion without a prefix is a chat answer
    and its tactic is extracted from the decorations around it.
    """
    tactics = []
    for completion in completions:
        tactic = clean_completion(completion.text, prefix=prefix, chat=chat)
        if tactic is None or (require_tactic_shape and not looks_like_tactic(tactic)):
            continue
        tactics.append(_scored(completion, tactic))
    return rank_candidates(tactics)


def tactics_from_chat_answers(
    completions: Iterable[Completion], prefix: str = "", require_tactic_shape: bool = False
) -> list[ScoredTactic]:
    """The same for whole chat answers from a remote API: the prefix was asked for in the prompt, not
    continued, so each answer's tactic is extracted and must start with it. When no answer carries
    log-probabilities, the scores come from rank_by_agreement."""
    completions = list(completions)
    tactics = []
    for completion in completions:
        tactic = extract_chat_tactic(completion.text)
        if not tactic or not tactic.startswith(prefix) or (require_tactic_shape and not looks_like_tactic(tactic)):
            continue
        tactics.append(_scored(completion, tactic))
    if all(c.cumulative_logprob is None and c.score is None for c in completions):
        return rank_by_agreement([t.output for t in tactics])
    return rank_candidates(tactics)
