"""VERIFY templates (核验): match / no match, or a count, for keys the requester holds.

The template is a row filter written with the key as a parameter::

    SELECT 1 FROM civil.residents AS p WHERE p.person_id = :person_id AND p.district = :district

and the compiler wraps it (in the syntax tree, never in text) so that only one bit per key
-- or only the number of matching keys -- can leave::

    SELECT insitu_keys.slot AS key_index, EXISTS (<filter, :person_id → insitu_keys.key_value
                                                   AND p.person_id IN (:verify_key_0001, …)>)
        AS matched
    FROM (VALUES (1, :verify_key_0001), (2, :verify_key_0002), …) AS insitu_keys(slot, key_value)
    ORDER BY key_index

The ``IN`` list repeats what the correlated comparison already says, as constants the engine
can push into its scan: over a copy of the data sorted by the key column (``key_column``, see
``sandbox.engines.duckdb.sort_copy``) each key then reads one small row group instead of
every row.

Each key is bound to its own parameter (``verify_key_NNNN``); the SQL text depends on the
number of keys, never on their values, and the number is capped by the caller (the owner's
``max_keys_per_request``) before anything runs.

Rules on the filter: a plain SELECT (no GROUP BY, HAVING, ORDER BY, LIMIT, QUALIFY, DISTINCT,
aggregate or window at its top level), the key compared with ``=`` to a column in the
top-level AND chain of WHERE (a lookup by key, not a scan), and no use of the wrapper's name.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from sandbox.errors import SandboxBug, TemplateRejected

KEYS_ALIAS = "insitu_keys"
KEY_PREFIX = "verify_key_"
MAX_SLOTS = 9999
ANSWERS = ("match", "count")


def slot_names(n: int) -> tuple[str, ...]:
    """The parameter names of ``n`` key slots, sorted as the engine wants them."""
    if type(n) is not int or not 1 <= n <= MAX_SLOTS:
        raise SandboxBug(f"a verify query has 1 to {MAX_SLOTS} key slots")
    return tuple(f"{KEY_PREFIX}{i:04d}" for i in range(1, n + 1))


def check_filter(select: exp.Select, key: str, declared: set[str]) -> None:
    """The VERIFY rules on the template's own SELECT (before wrapping)."""
    for feature in ("group", "having", "order", "limit", "offset", "qualify", "distinct"):
        if select.args.get(feature):
            raise TemplateRejected(
                f"{feature.upper()} is not allowed at the top level of a verify template: it "
                "only filters rows by key"
            )
    for projection in select.expressions:
        if projection.find(exp.AggFunc, exp.Window) is not None:
            raise TemplateRejected(
                "a verify template selects no aggregate or window: write SELECT 1 FROM … WHERE …"
            )
    for name in declared:
        if name.startswith(KEY_PREFIX):
            raise TemplateRejected(f"parameter names starting with {KEY_PREFIX} are reserved")
    for node in select.walk():
        if isinstance(node, exp.Identifier) and node.name.lower() == KEYS_ALIAS:
            raise TemplateRejected(f"the name {KEYS_ALIAS} is reserved in verify templates")
    where = select.args.get("where")
    if where is None or not any(_is_key_lookup(c, key) for c in _conjuncts(where.this)):
        raise TemplateRejected(
            f"a verify template must look records up by key: its WHERE needs "
            f"<column> = :{key} (joined with AND at the top level)"
        )


def _conjuncts(node: exp.Expr) -> Iterator[exp.Expr]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        yield from _conjuncts(node.left)
        yield from _conjuncts(node.right)
    else:
        yield node


def _key_side(lookup: exp.Expr) -> exp.Column:
    """The column side of a key lookup (``_is_key_lookup``)."""
    assert isinstance(lookup, exp.EQ)
    return next(s for s in (lookup.left, lookup.right) if isinstance(s, exp.Column))


def _is_key_lookup(node: exp.Expr, key: str) -> bool:
    if not isinstance(node, exp.EQ):
        return False
    sides = (node.left, node.right)
    has_key = any(isinstance(s, exp.Placeholder) and s.name == key for s in sides)
    has_column = any(isinstance(s, exp.Column) for s in sides)
    return has_key and has_column


def key_column(qualified: exp.Select, key: str) -> tuple[str, str] | None:
    """(dataset id, column) the key is looked up in: the column of the first ``<column> =
    :key`` of the top-level AND chain, in a table of the top-level FROM or JOINs of the
    qualified SELECT (every column carries its table's alias); None when it is not plain."""
    where = qualified.args.get("where")
    if where is None:
        return None
    lookup = next((c for c in _conjuncts(where.this) if _is_key_lookup(c, key)), None)
    if lookup is None:
        return None
    column = _key_side(lookup)
    tables = [t for t in qualified.find_all(exp.Table) if t.parent_select is qualified]
    owner = [t for t in tables if t.alias_or_name == column.table]
    if len(owner) != 1 or not owner[0].db or not owner[0].name:
        return None
    return f"{owner[0].db}.{owner[0].name}", column.name


def _narrow(inner: exp.Select, key: str, names: tuple[str, ...]) -> None:
    """AND ``<key column> IN (:verify_key_0001, …)`` to the filter (before the key's
    placeholder is replaced): the same rows, with constants the scan can prune by."""
    lookup = next(c for c in _conjuncts(inner.args["where"].this) if _is_key_lookup(c, key))
    column = _key_side(lookup)
    keys = [exp.Placeholder(this=name) for name in names]
    inner.where(exp.In(this=column.copy(), expressions=keys), append=True, copy=False)


def wrap(
    select: exp.Select, key: str, answer: str, slots: int
) -> tuple[exp.Select, tuple[str, ...]]:
    """The query that answers ``slots`` keys; returns it and its output column names."""
    if answer not in ANSWERS:
        raise TemplateRejected("verify.answer must be match or count")
    names = slot_names(slots)
    keys = exp.Values(
        expressions=[
            exp.Tuple(expressions=[exp.Literal.number(i), exp.Placeholder(this=name)])
            for i, name in enumerate(names, start=1)
        ],
        alias=exp.TableAlias(
            this=exp.to_identifier(KEYS_ALIAS),
            columns=[exp.to_identifier("slot"), exp.to_identifier("key_value")],
        ),
    )
    inner = select.copy()
    _narrow(inner, key, names)
    for placeholder in list(inner.find_all(exp.Placeholder)):
        if placeholder.name == key:
            placeholder.replace(exp.column("key_value", table=KEYS_ALIAS))
    if answer == "match":
        outer = (
            exp.select(
                exp.alias_(exp.column("slot", table=KEYS_ALIAS), "key_index"),
                exp.alias_(exp.Exists(this=inner), "matched"),
            )
            .from_(keys)
            .order_by(exp.column("key_index"))
        )
        outputs: tuple[str, ...] = ("key_index", "matched")
    else:
        outer = (
            exp.select(exp.alias_(exp.Count(this=exp.Star()), "matches"))
            .from_(keys)
            .where(exp.Exists(this=inner))
        )
        outputs = ("matches",)
    return outer, outputs
