"""The item catalogue (医保目录): which part of an item's cost the insurance may cover.

Each billable code (drug, service, consumable) has a class:

* ``A`` 甲类 — fully in scope;
* ``B`` 乙类 — partly: the patient first pays ``preselfpay_bp`` of the amount (先行自付,
  reported as ``preselfpay_amt``), the rest is in scope;
* ``C`` 丙类 — wholly self-paid (全自费, reported as ``fulamt_ownpay_amt``).

Catalogues are data (TOML under ``settlement/catalogues/``), validated strictly on load like
the policy files. The shipped ``demo`` catalogue is made up for tests and demos.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from settlement.errors import CatalogueInvalid, UnknownCatalogueCode
from settlement.money import BP_PER_UNIT

__all__ = ["Catalogue", "CatalogueClass", "CatalogueItem", "load_catalogue", "parse_catalogue"]

MAX_CATALOGUE_FILE_BYTES: Final = 8 * 1024 * 1024
MAX_CATALOGUE_ITEMS: Final = 100_000
CODE_PATTERN: Final = r"^[A-Za-z0-9.\-]{1,50}$"


class CatalogueClass(enum.StrEnum):
    A = "A"  # 甲类: fully covered
    B = "B"  # 乙类: a self-paid first part, then covered
    C = "C"  # 丙类: wholly self-paid


class _ItemModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)

    code: Annotated[str, Field(pattern=CODE_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    item_class: Literal["A", "B", "C"] = Field(alias="class")
    # Only for class B; 1..9999 bp. A and C must leave it out (their split is fixed).
    preselfpay_bp: Annotated[int, Field(ge=1, le=BP_PER_UNIT - 1)] | None = None

    @pydantic.model_validator(mode="after")
    def _preselfpay_only_for_class_b(self) -> _ItemModel:
        if (self.item_class == "B") != (self.preselfpay_bp is not None):
            raise ValueError("preselfpay_bp is required for class B items and only for them")
        return self


class _CatalogueModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    schema_version: Literal[1]
    catalogue_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    source: Annotated[str, Field(min_length=1, max_length=2000)]
    items: Annotated[list[_ItemModel], Field(min_length=1, max_length=MAX_CATALOGUE_ITEMS)]


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    code: str
    name: str
    item_class: CatalogueClass
    preselfpay_bp: int  # 0 for classes A and C


@dataclass(frozen=True, slots=True)
class Catalogue:
    catalogue_id: str
    title: str
    items: Mapping[str, CatalogueItem]

    def item(self, code: str) -> CatalogueItem:
        """The item for ``code``; UnknownCatalogueCode if the catalogue has none."""
        try:
            return self.items[code]
        except KeyError:
            raise UnknownCatalogueCode(
                f"item code {code[:60]!r} is not in catalogue {self.catalogue_id}"
            ) from None


def parse_catalogue(text: str, *, origin: str) -> Catalogue:
    if len(text.encode()) > MAX_CATALOGUE_FILE_BYTES:
        raise CatalogueInvalid(f"{origin}: larger than {MAX_CATALOGUE_FILE_BYTES} bytes")
    try:
        model = _CatalogueModel.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueInvalid(f"{origin}: not valid TOML: {exc}") from exc
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()[:10]
        )
        raise CatalogueInvalid(f"{origin}: {problems}") from exc
    items: dict[str, CatalogueItem] = {}
    for entry in model.items:
        if entry.code in items:
            raise CatalogueInvalid(f"{origin}: item code {entry.code!r} appears twice")
        items[entry.code] = CatalogueItem(
            code=entry.code,
            name=entry.name,
            item_class=CatalogueClass(entry.item_class),
            preselfpay_bp=entry.preselfpay_bp or 0,
        )
    return Catalogue(catalogue_id=model.catalogue_id, title=model.title, items=items)


def load_catalogue(catalogue_id: str = "demo") -> Catalogue:
    """Load a catalogue shipped in ``settlement/catalogues/<catalogue_id>.toml``."""
    path = resources.files("settlement") / "catalogues" / f"{catalogue_id}.toml"
    if not path.is_file():
        raise CatalogueInvalid(f"no shipped catalogue named {catalogue_id!r}")
    catalogue = parse_catalogue(path.read_text(encoding="utf-8"), origin=path.name)
    if catalogue.catalogue_id != catalogue_id:
        raise CatalogueInvalid(f"{path.name}: catalogue_id is {catalogue.catalogue_id!r}")
    return catalogue
