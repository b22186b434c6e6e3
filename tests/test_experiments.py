"""The registry against the study's table, and the builder against the architectures."""

import keras
import pytest

from cifar_utils import (
    CHAPTERS,
    EXPERIMENTS,
    ArchSpec,
    Augment,
    build_model,
    chapter_experiments,
    get_experiment,
)
from cifar_utils.augment import Translate
from cifar_utils.experiments import STUDY_EXPERIMENTS, STUDY_RECIPE, DenseSpec, Recipe

# The study's table, typed once more here from the slides (issue #2), independently of the
# registry: number -> (params, train loss, test loss, train acc, test acc, s/epoch).
STUDY_TABLE = {
    1: (24522, 0.3141, 2.1981, 88.74, 63.00, 3), 2: (24522, 0.2861, 1.1398, 90.10, 72.87, 3),
    3: (38218, 0.1277, 2.1026, 95.41, 70.27, 3), 4: (395178, 1.2390, 1.2527, 55.23, 54.60, 4),
    5: (168394, 0.0000, 5.9658, 100.00, 74.77, 4), 6: (184906, 0.0000, 5.3863, 100.00, 75.02, 4),
    7: (184906, 0.5596, 0.5568, 80.65, 80.67, 5), 8: (186826, 0.4222, 0.5087, 85.29, 82.98, 6),
    9: (186826, 0.4196, 0.5005, 85.26, 83.75, 7), 10: (186826, 0.5041, 0.5736, 82.56, 81.07, 6),
    11: (186826, 0.0012, 1.4304, 100.00, 77.27, 5), 12: (184906, 0.0000, 6.1982, 100.00, 72.94, 4),
    13: (184906, 0.5690, 0.5723, 80.50, 80.36, 4), 14: (184906, 0.5792, 0.5742, 80.19, 80.41, 5),
    15: (454442, 0.0927, 0.6348, 96.84, 85.87, 11), 16: (186826, 0.5577, 0.5521, 80.66, 81.40, 30),
    17: (454442, 0.2426, 0.3480, 91.51, 89.02, 34),
}
CHAPTER_OF = {**dict.fromkeys((1, 2), 1), **dict.fromkeys(range(3, 7), 2),
              **dict.fromkeys(range(7, 15), 3), **dict.fromkeys(range(15, 18), 4)}


def test_registry_matches_the_study_table():
    assert [e.number for e in STUDY_EXPERIMENTS] == list(range(1, 18))
    assert [e.number for e in EXPERIMENTS] == list(range(1, len(EXPERIMENTS) + 1))
    own = EXPERIMENTS[len(STUDY_EXPERIMENTS):]  # then the course's own, chapter 6, from 18 on
    assert own[0].number == 18 and all(e.chapter == 6 and e.study is None for e in own)
    assert all(e.recipe == STUDY_RECIPE for e in STUDY_EXPERIMENTS if not e.augment)
    for exp in STUDY_EXPERIMENTS:
        s = exp.study
        assert (s.params, s.train_loss, s.test_loss, s.train_acc, s.test_acc, s.seconds_per_epoch) \
            == STUDY_TABLE[exp.number], exp.number
        assert exp.chapter == CHAPTER_OF[exp.number]
    assert sum(e.study.seconds_per_epoch for e in STUDY_EXPERIMENTS) * 300 / 60 == pytest.approx(690, abs=1)


@pytest.mark.slow
@pytest.mark.parametrize("number", range(1, 18))
def test_parameter_count_is_exact(number):
    exp = get_experiment(number)
    assert build_model(exp).count_params() == exp.study.params


def layer_kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def test_four_layer_model_structure():
    model = build_model(1)
    assert layer_kinds(model) == ["Conv2D", "MaxPooling2D"] * 3 + ["Flatten", "Dense"]
    assert model.output_shape == (None, 10)
    pool = model.layers[1]
    assert pool.pool_size == (3, 3) and pool.strides == (2, 2) and pool.padding == "same"
    assert model.layers[0].kernel_size == (3, 3) and model.layers[0].padding == "same"
    assert [model.layers[i].output.shape[1] for i in (1, 3, 5)] == [16, 8, 4]


def test_dropout_batchnorm_and_init_placement():
    kinds7 = layer_kinds(build_model(7))
    assert kinds7.count("Dropout") == 6 and kinds7[-3:] == ["Dense", "Dropout", "Dense"]
    kinds9 = layer_kinds(build_model(9))
    assert kinds9[:4] == ["Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout"]
    assert kinds9[-4:] == ["Dense", "BatchNormalization", "Dropout", "Dense"]
    convs = [layer for layer in build_model(9).layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(type(c.kernel_initializer).__name__ == "HeUniform" for c in convs)
    assert all(c.activation.__name__ == "relu" for c in convs)
    he_normal = [layer for layer in build_model(14).layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(type(c.kernel_initializer).__name__ == "HeNormal" for c in he_normal)
    dense = [layer for layer in build_model(9).layers if isinstance(layer, keras.layers.Dense)]
    assert all(type(d.kernel_initializer).__name__ == "GlorotUniform" for d in dense)


def test_bn_before_activation():
    model = build_model(10)
    kinds = layer_kinds(model)
    assert kinds[:5] == ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D", "Dropout"]
    assert model.layers[0].activation.__name__ == "linear"
    assert kinds[-5:] == ["Dense", "BatchNormalization", "ReLU", "Dropout", "Dense"]


def test_vgg_block_has_two_convs_and_one_bn():
    kinds = layer_kinds(build_model(15))
    assert kinds[:5] == ["Conv2D", "Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout"]
    assert kinds.count("Conv2D") == 10 and kinds.count("BatchNormalization") == 6


@pytest.mark.slow
def test_augmentation_only_where_the_study_used_it():
    with_augment = [e.number for e in STUDY_EXPERIMENTS if isinstance(build_model(e).layers[0], Augment)]
    assert with_augment == [16, 17]
    translated = [e.number for e in EXPERIMENTS if isinstance(build_model(e).layers[0], Translate)]
    assert translated == [e.number for e in EXPERIMENTS if e.recipe.augment == "translate_flip"]
    assert translated[:2] == [20, 21]
    assert not isinstance(build_model(17, augment=False).layers[0], Augment)
    assert [e.number for e in EXPERIMENTS if not e.normalize] == [1]


def test_lookup_and_chapters():
    assert get_experiment("exp07") is get_experiment(7) is get_experiment("7")
    assert get_experiment(7).key == "exp07" and get_experiment(7).label == "7. Dropout model 1"
    assert [e.number for e in chapter_experiments(2)] == [3, 4, 5, 6]
    assert set(CHAPTERS) == {1, 2, 3, 4, 6}
    assert [e.number for e in chapter_experiments(6)][:4] == [18, 19, 20, 21]
    past_the_end = len(EXPERIMENTS) + 1
    with pytest.raises(KeyError, match=f"unknown experiment {past_the_end}"):
        get_experiment(past_the_end)
    with pytest.raises(KeyError, match="unknown experiment 'vgg'"):
        get_experiment("vgg")


def test_custom_spec_builds_and_bad_specs_are_refused():
    model = build_model(ArchSpec(blocks=((2, 8),), dense_units=16, dropout=0.1))
    assert model.count_params() == (3 * 9 * 8 + 8) + (8 * 9 * 8 + 8) + (16 * 16 * 8 * 16 + 16) + (16 * 10 + 10)
    with pytest.raises(ValueError, match="dropout"):
        ArchSpec(blocks=((1, 8),), dropout=1.5)
    with pytest.raises(ValueError, match="batch_norm"):
        ArchSpec(blocks=((1, 8),), bn_before_activation=True)
    with pytest.raises(ValueError, match="block"):
        ArchSpec(blocks=())


def test_course_experiments_build_as_described():
    # 18: the factorial's missing cell, the same parameters as experiment 11 (BN) with He init
    model18 = build_model(18)
    assert model18.count_params() == 186_826 and layer_kinds(model18) == layer_kinds(build_model(11))
    convs = [layer for layer in model18.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(type(c.kernel_initializer).__name__ == "HeUniform" for c in convs) and "Dropout" not in layer_kinds(
        model18)
    # 19: a plain perceptron: 3072*512+512 + 512*256+256 + 256*10+10
    assert layer_kinds(build_model(19)) == ["Flatten", "Dense", "Dense", "Dense"]
    assert build_model(19).count_params() == 3072 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    # 20: experiment 17's network unchanged, only the recipe differs
    assert build_model(20).count_params() == 454_442
    assert layer_kinds(build_model(20))[1:] == layer_kinds(build_model(17))[1:]
    assert get_experiment(20).spec == get_experiment(17).spec
    assert get_experiment(20).recipe.epochs <= 30 and get_experiment(20).recipe.validation == pytest.approx(0.1)
    # 21: airbench94's shape: 24 whitening filters, widths 64/256/256, about 1.97M parameters
    model21 = build_model(21)
    assert model21.layers[1].filters == 24 and model21.output_shape == (None, 10)
    assert [c.filters for c in model21.layers if isinstance(c, keras.layers.Conv2D)] == [64, 64, 256, 256, 256, 256]
    assert 1_900_000 < model21.count_params() < 2_050_000


def test_recipes_refuse_bad_values_by_name():
    for bad in ({"optimizer": "rmsprop"}, {"schedule": "step"}, {"augment": "mixup"}, {"tta": "ten_crop"},
                {"momentum": 1.0}, {"validation": 0.5 + 0.5}, {"epochs": 0}, {"learning_rate": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad)) if "epochs" not in bad and "learning_rate" not in bad
                           else "Recipe needs"):
            Recipe(**bad)
    with pytest.raises(ValueError, match="translate"):
        Recipe(augment="translate_flip")
    with pytest.raises(ValueError, match="hidden"):
        DenseSpec(hidden=())


def test_variants_are_named_and_kept_apart():
    base = get_experiment(9)
    variant = base.vary(learning_rate=3e-3, batch_size=128)
    assert variant.number == 9 and variant.variant == "batch_size=128, learning_rate=0.003"
    assert variant.key == "exp09-batch-size128-learning-rate0.003" and variant.key != base.key
    assert variant.recipe.learning_rate == 3e-3 and variant.recipe.batch_size == 128 and variant.spec == base.spec
    dropout = base.vary("dropout=0.5", dropout=0.5)
    assert dropout.spec.dropout == 0.5 and dropout.recipe == base.recipe and dropout.label.endswith("[dropout=0.5]")
    assert build_model(dropout).count_params() == 186_826
    with pytest.raises(ValueError, match="cannot vary \\['colour'\\]"):
        base.vary(colour="red")
    assert Recipe(learning_rate=0.01).changes() == {"learning_rate": 0.01}
