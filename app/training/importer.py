"""`ocupredict import-labelled DIR --kind train|test --name NAME`: a labelled folder
(`DIR/<class_code>/*`) becomes a dataset.

Each file is validated like an upload (the same size limit, decoder, pixel limits and
minimum size, against the active model's manifest), the quality gate's verdict is
recorded, and the image is stored once under its sha256. A folder whose name is not a
class of the active model, a file that is not an acceptable image, a second copy of an
image and (unless --keep-ungradable) an ungradable photograph are left out and listed in
the report. Imported items have no patient_ref (unless the file is named
`<patient_ref>__<anything>`), so their split comes from the image hash and is flagged.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.clinical import assess
from app.config import Settings
from app.db.base import utcnow
from app.db.learning import Dataset, DatasetItem
from app.db.session import SessionFactory, make_engine, make_sessionmaker
from app.errors import FileTooLarge, ImageRejected
from app.inference.manifest import DEFAULT_MANIFEST, ModelManifest
from app.inference.preprocess import decode_upload
from app.repositories.model_versions import ModelRepository
from app.storage import ImageStore, build_image_store, dataset_image_key
from app.training.datasets import DatasetService
from app.training.splits import split_of

EXIT_OK, EXIT_FAILED, EXIT_SOME_REJECTED = 0, 1, 3
_PATIENT = re.compile(r"^([A-Za-z0-9._-]{1,64})__.+")


@dataclass
class ImportReport:
    dataset: Dataset | None = None
    imported: Counter[str] = field(default_factory=Counter)  # by class
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    ungradable: list[str] = field(default_factory=list)  # left out (or kept, flagged)
    duplicates: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.imported.values())


@dataclass(frozen=True)
class _Checked:
    path: Path
    label: str
    data: bytes
    sha256: str
    content_type: str
    extension: str
    gradable: bool | None
    score: float | None
    reasons: list[str] | None


def _check(path: Path, label: str, settings: Settings, manifest: ModelManifest) -> _Checked:
    """Validate one file like an upload (blocking); ImageRejected when it is not one."""
    data = path.read_bytes()
    if len(data) > settings.max_upload_bytes:
        raise FileTooLarge(settings.max_upload_mb)
    decoded = decode_upload(
        data,
        max_pixels=settings.max_image_pixels,
        fast_jpeg=settings.fast_jpeg_decode,
        input_size=manifest.input_size,
        mean=manifest.mean,
        std=manifest.std,
    )
    gradable: bool | None = None
    score: float | None = None
    reasons: list[str] | None = None
    if settings.quality_gate and manifest.quality_gate:
        quality = assess(
            decoded.picture,
            (decoded.width, decoded.height),
            settings.quality_thresholds,
            fundus=manifest.modality == "fundus",
        )
        gradable, score, reasons = quality.gradable, quality.score, list(quality.reasons)
    return _Checked(
        path=path,
        label=label,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=decoded.content_type,
        extension=decoded.extension,
        gradable=gradable,
        score=score,
        reasons=reasons,
    )


def list_files(
    directory: Path, codes: tuple[str, ...]
) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """((file, class code) in a stable order, [(folder, reason)] for unknown folders)."""
    files: list[tuple[Path, str]] = []
    refused: list[tuple[str, str]] = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if folder.name not in codes:
            refused.append((str(folder), f"not a class of the active model ({', '.join(codes)})"))
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files.append((path, folder.name))
    return files, refused


async def active_manifest(sessions: SessionFactory) -> ModelManifest:
    """The registry's active version's manifest (the default before the first start)."""
    async with sessions() as session:
        repo = ModelRepository(session)
        pointer = await repo.pointer()
        row = await repo.get(pointer.active_version) if pointer else None
    return ModelManifest.model_validate(row.manifest) if row else DEFAULT_MANIFEST


async def import_labelled(
    settings: Settings,
    sessions: SessionFactory,
    storage: ImageStore,
    directory: Path,
    *,
    kind: str,
    name: str,
    keep_ungradable: bool = False,
    on_file: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Validate, store and snapshot the folder as one dataset; `on_file(done, total)`."""
    manifest = await active_manifest(sessions)
    files, refused = list_files(directory, manifest.codes)
    report = ImportReport(rejected=list(refused))
    items: list[DatasetItem] = []
    seen: set[str] = set()
    excluded: Counter[str] = Counter()
    for done, (path, label) in enumerate(files, start=1):
        try:
            checked = await asyncio.to_thread(_check, path, label, settings, manifest)
        except (ImageRejected, FileTooLarge) as exc:
            report.rejected.append((str(path), f"{exc.code}: {exc.detail}"))
            excluded["invalid_image"] += 1
        except OSError as exc:
            report.rejected.append((str(path), f"unreadable: {exc.strerror or exc}"))
            excluded["invalid_image"] += 1
        else:
            if checked.sha256 in seen:
                report.duplicates.append(str(path))
                excluded["duplicate_image"] += 1
            elif checked.gradable is False and not keep_ungradable:
                report.ungradable.append(str(path))
                excluded["ungradable"] += 1
            else:
                if checked.gradable is False:
                    report.ungradable.append(str(path))
                seen.add(checked.sha256)
                items.append(await _store(storage, checked, kind))
                report.imported[label] += 1
        if on_file is not None:
            on_file(done, len(files))
    if not items:
        return report
    async with sessions() as session:
        report.dataset = await DatasetService(session, settings, storage).save(
            name=name,
            kind=kind,
            source="import",
            date_from=None,
            date_to=None,
            items=items,
            excluded=excluded,
            user=None,
            now=utcnow(),
        )
    return report


async def _store(storage: ImageStore, checked: _Checked, kind: str) -> DatasetItem:
    key = dataset_image_key(checked.sha256, checked.extension)
    if not await storage.exists(key):
        await storage.put(key, checked.data, checked.content_type)
    match = _PATIENT.match(checked.path.name)
    patient_ref = match.group(1) if match else None
    split, from_image = split_of(kind, patient_ref, checked.sha256)
    return DatasetItem(
        image_sha256=checked.sha256,
        image_key=key,
        content_type=checked.content_type,
        prediction_id=None,
        patient_ref=patient_ref,
        split=split,
        split_from_image=from_image,
        label=checked.label,
        label_source="import",
        labelled_by=None,
        labelled_at=None,
        model_version=None,
        source_name=f"{checked.label}/{checked.path.name}"[:255],
        quality_gradable=checked.gradable,
        quality_score=checked.score,
        quality_reasons=checked.reasons,
    )


# --------------------------------------------------------------------------- command


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "import-labelled",
        help="make a dataset from a labelled folder DIR/<class_code>/*",
        description="Each image is validated like an upload and its quality verdict "
        "recorded; the result is an immutable dataset (see README, Learning loop).",
    )
    parser.add_argument("directory", metavar="DIR", type=Path)
    parser.add_argument("--kind", choices=("train", "test"), required=True)
    parser.add_argument("--name", required=True, type=_name)
    parser.add_argument(
        "--keep-ungradable",
        action="store_true",
        help="keep photographs the quality gate calls ungradable (their verdict is recorded)",
    )
    parser.set_defaults(func=run)


def _name(text: str) -> str:
    text = text.strip()
    if not 1 <= len(text) <= 100:
        raise argparse.ArgumentTypeError("must be 1-100 characters")
    return text


def run(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if not args.directory.is_dir():
        console.print(f"ocupredict: {args.directory} is not a directory")
        return EXIT_FAILED
    return asyncio.run(_run(settings, args, console))


async def _run(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    engine = make_engine(settings)
    storage = await build_image_store(settings)
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task("import", total=None)

            def on_file(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = await import_labelled(
                settings,
                make_sessionmaker(engine),
                storage,
                args.directory,
                kind=args.kind,
                name=args.name,
                keep_ungradable=args.keep_ungradable,
                on_file=on_file,
            )
    finally:
        await storage.aclose()
        await engine.dispose()
    print_report(report, Console(file=sys.stdout, soft_wrap=True))
    if report.dataset is None:
        return EXIT_FAILED
    return EXIT_SOME_REJECTED if report.rejected else EXIT_OK


def print_report(report: ImportReport, console: Console) -> None:
    if report.dataset is not None:
        d = report.dataset
        console.print(f"dataset {d.id} '{d.name}' ({d.kind}): {d.items} images, sha256 {d.sha256}")
    else:
        console.print("no dataset was made: nothing could be imported")
    table = Table("class", "imported")
    for code, count in sorted(report.imported.items()):
        table.add_row(code, str(count))
    console.print(table)
    console.print(
        f"imported {report.total}, rejected {len(report.rejected)}, "
        f"duplicates {len(report.duplicates)}, ungradable {len(report.ungradable)}"
    )
    for path, reason in report.rejected:
        console.print(f"rejected {path}: {reason}", markup=False, highlight=False)
    for path in report.duplicates:
        console.print(f"duplicate {path}", markup=False, highlight=False)
    for path in report.ungradable:
        console.print(f"ungradable {path}", markup=False, highlight=False)
