"""`python -m aggregator` runs the command-line interface."""

from aggregator.cli.main import main

raise SystemExit(main())
