"""``python -m keras_dssdn``: the main job on its embedded default (see :mod:`keras_dssdn.cli.demo`)."""

import sys

from keras_dssdn.cli.demo import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
