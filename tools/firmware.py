#!/usr/bin/env python
"""The `dssdn-firmware` command (see --help)."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: keep its start-up lines quiet

from keras_dssdn.cli.firmware import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
