"""Expand, then contract (docs/operations.md, "Upgrades: expand, then contract"): every statement
of a migration, read by PostgreSQL's own parser (libpg_query, through pglast), is classified as

- an *expand*: the version before this one keeps working against the schema it leaves (a new
  table, a nullable column or one with a default, an index, a backfill);
- a *contract*: it breaks, or may break, what the version before still does while a rolling
  upgrade runs (a drop, a rename, a type change, a constraint tightened). A contract ships
  only in a later release, in a file whose header names what it contracts:
  `-- contract: <object>[, <object>...] — unused since <release>`;
- *refused*: it cannot run where `services/runtime/db.py` runs it (each file in one
  transaction), whatever the header says.

A statement the classifier does not know is a contract: it is checked by hand and marked, or
taught here. The tests are tests/unit/test_migrations.py."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, ObjectType

DOCS = 'docs/operations.md, "Upgrades: expand, then contract"'

Kind = Literal["expand", "contract", "refused"]


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    why: str
    target: str = ""
    """What a contract mark names: `table`, `table.column`, `table.constraint`, an index."""
    removes: tuple[str, ...] = ()
    """The name a drop or a rename takes away, for the search of the code that still uses it:
    `(name,)`, or `(table, column)` for a column (a line naming the column, in a file that
    names the table)."""
    creates: tuple[str, ...] = ()
    """What it makes, in the same form: a name dropped and made again in the same file (an
    index redefined) is not removed."""


@dataclass(frozen=True)
class Statement:
    line: int
    sql: str
    verdicts: tuple[Verdict, ...]

    @property
    def contracts(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.kind == "contract"]


@dataclass
class _Made:
    """What the file itself creates: the version before cannot use it, so tightening or
    dropping it in the same file breaks nothing."""
    tables: set[str] = field(default_factory=set)
    columns: set[tuple[str, str]] = field(default_factory=set)
    earlier: frozenset[str] = frozenset()
    """The functions and views the folder's earlier migrations create."""

    def new(self, table: str, columns: Iterable[str] = ()) -> bool:
        cols = set(columns)
        return table in self.tables or (bool(cols) and all(
            (table, c) in self.columns for c in cols))


def _relation(rv: ast.RangeVar | None) -> str:
    assert rv is not None
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else str(rv.relname)


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _names(node: Any) -> set[str]:
    """The columns an expression or an index element names."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("@") == "ColumnRef":
                strings = [f["sval"] for f in value["fields"] if f.get("@") == "String"]
                if strings:
                    found.add(strings[-1])
            elif value.get("@") == "IndexElem" and value.get("name"):
                found.add(value["name"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    if node is not None:
        walk(node() if isinstance(node, ast.Node) else
             [n() if isinstance(n, ast.Node) else n for n in node])
    return found


def _constraint_columns(c: ast.Constraint) -> set[str]:
    columns = {k.sval for k in (c.keys or ())} | {k.sval for k in (c.fk_attrs or ())}
    columns |= _names(c.raw_expr) | _names(c.where_clause)
    for exclusion in c.exclusions or ():
        columns |= _names(exclusion)
    return columns


def _object_name(obj: Any) -> str:
    if isinstance(obj, tuple | list):
        return ".".join(str(s.sval) for s in obj if isinstance(s, ast.String))
    if isinstance(obj, ast.ObjectWithArgs):
        return ".".join(str(s.sval) for s in obj.objname or ())
    if isinstance(obj, ast.TypeName):
        return ".".join(str(s.sval) for s in obj.names or ())
    if isinstance(obj, ast.String):
        return str(obj.sval)
    return type(obj).__name__


_SERIALS = {"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"}
_NOT_NULL = {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY}
_FILLED = {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}

_IN_A_TRANSACTION = ("cannot run inside a transaction block, and services/runtime/db.py "
                     "applies each file in one")

_HARMLESS = {
    # Storage, statistics and planner settings: nothing the previous version's queries see.
    AlterTableType.AT_SetStatistics, AlterTableType.AT_SetOptions,
    AlterTableType.AT_ResetOptions, AlterTableType.AT_SetStorage,
    AlterTableType.AT_SetCompression, AlterTableType.AT_SetRelOptions,
    AlterTableType.AT_ResetRelOptions, AlterTableType.AT_ClusterOn,
    AlterTableType.AT_DropCluster, AlterTableType.AT_ReplicaIdentity,
    # Loosening: the previous version wrote values, it may now also be left empty.
    AlterTableType.AT_DropNotNull,
    # Checks rows already written against a constraint new writes already obey (NOT VALID).
    AlterTableType.AT_ValidateConstraint,
}


def _add_column(table: str, cmd: ast.AlterTableCmd, made: _Made) -> Verdict:
    column = cmd.def_
    assert isinstance(column, ast.ColumnDef)
    name = str(column.colname)
    kinds = {c.contype for c in column.constraints or ()}
    type_names = column.typeName.names if column.typeName and column.typeName.names else ()
    type_name = str(type_names[-1].sval) if type_names else ""
    not_null = bool(column.is_not_null) or bool(kinds & _NOT_NULL)
    filled = bool(kinds & _FILLED) or type_name in _SERIALS
    made.columns.add((table, name))
    if not_null and not filled and not made.new(table):
        return Verdict(
            "contract",
            f"adds {table}.{name} NOT NULL without a default: the previous version's INSERTs "
            "do not name it and fail",
            f"{table}.{name}",
            creates=(_last(table), name),
        )
    return Verdict("expand", f"adds the column {table}.{name}", creates=(_last(table), name))


def _alter_table(stmt: ast.AlterTableStmt, made: _Made) -> list[Verdict]:
    table = _relation(stmt.relation)
    verdicts: list[Verdict] = []
    for cmd in stmt.cmds or ():
        sub = cmd.subtype
        assert sub is not None
        column = str(cmd.name) if cmd.name else ""
        target = f"{table}.{column}"
        if sub == AlterTableType.AT_AddColumn:
            verdicts.append(_add_column(table, cmd, made))
        elif sub in _HARMLESS:
            verdicts.append(Verdict("expand", f"{sub.name} on {table}"))
        elif sub == AlterTableType.AT_ColumnDefault and cmd.def_ is not None:
            verdicts.append(Verdict("expand", f"sets a default on {target}"))
        elif made.new(table, [column] if column else []):
            verdicts.append(Verdict("expand", f"{sub.name} on what this file creates"))
        elif sub == AlterTableType.AT_DropColumn:
            verdicts.append(Verdict(
                "contract", f"drops {target}, which the previous version may still read or "
                "write", target, (_last(table), column)))
        elif sub == AlterTableType.AT_AlterColumnType:
            verdicts.append(Verdict(
                "contract", f"changes the type of {target}, which the previous version reads "
                "and writes as it was (and rewrites the table under an exclusive lock)",
                target))
        elif sub == AlterTableType.AT_SetNotNull:
            verdicts.append(Verdict(
                "contract", f"makes {target} NOT NULL: the previous version may still insert "
                "rows without it", target))
        elif sub == AlterTableType.AT_ColumnDefault:
            verdicts.append(Verdict(
                "contract", f"drops the default of {target}: the previous version's INSERTs "
                "that leave it out get NULL, or fail", target))
        elif sub == AlterTableType.AT_AddConstraint:
            constraint = cmd.def_
            assert isinstance(constraint, ast.Constraint) and constraint.contype is not None
            creates = (str(constraint.conname),) if constraint.conname else ()
            if made.new(table, _constraint_columns(constraint)):
                verdicts.append(Verdict("expand", f"a constraint on what this file adds to "
                                                  f"{table}", creates=creates))
                continue
            named = f"{table}.{constraint.conname}" if constraint.conname else table
            verdicts.append(Verdict(
                "contract", f"adds the {constraint.contype.name.removeprefix('CONSTR_')} "
                f"constraint {named} over columns the previous version writes: it may refuse "
                "what that version writes (or find rows already breaking it)", named,
                creates=creates))
        elif sub == AlterTableType.AT_DropConstraint:
            named = f"{table}.{column}"
            verdicts.append(Verdict(
                "contract", f"drops the constraint {named}, which the previous version may "
                "rely on (ON CONFLICT, a guarantee it does not check itself)", named, (column,)))
        else:
            verdicts.append(Verdict(
                "contract", f"{sub.name} on {table} is not known to keep the previous version "
                "working: check it by hand and mark it, or teach tests/unit/migration_rules.py",
                table))
    return verdicts


def _rename(stmt: ast.RenameStmt) -> Verdict:
    kind = stmt.renameType
    table = _relation(stmt.relation) if stmt.relation else _object_name(stmt.object)
    why = "renames {}: the previous version still uses the old name"
    if kind == ObjectType.OBJECT_COLUMN:
        target = f"{table}.{stmt.subname}"
        return Verdict("contract", why.format(target), target, (_last(table), str(stmt.subname)))
    if kind == ObjectType.OBJECT_TABCONSTRAINT:
        target = f"{table}.{stmt.subname}"
        return Verdict("contract", why.format(target), target, (str(stmt.subname),))
    return Verdict("contract", why.format(table), table, (_last(table),))


def _drop(stmt: ast.DropStmt, made: _Made) -> list[Verdict]:
    assert stmt.removeType is not None
    what = stmt.removeType.name.removeprefix("OBJECT_").lower()
    if stmt.concurrent:
        return [Verdict("refused", f"DROP {what.upper()} CONCURRENTLY {_IN_A_TRANSACTION}: "
                                   "write DROP ... IF EXISTS, marked as a contract (on a busy "
                                   "table, drop it CONCURRENTLY by hand first, once no running "
                                   "version needs it)")]
    verdicts = []
    for obj in stmt.objects or ():
        name = _object_name(obj)
        if name in made.tables:
            verdicts.append(Verdict("expand", f"drops the {what} {name} this file creates"))
        else:
            verdicts.append(Verdict(
                "contract", f"drops the {what} {name}, which the previous version may still "
                "use", name, (_last(name),)))
    return verdicts


_ALWAYS_EXPAND = (
    ast.CreateSchemaStmt, ast.CreateSeqStmt, ast.CreateEnumStmt, ast.CompositeTypeStmt,
    ast.CreateDomainStmt, ast.CreateExtensionStmt, ast.CommentStmt, ast.CreateStatsStmt,
    # Data: a backfill or a seed leaves the schema the previous version knows as it was.
    ast.InsertStmt, ast.UpdateStmt, ast.SelectStmt,
    # SET LOCAL lock_timeout and the like: this transaction only.
    ast.VariableSetStmt,
)

_NEVER_IN_A_TRANSACTION = (
    ast.TransactionStmt, ast.VacuumStmt, ast.CreatedbStmt, ast.DropdbStmt,
    ast.AlterSystemStmt, ast.CreateTableSpaceStmt, ast.DropTableSpaceStmt,
)


def _verdicts(stmt: ast.Node, made: _Made) -> list[Verdict]:
    if isinstance(stmt, ast.CreateStmt):
        table = _relation(stmt.relation)
        made.tables.add(table)
        return [Verdict("expand", f"creates the table {table}", creates=(_last(table),))]
    if isinstance(stmt, ast.CreateTableAsStmt):
        assert stmt.into is not None
        made.tables.add(_relation(stmt.into.rel))
        return [Verdict("expand", "creates a table")]
    if isinstance(stmt, _ALWAYS_EXPAND):
        return [Verdict("expand", type(stmt).__name__)]
    if isinstance(stmt, ast.TransactionStmt):
        return [Verdict("refused", "BEGIN, COMMIT, ROLLBACK or SAVEPOINT in a migration: "
                                   "services/runtime/db.py applies each file in a transaction "
                                   "of its own and records it in the same one")]
    if isinstance(stmt, _NEVER_IN_A_TRANSACTION):
        return [Verdict("refused", f"{type(stmt).__name__} {_IN_A_TRANSACTION}")]
    if isinstance(stmt, ast.IndexStmt):
        table = _relation(stmt.relation)
        if stmt.concurrent:
            return [Verdict("refused", f"CREATE INDEX CONCURRENTLY {_IN_A_TRANSACTION}: write "
                                       "CREATE INDEX IF NOT EXISTS, and on a large table build "
                                       "it CONCURRENTLY by hand before the upgrade (see the docs)")]
        columns = _names(stmt.indexParams) | _names(stmt.whereClause)
        creates = (str(stmt.idxname),) if stmt.idxname else ()
        if stmt.unique and not made.new(table, columns):
            target = str(stmt.idxname) if stmt.idxname else table
            return [Verdict("contract", f"a unique index on columns of {table} the previous "
                                        "version writes refuses duplicates it may write",
                            target, creates=creates)]
        return [Verdict("expand", f"an index on {table} (writes to it wait while it builds)",
                        creates=creates)]
    if isinstance(stmt, ast.ReindexStmt):
        if any(p.defname == "concurrently" for p in stmt.params or ()):
            return [Verdict("refused", f"REINDEX CONCURRENTLY {_IN_A_TRANSACTION}")]
        return [Verdict("expand", "rebuilds an index")]
    if isinstance(stmt, ast.AlterTableStmt):
        return _alter_table(stmt, made)
    if isinstance(stmt, ast.RenameStmt):
        return [_rename(stmt)]
    if isinstance(stmt, ast.DropStmt):
        return _drop(stmt, made)
    if isinstance(stmt, ast.CreateTrigStmt):
        table = _relation(stmt.relation)
        if made.new(table) and not stmt.replace:
            return [Verdict("expand", f"a trigger on {table}, created here")]
        target = f"{table}.{stmt.trigname}"
        return [Verdict("contract", f"the trigger {target} can refuse or change what the "
                                    "previous version writes", target)]
    if isinstance(stmt, ast.CreateFunctionStmt | ast.ViewStmt):
        name = (_relation(stmt.view) if isinstance(stmt, ast.ViewStmt)
                else _object_name(stmt.funcname))
        if not stmt.replace or not _known(name, made.earlier):
            # OR REPLACE of one no earlier migration made: its first version (a runtime
            # migration runs once per schema, so a shared schema's function is replaced by
            # itself).
            return [Verdict("expand", f"creates {name}")]
        return [Verdict("contract", f"CREATE OR REPLACE changes {name}, which the previous "
                                    "version (or a trigger) may call as it was", name)]
    if isinstance(stmt, ast.GrantStmt):
        if stmt.is_grant:
            return [Verdict("expand", "grants a privilege")]
        return [Verdict("contract", "REVOKE takes a privilege the previous version may use",
                        "REVOKE")]
    if isinstance(stmt, ast.AlterEnumStmt):
        name = _object_name(stmt.typeName)
        if stmt.oldVal is None:
            return [Verdict("expand", f"adds a value to the type {name}")]
        return [Verdict("contract", f"renames the value {stmt.oldVal!r} of {name}, which the "
                                    "previous version still writes", name)]
    if isinstance(stmt, ast.DeleteStmt | ast.TruncateStmt):
        tables = ([_relation(stmt.relation)] if isinstance(stmt, ast.DeleteStmt)
                  else [_relation(r) for r in stmt.relations or ()])
        return [Verdict("contract", f"deletes rows of {t} the previous version may still read",
                        t) for t in tables]
    if isinstance(stmt, ast.DoStmt):
        return [Verdict("contract", "the checker cannot see into a DO block: check it by hand "
                                    "and mark it, or write it as plain statements", "DO")]
    return [Verdict("contract", f"{type(stmt).__name__} is not known to keep the previous "
                                "version working: check it by hand and mark it, or teach "
                                "tests/unit/migration_rules.py", type(stmt).__name__)]


def _known(name: str, earlier: frozenset[str]) -> bool:
    """Whether `name` is one of `earlier`, written with or without its schema (a migration
    runs with its service's schema first on the search path)."""
    bare = name.rsplit(".", 1)[-1]
    return name in earlier or any(e.rsplit(".", 1)[-1] == bare for e in earlier)


def created(sql: str) -> set[str]:
    """The functions and views a migration creates (or replaces)."""
    names: set[str] = set()
    for raw in parse_sql(sql):
        if isinstance(raw.stmt, ast.CreateFunctionStmt):
            names.add(_object_name(raw.stmt.funcname))
        elif isinstance(raw.stmt, ast.ViewStmt):
            names.add(_relation(raw.stmt.view))
    return names


def classify(sql: str, earlier: Iterable[str] = ()) -> list[Statement]:
    """Every statement of a migration file, with what each of its parts does; `earlier`: the
    functions and views the folder's earlier migrations create. Raises
    pglast.parser.ParseError on a file PostgreSQL would refuse."""
    made = _Made(earlier=frozenset(earlier))
    statements = []
    for raw in parse_sql(sql):
        # pglast turns libpg_query's byte offsets into offsets in `sql`.
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        text = sql[start:end]
        # The statement's own first line, past the comments and blank lines before it.
        lines = text.splitlines()
        skipped = 0
        while skipped < len(lines) and (not lines[skipped].strip()
                                         or lines[skipped].lstrip().startswith("--")):
            skipped += 1
        line = sql.count("\n", 0, start) + 1 + skipped
        body = " ".join(part.strip() for part in lines[skipped:] if part.strip())
        assert raw.stmt is not None
        statements.append(Statement(line, body, tuple(_verdicts(raw.stmt, made))))
    return statements


MARK = re.compile(r"^--\s*contract:\s*(?P<objects>.+?)\s+(?:—|--)\s+(?P<reason>.*\bsince\s+\S.*)$",
                  re.IGNORECASE)
"""`-- contract: <object>[, <object>...] — unused since <release>` (the dash may be `--`; the
reason may say something else, e.g. `written by every release since 0.4.0`, but names a
release)."""


def marks(sql: str) -> tuple[set[str], list[str]]:
    """The objects the header's contract marks name (lower case), and what is wrong with them."""
    named: set[str] = set()
    problems: list[str] = []
    in_header = True
    for number, line in enumerate(sql.splitlines(), 1):
        stripped = line.strip()
        if in_header and stripped and not stripped.startswith("--"):
            in_header = False
        if not re.match(r"--\s*contract\b", stripped, re.IGNORECASE):
            continue
        if not in_header:
            problems.append(f"line {number}: a contract mark belongs in the header, before the "
                            "first statement")
            continue
        found = MARK.match(stripped)
        if not found:
            problems.append(f"line {number}: {stripped!r} is not a contract mark: write "
                            "`-- contract: <object>[, <object>...] — unused since <release>`")
            continue
        named |= {o.strip().lower() for o in found["objects"].split(",") if o.strip()}
    return named, problems


def check(name: str, sql: str, earlier: Iterable[str] = ()) -> list[str]:
    """What breaks the rule in one migration file (empty: nothing)."""
    statements = classify(sql, earlier)
    named, problems = marks(sql)
    problems = [f"{name}, {p}" for p in problems]
    contracted: set[str] = set()
    for statement in statements:
        for verdict in statement.verdicts:
            where = f"{name}, line {statement.line}: {statement.sql}"
            if verdict.kind == "refused":
                problems.append(f"{where}\n  refused: {verdict.why} ({DOCS})")
            elif verdict.kind == "contract":
                contracted.add(verdict.target.lower())
                if verdict.target.lower() not in named:
                    problems.append(
                        f"{where}\n  is a contract: {verdict.why}\n"
                        "  fix: while the previous version runs, only expand (a new column or "
                        "table beside the old one). Ship this in a later release, once no "
                        "released code uses it, in a migration whose header says\n"
                        f"    -- contract: {verdict.target} — unused since <release>\n"
                        f"  ({DOCS})")
    if named and not contracted:
        problems.append(f"{name}: marked as a contract ({', '.join(sorted(named))}) but no "
                        "statement contracts anything: remove the mark")
    for extra in sorted(named - contracted) if contracted else ():
        problems.append(f"{name}: the contract mark names {extra}, which no statement of the "
                        f"file contracts (it contracts {', '.join(sorted(contracted))})")
    return problems


def still_used(statements: Sequence[Statement], code: Iterable[Path], root: Path) -> list[str]:
    """The lines of `code` that name what a contract drops or renames."""
    made = {v.creates for s in statements for v in s.verdicts if v.creates}
    removed = {v.removes for s in statements for v in s.contracts if v.removes} - made
    hits: list[str] = []
    for path in code:
        text = path.read_text("utf-8")
        for names in sorted(removed):
            *tables, word = names
            if any(not re.search(rf"\b{re.escape(t)}\b", text) for t in tables):
                continue
            pattern = re.compile(rf"\b{re.escape(word)}\b")
            for number, line in enumerate(text.splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(root)}:{number}: {'.'.join(names)} is "
                                f"still named: {line.strip()}")
    return hits
