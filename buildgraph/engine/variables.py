"""Build variables: the machinery of the one table (DESIGN section 3).

The engine defines what a variable row is and how values are resolved: from
``doit TARGET NAME=value``, then the environment, then data defaults in targets/, then
the row's default; an unknown name or a rejected value stops everything before a single
step runs. The rows themselves (PLATFORM, TAG, ...) and the arches PLATFORM names are
the OS side's, given to :func:`register`; parsing, validation, ``buildgraph vars`` and
the docs all read them.

A family of rows, such as ``PKG_<NAME>`` for the packages that targets/ declares, is
made on demand by a :class:`Family`.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import VariableError


class Rejected(ValueError):
    """Raised by a validator; its text says what is accepted, and ``suggestion`` the
    accepted value the given one probably meant (``linux/arm64`` for ``arm64``)."""

    def __init__(self, accepted: str, suggestion: str | None = None) -> None:
        super().__init__(accepted)
        self.suggestion = suggestion


Validator = Callable[[str], str]
Default = Callable[["Values"], str]


@dataclass(frozen=True)
class Variable:
    name: str
    default: Default
    validate: Validator
    """Returns the value in its one canonical spelling, or raises :class:`Rejected`."""
    help: str
    default_doc: str
    fans_out: bool = False
    """Its value is a comma list of ``os/arch``: per-arch targets fan out over the arches."""
    requires: str = ""
    """A variable that must be set too when this one is: it has no effect otherwise."""
    excludes: str = ""
    """A variable that must be empty when this one is set: they cannot both apply."""
    derived_from: str = ""
    """The variable its default is read out of (``buildgraph vars`` says so)."""
    rooted: Callable[[str, Path], str] | None = None
    """Puts the paths in a value in one spelling, relative ones taken from the repository."""
    as_arches: Mapping[str, str] = field(default_factory=dict)
    """Values that mean ``same`` or ``all`` where a need's ``arches:`` reads this variable."""


@dataclass(frozen=True)
class Family:
    """Rows made on demand for the names targets/ declares, e.g. ``PKG_KERNEL``."""

    prefix: str
    """``PKG_``: the row of ``kernel`` is ``PKG_KERNEL``."""
    row: Callable[[str, str], Variable]
    """(variable name, declared name) -> its row."""
    declared_as: str = "PKG_<package>"

    def variable(self, declared: str) -> str:
        return self.prefix + declared.upper().replace("-", "_")

    def declared(self, name: str) -> str | None:
        """``kernel`` for ``PKG_KERNEL``; None when ``name`` is not of the family's form."""
        if not name.startswith(self.prefix) or len(name) == len(self.prefix):
            return None
        rest = name[len(self.prefix) :]
        if not all(c.isupper() or c.isdigit() or c == "_" for c in rest):
            return None
        return rest.lower().replace("_", "-")


BY_NAME: dict[str, Variable] = {}
"""Every row, by name, in table order (filled by :func:`register`)."""
ARCHES: list[str] = []
"""The arches a fanning-out variable may name, in their canonical order."""
FAMILIES: list[Family] = []


def register(rows: Iterable[Variable], arches: Iterable[str], families: Iterable[Family]) -> None:
    """Install the OS side's rows; a second install of the same table is a no-op."""
    BY_NAME.update((row.name, row) for row in rows)
    ARCHES[:] = list(dict.fromkeys([*ARCHES, *arches]))
    FAMILIES.extend(f for f in families if f not in FAMILIES)


# -- building blocks for rows ---------------------------------------------------------


def one_of(*accepted: str) -> Validator:
    def check(value: str) -> str:
        if value not in accepted:
            raise Rejected("one of " + ", ".join(accepted))
        return value

    return check


def accepting(check: Callable[[str], object], accepted: str) -> Validator:
    """A validator from ``check``, which raises ValueError saying why, or returns False,
    for a value it refuses; ``accepted`` says what it takes."""

    def validate(value: str) -> str:
        try:
            good = check(value)
        except ValueError as err:
            raise Rejected(f"{accepted} ({err})") from None
        if good is False:
            raise Rejected(accepted)
        return value

    return validate


def boolean(value: str) -> str:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return "true"
    if lowered in ("false", "0", "no", ""):
        return "false"
    raise Rejected("true or false (also 1/0, yes/no)")


def is_set(value: str) -> bool:
    """Whether a value counts as given where a need's ``when:``/``unless:`` or a
    ``${NAME:+text}`` asks: not empty, and not a :func:`boolean`'s false."""
    return value not in ("", "false")


def shell_words(value: str) -> str:
    try:
        shlex.split(value)
    except ValueError as err:
        raise Rejected(f"shell-quoted words ({err})") from None
    return value


def const(value: str) -> Default:
    return lambda _values: value


def ref(name: str) -> Default:
    return lambda values: values[name]


def rooted(path: str, root: Path) -> str:
    """One spelling of a path given relative to the repository or absolute: ``./x`` for a
    path inside the repository, else absolute. ``hello.tar``, ``./hello.tar`` and
    ``$PWD/hello.tar`` are the same input, so they must be the same key."""
    full = (root / path).resolve()
    try:
        return "./" + full.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(full)


# -- resolving values -----------------------------------------------------------------


def lookup(name: str, packages: frozenset[str] = frozenset()) -> Variable | None:
    """The table row for ``name``, or None.

    A family's rows exist for the names targets/ declares, and only for them, so that
    PKG_CONFIG_PATH in the environment is not mistaken for a package.
    """
    row = BY_NAME.get(name)
    if row is None:
        for family in FAMILIES:
            declared = family.declared(name)
            if declared is not None and declared in packages:
                return family.row(name, declared)
    return row


def may_be_variable(name: str) -> bool:
    """Whether ``name`` could name a row, whatever targets/ declares: the environment
    entries a compiled plan depends on."""
    return name in BY_NAME or any(f.declared(name) is not None for f in FAMILIES)


def known_names(packages: frozenset[str]) -> list[str]:
    return [*BY_NAME, *(f.variable(p) for f in FAMILIES for p in sorted(packages))]


def family_docs() -> list[str]:
    return [family.declared_as for family in FAMILIES]


def fanning() -> str:
    """The variable whose arches per-arch targets fan out over (PLATFORM)."""
    return next(row.name for row in BY_NAME.values() if row.fans_out)


def arches(fanned: str) -> list[str]:
    """The arches of a validated fanning-out value (``linux/amd64,linux/arm64``), in order."""
    return [item.split("/", 1)[1] for item in fanned.split(",")]


class Values(Mapping[str, str]):
    """Resolved variable values; defaults are computed only when first read.

    Reading lazily keeps ``git describe`` (TAG) off the path of goals that never
    embed a version.
    """

    def __init__(
        self,
        given: Mapping[str, tuple[str, str]],
        root: Path,
        data_defaults: Mapping[str, str] | None = None,
        packages: frozenset[str] = frozenset(),
    ) -> None:
        self.given = dict(given)
        self.root = root
        self.data_defaults = dict(data_defaults or {})
        self.packages = packages
        self._resolved: dict[str, str] = {}
        self.read: set[str] = set()
        """Names read so far: a compiled plan stays valid while these keep their values."""

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        cached = self._resolved.get(name)
        if cached is not None:
            return cached
        row = lookup(name, self.packages)
        if row is None:
            raise KeyError(name)
        if name in self.given:
            value, where = self.given[name]
            value = _checked(row, value, where)
        elif name in self.data_defaults:
            value = _checked(row, self.data_defaults[name], "set in targets/ for")
        else:
            value = _checked(row, row.default(self), "defaulted for")
        if row.rooted is not None:
            value = row.rooted(value, self.root)
        self._resolved[name] = value
        if value:
            _check_together(row, value, self)
        return value

    def __iter__(self):
        return iter(BY_NAME)

    def __len__(self) -> int:
        return len(BY_NAME)

    def arches(self) -> list[str]:
        return arches(self[fanning()])

    def origin(self, name: str) -> str:
        """Where a value came from: command line, environment, targets/ or default."""
        if name in self.given:
            return self.given[name][1].split(" for")[0]
        if name in self.data_defaults:
            return "set in targets/"
        row = lookup(name, self.packages)
        if row is not None and row.derived_from and self[name]:
            return f"from {row.derived_from}"
        return "default"


def unmet(row: Variable, value_of: Callable[[str], str]) -> tuple[str, str] | None:
    """What a set ``row`` lacks or clashes with: ("requires", X) when X is empty,
    ("excludes", X) when X is set; None when it may be set."""
    if row.requires and not value_of(row.requires):
        return "requires", row.requires
    if row.excludes and value_of(row.excludes):
        return "excludes", row.excludes
    return None


def _check_together(row: Variable, value: str, values: Values) -> None:
    problem = unmet(row, values.__getitem__)
    if problem is None:
        return
    kind, other = problem
    if kind == "requires":
        raise VariableError(
            f"variable {row.name} is set ({value!r}) but {other} is empty, and"
            f" {row.name} does nothing without it",
            hint=f"set {other} too, or leave {row.name} out",
        )
    raise VariableError(
        f"variables {row.name} and {other} cannot both be set: {row.name} is the"
        f" {row.help}, and with {other} that is not built here",
        hint=f"leave {other} empty to use {row.name}, or drop {row.name}",
    )


def _checked(row: Variable, value: str, how: str) -> str:
    try:
        return row.validate(value)
    except Rejected as err:
        raise VariableError(
            f"bad value {value!r} {how} variable {row.name}: accepted is {err}",
            hint=f"did you mean {row.name}={err.suggestion}?"
            if err.suggestion
            else f"{row.name} is the {row.help}; e.g. `doit <target> {row.name}=<value>`",
        ) from None


def resolve(
    cmdline: Mapping[str, str],
    environ: Mapping[str, str],
    root: Path,
    data_defaults: Mapping[str, str] | None = None,
    packages: frozenset[str] = frozenset(),
) -> Values:
    """Combine command line, environment and defaults, validating every given value.

    Unknown names on the command line are errors; the environment is only consulted
    for names the table knows, since it holds much else.
    """
    known = known_names(packages)
    for name in cmdline:
        if lookup(name, packages) is None:
            close = [name.upper()] if name.upper() in known else []
            close = close or difflib.get_close_matches(name, known, n=1)
            raise VariableError(
                f"unknown variable {name!r}" + (f"; did you mean {close[0]}?" if close else ""),
                hint=f"known are {', '.join(known)} (`buildgraph vars` says what each is)",
            )
    given = {
        name: (value, "from the environment for")
        for name, value in environ.items()
        if lookup(name, packages) is not None
    }
    given.update(
        (name, (value, "given on the command line for")) for name, value in cmdline.items()
    )
    values = Values(given, root, data_defaults, packages)
    for name in given:
        values[name]
    return values
