"""A user's custom layer module, as a team would ship it next to its model.

Loaded by name through ``model.custom_layer_modules`` / ``--custom-layers-module tests.custom_layers``.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="skol_tests")
class ScaleShift(keras.layers.Layer):
    """``x * scale + shift`` with a trainable per-feature shift: shape-preserving."""

    def __init__(self, scale: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def build(self, input_shape) -> None:
        self.shift = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="shift")

    def call(self, x):
        return x * self.scale + self.shift

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}
