"""`python -m meterhub.cli`: the same as the `meterhub` command."""

from meterhub.cli import main

main()
