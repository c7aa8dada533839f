"""``python -m replay [--port 8001] [--data-dir DIR]``: run the replay upstream."""

import sys

from replay.server import main

raise SystemExit(main(sys.argv[1:]))
