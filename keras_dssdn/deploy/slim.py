"""Former name of :mod:`keras_dssdn.deploy.flash_cuts` (``slim_flatbuffer``, ``slim_model``, ``Slimming``);
kept so that round-2 imports keep working. New code imports :mod:`keras_dssdn.deploy.flash_cuts`."""

from keras_dssdn.deploy.flash_cuts import (  # noqa: F401
    FlashCuts, Slimming, apply_flash_cuts, cut_flatbuffer, misaligned_buffers, slim_flatbuffer, slim_model)
