#!/usr/bin/env python
"""Export a trained model to float / int8 TFLite and a verified TensorFlow Lite Micro bundle.

    python tools/export.py --model run/best.keras --data ../shared/data/tut17-dev --fold 1 --out bundle/
    python tools/export.py --run-dir run/ --data ../shared/data/tut17-dev --out bundle/ --qat-epochs 3

See keras_dssdn/export.py (library API) and docs/deployment.md (what is in the bundle).
Exit codes: 0 exported and verified, 1 export failed (message on stderr), 2 bad arguments.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_dssdn.deploy.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
