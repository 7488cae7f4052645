"""The flag space, read from ``copier.yml``: each bool question on and off, times each database.

A bool question that is asked (not a ``when: false`` computed value) is a
flag. One asked only when another flag is on (``when: "{{ request_tracing }}"``)
is on only with that flag. The ``database`` question's choices are the
databases. A new bool question in ``copier.yml`` therefore doubles the matrix,
with no change to the suite.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DATABASE_QUESTION = "database"

# Short names for test ids, so that an id fits on a line; a flag not listed
# here is named by its question.
SHORT_NAMES = {
    "http_client": "client",
    "health_checks": "health",
    "api_versioning": "v",
    "request_tracing": "trace",
    "opentelemetry": "otel",
    "service_auth": "auth",
    "metrics": "metrics",
}
DATABASE_SHORT_NAMES = {"none": "nodb", "sqlite": "sqlite", "postgresql": "pg"}
# `when: "{{ other_flag }}"`: asked, and so on, only when that flag is on.
_WHEN_FLAG = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")


@dataclass(frozen=True)
class FlagSpace:
    """The flags (question -> short name, in questionnaire order), the databases, and which flag needs which."""

    flags: Mapping[str, str]
    databases: Mapping[str, str]
    requires: Mapping[str, str] = field(default_factory=dict)
    # Every question of the questionnaire, flags or not, in its order, with
    # its copier.yml entry (type, choices, default...).
    questions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_copier_yml(cls, path: Path) -> FlagSpace:
        """Read the flag space from a copier.yml.

        Raises ``ValueError`` for a flag whose ``when`` is not one other flag:
        the suite would not know which combinations ask it.
        """
        questions = {
            name: spec
            for name, spec in yaml.safe_load(path.read_text(encoding="utf-8")).items()
            if not name.startswith("_") and isinstance(spec, dict)
        }
        flags = {
            name: SHORT_NAMES.get(name, name)
            for name, spec in questions.items()
            if spec.get("type") == "bool" and spec.get("when", True) is not False
        }
        requires = {}
        for name in flags:
            when = questions[name].get("when", True)
            if when is True:
                continue
            found = _WHEN_FLAG.match(str(when).strip())
            if not found or found[1] not in flags:
                msg = f"{path}: {name}'s when: {when!r} is not one flag's name; the flag matrix cannot read it"
                raise ValueError(msg)
            requires[name] = found[1]
        choices = questions[DATABASE_QUESTION]["choices"]
        databases = {str(choice): DATABASE_SHORT_NAMES.get(str(choice), str(choice)) for choice in choices}
        return cls(flags, databases, requires, questions)

    def combos(self) -> list[Combo]:
        """Every combination, sorted by id: each flag on and off (a flag that needs another only with it),
        times each database."""
        combos = []
        for values in itertools.product([False, True], repeat=len(self.flags)):
            on = frozenset(flag for flag, value in zip(self.flags, values, strict=True) if value)
            if all(self.requires[flag] in on for flag in on if flag in self.requires):
                combos.extend(Combo(database, on, self) for database in self.databases)
        return sorted(combos, key=lambda combo: combo.id)

    def parse(self, combo_id: str) -> Combo:
        """The combination an id names (see `Combo.id`); ``ValueError`` for an id of no combination."""
        by_short = {short: flag for flag, short in self.flags.items()}
        for database, short in self.databases.items():
            if combo_id == short or combo_id.endswith(f"-{short}"):
                names = combo_id.removesuffix(short).removesuffix("-").split("-")
                break
        else:
            msg = f"{combo_id!r} ends with no database of {sorted(self.databases.values())}"
            raise ValueError(msg)
        if names == ["bare"]:
            return Combo(database, frozenset(), self)
        unknown = [name for name in names if name not in by_short]
        if unknown:
            msg = f"{combo_id!r}: no flag is called {', '.join(unknown)}; flags: {', '.join(by_short)}"
            raise ValueError(msg)
        return Combo(database, frozenset(by_short[name] for name in names), self)


@dataclass(frozen=True, order=True)
class Combo:
    """One combination of the feature flags and the database."""

    database: str
    flags: frozenset[str] = field(default_factory=frozenset)
    space: FlagSpace = field(default=None, compare=False, hash=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        """Combinations made without a space belong to the template's (`SPACE`)."""
        if self.space is None:
            object.__setattr__(self, "space", SPACE)

    @property
    def id(self) -> str:
        """A test id that names the flags: ``client-health-v-trace-auth-metrics-pg``."""
        names = [short for flag, short in self.space.flags.items() if flag in self.flags] or ["bare"]
        return "-".join([*names, self.space.databases[self.database]])

    @property
    def data(self) -> dict[str, Any]:
        """The answers to give copier."""
        return {flag: flag in self.flags for flag in self.space.flags} | {DATABASE_QUESTION: self.database}

    @classmethod
    def from_id(cls, combo_id: str) -> Combo:
        """Parse an id made by `id`, in the template's flag space."""
        return SPACE.parse(combo_id)


SPACE = FlagSpace.from_copier_yml(REPO / "copier.yml")
FLAGS = SPACE.flags
QUESTIONS = SPACE.questions
DATABASES = SPACE.databases


def all_combos() -> list[Combo]:
    """Every combination of the template's flag space."""
    return SPACE.combos()
