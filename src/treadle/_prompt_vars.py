"""A run's prompt variables are checked against the templates that read them.

``runner.call({"input": "hi"})`` with a template that reads ``input_str`` is a typo, not a
silently empty question: ``check_prompt_kwargs`` raises ``UnknownArgumentError`` naming the
closest variable and listing those the agent's templates read.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._strict import unknown_argument

if TYPE_CHECKING:
    from .planner import Planner

__all__ = ["check_prompt_kwargs", "template_variables"]

# what every run may pass whatever the template: the user's message, and what the runner adds itself
ALWAYS = frozenset({"input_str", "max_steps", "chat_history_str"})
# what the planner fills from the agent itself (not a run's to pass)
PLANNER_FILLS = frozenset({"final_style", "instructions", "role_desc", "tools", "answer_schema", "answer_type_schema",
                           "examples"})


@functools.lru_cache(maxsize=64)
def template_variables(source: str) -> frozenset[str]:
    """The variables a jinja2 template reads."""
    import jinja2
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(jinja2.Environment().parse(source)))


def check_prompt_kwargs(agent_name: str, planner: Planner, prompt_kwargs: Mapping[str, object]) -> None:
    """Raise ``UnknownArgumentError`` for a prompt variable none of the agent's templates (its ``planner``'s) reads."""
    sources = {planner.template_source(mode) for mode in ("native", "json")}
    names = set(ALWAYS)
    for source in sources:
        names |= template_variables(source) - PLANNER_FILLS
    for key in prompt_kwargs:
        if key not in names:
            raise unknown_argument(key, f"the prompt of agent {agent_name!r}", names, what="variable", list_all=True)
