"""``python -m bench``: the cost/quality benchmark (same as ``adaptive-proxy bench``)."""

from bench.cli import main

raise SystemExit(main())
