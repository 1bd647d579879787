#!/usr/bin/env python
"""Search DSSDN channel widths under a parameter and a MAC budget: the `dssdn-tune` command (see --help)."""

import sys

# No TF_CPP_MIN_LOG_LEVEL here: importing keras_dssdn from tools/ filters TensorFlow's start-up lines itself
# (keras_dssdn._tf_startup), which a variable set here would turn off.
from keras_dssdn.cli.tune import main

if __name__ == "__main__":
    sys.exit(main())
