import sys

from sipctl.cli import main

if __name__ == "__main__":
    sys.exit(main())
