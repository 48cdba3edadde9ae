"""Agents served over A2A in tests/server/test_a2a.py (``treadle serve a2a_agents:make``)."""

from __future__ import annotations

from scripted_agents import adder, gate, slow

from treadle import Agent


def make() -> dict[str, Agent[str]]:
    return {"adder": adder("Adds numbers with a calculator."), "gate": gate(), "slow": slow()}
