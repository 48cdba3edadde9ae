"""The seed-compatible native prompt, for ported programs that depend on it.

treadle's native tool-calling mode sends the agent's instructions as they are and only the
agent's tools (a plain-text reply is the answer; a structured answer uses the provider's
structured output, or one output tool). Earlier treadle releases, like the seed's protocol,
instead added a ``finish`` tool and protocol lines to the system prompt ("Call tools when they
help. When you know the answer, call the `finish` tool…", "You have at most N steps"). A program
whose prompts, tests or recorded transcripts depend on those gets them back with:

* ``use_seed_prompt(agent)`` for one agent (its planner's ``seed_prompt``), or
* the process switch: ``TREADLE_SEED_COMPAT=1`` / ``treadle.compat.set_seed_compat(True)``.

JSON mode (small and local models, AdalFlow clients) is not affected: its prompt is the seed's
protocol either way.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SEED_NATIVE_TEMPLATE", "use_seed_prompt"]

SEED_NATIVE_TEMPLATE = """\
{{ instructions }}
Call tools when they help. When you know the answer, call the `finish` tool with it
(or, if the answer is plain text, simply reply with it). You have at most {{ max_steps }} steps.
{% if examples %}
Examples:
{{ examples }}
{% endif %}{% if context_str %}
<CONTEXT>
{{ context_str }}
</CONTEXT>
{% endif %}{% if chat_history_str %}
<CHAT_HISTORY>
{{ chat_history_str }}
</CHAT_HISTORY>
{% endif %}"""


def use_seed_prompt(agent: Any, enabled: bool | None = True) -> Any:
    """Give ``agent``'s native-mode requests the seed-compatible prompt and ``finish`` tool
    (``enabled=False``: the lean prompt even under the process switch; None: the switch decides).
    Returns the agent."""
    agent.planner.seed_prompt = enabled
    return agent
