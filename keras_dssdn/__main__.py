"""``python -m keras_dssdn``: the package's main job on its embedded default.

Prints the complexity table of every preset (no dataset needed).
"""

import sys

from keras_dssdn.complexity import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
