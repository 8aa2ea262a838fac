"""sweeps/space.py: what a sweep tries, every value checked before anything trains."""

import json

import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.sweeps.space import (
    Range,
    Search,
    check_base,
    check_space,
    check_stack,
    choose_metric,
    grid_trials,
    parse_values,
    random_trials,
    seed_list,
)


def test_parse_values():
    assert parse_values("lr", "0.001,0.003") == [0.001, 0.003]
    assert parse_values("layers", "784-256-10,784-512-256-10") == ["784-256-10", "784-512-256-10"]
    assert parse_values("lr", "log:1e-4:1e-2") == Range(1e-4, 1e-2, True)
    assert parse_values("batch_size", "32:256") == Range(32, 256, False)
    assert parse_values("device", "cuda:0") == ["cuda:0"]  # not a range: not a number
    assert parse_values("batchnorm", "true,false") == [True, False]
    assert parse_values("class_weights", "none,auto") == ["none", "auto"]
    assert parse_values("class_weights", "Shirt=2,Coat = 3") == ["Shirt=2,Coat=3"]  # one value
    assert parse_values("class_weights", "none;auto;Shirt=2,Coat=3;") == [
        "none",
        "auto",
        "Shirt=2,Coat=3",
    ]
    for key, text, message in [
        ("lr", "0.1,abc", "--lr must be float"),
        ("optimizer", "adam,lbfgs", "--optimizer must be one of"),
        ("lr", "0.1:0.01", "need LOW < HIGH"),
        ("dropout", "log:0:0.5", "LOW > 0"),
        ("lr", "1:2:3", "range must be"),
        ("colour", "red", "unknown setting 'colour'"),
        ("class_weights", "auto,Shirt=2", "must be none, auto, or NAME=WEIGHT"),
        ("class_weights", "Shirt=0;auto", "the weight of Shirt must be a positive number"),
    ]:
        with pytest.raises(QuicknetsError, match=message):
            parse_values(key, text)


def test_grid_and_random_trials():
    space = check_space(
        {"layers": ["784-256-10", "784-512-256-10"], "lr": [0.001, 0.003], "optimizer": "adam,sgd"}
    )
    trials = grid_trials(space, seed_list(2))
    assert len(trials) == 2 * 2 * 2 * 2
    assert trials[0] == {"network": "784-256-10", "lr": 0.001, "optimizer": "adam", "seed": 0}
    assert trials[1]["seed"] == 1 and len({json.dumps(t, sort_keys=True) for t in trials}) == 16
    ranged = check_space(
        {
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "batch_size": Range(16, 128),
            "optimizer": ["adam", "sgd"],
        }
    )
    drawn = random_trials(ranged, 20, [0], draw_seed=1)
    assert drawn == random_trials(ranged, 20, [0], draw_seed=1)  # seeded
    assert all(1e-4 <= t["lr"] <= 1e-2 and 16 <= t["batch_size"] <= 128 for t in drawn)
    assert all(isinstance(t["batch_size"], int) for t in drawn)
    assert {t["optimizer"] for t in drawn} == {"adam", "sgd"}
    with pytest.raises(QuicknetsError, match="a grid needs lists"):
        grid_trials(ranged, [0])
    assert seed_list(3) == [0, 1, 2] and seed_list(["4", 7]) == [4, 7]
    assert seed_list("0,7,9") == [0, 7, 9] and seed_list(" 2 ") == [0, 1]
    with pytest.raises(QuicknetsError, match="lr lists 0.001 more than once"):
        check_space({"lr": "0.001,1e-3"})  # would train one run twice, ranked as n = 2
    with pytest.raises(QuicknetsError, match="seeds lists 4 more than once"):
        seed_list(["4", 4])


@pytest.mark.parametrize(
    "seeds", [",", "", "1,,2", "-1", "0", 2.5, True, [], "a", "abc", "0,x", [1.5], {"n": 2}]
)
def test_seeds_of_the_wrong_kind_are_one_error(seeds):
    """One line naming `seeds` (the flag given: --seeds), never `--seed`."""
    with pytest.raises(QuicknetsError, match="^seeds must be"):
        seed_list(seeds)


@pytest.mark.parametrize(
    "space, message",
    [
        ([1], "must be a table"),  # TOML: vary = [1]
        ({"batchnorm": True}, "batchnorm: give a list"),  # a bool varies nothing
        ({"lr": 0.1}, "lr: give a list"),
        ({"lr": {"low": 0.001}}, "lr: a range is"),  # high missing
        ({"lr": {"low": 0.001, "high": 0.1, "step": {"x": 1}}}, "lr: a range is"),  # nested table
        ({"lr": {"low": 0.001, "high": 0.1, "log": "yes"}}, "log must be true or false"),
        ({"lr": {"low": "small", "high": 0.1}}, "--lr must be float"),
        ({"lr": [[0.1, 0.2]]}, "lr: a list of values holds plain values"),
        ({"lr": []}, "no values given for lr"),
        ({"seed": [1, 2]}, "not as a setting"),
    ],
)
def test_a_space_of_the_wrong_kind_is_one_error(space, message):
    with pytest.raises(QuicknetsError, match=message):
        check_space(space)


def test_base_is_checked():
    assert check_base({"layers": "784-16-10", "epochs": "2"}) == {
        "network": "784-16-10",
        "epochs": 2,
    }
    for base, message in [
        (5, "must be a table"),
        ({"epochs": 2.5}, "--epochs must be int"),
        ({"seed": 1}, "seeds=N"),
        ({"colour": 1}, "unknown setting"),
    ]:
        with pytest.raises(QuicknetsError, match=message):
            check_base(base)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"trials": "ten"}, "trials must be a whole number of at least 1, got 'ten'"),
        ({"trials": 0}, "trials must be a whole number"),
        ({"kind": "bayes"}, "search must be grid, random or optuna"),
        ({"prune": "yes"}, "prune must be true or false"),
        ({"metric": "val_acc"}, "needs a validation split"),
        ({"metric": "accuracy"}, "unknown metric"),
        ({"metric": 3}, "metric must be one of"),
        ({"metric": "mean_corruption_accuracy"}, "measured after training"),
        ({"space": {"lr": "log:0.001:0.1"}}, "a grid needs lists"),
    ],
)
def test_search_options_are_checked(options, message):
    with pytest.raises(QuicknetsError, match=message):
        Search.build(**{"space": {"lr": [0.1]}, **options})


def test_metric_and_record_round_trip():
    assert choose_metric("auto", {}, {}) == "test_accuracy"
    assert choose_metric("auto", {"val_split": 0.1}, {}) == "val_accuracy"
    assert choose_metric("auto", {}, {"val_split": [0.0, 0.1]}) == "test_accuracy"
    assert choose_metric("val_acc", {}, {"val_split": Range(0.1, 0.2)}) == "val_accuracy"
    assert choose_metric("test_loss", {}, {}) == "test_loss"
    search = Search.build(
        {"epochs": 2},
        {"lr": "log:0.001:0.1", "optimizer": ["adam", "sgd"]},
        seeds=[3, 5],
        kind="random",
        trials=4,
        draw_seed=7,
    )
    again = Search.from_dict(json.loads(json.dumps(search.to_dict())))
    assert again == search and again.plan() == search.plan() and len(search.plan()) == 8


@pytest.mark.parametrize("seeds", [10**11, 10_001, "100000000000", list(range(10_001))])
def test_too_many_seeds_is_one_error(seeds):
    """More than MAX_SEEDS seeds (a run folder each): an error saying why, before any list
    of 10**11 seeds is built (that was a MemoryError)."""
    with pytest.raises(QuicknetsError, match=r"seeds is too many: at most 10,000, as each seed"):
        seed_list(seeds)
    assert seed_list(10_000)[-1] == 9_999


@pytest.mark.parametrize(
    "key, text", [("lr", ",0.001"), ("lr", "0.001,"), ("dropout", "0.1,,0.2"), ("optimizer", ",")]
)
def test_an_empty_item_in_a_list_is_an_error(key, text):
    """An empty item was dropped silently ('0.001,' swept one lr) while --seeds ',' was an
    error: now every comma list refuses it, naming the flag."""
    flag = "--" + key.replace("_", "-")
    with pytest.raises(QuicknetsError, match=f"^{flag} .* has an empty item"):
        parse_values(key, text)
    with pytest.raises(QuicknetsError, match=f"^{flag} .* has an empty item"):
        check_space({key: text})


@pytest.mark.parametrize("stack", ["no", "false", 0, 1, None, [True]])
def test_stack_takes_only_a_bool(stack):
    """stack="no" was taken as true (a non-empty string): only True and False pass."""
    with pytest.raises(QuicknetsError, match="^stack must be true or false"):
        check_stack(stack)
    assert check_stack(False) is False and check_stack(True) is True


@pytest.mark.parametrize(
    "base, space",
    [
        ({}, {"class_weights": "foo=2"}),
        ({}, {"class_weights": "none;auto;Shirt=2,bar=3"}),
        ({"class_weights": "foo=2"}, {"lr": [0.001, 0.01]}),
        ({"dataset": "mnist"}, {"class_weights": "Shirt=2"}),
        ({}, {"dataset": ["fashion-mnist", "mnist"], "class_weights": ["Shirt=2"]}),
    ],
)
def test_class_weights_name_the_datasets_classes_before_any_trial(base, space):
    """A class the built-in dataset lacks is the error train gives, at Search.build (before
    any trial; it was each trial's failure), for a fixed or varied weight or dataset."""
    with pytest.raises(QuicknetsError, match="^--class-weights names '.*', which is not a class"):
        Search.build(base, space)
    Search.build({"dataset": "mnist"}, {"class_weights": "7=2;none"})  # mnist's classes: 0-9
    Search.build({}, {"class_weights": "shirt=2;auto"})  # one case-insensitive match
