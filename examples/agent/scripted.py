"""`ScriptedModel`: a model backend that plays back a script, deterministic and offline (demos, tests).

A script (JSON) is a list of steps, one per model turn: `{"call": TOOL, "arguments": {...}}` asks
for a tool call, `{"answer": TEXT}` ends the run. `task_pattern`, a regular expression searched in
the user's task, names values (`(?P<city>...)`) that fill `{city}` in arguments and answers; an
answer may also use `{result}`, the last tool result (e.g. `{result[days][0][high_c]}`). Like a
real model, the script can only call tools on offer: a step naming a tool the agent has not
discovered is a `ScriptError`, and so is an answer after a failed call.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from examples.agent.conversation import Entry, ModelTurn, ToolCall, ToolResults, ToolSpec, UserMessage
from examples.agent.errors import ScriptError

SCRIPTS = Path(__file__).parent / "scripts"
DEFAULT_SCRIPT = SCRIPTS / "weather.json"


class CallStep(BaseModel):
    call: str
    arguments: dict[str, Any] = {}


class AnswerStep(BaseModel):
    answer: str


class Script(BaseModel):
    """A scripted run: how to read the task, then one step per model turn."""

    description: str = ""
    task_pattern: str | None = None
    steps: list[CallStep | AnswerStep]


def load_script(path: Path) -> Script:
    """The script in `path`; a `ScriptError` names the file and the problem."""
    try:
        return Script.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScriptError(f"Cannot read the script {path}: {error.strerror}.") from None
    except ValidationError as error:
        raise ScriptError(f"{path} is not a valid script: {error.errors()[0]['msg']}.") from None


class ScriptedModel:
    """Plays back `script`, one step per turn, checking each against what the agent offers."""

    def __init__(self, script: Script) -> None:
        self._script = script

    async def respond(self, system: str, conversation: Sequence[Entry], tools: Sequence[ToolSpec]) -> ModelTurn:
        index = sum(isinstance(entry, ModelTurn) for entry in conversation)
        if index >= len(self._script.steps):
            raise ScriptError(f"The script has {len(self._script.steps)} steps and the run asked for step {index + 1}.")
        step = self._script.steps[index]
        values = self._values(conversation)
        if isinstance(step, CallStep):
            offered = sorted(tool.name for tool in tools)
            if step.call not in offered:
                raise ScriptError(
                    f"Script step {index + 1} calls '{step.call}', which the agent has not discovered "
                    f"(on offer: {', '.join(offered)})."
                )
            return ModelTurn("", (ToolCall(f"call-{index + 1}", step.call, _filled(step.arguments, values)),))
        last = _last_results(conversation)
        if last is not None and any(result.is_error for result in last.results):
            failed = next(result for result in last.results if result.is_error)
            raise ScriptError(f"Script step {index + 1} answers, but {failed.name} failed: {failed.as_text()[:300]}")
        result = last.results[-1].content if last is not None and last.results else None
        try:
            return ModelTurn(step.answer.format(result=result, **values))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ScriptError(f"Script step {index + 1}'s answer does not fit the last result: {error!r}.") from None

    def _values(self, conversation: Sequence[Entry]) -> dict[str, str]:
        if self._script.task_pattern is None:
            return {}
        task = next((entry.text for entry in conversation if isinstance(entry, UserMessage)), "")
        match = re.search(self._script.task_pattern, task)
        if match is None:
            raise ScriptError(f"The task {task!r} does not match the script's pattern {self._script.task_pattern!r}.")
        return {name: value.strip() for name, value in match.groupdict().items() if value is not None}


def _filled(value: Any, values: dict[str, str]) -> Any:
    """`value` with `{name}` placeholders in its strings replaced; other fields untouched."""
    if isinstance(value, str):
        names = {field for _, field, _, _ in string.Formatter().parse(value) if field}
        missing = names - values.keys()
        if missing:
            raise ScriptError(f"The script uses {sorted(missing)}, which its task_pattern does not capture.")
        return value.format(**values)
    if isinstance(value, dict):
        return {key: _filled(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, values) for item in value]
    return value


def _last_results(conversation: Sequence[Entry]) -> ToolResults | None:
    return next((entry for entry in reversed(conversation) if isinstance(entry, ToolResults)), None)
