"""Width profiles for a parameter budget (kd_gan.models.budget)."""

import pytest

import kd_gan
from kd_gan.errors import InputError
from kd_gan.models import Generator, count_parameters, generator_parameters, propose_widths


@pytest.mark.parametrize(
    "shape, latent_dim, widths",
    [((28, 28, 1), 32, (4, 2, 1)), ((28, 28, 1), 32, (2, 6, 6)), ((32, 32, 3), 128, (3, 9, 9)),
     ((64, 64, 3), 128, (4, 12, 12, 12)), ((64, 64, 3), 100, (7, 1, 5, 2))],
)
def test_the_count_without_building_matches_the_built_generator(shape, latent_dim, widths):
    built = count_parameters(Generator(latent_dim, shape, widths=widths))
    assert generator_parameters(widths, shape, latent_dim) == built


def test_the_proposal_is_the_widest_profile_of_its_shape_within_the_budget():
    teacher = Generator(128, (64, 64, 3), depth=32)
    widths = propose_widths(teacher, ratio=87)
    assert widths == (4, 12, 12, 12)  # The layout the CelebA probe measured best at this budget.
    budget = count_parameters(teacher) / 87
    assert count_parameters(Generator(128, (64, 64, 3), widths=widths)) <= budget
    assert generator_parameters((4, 13, 13, 13), (64, 64, 3), 128) > budget  # One wider does not fit.
    assert kd_gan.propose_widths is propose_widths


def test_a_budget_given_as_parameters_and_mnist_at_the_papers_ratio():
    widths = propose_widths(parameters=2_634, image_shape=(28, 28, 1), latent_dim=32)
    assert widths == (2, 6, 6)
    assert generator_parameters(widths, (28, 28, 1), 32) <= 2_634 < generator_parameters((2, 7, 7), (28, 28, 1), 32)


def test_impossible_budgets_and_bad_ratios_are_refused_naming_the_value():
    with pytest.raises(InputError, match="smallest, \\(1, 1, 1\\), has"):
        propose_widths(parameters=100, image_shape=(28, 28, 1), latent_dim=32)
    teacher = Generator(32, (28, 28, 1), depth=2)
    with pytest.raises(InputError, match="ratio=0.5"):
        propose_widths(teacher, ratio=0.5)
    with pytest.raises(InputError, match="Give a teacher and a ratio"):
        propose_widths(parameters=1000)


@pytest.mark.parametrize(
    "shape, latent_dim, widths",
    [((28, 28, 1), 32, (2, 18, 18)), ((32, 32, 3), 128, (2, 30, 30)), ((64, 64, 3), 128, (4, 40, 40, 40)),
     ((64, 64, 3), 100, (7, 1, 5, 2))],
)
def test_separable_counts_without_building_match_the_built_generator(shape, latent_dim, widths):
    built = count_parameters(Generator(latent_dim, shape, widths=widths, block="separable"))
    assert generator_parameters(widths, shape, latent_dim, block="separable") == built


def test_a_separable_proposal_keeps_the_projection_and_widens_the_path_to_the_image():
    teacher = Generator(128, (64, 64, 3), depth=32)
    widths = propose_widths(teacher, ratio=87, block="separable")
    assert widths == (4, 43, 43, 43)  # The transposed proposal's projection (4), the rest widened from 12.
    budget = count_parameters(teacher) / 87
    assert count_parameters(Generator(128, (64, 64, 3), widths=widths, block="separable")) <= budget
    assert generator_parameters((4, 44, 44, 44), (64, 64, 3), 128, block="separable") > budget
    assert propose_widths(Generator(128, (32, 32, 3), depth=32), ratio=58, block="separable") == (2, 33, 33)


@pytest.mark.parametrize("shape, latent_dim", [((28, 28, 1), 32), ((32, 32, 3), 128), ((64, 64, 3), 128)])
@pytest.mark.parametrize("parameters", [2_700, 9_000, 40_000, 250_000])
def test_a_separable_proposal_is_the_widest_of_its_shape_and_never_narrower_than_the_transposed(
        shape, latent_dim, parameters):
    transposed = propose_widths(parameters=parameters, image_shape=shape, latent_dim=latent_dim)
    separable = propose_widths(parameters=parameters, image_shape=shape, latent_dim=latent_dim, block="separable")
    assert separable[0] == transposed[0]
    assert all(wide >= narrow for wide, narrow in zip(separable[1:], transposed[1:]))
    assert len(set(separable[1:])) == 1
    assert generator_parameters(separable, shape, latent_dim, "separable") <= parameters
    wider = (separable[0],) + tuple(width + 1 for width in separable[1:])
    assert generator_parameters(wider, shape, latent_dim, "separable") > parameters


def test_a_budget_only_the_transposed_block_fits_is_refused_for_separable_stages():
    # At width 1 a separable stage costs 25 + 1 parameters against the transposed 25.
    assert propose_widths(parameters=661, image_shape=(28, 28, 1), latent_dim=32) == (1, 1, 1)
    with pytest.raises(InputError, match="No separable width profile fits 661 .* \\(1, 1, 1\\), has 662"):
        propose_widths(parameters=661, image_shape=(28, 28, 1), latent_dim=32, block="separable")
    with pytest.raises(InputError, match="No separable width profile .* \\(1, 1, 1, 1\\), has 2,280"):
        propose_widths(parameters=2_200, image_shape=(64, 64, 3), latent_dim=128, block="separable")


def test_an_unknown_block_is_refused_naming_the_value():
    with pytest.raises(InputError, match="block='depthwise'"):
        propose_widths(parameters=10_000, image_shape=(28, 28, 1), latent_dim=32, block="depthwise")
    with pytest.raises(InputError, match="block='depthwise'"):
        generator_parameters((2, 6, 6), (28, 28, 1), 32, block="depthwise")
