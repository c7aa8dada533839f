"""``python -m bench.docs``."""

from bench.docs.run import main

raise SystemExit(main())
