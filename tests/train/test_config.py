"""The packaged training configurations: each loads, and its front end gives the input its model is sized for."""

import pytest

from keras_dssdn.models.presets import PRESETS, preset_frontend
from keras_dssdn.train.config import CONFIG_DIR, load_train_config
from keras_dssdn.train.recipe import build_network, input_seconds

PACKAGED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_every_preset_has_a_packaged_config():
    assert set(PRESETS) <= set(PACKAGED)


@pytest.mark.parametrize("name", PACKAGED)
def test_a_packaged_config_feeds_its_preset_the_mel_bands_it_is_sized_for(name):
    cfg = load_train_config(name)
    if cfg.model in PRESETS:
        assert cfg.frontend_params().n_mels == PRESETS[cfg.model].input_shape[0]
        assert cfg.frontend_params() == preset_frontend(cfg.model)


def test_the_microcontroller_config_is_the_dcase_recipe_on_its_own_model_and_front_end():
    mcu, small = load_train_config("dcase_mcu_1s"), load_train_config("dcase_small_1s")
    differ = {k for k, v in mcu.to_dict().items() if small.to_dict()[k] != v}
    assert differ == {"model", "frontend"}
    model = build_network(mcu, classes=15)
    assert input_seconds(mcu) == 1.0 and model.input_shape == (None, *PRESETS["dcase_mcu_1s"].input_shape)
    assert model.get_layer("stem_conv").strides == (2, 2)
