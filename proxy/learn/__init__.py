"""Learning how hard this deployment's traffic is: the outcome log, its stores and the learner.

* :mod:`proxy.learn.records`: what is logged per request (decision, predictions, the prompt's
  embedding, evidence, usage) and the labels that arrive for it.
* :mod:`proxy.learn.log`: :class:`~proxy.learn.log.OutcomeLog`, the request path's side: enqueue
  and return; a background task writes batches to a store.
* :mod:`proxy.learn.store`, :mod:`proxy.learn.store_redis`, :mod:`proxy.learn.store_sqlite`: the
  store interface and its two implementations (one Redis Stream per policy shared by every
  replica; an embedded SQLite file).
* :mod:`proxy.learn.learner`: refits a policy's head on logged embeddings from the shipped prior,
  scores it prequentially, promotes, exports and rolls back.
"""
