"""Remove stored images that no prediction references any more.

Heatmaps cached beside an image (app.services.explain) count as referenced while their
image is. Such orphans arise when a request stored its image and then failed to write its row and
also failed to delete the object (app.services.prediction), when deleting a prediction
could not delete its object, or when the process died between the two writes. Only keys
of our own shape are considered, and only objects older than a grace period, so an
upload whose row is still being written is never touched. The same sweep removes the temp
files of writes that a killed process never finished (local store only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from app.db.session import SessionFactory
from app.repositories.predictions import PredictionRepository
from app.storage import ImageStore, StorageUnavailable, source_image_key

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    scanned: int = 0  # image objects older than the cutoff
    orphaned: int = 0  # of which no prediction references
    deleted: int = 0
    failed: int = 0  # orphans whose delete failed (logged; the next sweep retries)
    abandoned_writes: int = 0  # unfinished writes of killed processes (removed unless dry run)


async def sweep_orphan_images(
    sessions: SessionFactory,
    storage: ImageStore,
    *,
    cutoff: datetime,
    dry_run: bool,
) -> SweepReport:
    """Delete (or, with dry_run, only count and log) orphans written before `cutoff`."""
    report = SweepReport()
    async for keys in storage.keys_stored_before(cutoff):
        report.scanned += len(keys)
        # A heatmap beside an image lives as long as the image's prediction does.
        sources = {key: source_image_key(key) for key in keys}
        async with sessions() as session:
            referenced = await PredictionRepository(session).referenced_image_keys(
                sorted(set(sources.values()))
            )
        for key in keys:
            if sources[key] in referenced:
                continue
            report.orphaned += 1
            if dry_run:
                log.info("orphaned image %s (dry run: kept)", key)
                continue
            try:
                await storage.delete(key)
            except StorageUnavailable:
                report.failed += 1
                log.warning("could not delete orphaned image %s", key, exc_info=True)
            else:
                report.deleted += 1
                log.info("deleted orphaned image %s", key)
    try:
        report.abandoned_writes = await storage.remove_abandoned_writes(cutoff, dry_run=dry_run)
    except StorageUnavailable:
        report.failed += 1
        log.warning("could not remove abandoned writes", exc_info=True)
    return report
