"""A run's results read back: one flat row per model, and the findings and
the headline the report states in words."""

from kd_gan.evaluation import classifiers


def student_methods(rows):
    """The student methods of a run's rows, in order of appearance."""
    return list(dict.fromkeys(row["method"] for row in rows if row["role"] == "student"))


def csv_rows(results):
    """One flat row per model (`report.CSV_COLUMNS` are what results.csv keeps of it)."""
    name = classifiers.score_name(results["dataset"])
    rows = []
    for entry in results["models"]:
        quality = entry.get("quality") or {}
        fidelity = entry.get("fidelity") or {}
        training = entry.get("training") or {}
        rows.append({
            "name": entry["name"], "method": entry["method"], "role": entry["role"], "label": entry["label"],
            "depth": entry["depth"], "architecture": entry.get("architecture"), "size_label": entry.get("size_label"),
            "parameters": entry["parameters"], "compression_ratio": round(entry["compression_ratio"], 3),
            "score_name": name, "score": quality.get(name), "fid": quality.get("fid"),
            "fid_samples": quality.get("num_samples"), "reference_count": quality.get("reference_count"),
            "kid": quality.get("kid"), "kid_std": quality.get("kid_std"),
            "precision": quality.get("precision"), "recall": quality.get("recall"), "vol": quality.get("vol"),
            "mse_to_teacher": fidelity.get("mse"), "psnr_db": fidelity.get("psnr_db"),
            "interpolation_psnr_db": (fidelity.get("interpolation") or {}).get("psnr_db"),
            "epochs": training.get("epochs"), "train_wall_time_s": training.get("wall_time_s"),
            # Generator (student) steps: equal for a student and its scratch GAN, so the comparison is fair.
            "generator_steps": training["epochs"] * training["steps_per_epoch"] if "steps_per_epoch" in training else None,
        })
    return rows


def ratio(value):
    """A compression ratio as text: 2.5:1, 29:1, 1,696:1."""
    return f"{value:,.1f}:1" if value < 10 else f"{value:,.0f}:1"


def number(value, digits):
    """A number as table text with `digits` decimals, "-" for None."""
    return "-" if value is None else f"{value:,.{digits}f}"


def findings(results):
    """Sentences read off the numbers: score kept, student vs scratch, sharpness."""
    name = classifiers.score_name(results["dataset"])
    rows = csv_rows(results)
    teacher = rows[0]
    if teacher["fid"] is None:
        return ["No evaluation was run (eval_samples=0): see the training losses and the grids."]
    lines = []
    if not student_methods(rows):  # Scratch GANs only (loss="none").
        return [
            f"{row['size_label']} ({ratio(row['compression_ratio'])}), {row['label']}: FID {row['fid']:.1f}, "
            f"{row['fid'] / teacher['fid']:.2f}x the teacher's {teacher['fid']:.1f}; VoL {row['vol']:,.0f} (teacher "
            f"{teacher['vol']:,.0f})."
            for row in rows[1:]
        ]
    for architecture in dict.fromkeys(row["architecture"] for row in rows[1:]):  # In plan order.
        # Every student of the architecture: random, pruned and started ones share a method.
        at_size = [row for row in rows[1:] if row["architecture"] == architecture]
        scratch = next((row for row in at_size if row["method"] == "scratch"), None)
        for student in (row for row in at_size if row["role"] == "student"):
            kept = ""
            if student["score"] is not None and teacher["score"]:
                kept = (
                    f"keeps {100 * student['score'] / teacher['score']:.0f}% of the teacher's {name} "
                    f"({number(student['score'], 2)} vs {number(teacher['score'], 2)}); "
                )
            if scratch is None:  # Students only (scratch=False).
                lines.append(
                    f"{student['size_label']} ({ratio(student['compression_ratio'])}), {student['label']}: {kept}FID "
                    f"{student['fid']:.1f} (teacher {teacher['fid']:.1f}); VoL {student['vol']:,.0f} (teacher "
                    f"{teacher['vol']:,.0f})."
                )
                continue
            verdict = "beats" if student["fid"] < scratch["fid"] else "does not beat"
            lines.append(
                f"{student['size_label']} ({ratio(student['compression_ratio'])}), {student['label']}: {kept}FID "
                f"{student['fid']:.1f} {verdict} the scratch GAN's {scratch['fid']:.1f} (teacher "
                f"{teacher['fid']:.1f}); VoL {student['vol']:,.0f} (teacher {teacher['vol']:,.0f}, scratch "
                f"{scratch['vol']:,.0f})."
            )
    return lines


def headline(results):
    """The run's finding in one sentence, for the top of the report: the best
    student at the largest compression against the teacher and against the
    scratch GAN of its size (None before any evaluation or without students)."""
    name = {"mnist_score": "MNIST score", "inception_score": "Inception Score"}.get(classifiers.score_name(results["dataset"]))
    rows = csv_rows(results)
    teacher, students = rows[0], [row for row in rows[1:] if row["role"] == "student" and row["fid"] is not None]
    if teacher["fid"] is None or not students:
        return None
    largest = max(row["compression_ratio"] for row in students)
    at_largest = [row for row in students if row["compression_ratio"] == largest]
    by_score = teacher["score"] is not None and all(row["score"] is not None for row in at_largest)
    best = max(at_largest, key=lambda row: row["score"]) if by_score else min(at_largest, key=lambda row: row["fid"])
    scratch = next((row for row in rows[1:] if row["method"] == "scratch" and row["architecture"] == best["architecture"]
                    and row["fid"] is not None), None)
    smaller = f"{best['compression_ratio']:,.0f}x" if best["compression_ratio"] >= 10 else f"{best['compression_ratio']:.1f}x"
    student = f"The {best['label']}, {best['size_label']}, {smaller} smaller than the teacher,"
    if by_score:
        text = f"{student} keeps {100 * best['score'] / teacher['score']:.0f}% of its {name} ({best['score']:.2f} of {teacher['score']:.2f})"
        if scratch is not None and scratch["score"] is not None:
            text += f"; the scratch GAN of its size keeps {100 * scratch['score'] / teacher['score']:.0f}% ({scratch['score']:.2f})"
        real = (results.get("real") or {}).get(classifiers.score_name(results["dataset"]))
        return text + "." + (f" Real images score {real:.2f}." if real is not None else "")
    text = f"{student} reaches FID {best['fid']:.1f}, {best['fid'] / teacher['fid']:.1f}x the teacher's {teacher['fid']:.1f}"
    if scratch is not None:
        text += f"; the scratch GAN of its size {scratch['fid']:.1f} ({scratch['fid'] / teacher['fid']:.1f}x)"
    return text + " (lower is better)."
