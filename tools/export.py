#!/usr/bin/env python
"""Export a trained model to float / int8 TFLite and a verified TensorFlow Lite Micro bundle.

    python tools/export.py --model run/best.keras --data ../shared/data/tut17-dev --fold 1 --out bundle/
    python tools/export.py --run-dir run/ --out bundle/ --qat-epochs 3

The command is keras_dssdn.cli.export (options, exit status); the library API
keras_dssdn.deploy.export; the bundle docs/deployment.md.
"""

import sys

from keras_dssdn.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
