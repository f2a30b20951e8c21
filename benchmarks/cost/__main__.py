"""`python -m benchmarks.cost`."""

from benchmarks.cost.cli import main

main()
