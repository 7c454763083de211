"""Test doubles shipped with the package, for the suite, chaos runs and benchmarks.

Production code never imports this package. It holds the one way to start
``ult`` as a subprocess (:mod:`ult_actors.testing.process`), the one
connector wrapper that injects broker faults (:mod:`ult_actors.testing.connector`),
a stand-in for systemd's notify socket (:mod:`ult_actors.testing.notify`) and a
throwaway PostgreSQL server (:mod:`ult_actors.testing.postgres`).
Import from the modules; this face stays empty so that importing one of them
does not pull in the others' dependencies.
"""
