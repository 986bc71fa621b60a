"""One runner per backend (Polygraphy's model): bench, export checks, predict and the
runtime all run models through these, so what is measured is what the device runs. Which
runner runs which form is a column of :mod:`edgeft.formats`."""

from edgeft.runners.base import Runner

__all__ = ["Runner"]
