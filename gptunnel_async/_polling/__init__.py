"""The polling core, below the client: when to poll next, the request gate. No I/O of its own.

It sits under ``_client.py`` so the client, the resources and ``wait()`` can use it without
importing the poller, which is built on top of them.
"""
