"""`python -m ult_actors.cli ARGS`: the same as `ult ARGS`."""

import sys

from ult_actors.cli.main import main

sys.exit(main())
