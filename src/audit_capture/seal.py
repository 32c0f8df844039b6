"""``audit-capture seal`` and ``audit-capture verify``: the log's hash chain.

    audit-capture seal --head-file /secure/audit-heads.txt     # every few minutes, from cron
    audit-capture verify --expect /secure/audit-heads.txt      # any time: exit 0 when intact

The work is SQL's (triggers/17_seal.sql). ``audit.seal()`` appends blocks of action ids
and digests to ``audit.seal_block``, each hashed over the previous one, up to the newest
id that every transaction is done with (an action that commits late with a lower id is
sealed when it has committed, never skipped). ``audit.verify_chain()`` recomputes the
chain and every sealed action's digest and returns what differs: ``altered``,
``removed``, ``added`` (an id in a sealed range that was not there when it was sealed),
``chain_broken`` (the chain's own rows edited), ``head_mismatch`` (a head saved earlier
is no longer in the chain: the chain was rewritten or cut).

A superuser, or anyone with audit_owner's powers, can change the log and recompute the
whole chain; what they cannot do is give it the head that the DBA saved outside the
database before. So ``seal --head-file`` appends each new head to a file kept
elsewhere, and ``verify --expect`` checks that every head it holds is still in the
chain (``--expect`` also takes one head, or an archive manifest holding ``chain_head``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from audit_capture import database
from audit_capture.errors import AuditCaptureError

SEAL_FUNCTION = "audit.seal(integer)"
VERIFY_FUNCTION = "audit.verify_chain(text[],integer)"

#: Actions sealed per call (one transaction each): a long backlog is sealed in steps
#: that each hold their locks briefly.
ACTIONS_PER_CALL = 100_000

#: How often ``seal`` asks again while a transaction older than its mark runs.
POLL_SECONDS = 0.2


class SealRefused(AuditCaptureError):
    """Sealing or verifying cannot run as asked; ``str(exc)`` says why and what to do."""


@dataclass(frozen=True)
class Sealed:
    """What one ``seal()`` run did."""

    actions: int
    blocks: int
    sealed_through: int  # the last action id sealed (0: none yet)
    newest_id: int  # the newest id drawn when the run began
    head: str | None  # the chain's head after the run

    @property
    def caught_up(self) -> bool:
        return self.sealed_through >= self.newest_id


@dataclass(frozen=True)
class Finding:
    """One problem ``verify()`` found."""

    kind: str  # altered, removed, added, chain_broken, head_mismatch
    block_no: int | None
    action_id: int | None
    detail: str


@dataclass(frozen=True)
class Verified:
    findings: list[Finding]
    head: str | None
    sealed_actions: int
    unsealed_actions: int
    expected_heads: int

    @property
    def intact(self) -> bool:
        return not self.findings


def check_access(conn: psycopg.Connection, function: str, role: str, verb: str) -> None:
    """Raise SealRefused when the schema has no seal chain or the role may not use it."""
    installed, allowed, user, quoted = database.function_access(conn, function)
    if not installed:
        raise SealRefused(
            "this database's audit schema has no seal chain (audit.seal): "
            "run `audit-capture migrate upgrade` first"
        )
    if not allowed:
        raise SealRefused(
            f"role {user} may not {verb}: it is for {role}; a superuser runs "
            f"`grant {role} to {quoted};`"
        )


def seal(
    conn: psycopg.Connection,
    wait_seconds: float = 10.0,
    *,
    actions_per_call: int = ACTIONS_PER_CALL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Sealed:
    """Seal every action drawn so far: call ``audit.seal()`` (one transaction each) until
    the chain reaches the newest id of the first call, waiting up to ``wait_seconds``
    for transactions older than it to end. Returns the totals; ``caught_up`` is false
    when some stayed open longer (their actions are sealed by a later run)."""
    check_access(conn, SEAL_FUNCTION, "audit_admin", "seal the log")
    deadline = clock() + wait_seconds
    actions = blocks = 0
    target: int | None = None
    while True:
        with conn.transaction():
            conn.execute("set transaction isolation level read committed")
            row = database.one_row(
                conn,
                "select actions_sealed, blocks, sealed_through, newest_id, head"
                " from audit.seal(%s)",
                (actions_per_call,),
            )
        done, made, through, newest, head = row
        actions += done
        blocks += made
        target = newest if target is None else target
        result = Sealed(actions, blocks, through, target, head)
        if result.caught_up:
            return result
        if done >= actions_per_call:
            continue  # more of the backlog: at once
        if clock() >= deadline:
            return result
        sleep(POLL_SECONDS)


#: a head file or manifest bigger than this is refused, not read into memory
MAX_EXPECT_FILE_BYTES = 64 * 1024**2


def append_head(path: Path, head: str) -> None:
    """Append ``head`` to the file the DBA keeps (one head per line, with the time)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("a", encoding="utf-8") as file:
        file.write(f"{head}  {stamp}\n")


def expected_heads(value: str) -> list[str]:
    """The heads ``--expect`` names: one head (``17:3fa4...``), or a file holding them:
    a head file (``seal --head-file``: the first word of each line; ``#`` comments) or
    an archive manifest (JSON with ``chain_head``)."""
    path = Path(value)
    if not path.exists():
        if ":" in value and "/" not in value:
            return [value.strip()]
        raise SealRefused(f"--expect {value}: no such file, and not a chain head (block:sha256)")
    text = _read_expect_file(path)
    if path.suffix == ".json":
        try:
            head = json.loads(text).get("chain_head")
        except (ValueError, AttributeError):
            raise SealRefused(f"{path}: not a JSON object") from None
        if not head:
            raise SealRefused(f"{path}: the manifest records no chain_head")
        return [head]
    heads = [
        line.split()[0]
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not heads:
        raise SealRefused(f"{path}: no chain head in it")
    return list(dict.fromkeys(heads))  # each once, in the file's order


def _read_expect_file(path: Path) -> str:
    """The text of a head file or manifest; SealRefused, in one line, for a folder, an
    unreadable or non-UTF-8 file, or one too big to be either."""
    try:
        size = path.stat().st_size
        if size > MAX_EXPECT_FILE_BYTES:
            raise SealRefused(
                f"{path}: {size:,} bytes; a head file or manifest is at most"
                f" {MAX_EXPECT_FILE_BYTES // 1024**2} MiB (a head a minute for a year is"
                " ~40 MiB): keep the recent heads in it"
            )
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SealRefused(f"{path}: not UTF-8 text, so not a head file or manifest") from None
    except OSError as exc:
        raise SealRefused(f"{path}: {exc.strerror or exc}") from None


def verify(conn: psycopg.Connection, heads: list[str], max_findings: int = 100) -> Verified:
    """Check the chain, every sealed action, and each head saved earlier."""
    check_access(conn, VERIFY_FUNCTION, "audit_reader", "verify the log")
    try:
        rows = conn.execute(
            "select finding, block_no, action_id, detail from audit.verify_chain(%s, %s)",
            (heads, max_findings),
        ).fetchall()
    except psycopg.errors.InvalidParameterValue as exc:
        conn.rollback()
        raise SealRefused(str(exc.diag.message_primary or exc)) from None
    findings = [Finding(*row) for row in rows]
    head, sealed, unsealed = database.one_row(
        conn,
        "select audit.chain_head(),"
        " coalesce((select sum(cardinality(action_ids)) from audit.seal_block"
        "           where kind = 'actions'), 0),"
        " (select count(*) from audit.action_log where id >"
        "   coalesce((select max(last_id) from audit.seal_block where kind = 'actions'), 0))",
    )
    conn.rollback()
    return Verified(findings, head, int(sealed), int(unsealed), len(heads))


def verify_lines(result: Verified) -> list[str]:
    """What ``audit-capture verify`` prints."""
    lines = []
    if result.intact:
        checked = f"; {result.expected_heads} saved head(s) found" if result.expected_heads else ""
        lines.append(f"intact: {result.sealed_actions:,} sealed actions match the chain{checked}")
    else:
        first = result.findings[0]
        more = len(result.findings) - 1
        lines.append(f"TAMPERED: {first.detail}")
        if more:
            lines.append(f"... and {more} more problem(s):")
            lines.extend(f"  {f.kind}: {f.detail}" for f in result.findings[1:])
    lines.append(f"head: {result.head or '(nothing sealed yet)'}")
    if result.unsealed_actions:
        lines.append(f"not sealed yet: {result.unsealed_actions:,} newer action(s)")
    return lines


def seal_lines(result: Sealed) -> list[str]:
    """What ``audit-capture seal`` prints."""
    lines = [
        f"sealed {result.actions:,} action(s) in {result.blocks:,} block(s), "
        f"up to action {result.sealed_through:,}"
    ]
    if not result.caught_up:
        lines.append(
            f"actions {result.sealed_through + 1:,} to {result.newest_id:,} wait for a "
            "transaction still open: the next run seals them"
        )
    lines.append(f"head: {result.head or '(nothing sealed yet)'}")
    return lines
