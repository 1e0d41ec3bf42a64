"""python -m almabench.cli, as the tests start a second run."""

from almabench.cli import main

main()
