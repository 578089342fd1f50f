"""`python -m argentic_edge` is the same as the `argentic-edge` console script."""

import sys

from argentic_edge.cli.main import main

sys.exit(main())
