"""Zero-downtime upgrades (issue #13, point 5): a migration keeps the version before it working,
since the migrations Job runs before the rolling restart and the old pods then serve on the new
schema (docs/operations.md, "Upgrades: expand, then contract"). Every statement of every
migration is read by PostgreSQL's own parser (pglast) and classified by
tests/unit/migration_rules.py; a contract ships only in a file whose header marks it, and only
once the code no longer names what it drops or renames."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from tests.unit.migration_rules import Statement, check, classify, created, marks, still_used

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

LAST_BEFORE_THE_RULE: dict[str, int] = {
    "services/auth/migrations": 6,
    "services/consent/migrations": 9,
    "services/intake/migrations": 15,
    "services/notify/migrations": 5,
    "services/referral/migrations": 9,
    "services/runtime/migrations": 4,
    "services/runtime/transport/migrations": 1,
}
"""The last migration of each folder when the rule was written down. Never raise these: a
migration written after them is held to the rule, with no exception."""

_BEFORE = ("written before the rule, when no release had run several instances at once, so no "
           "rolling upgrade had an older version to keep working: ")

WRITTEN_BEFORE_THE_RULE: dict[str, str] = {
    "services/auth/migrations/002_sealed_keys.sql": _BEFORE + (
        "adds the CHECK signing_keys_have_a_key over private_jwk, which the version before "
        "writes (and drops private_jwk's NOT NULL while the new code leaves it NULL, which the "
        "version before cannot read)"),
    "services/consent/migrations/005_sealed_audit_keys.sql": _BEFORE + (
        "adds the CHECK audit_keys_have_a_key over private_key, which the version before "
        "writes (the same pattern as auth's 002)"),
    "services/consent/migrations/009_retired_keys.sql": _BEFORE + (
        "drops the CHECK audit_keys_have_a_key and adds it again, loosened for retired keys, "
        "over columns the version before writes"),
    "services/notify/migrations/002_channels.sql": _BEFORE + (
        "drops the unique constraint on (event_id, recipient_org, channel) and adds the unique "
        "index notifications_once over columns the version before writes"),
    "services/notify/migrations/003_email_per_address.sql": _BEFORE + (
        "drops the unique index notifications_once and makes it again with the address"),
    "services/referral/migrations/002_closed_loop.sql": _BEFORE + (
        "drops the unique constraint referrals_intake_id_key (one referral per intake), which "
        "the version before relies on"),
    "services/runtime/migrations/004_derived_keys.sql": _BEFORE + (
        "drops the table sealed_root, which the version before reads its keys from"),
}
"""Migrations with contract statements and no mark, all written before the rule (closed: the
tests below fail if one no longer contracts anything, or if a later file is added)."""


def _folders() -> list[Path]:
    return sorted({p.parent for p in (ROOT / "services").rglob("migrations/*.sql")})


def _migrations() -> list[Path]:
    return sorted(p for folder in _folders() for p in folder.glob("*.sql"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _earlier(path: Path) -> set[str]:
    """The functions and views that may exist when `path` runs: those the migrations before it
    in its folder create, and those of every other folder (folders are applied each on its
    own, a service's before or after another's)."""
    names: set[str] = set()
    for other in _migrations():
        if other.parent != path.parent or other.name < path.name:
            names |= _created(other)
    return names


@functools.cache
def _created(path: Path) -> frozenset[str]:
    return frozenset(created(path.read_text("utf-8")))


def _code() -> list[Path]:
    """What may still use a table, a column or a constraint: the services' Python and any SQL
    that is not a migration."""
    return sorted(p for p in (ROOT / "services").rglob("*")
                  if p.suffix in {".py", ".sql"} and "migrations" not in p.parts
                  and "__pycache__" not in p.parts)


# --- the project's migrations ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [p for p in _migrations() if _rel(p) not in WRITTEN_BEFORE_THE_RULE], ids=_rel)
def test_a_migration_keeps_the_previous_version_working(path: Path) -> None:
    sql = path.read_text("utf-8")
    problems = check(_rel(path), sql, _earlier(path))
    named, _ = marks(sql)
    if named:
        # A contract lands only once the code no longer names what it drops or renames.
        problems += still_used(classify(sql, _earlier(path)), _code(), ROOT)
    assert not problems, "\n\n".join(problems)


def test_the_migrations_written_before_the_rule_are_a_closed_list() -> None:
    problems = []
    for name, why in WRITTEN_BEFORE_THE_RULE.items():
        path = ROOT / name
        folder, _, filename = name.rpartition("/")
        if not path.exists():
            problems.append(f"{name} is listed but does not exist: remove it from the list")
            continue
        number = NAME.match(filename)
        last = LAST_BEFORE_THE_RULE.get(folder)
        if number is None or last is None or int(number[1]) > last:
            problems.append(f"{name} was written after the rule ({folder}: the last before it "
                            f"is {last}): it cannot be listed; mark its contract instead")
            continue
        if not why.strip():
            problems.append(f"{name}: say why it is listed")
        statements = classify(path.read_text("utf-8"), _earlier(path))
        if not any(s.contracts for s in statements):
            problems.append(f"{name} no longer contracts anything: remove it from the list")
    assert not problems, "\n".join(problems)


def test_the_numbers_recorded_before_the_rule_name_existing_migrations() -> None:
    folders = {_rel(f) for f in _folders()}
    for folder, last in LAST_BEFORE_THE_RULE.items():
        assert folder in folders, f"{folder} has no migrations"
        numbers = {int(m[1]) for p in (ROOT / folder).glob("*.sql") if (m := NAME.match(p.name))}
        assert last in numbers, f"{folder}: no migration numbered {last:03d}"


def test_migrations_are_named_and_numbered_once() -> None:
    """`services/runtime/db.py` applies a folder's `.sql` files in the order of their names and
    remembers them by name: NNN_name.sql, each number once."""
    for folder in _folders():
        numbers: dict[int, str] = {}
        for path in sorted(folder.glob("*.sql")):
            found = NAME.match(path.name)
            assert found, f"{_rel(path)}: name it NNN_what.sql (three digits, lower case)"
            number = int(found[1])
            assert number not in numbers, f"{_rel(path)} and {numbers[number]}: one number each"
            numbers[number] = path.name


# --- the classifier, on small snippets ---------------------------------------------------------


def _kinds(sql: str) -> list[str]:
    return [v.kind for s in classify(sql) for v in s.verdicts]


@pytest.mark.parametrize("sql", [
    "CREATE TABLE t (id uuid PRIMARY KEY, org text NOT NULL)",
    "CREATE SCHEMA IF NOT EXISTS relais_keys",
    "ALTER TABLE t ADD COLUMN note text",
    "ALTER TABLE t ADD COLUMN kind text NOT NULL DEFAULT 'a' CHECK (kind IN ('a', 'b'))",
    "ALTER TABLE t ADD COLUMN seq bigserial",
    "ALTER TABLE t ADD COLUMN n integer GENERATED ALWAYS AS IDENTITY",
    "ALTER TABLE t ADD COLUMN parent uuid REFERENCES t (id)",
    "ALTER TABLE t ALTER COLUMN address DROP NOT NULL",
    "ALTER TABLE t ALTER COLUMN address SET DEFAULT ''",
    "ALTER TABLE t ADD COLUMN a text, ADD COLUMN b text; "
    "ALTER TABLE t ADD CONSTRAINT whole CHECK ((a IS NULL) = (b IS NULL))",
    "ALTER TABLE t ADD COLUMN a text; CREATE UNIQUE INDEX t_a ON t (a) WHERE a IS NOT NULL",
    "CREATE INDEX t_org ON t (org, created_at)",
    "CREATE INDEX IF NOT EXISTS t_org ON t (org)",
    "CREATE TABLE u (a int); CREATE UNIQUE INDEX u_a ON u (a); ALTER TABLE u ALTER a SET NOT NULL",
    "CREATE TABLE u (a int); CREATE TRIGGER u_t BEFORE UPDATE ON u "
    "FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "UPDATE t SET basis = 'consent' WHERE basis = 'met'",
    "INSERT INTO t (id, org) VALUES ('00000000-0000-0000-0000-000000000000', 'x')",
    "SET LOCAL lock_timeout = '5s'",
    "ALTER TABLE t VALIDATE CONSTRAINT c",
    "COMMENT ON TABLE t IS 'what it holds'",
    "CREATE TYPE mood AS ENUM ('a'); ALTER TYPE mood ADD VALUE 'b'",
])
def test_expand(sql: str) -> None:
    assert set(_kinds(sql)) == {"expand"}, classify(sql)


@pytest.mark.parametrize(("sql", "target"), [
    ("DROP TABLE sealed_root", "sealed_root"),
    ("DROP TABLE IF EXISTS relais_keys.derived", "relais_keys.derived"),
    ("ALTER TABLE t DROP COLUMN note", "t.note"),
    ("ALTER TABLE t RENAME COLUMN note TO notes", "t.note"),
    ("ALTER TABLE t RENAME TO u", "t"),
    ("ALTER TABLE t ALTER COLUMN n TYPE bigint", "t.n"),
    ("ALTER TABLE t ALTER COLUMN org SET NOT NULL", "t.org"),
    ("ALTER TABLE t ADD COLUMN org2 text NOT NULL", "t.org2"),
    ("ALTER TABLE t ALTER COLUMN status DROP DEFAULT", "t.status"),
    ("ALTER TABLE t DROP CONSTRAINT t_intake_id_key", "t.t_intake_id_key"),
    ("ALTER TABLE t ADD CONSTRAINT t_kind CHECK (kind IN ('a'))", "t.t_kind"),
    ("ALTER TABLE t ADD CONSTRAINT t_kind CHECK (kind IN ('a')) NOT VALID", "t.t_kind"),
    ("ALTER TABLE t ADD UNIQUE (org, id)", "t"),
    ("ALTER TABLE t ADD FOREIGN KEY (parent) REFERENCES t (id)", "t"),
    ("ALTER TABLE t ADD COLUMN a text; ALTER TABLE t ADD CONSTRAINT c CHECK (a <> org)", "t.c"),
    ("CREATE UNIQUE INDEX t_once ON t (event_id, channel)", "t_once"),
    ("DROP INDEX t_org", "t_org"),
    ("CREATE TRIGGER t_guard BEFORE DELETE ON t FOR EACH ROW EXECUTE FUNCTION f()", "t.t_guard"),
    ("DELETE FROM t WHERE org = 'x'", "t"),
    ("TRUNCATE t", "t"),
    ("DO $$ BEGIN PERFORM 1; END $$", "DO"),
    ("ALTER TABLE t DISABLE TRIGGER ALL", "t"),
    ("ALTER TYPE mood RENAME VALUE 'a' TO 'b'", "mood"),
])
def test_contract(sql: str, target: str) -> None:
    verdicts = [v for s in classify(sql) for v in s.verdicts]
    assert [v.kind for v in verdicts][-1] == "contract", verdicts
    assert verdicts[-1].target == target


def test_replacing_a_function_an_earlier_migration_made_is_a_contract() -> None:
    sql = "CREATE OR REPLACE FUNCTION s.take(k text) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$"
    assert _kinds(sql) == ["expand"]
    assert _kinds(sql.replace("s.take", "take")) == ["expand"]
    assert classify(sql, earlier={"s.take"})[0].contracts[0].target == "s.take"
    view = "CREATE OR REPLACE VIEW v AS SELECT 1"
    assert _kinds(view) == ["expand"]
    assert classify(view, earlier={"v"})[0].contracts[0].target == "v"
    # written without its schema, or made by another service's folder (in `earlier` too)
    unqualified = sql.replace("s.take", "take")
    assert classify(unqualified, earlier={"s.take"})[0].contracts[0].target == "take"
    assert "relais_limits.take" in _earlier(
        ROOT / "services" / "intake" / "migrations" / "001_intakes.sql")


@pytest.mark.parametrize("sql", [
    "CREATE INDEX CONCURRENTLY t_org ON t (org)",
    "DROP INDEX CONCURRENTLY t_org",
    "REINDEX INDEX CONCURRENTLY t_org",
    "VACUUM t",
    "BEGIN",
    "COMMIT",
])
def test_refused_whatever_the_mark(sql: str) -> None:
    assert "refused" in _kinds(sql)
    marked = f"-- contract: t_org — unused since 0.2.0\n{sql};\n"
    assert any("refused" in p for p in check("x/migrations/016_x.sql", marked))


def test_statements_are_found_with_their_lines_past_comments_and_non_ascii() -> None:
    sql = ("-- Été: a comment with accents, before anything.\n"
           "CREATE TABLE t (id int);\n\n"
           "-- Why the column goes.\n"
           "ALTER TABLE t\n    DROP COLUMN note;\n")
    statements = classify(sql)
    assert [(s.line, s.sql) for s in statements] == [
        (2, "CREATE TABLE t (id int)"), (5, "ALTER TABLE t DROP COLUMN note")]


# --- the mark, and what the check says -------------------------------------------------------

DROP = "-- Why the column goes.\nALTER TABLE intakes DROP COLUMN note;\n"


def test_an_unmarked_contract_fails_with_where_why_and_how() -> None:
    [problem] = check("services/intake/migrations/016_drop_note.sql", DROP)
    assert problem.startswith("services/intake/migrations/016_drop_note.sql, line 2: "
                              "ALTER TABLE intakes DROP COLUMN note\n")
    assert "is a contract: drops intakes.note" in problem
    assert "-- contract: intakes.note — unused since <release>" in problem
    assert "Upgrades: expand, then contract" in problem


@pytest.mark.parametrize("mark", [
    "-- contract: intakes.note — unused since 0.3.0 (intake/016)",
    "-- contract: intakes.note -- unused since 0.3.0",
    "-- Contract: INTAKES.NOTE — not read by any release since 0.3.0",
])
def test_a_marked_contract_passes(mark: str) -> None:
    assert check("x/migrations/016_x.sql", f"{mark}\n{DROP}") == []


def test_the_mark_names_every_object_and_only_those() -> None:
    sql = ("-- contract: intakes.note, intakes.hint — unused since 0.3.0\n"
           "ALTER TABLE intakes DROP COLUMN note, DROP COLUMN flags;\n")
    problems = check("x/migrations/016_x.sql", sql)
    assert any("-- contract: intakes.flags — unused since" in p for p in problems)
    assert any("names intakes.hint, which no statement of the file contracts" in p
               for p in problems)


@pytest.mark.parametrize(("sql", "says"), [
    ("-- contract: intakes.note\n" + DROP, "is not a contract mark"),
    ("-- contract: intakes.note — unused for a while\n" + DROP, "is not a contract mark"),
    ("ALTER TABLE intakes DROP COLUMN note;\n-- contract: intakes.note — unused since 0.3\n",
     "belongs in the header"),
    ("-- contract: intakes.note — unused since 0.3.0\nALTER TABLE intakes ADD COLUMN x text;\n",
     "no statement contracts anything"),
])
def test_a_wrong_mark_fails(sql: str, says: str) -> None:
    assert any(says in p for p in check("x/migrations/016_x.sql", sql))


def test_a_contract_cannot_land_while_the_code_still_names_what_it_removes(
        tmp_path: Path) -> None:
    store = tmp_path / "services" / "intake" / "store.py"
    store.parent.mkdir(parents=True)
    other = tmp_path / "services" / "runtime" / "offline.py"
    other.parent.mkdir(parents=True)
    other.write_text("def note() -> None: ...\n")  # the word, but not in a file about intakes
    sql = ("-- contract: intakes.note, intakes.intakes_note_check, old_index — unused since 1\n"
           "ALTER TABLE intakes DROP COLUMN note, DROP CONSTRAINT intakes_note_check;\n"
           "DROP INDEX old_index;\n")
    statements: list[Statement] = classify(sql)
    store.write_text('ROWS = "SELECT id, note FROM intake.intakes"\n'
                     'FIX = "ON CONFLICT ON CONSTRAINT intakes_note_check DO NOTHING"\n')
    hits = still_used(statements, [store, other], tmp_path)
    assert hits == [
        "services/intake/store.py:1: intakes.note is still named: "
        'ROWS = "SELECT id, note FROM intake.intakes"',
        "services/intake/store.py:2: intakes_note_check is still named: "
        'FIX = "ON CONFLICT ON CONSTRAINT intakes_note_check DO NOTHING"']
    store.write_text('ROWS = "SELECT id, notes FROM intake.intakes"\n')
    assert still_used(statements, [store, other], tmp_path) == []


def test_a_name_dropped_and_made_again_in_the_same_file_is_not_removed(tmp_path: Path) -> None:
    code = tmp_path / "store.py"
    code.write_text('SQL = "INSERT ... ON CONFLICT ON CONSTRAINT t_once DO NOTHING"\n')
    redefined = classify("DROP INDEX t_once; CREATE UNIQUE INDEX t_once ON t (a, b);")
    assert still_used(redefined, [code], tmp_path) == []
    assert still_used(classify("DROP INDEX t_once;"), [code], tmp_path) != []
