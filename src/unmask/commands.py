"""The ``unmask`` command: ``unmask predict`` restores photos; ``unmask run`` (or plain ``unmask``) is ``kedro run``.

Not named ``cli.py``: Kedro loads ``<package>.cli`` as the project's own ``kedro`` commands.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

CONTEXT = {"help_option_names": ["-h", "--help"]}
DEVICE_HELP = "auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps."
PRECISION_HELP = "auto (bf16 where the hardware runs it natively, else fp32), fp32, bf16 or fp16."


def _inputs(paths: tuple[str, ...]) -> Iterator[tuple[Path, Path]]:
    """``(file, output name without suffix)`` for every input file, folders searched recursively in name order."""
    from unmask.predict import IMAGE_SUFFIXES

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                yield file, file.relative_to(path).with_suffix("")
        else:
            yield path, Path(path.stem)


def _unique(name: Path, taken: set[Path], inputs: set[Path], outdir: Path, suffix: str) -> Path:
    """``outdir/name + suffix``, numbered when two inputs share a name, never one of the inputs themselves."""
    candidate, n = outdir / f"{name}{suffix}", 1
    while candidate in taken or candidate.resolve() in inputs:
        n += 1
        candidate = outdir / f"{name}_{n}{suffix}"
    taken.add(candidate)
    return candidate


@click.command("predict", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for the results: OUTDIR/<input name>.png per input (created if needed).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Model weights (.safetensors with its .json beside it). Default: data/06_models/model.safetensors "
                   "when its JSON says it was trained on CelebA, else the shipped "
                   "models/unmask_ra_unet_64.safetensors.")
@click.option("--save-mask", is_flag=True,
              help="Also write OUTDIR/<input name>.mask.png: white where the photo was replaced "
                   "(the mask the model removed).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--precision", default="auto", show_default=True, help=PRECISION_HELP)
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Crop side the model was trained at; normally read from the checkpoint or its project.")
@click.option("--flip-average/--no-flip-average", default=True, show_default=True,
              help="Also restore each face mirrored and average the two (twice the model time, better restorations).")
@click.option("--min-mask-fraction", type=click.FloatRange(0.0, 1.0), default=None,
              help="Models with a mask head: restore a face only when the predicted mask covers at least this "
                   "fraction of its crop (default 0.04); faces below are left untouched.")
@click.option("--frame-fallback/--no-frame-fallback", default=True, show_default=True,
              help="When no masked face was found in a portrait or square photo, try the photo as a tight "
                   "crop of one face (the mask head still decides).")
def predict(inputs: tuple[str, ...], outdir: str, checkpoint: str | None, save_mask: bool, device: str,
            precision: str, size: int | None, flip_average: bool, min_mask_fraction: float | None,
            frame_fallback: bool) -> None:
    """Remove face masks from photos: INPUT is image files (JPEG, PNG, ...) or folders of them.

    Every face found is aligned as in training, restored blind and blended back into the photo at
    its original resolution; the rest of the photo is untouched. With a model that predicts the
    mask, faces without a mask are left alone. A file that cannot be read or has no (masked) face
    gets a one-line warning (a photo without one is copied unchanged). The exit status is 1 only
    when no face at all was restored.
    """
    from tqdm.auto import tqdm

    from unmask.imaging.png import write_png
    from unmask.predict import DEFAULT_MIN_MASK_FRACTION, Unmasker, choose_checkpoint, read_photo

    try:
        path, why = choose_checkpoint(checkpoint)
        unmasker = Unmasker(path, device=device, precision=precision, size=size, flip_average=flip_average,
                            min_mask_fraction=DEFAULT_MIN_MASK_FRACTION if min_mask_fraction is None
                            else min_mask_fraction, frame_fallback=frame_fallback)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"unmask predict: {why}", err=True)
    click.echo(f"unmask predict: {unmasker.describe()}", err=True)
    files = list(_inputs(inputs))
    if not files:
        raise click.ClickException(f"no image files in {', '.join(inputs)}.")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    input_paths = {f.resolve() for f, _ in files if f.exists()}
    taken: set[Path] = set()
    counts = {"restored": 0, "faces": 0, "no_face": 0, "unmasked": 0, "unreadable": 0}
    started = time.perf_counter()
    show_bar = len(files) > 1 or any(Path(p).is_dir() for p in inputs)
    with tqdm(files, desc="unmask", unit="photo", disable=not show_bar, file=sys.stderr) as bar:
        for file, name in bar:
            try:
                photo = read_photo(file)
            except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
                counts["unreadable"] += 1
                tqdm.write(f"warning: {file}: skipped, {exc}", file=sys.stderr)
                continue
            result = unmasker.unmask(photo)
            target = _unique(name, taken, input_paths, out, ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            write_png(target, result.image)
            if save_mask:
                write_png(_unique(name, taken, input_paths, out, ".mask.png"), result.region.astype("uint8") * 255)
            restored = sum(face.restored for face in result.faces)
            if restored:
                counts["restored"] += 1
                counts["faces"] += restored
            elif result.faces:
                counts["unmasked"] += 1
                tqdm.write(f"warning: {file}: {len(result.faces)} face(s) found, none masked (or the model changed "
                           f"nothing), copied unchanged to {target}", file=sys.stderr)
            else:
                counts["no_face"] += 1
                tqdm.write(f"warning: {file}: no face found, copied unchanged to {target}", file=sys.stderr)
    seconds = time.perf_counter() - started
    click.echo(
        f"unmask predict: {counts['restored']} of {len(files)} photos restored ({counts['faces']} faces) in "
        f"{seconds:.1f} s; {counts['no_face']} without a face found, "
        + (f"{counts['unmasked']} with no masked face, " if counts["unmasked"] else "")
        + f"{counts['unreadable']} unreadable; results in {out}",
        err=True,
    )
    if counts["restored"] == 0:
        sys.exit(1)


class _RunByDefault(click.Group):
    """A group whose default command is ``run``: ``unmask --pipelines=x`` stays ``kedro run --pipelines=x``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in CONTEXT["help_option_names"]):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "run":
            return _kedro_run_command()
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, "run"})


def _kedro_run_command() -> click.Command:
    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)
    return find_run_command(package_name)


@click.group(cls=_RunByDefault, context_settings=CONTEXT, commands={"run": click.Command("run", help="kedro run")})
def cli() -> None:
    """unmask: remove face masks from photos (`unmask predict`) or run the project's pipelines (`unmask run`,
    the same as `kedro run`; also what plain `unmask [kedro run options]` does)."""


cli.add_command(predict)
