"""``python -m edgeft``: the command line (also what ``torchrun``/``accelerate launch -m edgeft`` run)."""

from edgeft.cli import main

main()
