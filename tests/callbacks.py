"""Keras callbacks shared by the training tests."""

import keras


class Crash(keras.callbacks.Callback):
    """Interrupts training after ``at_epoch`` epochs, after the package's own callbacks ran."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at_epoch:
            raise KeyboardInterrupt("simulated interruption")
