"""Training recipes: the allow-list of how a candidate may be trained and judged.

A recipe is a YAML file in TRAINING_RECIPES_DIR (the repository's `recipes/` by
default), named after the recipe (`<name>.yaml`), versioned by its `version` field and
identified exactly by the file's sha256, which a training job records with the body it
read. A job names a recipe and nothing else: which layers train, the epochs, the
learning-rate range, augmentation, class balancing, early stopping, the per-doctor cap
and the gates all come from the file. A file that does not validate is left out (and
logged), so it can never be used.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.schemas.recipes import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    sha256: str  # of the file's bytes
    body: dict[str, Any]  # the validated recipe as JSON, what a job keeps


class UnknownRecipeError(LookupError):
    pass


def load_recipes(directory: Path) -> dict[str, LoadedRecipe]:
    """Every valid `<name>.yaml` in `directory`, by name (invalid files are logged)."""
    found: dict[str, LoadedRecipe] = {}
    if not directory.is_dir():
        log.warning("TRAINING_RECIPES_DIR %s is not a directory: no recipes", directory)
        return found
    for path in sorted(directory.glob("*.yaml")):
        try:
            loaded = parse_recipe(path.read_bytes(), path.stem)
        except (OSError, ValueError) as exc:
            log.error("recipe %s is not usable and is left out: %s", path, exc)
            continue
        found[loaded.recipe.name] = loaded
    return found


def parse_recipe(raw: bytes, stem: str) -> LoadedRecipe:
    """ValueError (pydantic's ValidationError is one) for anything that is not a recipe."""
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("a recipe is a mapping")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise ValueError(str(exc)) from exc
    if recipe.name != stem:
        raise ValueError(f"the file must be named after its recipe ({recipe.name}.yaml)")
    return LoadedRecipe(recipe, hashlib.sha256(raw).hexdigest(), recipe.model_dump(mode="json"))


def get_recipe(directory: Path, name: str) -> LoadedRecipe:
    recipes = load_recipes(directory)
    if name not in recipes:
        raise UnknownRecipeError(name)
    return recipes[name]
