"""``python -m streamcheck.properties.protocol.python_agent``: impl/ as a protocol agent."""

import sys

from streamcheck.properties.protocol._python_agent import main

if __name__ == "__main__":
    sys.exit(main())
