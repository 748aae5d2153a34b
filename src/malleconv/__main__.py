"""``python -m malleconv``: the same command line as the ``malleconv`` script."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
