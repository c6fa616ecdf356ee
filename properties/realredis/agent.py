"""``python -m streamcheck.properties.realredis.agent PLAN OUT``: one replica process."""

import sys

from streamcheck.properties.realredis._agent import main

if __name__ == "__main__":
    sys.exit(main())
