"""Width profiles for a parameter budget: a student `ratio` times smaller than its teacher.

The paper's DCGAN students halve their widths towards the image, so a small
one spends most of its parameters on the projection from z (a CelebA d=1
student: 16,384 of 18,052). At the same budget a profile that keeps its
channels on the way to the image is the better student (CelebA at 90:1:
FID 143.5 for `(4, 12, 12, 12)` against 280.7 for d=1, docs/RESULTS.md).
`propose_widths` returns that shape, `(w0, w, ..., w)` with `w0 = round(w / 3)`
(at least 1), at the widest `w` the budget allows.

With `block="separable"` (depthwise-separable hidden stages) a channel pair
costs 25 + w_out parameters per input channel instead of 25 w_out, so the same
budget holds about four times the channels. The profile keeps the transposed
proposal's projection `w0` and widens the rest: `(4, 43, 43, 43)` at 87:1 of
the CelebA teacher. The separable profiles measured, CelebA `(4, 40, 40, 40)`
(its proposal at 93:1) and CIFAR-10 `(2, 30, 30)` (at 62:1), beat transposed
profiles of about their budget by 36-43 FID (docs/RESULTS.md).

```python
teacher = kd_gan.pretrained("celeb_a_d32")
widths = propose_widths(teacher, ratio=87)          # (4, 12, 12, 12)
student = Generator(teacher.latent_dim, teacher.image_shape, widths=widths)
wide = propose_widths(teacher, ratio=87, block="separable")  # (4, 43, 43, 43)
student = Generator(teacher.latent_dim, teacher.image_shape, widths=wide, block="separable")
```
"""

from kd_gan.errors import InputError, check_integer
from kd_gan.models.counting import count_parameters
from kd_gan.models.dcgan import KERNEL_SIZE, SEPARABLE, TRANSPOSED, check_block, generator_layout

# Teacher:student parameter ratios the paper reports (Aguinaldo et al., 2019, Table 1).
PAPER_RATIOS = {"mnist": 1669, "cifar10": 58, "celeb_a": 87}


def generator_parameters(widths, image_shape, latent_dim, block=TRANSPOSED):
    """Parameters of `Generator(latent_dim, image_shape, widths=widths, block=block)`, counted
    as `count_parameters` does (batch-norm moving statistics included), without building it."""
    check_block(block)
    sizes = generator_layout(image_shape[0])
    channels = image_shape[2]
    taps = KERNEL_SIZE * KERNEL_SIZE
    projected = sizes[0] * sizes[0] * widths[0]
    # The projection (no bias) and its batch norm, over every projected unit (before the reshape);
    # then batch norm per channel after every hidden map: scale, offset, mean, variance.
    total = projected * latent_dim + 4 * projected + 4 * sum(widths[1:])
    if block == SEPARABLE:  # A depthwise 5x5 filter per input channel, then a pointwise 1x1 (no biases).
        total += sum(taps * before + before * after for before, after in zip(widths[:-1], widths[1:]))
    else:
        total += sum(taps * before * after for before, after in zip(widths[:-1], widths[1:]))
    return total + taps * widths[-1] * channels + channels  # The image layer (transposed) has a bias.


def propose_widths(teacher=None, ratio=None, *, parameters=None, image_shape=None, latent_dim=None,
                   block=TRANSPOSED):
    """A width profile `(w0, w, ..., w)` for a student of at most `parameters`
    (default: the teacher's count / `ratio`) drawing `image_shape` from `latent_dim`.

    Args:
        teacher: a kd_gan `Generator`, or any generator with `latent_dim` and
            `image_shape` attributes; gives the count, shape and latent size
            unless they are passed.
        ratio: teacher:student parameters (>= 1), with `teacher`.
        parameters: the budget, instead of a teacher and a ratio.
        image_shape, latent_dim: the student's, instead of the teacher's.
        block: the student's hidden stages, "transposed" (`w0 = round(w / 3)`,
            at least 1, at the widest `w`) or "separable" (the transposed
            proposal's `w0`, then the widest `w`).

    Raises `InputError` when no profile of that block fits, naming the smallest.

    Example:

    ```python
    propose_widths(parameters=2_634, image_shape=(28, 28, 1), latent_dim=32)  # (2, 6, 6)
    propose_widths(parameters=2_634, image_shape=(28, 28, 1), latent_dim=32, block="separable")  # (2, 18, 18)
    ```
    """
    check_block(block)
    if teacher is not None:
        image_shape = tuple(teacher.image_shape) if image_shape is None else image_shape
        latent_dim = teacher.latent_dim if latent_dim is None else latent_dim
        if parameters is None:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio >= 1:
                raise InputError(f"ratio must be a number >= 1 (teacher:student parameters). Received: ratio={ratio!r}")
            parameters = count_parameters(teacher) / ratio
    if parameters is None or image_shape is None or latent_dim is None:
        raise InputError("Give a teacher and a ratio, or parameters, image_shape and latent_dim.")
    check_integer("latent_dim", latent_dim, 1, "an integer >= 1")
    maps = len(generator_layout(image_shape[0])) - 1

    def count(widths, kind):
        return generator_parameters(widths, image_shape, latent_dim, kind)

    def widest(first, kind, width=1):
        """The widest `(first(w), w, ..., w)` of `kind` within the budget, searched up from `width`."""
        def profile(w):
            return (first(w),) + (w,) * (maps - 1)

        if count(profile(width), kind) > parameters:
            raise InputError(
                f"No {kind} width profile fits {parameters:,.0f} parameters for {tuple(image_shape)} images from a "
                f"latent of {latent_dim}: the smallest, {profile(width)}, has {count(profile(width), kind):,}."
            )
        while count(profile(width + 1), kind) <= parameters:
            width += 1
        return profile(width)

    if block == SEPARABLE and count((1,) * maps, SEPARABLE) > parameters:
        widest(lambda w: 1, SEPARABLE)  # Raises, naming the smallest separable profile.
    transposed = widest(lambda w: max(1, round(w / 3)), TRANSPOSED)
    if block == TRANSPOSED:
        return transposed
    # Keep the projection; a separable stage costs no more than a transposed one of the same
    # widths (25 + w_out per input channel against 25 w_out, for w_out >= 2), so the search
    # starts at the transposed proposal's width, which fits.
    return widest(lambda w: transposed[0], SEPARABLE, width=transposed[-1])
