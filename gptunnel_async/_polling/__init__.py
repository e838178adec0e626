"""The polling core, below the client: no I/O of its own.

- ``policy``: when to poll next, learned per model;
- ``task``: one task's polling life as a state machine (first due time, answers, failed polls,
  the deadline's last look), driven by both ``wait()`` and the ``Poller``;
- ``limits`` / ``shared``: the request gate (concurrency, rate, 429 pause), local or shared.

It sits under ``_client.py`` so the client, the resources and ``wait()`` use it without
importing the poller, which is built on top of them.
"""
