"""What stages report while they run: ``on_event(kind, info)`` callbacks.

The CLI renders events as rich progress bars (or plain lines when stderr is not a terminal);
the Python API ignores them unless given a callback. Kinds, with their ``info`` keys:

- ``plan``: ``stage``, ``total``, ``skipped`` (current, not redone), ``todo``;
- ``tile``: ``stage``, ``tile_id``, ``status`` (``done``/``failed``), ``error``, ``seconds``;
- ``feature``: ``name``, a feature of a single-tile run finished;
- ``step``: ``step``, ``message``, a step of a multi-step stage (the demo);
- ``note``: ``message``, something the stage found out that belongs with its results (the CLI
  prints it on stdout), e.g. the OOD layer the report took from beside the map;
- ``progress``: ``stage``, ``done``, ``total`` (None when unknown), ``info``: windows of a
  report, epochs of training, runs of an evaluation, seeds of a selection;
- ``status``: ``message``, a phase without a count (a spinner);
- ``dashboard``: ``link``, a dask dashboard that is listening;
- ``warning``: ``message``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Event = Callable[[str, dict[str, Any]], None]
"""``on_event(kind, info)``."""


def ignore(kind: str, info: dict[str, Any]) -> None:
    """The default callback: report nothing."""


def tagged(on_event: Event, stage: str) -> Event:
    """``on_event`` with ``stage`` added to every ``info`` that lacks one."""

    def emit(kind: str, info: dict[str, Any]) -> None:
        on_event(kind, {"stage": stage, **info})

    return emit
