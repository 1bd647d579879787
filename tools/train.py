#!/usr/bin/env python
"""Train a DSSDN size (or the DCASE baseline) into a run folder: the `dssdn-train` command (see --help)."""

import sys

# No TF_CPP_MIN_LOG_LEVEL here: importing keras_dssdn from tools/ filters TensorFlow's start-up lines itself
# (keras_dssdn._tf_startup), which a variable set here would turn off.
from keras_dssdn.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
