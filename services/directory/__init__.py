"""The directory of organisations (reference data), read from a YAML file.

Each service keeps the part it needs in its own tables; `demo.yaml` is the demo territory
loaded on first start."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from schemas.vocab import Need


class Organisation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    kind: str
    email: EmailStr
    needs: list[Need] = Field(default_factory=list)
    communes: list[str] = Field(default_factory=list)
    min_age: int | None = None
    max_age: int | None = None
    answer_days: int = 5


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    organisations: list[Organisation]

    def get(self, org_id: str) -> Organisation | None:
        return next((o for o in self.organisations if o.id == org_id), None)


def load(path: Path | None = None) -> Directory:
    text = (
        path.read_text("utf-8")
        if path is not None
        else resources.files(__package__).joinpath("demo.yaml").read_text("utf-8")
    )
    return Directory.model_validate(yaml.safe_load(text))
