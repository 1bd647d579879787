#!/usr/bin/env python
"""Build a bundle for an Arm Cortex-M target, run it in QEMU, compare with the host: the `dssdn-firmware` command
(see --help, docs/firmware.md)."""

import sys

# No TF_CPP_MIN_LOG_LEVEL here: importing keras_dssdn from tools/ filters TensorFlow's start-up lines itself
# (keras_dssdn._tf_startup), which a variable set here would turn off.
from keras_dssdn.cli.firmware import main

if __name__ == "__main__":
    sys.exit(main())
