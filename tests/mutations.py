"""Named mutations of security rules, each tried on the fast tier in a private copy (`make mutate`).

    python -m tests.mutations [--postgres] [--only NAME]... [--list]

Each mutation switches one security rule off by replacing an exact snippet of one file. The
repository (tracked files plus untracked, not ignored ones, as they are in the working tree) is
copied once into a temporary directory; for each mutation that copy's file is rewritten, the fast
tier runs on it (``pytest -x -q -p no:cacheprovider``: the unit tests plus `FAST_INTEGRATION`,
SQLite only unless ``--postgres``), and the file is put back. The working tree is never touched.

A mutation is *caught* when some test of the tier fails with it applied. Its `first` tests (all
of them in the tier) run first, on their own, so a catch is found quickly; if they pass, the
whole tier runs, so a mutation only survives if the whole tier passes. Before the mutations,
those `first` tests run on the unmutated copy and must pass (else a "catch" would mean nothing).

Exit status 1 when any mutation survives, when a snippet is not found exactly once (the rule
moved or changed: update the mutation, it must not rot silently), or when the baseline fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAST_UNIT = ("tests/unit",)
# Integration tests that need no app (or one cheap one) and guard the rules below.
FAST_INTEGRATION = (
    "tests/integration/test_budget_ledger.py",
    "tests/adversarial/test_template_static_checks.py",
    "tests/adversarial/test_idp_stall.py",
    "tests/integration/test_console_security.py",
    "tests/adversarial/test_conditional_aggregates.py",
)
RUN_TIMEOUT_S = 1800


@dataclass(frozen=True, slots=True)
class Mutation:
    name: str
    rule: str  # the rule the mutation switches off, in words
    file: str  # relative to the repository root
    original: str  # must occur exactly once in `file`
    replacement: str
    first: tuple[str, ...] = ()  # tests of the tier (paths or node ids) to run before the rest


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "jwks-refresh-on-request-path",
        "a verification whose key is cached never waits for a JWKS refresh in flight",
        "gateway/auth/keysource.py",
        "        if usable is None and waiting is not None:\n",
        "        if waiting is not None:\n",
        ("tests/adversarial/test_idp_stall.py",),
    ),
    Mutation(
        "jwks-total-timeout",
        "a JWKS fetch is cut off at its total time limit, not only per read",
        "gateway/auth/discovery.py",
        "            if clock() > deadline:\n",
        "            if False:\n",
        ("tests/adversarial/test_idp_stall.py",),
    ),
    Mutation(
        "cosignature-key-type",
        "witness cosignatures are C2SP cosignature/v1: key type 0x04 in the key hash",
        "audit/cosignature.py",
        "COSIGNATURE_V1: Final = 0x04\n",
        "COSIGNATURE_V1: Final = 0x01\n",
        ("tests/unit/audit/test_cosignature.py",),
    ),
    Mutation(
        "witness-old-size",
        "a witness cosigns only from the size it last cosigned (C2SP 409)",
        "audit/witness.py",
        "            if old_size != last_size:\n",
        "            if False:\n",
        ("tests/unit/audit/test_cosignature.py",),
    ),
    Mutation(
        "console-csrf",
        "every console POST carries its session's CSRF token",
        "gateway/console/web.py",
        "    if not token or not hmac.compare_digest(token, who.session.csrf):\n",
        "    if False:\n",
        ("tests/integration/test_console_security.py",),
    ),
    Mutation(
        "console-link-single-use",
        "a console sign-in link signs in once",
        "gateway/console/sessions.py",
        "            links.c.used_at.is_(None),\n",
        "",
        ("tests/integration/test_console_security.py",),
    ),
    Mutation(
        "console-session-expiry",
        "an expired console session signs nobody in",
        "gateway/console/sessions.py",
        "            sessions.c.secret_hash == digest(secret), "
        "sessions.c.expires_at > datetime.now(UTC)\n",
        "            sessions.c.secret_hash == digest(secret)\n",
        ("tests/integration/test_console_security.py",),
    ),
    Mutation(
        "ledger-delta-cap",
        "a budget reservation must fit the dataset's and the department's δ caps",
        "gateway/dp/ledger.py",
        "            b.c.delta_spent + b.c.delta_reserved + delta <= delta_cap,\n",
        "",
        ("tests/unit/gateway/test_ledger.py",),
    ),
    Mutation(
        "ledger-rho-cap",
        "a budget reservation must fit the ρ (zCDP) caps",
        "gateway/dp/ledger.py",
        "            b.c.rho_spent + b.c.rho_reserved + rho <= rho_cap,\n",
        "",
        ("tests/unit/gateway/test_ledger.py",),
    ),
    Mutation(
        "ledger-dataset-total",
        "departments together may not spend past the dataset's total budget",
        "gateway/dp/ledger.py",
        "        (GLOBAL, caps.total_rho, caps.total_delta),\n",
        "",
        ("tests/unit/gateway/test_ledger.py",),
    ),
    Mutation(
        "ledger-returned-spends-nothing",
        "a failed job's reservation is given back, not spent",
        "gateway/dp/ledger.py",
        '                "p_spend_rho": row.rho if released else 0,\n',
        '                "p_spend_rho": row.rho,\n',
        ("tests/unit/gateway/test_ledger.py",),
    ),
    Mutation(
        "template-file-url-literal",
        "string literals naming files or URLs are refused in templates",
        "sandbox/compile/safety.py",
        "        if node.is_string and _FILE_OR_URL.search(node.this):\n",
        "        if node.is_string and False:\n",
        ("tests/unit/sandbox/test_sandbox_literals.py",),
    ),
    Mutation(
        "template-table-functions",
        "functions that read files or metadata are refused in templates",
        "sandbox/compile/safety.py",
        "            if name in DENIED_FUNCTIONS or name.startswith(_DENIED_PREFIXES):\n",
        "            if False:\n",
        ("tests/unit/sandbox/test_sandbox_literals.py",),
    ),
    Mutation(
        "template-self-approval",
        "the author of a template never approves it",
        "gateway/catalogue/templates.py",
        "    if same_person(current.author, principal.subject):\n",
        "    if False:\n",
        ("tests/unit/gateway/test_template_approval.py",),
    ),
    Mutation(
        "four-eyes-confusables",
        "subjects differing only in case or Unicode form are one person",
        "gateway/auth/principal.py",
        '        unicodedata.normalize("NFKC", a).casefold() == '
        'unicodedata.normalize("NFKC", b).casefold()\n',
        "        a == b\n",
        ("tests/unit/gateway/test_template_approval.py",),
    ),
    Mutation(
        "audit-verifier-root-check",
        "the verifier compares the recomputed tree with every signed root",
        "audit/verify.py",
        "        if signed is None or hmac.compare_digest(signed, root):\n",
        "        if True:\n",
        ("tests/unit/audit/test_verify_roots.py",),
    ),
    Mutation(
        "receipt-inclusion-root",
        "an inclusion proof must lead to the signed root",
        "audit/merkle.py",
        "    if not hmac.compare_digest(r, root):\n",
        "    if False:\n",
        ("tests/unit/audit/test_witness_and_receipt.py", "tests/unit/audit/test_merkle.py"),
    ),
    Mutation(
        "disclosure-threshold",
        "a group with fewer contributors than the threshold is withheld (boundary included)",
        "sandbox/disclosure/rules.py",
        "        elif count < threshold:\n",
        "        elif count < threshold - 1:\n",
        ("tests/unit/sandbox/test_sandbox_disclosure.py",),
    ),
    Mutation(
        "casbin-default-deny",
        "a request no rule grants is denied (Casbin's effect: allow only by an allow rule)",
        "policies/model.conf",
        "e = some(where (p.eft == allow))",
        "e = !some(where (p.eft == deny))",
        ("tests/unit/policies/test_policy_default_deny.py",),
    ),
    Mutation(
        "policy-denial-enforced",
        "a denied decision stops the request (PolicyEngine.require raises)",
        "policies/enforcer.py",
        "        if not decision.allowed:\n            raise PolicyDenied(decision)\n",
        "",
        ("tests/unit/policies/test_policy_engine.py",),
    ),
    Mutation(
        "casbin-department-domain",
        "a rule for one department does not grant another",
        "policies/model.conf",
        '(p.dom == "*" || r.dom == p.dom)',
        '(p.dom == "*" || r.dom == r.dom)',
        ("tests/unit/policies/test_policy_differential.py",),
    ),
    Mutation(
        "jwt-audience",
        "an access token must name this gateway as its audience",
        "gateway/auth/verifier.py",
        '            aud={"essential": True, "value": self.audience},\n',
        '            aud={"essential": True},\n',
        ("tests/unit/gateway/auth/test_auth_verifier.py",),
    ),
    Mutation(
        "token-cache-file-owner",
        "the CLI's credentials file must belong to the user running it",
        "gateway/cli/credentials.py",
        "                or info.st_mode & 0o077\n                or info.st_uid != os.geteuid()\n",
        "                or info.st_mode & 0o077\n",
        ("tests/unit/gateway/cli_login/test_token_cache.py",),
    ),
    Mutation(
        "token-cache-directory-owner",
        "the CLI's credentials directory must belong to the user running it",
        "gateway/cli/credentials.py",
        "if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:",
        "if not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o022:",
        ("tests/unit/gateway/cli_login/test_token_cache.py",),
    ),
    Mutation(
        "cli-terminal-escapes",
        "free text printed by the CLI shows control and bidi characters, never emits them",
        "gateway/cli/render.py",
        '    if not any(unsafe(ch) or ch == "\\\\" for ch in text):\n',
        "    if True:\n",
        ("tests/unit/gateway/test_cli_render.py",),
    ),
    Mutation(
        "atoms-new-piece",
        "a release may not split an atom of released populations into a piece of 1..k-1 units",
        "sandbox/disclosure/atoms.py",
        "    bad_piece = (t.piece_sizes < k) & ~whole\n",
        "    bad_piece = (t.piece_sizes < 0) & ~whole\n",
        ("tests/unit/sandbox/test_atoms.py",),
    ),
    Mutation(
        "pairwise-before-partition",
        "cells released before the atom check's partition started are still compared pairwise",
        "gateway/jobs/releases/partition.py",
        "    return atoms.covers_after\n",
        "    return 2**62\n",
        ("tests/unit/gateway/test_release_partitions.py",),
    ),
    Mutation(
        "stale-release-decision",
        "a release decided without the lock is recorded only if no release was recorded since",
        "gateway/jobs/releases/partition.py",
        "            h.c.head == atoms.seq,\n            h.c.head_tag == atoms.tag,\n",
        "",
        ("tests/unit/gateway/test_release_partitions.py",),
    ),
    Mutation(
        "atoms-repeat",
        "a release is left unrecorded only if every cell is a union of the partition's atoms",
        "sandbox/disclosure/atoms.py",
        "        if (counts != sizes[touched]).any():\n",
        "        if False:\n",
        ("tests/unit/sandbox/test_atoms.py",),
    ),
    Mutation(
        "atoms-remainder",
        "what stays of an atom outside a release's groups must not be 1..k-1 units",
        "sandbox/disclosure/atoms.py",
        "        bad_label = (remainder > 0) & (remainder < k)\n",
        "        bad_label = (remainder > 0) & (remainder < 0)\n",
        ("tests/unit/sandbox/test_atoms.py",),
    ),
    Mutation(
        "aggregate-linear",
        "non-public columns appear only linearly inside aggregates (no SIGN(x - c) thresholds)",
        "sandbox/compile/aggregate.py",
        "        _check_linear(node, argument, resolver)\n",
        "",
        ("tests/adversarial/test_conditional_aggregates.py",),
    ),
    Mutation(
        "kept-connection-settings",
        "a kept database's connections get the settings a connection does not inherit",
        "sandbox/engines/duckdb.py",
        "                if missing:\n",
        "                if False:\n",
        ("tests/unit/sandbox/test_sandbox_kept_databases.py",),
    ),
    Mutation(
        "kept-database-identity",
        "a kept database serves only jobs over exactly its sources (files and limits)",
        "sandbox/engines/duckdb.py",
        "    return (limits, tuple(files))\n",
        "    return (limits,)\n",
        ("tests/unit/sandbox/test_sandbox_kept_databases.py",),
    ),
    Mutation(
        "sorted-copy-identity",
        "a verify job reads a sorted copy only of the file as it is now (named by its identity)",
        "gateway/catalogue/sorted_copies.py",
        "source.format, column, *map(str, identity)])",
        "source.format, column])",
        ("tests/unit/gateway/test_sorted_copies.py",),
    ),
    Mutation(
        "sorted-copy-writes-confined",
        "the process making a sorted copy may write in its build directory and nowhere else",
        "sandbox/engines/sorter.py",
        '    return landlock.restrict_writes(beneath=str(Path(request["dest"]).parent))\n',
        "    return 0\n",
        ("tests/unit/sandbox/test_sandbox_sorted_copies.py",),
    ),
)


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    status: str  # "caught" | "SURVIVED" | "NOT FOUND" | "ERROR"
    by: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "caught"


def repository_files(root: Path) -> list[str]:
    """Tracked files and untracked files git does not ignore, as the working tree has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    return sorted({name for name in listed.decode().split("\0") if name})


def private_copy(root: Path, target: Path) -> None:
    for name in repository_files(root):
        source = root / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet committed
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination, follow_symlinks=False)


def child_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no stale bytecode between a mutation and its undo
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_imports_come_from(copy: Path) -> None:
    """The copy's packages, not the editable install's, must be the ones imported."""
    code = "import audit, gateway, policies, sandbox; print(gateway.__file__, sandbox.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=copy,
        env=child_env(copy),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if not all(Path(path).resolve().is_relative_to(copy.resolve()) for path in out):
        raise SystemExit(f"mutate: the packages are not imported from the copy ({out})")


_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - |$)", re.MULTILINE)


def run_pytest(copy: Path, paths: Sequence[str], *, postgres: bool) -> tuple[int, str, str]:
    """(exit code, first failing test or '', output tail)."""
    marker = [] if postgres else ["-m", "not postgres"]
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *marker]
    try:
        done = subprocess.run(
            [*command, *paths],
            check=False,
            cwd=copy,
            env=child_env(copy),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return -1, "", f"the tier ran longer than {RUN_TIMEOUT_S} s"
    output = done.stdout + done.stderr
    summary = output.rpartition("short test summary info")[2]  # not the captured logs
    failed = _FAILED.search(summary)
    return done.returncode, failed.group(1) if failed else "", output[-3000:]


def try_mutation(
    copy: Path, mutation: Mutation, tier: Sequence[str], *, postgres: bool, verbose: bool
) -> Outcome:
    path = copy / mutation.file
    original = path.read_text(encoding="utf-8")
    found = original.count(mutation.original)
    if found != 1:
        where = "not found" if found == 0 else f"found {found} times"
        return Outcome(mutation.name, "NOT FOUND", f"snippet {where} in {mutation.file}", 0.0)
    missing = [t for t in mutation.first if not (copy / t.split("::")[0]).exists()]
    if missing:
        return Outcome(mutation.name, "NOT FOUND", f"no test file {missing[0]}", 0.0)
    started = time.monotonic()
    path.write_text(original.replace(mutation.original, mutation.replacement), encoding="utf-8")
    try:
        # pytest merges overlapping arguments into directory order, so the mutation's own
        # tests run on their own first; only if they pass does the whole tier run.
        code, first_failure, tail = 0, "", ""
        if mutation.first:
            code, first_failure, tail = run_pytest(copy, mutation.first, postgres=postgres)
        if code == 0:
            code, first_failure, tail = run_pytest(copy, tier, postgres=postgres)
    finally:
        path.write_text(original, encoding="utf-8")
    seconds = time.monotonic() - started
    if verbose or code not in (0, 1):
        print(tail, file=sys.stderr)
    if code == 0:
        return Outcome(mutation.name, "SURVIVED", "no test of the fast tier failed", seconds)
    if code == 1 and first_failure:
        return Outcome(mutation.name, "caught", first_failure, seconds)
    return Outcome(mutation.name, "ERROR", f"pytest exited {code}", seconds)


def table(outcomes: Sequence[Outcome]) -> str:
    name_w = max(len("mutation"), *(len(o.name) for o in outcomes))
    by_w = max(len("by"), *(len(o.by) for o in outcomes))
    lines = [
        f"| {'mutation':<{name_w}} | caught | {'by':<{by_w}} | seconds |",
        f"|{'-' * (name_w + 2)}|--------|{'-' * (by_w + 2)}|---------|",
    ]
    for o in outcomes:
        caught = "yes" if o.ok else "NO" if o.status == "SURVIVED" else o.status
        lines.append(f"| {o.name:<{name_w}} | {caught:<6} | {o.by:<{by_w}} | {o.seconds:7.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__)
    parser.add_argument("--postgres", action="store_true", help="run the PostgreSQL cases too")
    parser.add_argument("--only", action="append", default=[], help="a mutation's name")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--verbose", action="store_true", help="print each run's output tail")
    args = parser.parse_args(argv)
    known = {m.name for m in MUTATIONS}
    unknown = sorted(set(args.only) - known)
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(unknown)}")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:<30} {m.file:<32} {m.rule}")
        return 0
    tier = [*FAST_UNIT, *FAST_INTEGRATION]
    outside = [t for m in chosen for t in m.first if not t.startswith(tuple(tier))]
    if outside:
        parser.error(f"a mutation's first tests must be in the fast tier: {outside[0]}")
    with tempfile.TemporaryDirectory(prefix="insitu-mutate-") as temp:
        copy = Path(temp) / "repo"
        private_copy(ROOT, copy)
        check_imports_come_from(copy)
        firsts = sorted({path for m in chosen for path in m.first})
        started = time.monotonic()
        code, failure, tail = run_pytest(copy, firsts, postgres=args.postgres)
        print(
            f"baseline: the mutations' first tests on the unmutated copy: exit {code} "
            f"({time.monotonic() - started:.1f} s)"
        )
        if code != 0:
            print(tail, file=sys.stderr)
            print(f"mutate: the baseline fails ({failure or 'see above'}); nothing was tried")
            return 1
        outcomes = []
        for mutation in chosen:
            outcome = try_mutation(
                copy, mutation, tier, postgres=args.postgres, verbose=args.verbose
            )
            print(
                f"{outcome.name}: {outcome.status} ({outcome.seconds:.1f} s) {outcome.by}",
                flush=True,
            )
            outcomes.append(outcome)
    print()
    print(table(outcomes))
    bad = [o for o in outcomes if not o.ok]
    print()
    if bad:
        print(
            f"mutate: {len(bad)} of {len(outcomes)} mutation(s) not caught: "
            + ", ".join(o.name for o in bad)
        )
        return 1
    print(f"mutate: all {len(outcomes)} mutations caught by the fast tier")
    return 0


if __name__ == "__main__":
    sys.exit(main())
