"""``python -m bench.latency``."""

from bench.latency.run import main

raise SystemExit(main())
