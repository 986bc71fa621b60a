"""One runner per backend, looked up by name; heavy imports happen in ``activate``.

Modelled on Polygraphy's runners: bench, export checks, predict and the runtime all run
models through these, so what is measured is what the device runs.
"""

from edgeft.runners.base import BACKENDS, Runner, backend_status, get_runner

__all__ = ["BACKENDS", "Runner", "backend_status", "get_runner"]
