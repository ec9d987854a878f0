"""How the model reaches the executors: what ``job.services`` and ``job.connect`` hand back to the run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Shipment:
    """The model on its way to the executors: ``handle.value`` there is the artifact.

    ``how``: broadcast, closure or session-artifact (the run manifest).
    """

    handle: Any
    how: str
    release: Callable[[], None] = lambda: None
