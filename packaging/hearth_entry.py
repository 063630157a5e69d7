"""What the frozen app runs: the same front door as `python -m desktop` (no arguments: the window;
`engine …`: the engine child, which the app starts by running itself again)."""

import sys

from desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
