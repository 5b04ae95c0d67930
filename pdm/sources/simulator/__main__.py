"""``python -m pdm.sources.simulator``: the simulator's command line (see :func:`main`)."""

from pdm.sources.simulator.cli import main

raise SystemExit(main())
