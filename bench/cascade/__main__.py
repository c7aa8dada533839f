"""``python -m bench.cascade``."""

from bench.cascade.run import main

raise SystemExit(main())
