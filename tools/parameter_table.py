"""The parameter tables of docs/API.md: `python tools/parameter_table.py`."""

from kd_gan.data.loading import IMAGE_SHAPES
from kd_gan.errors import InputError
from kd_gan.models import PAPER_RATIOS, Discriminator, Generator, count_parameters, propose_widths
from kd_gan.models.dcgan import BLOCKS


DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128)


def parameter_table(image_shapes, depths=DEPTHS, latent_dim=128):
    """Markdown table of generator / discriminator parameters per depth and image shape."""
    header = "| d | " + " | ".join(f"G {name} | D {name}" for name in image_shapes) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(image_shapes))]
    for depth in depths:
        cells = []
        for shape in image_shapes.values():
            cells.append(f"{count_parameters(Generator(latent_dim, shape, depth)):,}")
            cells.append(f"{count_parameters(Discriminator(shape, depth)):,}")
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_ratio_pairs(image_shapes, student_depths=(1, 2, 4), depths=DEPTHS + (192, 256), latent_dim=128):
    """Markdown: per data set and student d, the smallest teacher d reaching the paper's ratio."""
    lines = ["| data set | paper ratio | student d | smallest teacher d reaching it | ratio |", "|---|---|---|---|---|"]
    for name, shape in image_shapes.items():
        counts = {d: count_parameters(Generator(latent_dim, shape, d)) for d in depths}
        for student_depth in student_depths:
            reaching = [d for d in depths if counts[d] / counts[student_depth] >= PAPER_RATIOS[name]]
            if reaching:
                teacher_depth = reaching[0]
                ratio = f"{counts[teacher_depth] / counts[student_depth]:,.0f}:1"
            else:
                teacher_depth, ratio = f"> {depths[-1]}", "-"
            lines.append(f"| {name} | {PAPER_RATIOS[name]}:1 | {student_depth} | {teacher_depth} | {ratio} |")
    return "\n".join(lines)


def proposed_profiles(image_shapes, teacher_depths=(32, 128), latent_dims=None):
    """Markdown: per data set and teacher d, `propose_widths` at the paper's ratio and its count,
    for transposed and for separable hidden stages."""
    latent_dims = latent_dims or {}
    lines = ["| data set | latent | teacher d | teacher parameters | paper ratio | block | proposed widths | parameters "
             "| ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, shape in image_shapes.items():
        latent_dim = latent_dims.get(name, 128)
        for depth in teacher_depths:
            teacher = Generator(latent_dim, shape, depth)
            row = f"| {name} | {latent_dim} | {depth} | {count_parameters(teacher):,} | {PAPER_RATIOS[name]}:1 | "
            for block in BLOCKS:
                try:
                    widths = propose_widths(teacher, PAPER_RATIOS[name], block=block)
                except InputError:  # The budget is below the smallest profile.
                    lines.append(row + f"{block} | none fits | - | - |")
                    continue
                student = count_parameters(Generator(latent_dim, shape, widths=widths, block=block))
                lines.append(row + f"{block} | {'-'.join(map(str, widths))} | {student:,} | "
                             f"{count_parameters(teacher) / student:,.0f}:1 |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(parameter_table(IMAGE_SHAPES))
    print()
    print(paper_ratio_pairs(IMAGE_SHAPES))
    print()
    print(proposed_profiles(IMAGE_SHAPES, latent_dims={"mnist": 32}))
