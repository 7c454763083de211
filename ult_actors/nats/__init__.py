"""NATS for remote clients and events: requests on ``ult.<cluster>.cmd``, events on JetStream.

Optional: needs the ``nats`` extra (nats-py). ``bridge.py`` runs nats-py on
its own asyncio thread; ``commands.py`` answers requests through the same
dispatch as the Unix socket; ``events.py`` publishes every event to the
cluster's JetStream stream; ``child.py`` joins them to the actor tree.
"""
