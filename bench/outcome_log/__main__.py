"""``python -m bench.outcome_log``."""

from bench.outcome_log.run import main

raise SystemExit(main())
