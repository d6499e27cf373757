"""Width profiles for a parameter budget: a student `ratio` times smaller than its teacher.

The paper's DCGAN students halve their widths towards the image, so a small
one spends most of its parameters on the projection from z (a CelebA d=1
student: 16,384 of 18,052). At the same budget a profile that keeps its
channels on the way to the image is the better student (CelebA at 90:1:
FID 143.5 for `(4, 12, 12, 12)` against 280.7 for d=1, docs/RESULTS.md).
`propose_widths` returns that shape, `(w0, w, ..., w)` with `w0 = round(w / 3)`
(at least 1), at the widest `w` the budget allows.

```python
teacher = kd_gan.pretrained("celeb_a_d32")
widths = propose_widths(teacher, ratio=87)          # (4, 12, 12, 12)
student = Generator(teacher.latent_dim, teacher.image_shape, widths=widths)
```
"""

from kd_gan.errors import InputError, check_integer
from kd_gan.models.counting import count_parameters
from kd_gan.models.dcgan import KERNEL_SIZE, generator_layout

# Teacher:student parameter ratios the paper reports (Aguinaldo et al., 2019, Table 1).
PAPER_RATIOS = {"mnist": 1669, "cifar10": 58, "celeb_a": 87}


def generator_parameters(widths, image_shape, latent_dim):
    """Parameters of `Generator(latent_dim, image_shape, widths=widths)`, counted as
    `count_parameters` does (batch-norm moving statistics included), without building it."""
    sizes = generator_layout(image_shape[0])
    channels = image_shape[2]
    taps = KERNEL_SIZE * KERNEL_SIZE
    projected = sizes[0] * sizes[0] * widths[0]
    # The projection (no bias) and its batch norm, over every projected unit (before the reshape);
    # then batch norm per channel after every hidden map: scale, offset, mean, variance.
    total = projected * latent_dim + 4 * projected + 4 * sum(widths[1:])
    total += sum(taps * before * after for before, after in zip(widths[:-1], widths[1:]))
    return total + taps * widths[-1] * channels + channels  # The image layer has a bias.


def propose_widths(teacher=None, ratio=None, *, parameters=None, image_shape=None, latent_dim=None):
    """A width profile `(w0, w, ..., w)` for a student of at most `parameters`
    (default: the teacher's count / `ratio`) drawing `image_shape` from `latent_dim`.

    `teacher` (a kd_gan `Generator`, or any generator with `latent_dim` and
    `image_shape` attributes) gives the count, shape and latent size unless they
    are passed. Raises `InputError` when not even `(1, 1, ...)` fits.
    """
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

    def profile(first, width):
        return (first,) + (width,) * (maps - 1)

    def fitting(width):
        return profile(max(1, round(width / 3)), width)

    smallest = generator_parameters(fitting(1), image_shape, latent_dim)
    if smallest > parameters:
        raise InputError(
            f"No width profile fits {parameters:,.0f} parameters for {tuple(image_shape)} images from a latent of "
            f"{latent_dim}: the smallest, {fitting(1)}, has {smallest:,}."
        )
    width = 1
    while generator_parameters(fitting(width + 1), image_shape, latent_dim) <= parameters:
        width += 1
    return fitting(width)
