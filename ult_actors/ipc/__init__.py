"""The local IPC socket: path rules, framing, the server actor.

Clients live in ``ult_actors.client``; both sides share ``paths`` and
``framing`` so they cannot disagree about where the socket is or what a
frame looks like.
"""
