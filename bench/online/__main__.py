"""``python -m bench.online``: the online benchmark."""

from bench.online.cli import main

raise SystemExit(main())
