"""Versioned JSON Schemas of the records volcast emits, shipped as package data.

>>> forecast_schema()["properties"]["schema"]["const"]
'volcast.forecast/1'
>>> sorted(SCHEMAS)
['volcast.forecast/1', 'volcast.score/1']
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

# record ``schema`` value -> the schema file that describes it
SCHEMAS = {"volcast.forecast/1": "forecast-1.json", "volcast.score/1": "score-1.json"}


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema by record ``schema`` value (``volcast.forecast/1``) or file name."""
    filename = SCHEMAS.get(name, name)
    return json.loads(resources.files(__package__).joinpath(filename).read_text())


def forecast_schema() -> dict[str, Any]:
    return load_schema("volcast.forecast/1")


def validator_for(record: dict[str, Any]) -> Any:
    """A ``jsonschema`` validator for the schema ``record["schema"]`` names (KeyError if none).

    ``jsonschema`` is imported on first use, so the daemon never needs it to run.
    """
    return _validator(record["schema"])


@cache
def _validator(name: str) -> Any:
    import jsonschema

    if name not in SCHEMAS:
        raise KeyError(f"no schema for record kind {name!r} (known: {', '.join(sorted(SCHEMAS))})")
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate(record: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``record`` is valid against its schema."""
    validator_for(record).validate(record)
