"""The online benchmark: a deployment lived on a recorded suite, with the real learner.

* :mod:`bench.online.suite`: what is streamed (embeddings, prior, both arms' outcomes, costs);
* :mod:`bench.online.prepare`: the real suites, with the prior a deployment starts from;
* :mod:`bench.online.simulate`: route, log, label, refit and swap, request by request;
* :mod:`bench.online.metrics`: APGR of a stretch of the stream, exploration spend included;
* :mod:`bench.online.result`: per-window figures, the goals, the JSON and the learning curve;
* :mod:`bench.online.choice`: which learner settings serve which suite, and where they were
  chosen;
* :mod:`bench.online.live` / :mod:`bench.online.live_result`: ``--live``, the same stream
  through a real proxy and the ``adaptive-proxy learn`` process, and its result;
* :mod:`bench.online.cli`: ``python -m bench.online``.
"""
