"""ult-actors: a supervised actor tree between local trading programs and their brokers."""

from ult_actors.compiled import refuse_stale as _refuse_stale

__version__ = "0.1.0"

# Before any module loads: a compiled module whose .py changed since its build would
# otherwise run its old code (docs/architecture.md, "The compiled build").
_refuse_stale()
