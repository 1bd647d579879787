#!/usr/bin/env python
"""Teacher logits keyed by clip, for knowledge distillation: the `dssdn-teacher` command (see --help)."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: keep its start-up lines quiet

from keras_dssdn.cli.teacher import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
