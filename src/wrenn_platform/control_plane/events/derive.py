"""Events and audit entries derived from the database changes themselves, in their transaction.

Every change to a tracked table — through the unit of work (`session.add`, attribute changes,
`session.delete`) or a bulk `update()`/`delete()` statement — is turned into outbox events
(`record_event`) and audit entries (`record_audit`) by the rules below, so the modules that make
the changes need no calls of their own and no change can be made without its record.

- Unit of work: `after_flush` sees the flushed objects with their attribute history.
- Bulk statements: `do_orm_execute` reads the affected rows before running the statement, holding
  them (`FOR UPDATE` on PostgreSQL, the write lock on SQLite), so it knows the old and new values
  of exactly the rows the statement changes.

Capsule actions are derived from the state machine: a capsule leaving `starting`, `pausing`,
`resuming` or `stopping` ends a create, pause, resume or destroy, successfully when it reaches that
action's target status. Every status change is also a `capsule.state.changed` event. A snapshot
template is created with `size_bytes` 0 and filled in when the snapshot is written: that update is
`template.snapshot.create` (success); deleting an unfilled one is its failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import event, inspect, select, text
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.sql.elements import BindParameter

from ...wire.api.capsules import Capsule as CapsuleOut
from ...wire.api.capsules import capsule_metadata
from ..audit.actor import Actor, current_actor
from ..audit.record import record_audit
from ..capsules.states import ACTIONS, TARGETS
from ..db.models import ApiKey, AuthSession, Capsule, Channel, Host, OAuthIdentity, Team, TeamMember, Template, User
from .record import record_event

Kind = Literal["insert", "update", "delete"]


@dataclass
class Change:
    kind: Kind
    row: Mapping[str, Any]  # column values after the change (before it, for a delete)
    old: dict[str, Any] = field(default_factory=dict)  # previous values of the changed tracked columns

    def changed(self, name: str) -> bool:
        return name in self.old and self.old[name] != self.row.get(name)


Rule = Callable[[Session, Change], None]


# ---- capsules -----------------------------------------------------------------------------------


def _sandbox(row: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return CapsuleOut(
            id=row["id"], status=row["status"], template=row["template"], vcpus=row["vcpus"],
            memory_mb=row["memory_mb"], timeout_sec=row["timeout_sec"], guest_ip=row["guest_ip"] or "",
            host_ip=row["host_ip"] or "", created_at=row["created_at"], started_at=row.get("started_at"),
            last_active_at=row.get("last_active_at"), last_updated=row["last_updated"],
            metadata=capsule_metadata(row.get("labels"), row.get("error")), disk_size_mb=row.get("disk_size_mb"),
        ).model_dump(mode="json")
    except (KeyError, ValueError, TypeError):
        return None  # the contract: null if the record could not be read


def _capsule(db: Session, change: Change) -> None:
    row, team_id, capsule_id = change.row, change.row["team_id"], change.row["id"]
    sandbox = _sandbox(row)

    def state_changed(old: str) -> None:
        meta = {"from": old, "to": row["status"]}
        if row.get("host_ip"):
            meta["host_ip"] = row["host_ip"]
        record_event(db, team_id=team_id, event="capsule.state.changed", resource_id=capsule_id,
                     resource_type="capsule", metadata=meta, sandbox=sandbox)

    if change.kind == "insert":
        record_audit(db, action="create", resource_type="capsule", resource_id=capsule_id, team_id=team_id,
                     metadata={"template": row.get("template", "")})
        state_changed("")
        return
    if change.kind != "update" or not change.changed("status"):
        return
    old, new = change.old["status"], row["status"]
    state_changed(old)
    if new in ("pausing", "resuming", "stopping"):
        record_audit(db, action=ACTIONS[new], resource_type="capsule", resource_id=capsule_id, team_id=team_id,
                     metadata={"from": old})
    action = ACTIONS.get(old)
    if action is None:
        return
    ok = new == TARGETS[old]
    error = None if ok else (row.get("error") or f"capsule went from {old} to {new}")
    record_event(db, team_id=team_id, event=f"capsule.{action}", resource_id=capsule_id, resource_type="capsule",
                 outcome="success" if ok else "error", error=error, sandbox=sandbox,
                 metadata={"from": old, "to": new})
    if not ok:
        record_audit(db, action=action, resource_type="capsule", resource_id=capsule_id, team_id=team_id,
                     status="failure", metadata={"error": error or ""})


# ---- templates and hosts ------------------------------------------------------------------------


def _template(db: Session, change: Change) -> None:
    row, team_id = change.row, change.row["team_id"]
    name = row["name"]

    def snapshot_event(which: str, outcome: str, error: str | None = None) -> None:
        record_event(db, team_id=team_id, event=f"template.snapshot.{which}", resource_id=name,
                     resource_type="template", outcome=outcome, error=error,
                     metadata={"template_id": row["id"], "source_capsule_id": row.get("source_capsule_id") or ""})

    if change.kind == "insert":
        record_audit(db, action="create", resource_type="template", resource_id=name, team_id=team_id,
                     metadata={"source_capsule_id": row.get("source_capsule_id") or ""})
    elif change.kind == "update" and change.changed("size_bytes") and not change.old["size_bytes"]:
        snapshot_event("create", "success")
    elif change.kind == "delete" and not row.get("size_bytes"):
        reason = (row.get("labels") or {}).get("error") or "the snapshot could not be written"
        snapshot_event("create", "error", f"snapshot of {row.get('source_capsule_id') or 'a capsule'} failed: {reason}")
        record_audit(db, action="create", resource_type="template", resource_id=name, team_id=team_id,
                     status="failure")
    elif change.kind == "delete":
        snapshot_event("delete", "success")
        record_audit(db, action="delete", resource_type="template", resource_id=name, team_id=team_id)


_HOST_UP = frozenset({"online", "draining"})


def _host(db: Session, change: Change) -> None:
    row, team_id = change.row, change.row.get("team_id")
    scope = "team" if team_id else "platform"
    if change.kind in ("insert", "delete"):
        record_audit(db, action=change.kind.replace("insert", "create"), resource_type="host",
                     resource_id=row["id"], team_id=team_id, scope=scope, metadata={"type": row.get("type") or ""})
    # A draining host is up (it serves its capsules, it just takes no new ones).
    was_online = change.old.get("status", row.get("status")) in _HOST_UP and change.kind != "insert"
    is_online = row.get("status") in _HOST_UP and change.kind != "delete"
    if was_online == is_online:
        return
    meta = {"status": row.get("status") or "", "host_ip": row.get("address") or ""}
    if not is_online:
        meta["reason"] = "deleted" if change.kind == "delete" else str(row.get("status"))
    record_event(db, team_id=team_id, event="host.up" if is_online else "host.down", resource_id=row["id"],
                 resource_type="host", metadata=meta)


# ---- identity, teams, keys, channels: audit only -----------------------------------------------


def _audit_rule(resource_type: str, scope: str, actions: Mapping[str, str], *, team: str | None = "team_id",
                resource_id: str = "id", meta: tuple[str, ...] = ()) -> Rule:
    """Audit `insert`/`delete` and changes of the named columns (`actions`: column or kind → action)."""

    def rule(db: Session, change: Change) -> None:
        row = change.row
        names = [change.kind] if change.kind != "update" else sorted(c for c in change.old if change.changed(c))
        fields: dict[str, list[str]] = {}  # action → the columns it covers (one entry per action)
        for name in names:
            action = actions.get(name)
            if action is None or (name == "revoked_at" and not row.get(name)):
                continue
            if action.endswith("?"):  # a flag: the action is named after its new value
                action = f"{action[:-1]}.{'on' if row.get(name) else 'off'}"
            fields.setdefault(action, []).append(name)
        for action, columns in fields.items():
            details: dict[str, Any] = {k: row.get(k) for k in meta if row.get(k) is not None}
            if change.kind == "update":
                details["fields"] = columns
            record_audit(db, action=action, resource_type=resource_type, resource_id=str(row.get(resource_id)),
                         team_id=row.get(team) if team else None, scope=scope, metadata=details,
                         actor=_login_actor(change) if resource_type == "session" else None)

    return rule


def _login_actor(change: Change) -> Actor | None:
    """A login has no caller yet: the user logging in is the actor."""
    actor = current_actor()
    if actor.type == "system" and change.row.get("user_id"):
        return Actor("user", str(change.row["user_id"]), "")
    return None


RULES: dict[type, tuple[frozenset[str], Rule]] = {
    Capsule: (frozenset({"status"}), _capsule),
    Template: (frozenset({"size_bytes"}), _template),
    Host: (frozenset({"status"}), _host),
    Team: (frozenset({"name", "deleted_at"}), _audit_rule(
        "team", "team", {"insert": "create", "name": "rename", "deleted_at": "delete", "delete": "purge"},
        team="id", meta=("name",))),
    TeamMember: (frozenset({"role"}), _audit_rule(
        "member", "team", {"insert": "add", "role": "role.change", "delete": "remove"},
        resource_id="user_id", meta=("role",))),
    ApiKey: (frozenset(), _audit_rule(
        "api_key", "team", {"insert": "create", "delete": "delete"}, meta=("name", "key_prefix"))),
    User: (frozenset({"name", "email", "is_active", "is_admin", "password_hash", "deleted_at"}), _audit_rule(
        "user", "user", {"insert": "create", "name": "rename", "email": "email.change", "is_active": "active?",
                         "is_admin": "admin?", "password_hash": "password.change", "deleted_at": "delete"},
        team=None)),
    AuthSession: (frozenset({"revoked_at", "team_id"}), _audit_rule(
        "session", "user", {"insert": "login", "revoked_at": "revoke", "team_id": "switch_team"}, team=None,
        meta=("user_id", "team_id", "ip_address"))),
    OAuthIdentity: (frozenset(), _audit_rule(
        "oauth_identity", "user", {"insert": "connect", "delete": "disconnect"}, team=None,
        meta=("provider", "user_id"))),
    Channel: (frozenset({"name", "events", "config_encrypted"}), _audit_rule(
        "channel", "team", {"insert": "create", "name": "update", "events": "update",
                            "config_encrypted": "config.rotate", "delete": "delete"}, meta=("name", "provider"))),
}


# ---- the two hooks ------------------------------------------------------------------------------


def _columns(obj: Any) -> dict[str, Any]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(type(obj)).column_attrs}


def _old_values(obj: Any, tracked: frozenset[str]) -> dict[str, Any]:
    state = inspect(obj)
    old: dict[str, Any] = {}
    for name in tracked:
        history = state.attrs[name].history
        if history.added or history.deleted:
            old[name] = history.deleted[0] if history.deleted else None
    return old


def _after_flush(db: Session, _flush: UOWTransaction) -> None:
    for kind, objects in (("insert", db.new), ("update", db.dirty), ("delete", db.deleted)):
        for obj in list(objects):
            entry = RULES.get(type(obj))
            if entry is None:
                continue
            tracked, rule = entry
            old = _old_values(obj, tracked) if kind == "update" else {}
            if kind == "update" and not old:
                continue
            rule(db, Change(kind, _columns(obj), old))  # type: ignore[arg-type]


def _literal_values(statement: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in (getattr(statement, "_values", None) or {}).items():
        name = key if isinstance(key, str) else getattr(key, "key", None)
        if name is None:
            continue
        values[name] = value.value if isinstance(value, BindParameter) else value
    return values


def _bulk(state: ORMExecuteState) -> Any:
    if not (state.is_update or state.is_delete):
        return None
    mapper = state.bind_mapper
    entry = RULES.get(mapper.class_) if mapper is not None else None
    if entry is None:
        return None
    tracked, rule = entry
    values = _literal_values(state.statement)
    if state.is_update and not (tracked & values.keys()):
        return None
    model = mapper.class_  # type: ignore[union-attr]
    table = model.__table__
    keys = [mapper.get_property_by_column(column).key for column in table.c]  # type: ignore[union-attr]
    query = select(*table.c).with_for_update()
    where = state.statement.whereclause  # type: ignore[attr-defined]
    if where is not None:
        query = query.where(where)
    if state.session.get_bind().dialect.name == "sqlite":
        # pysqlite runs a SELECT outside any transaction; a no-op write first takes the write lock,
        # so no other writer can change these rows between this read and the statement.
        pk_name = table.primary_key.columns[0].name
        state.session.execute(text(f'UPDATE "{table.name}" SET "{pk_name}" = "{pk_name}" WHERE 0'))
    before = [dict(zip(keys, r, strict=True)) for r in state.session.execute(query).all()]
    result = state.invoke_statement()
    if not before:
        return result
    db = state.session
    if state.is_delete:
        for row in before:
            rule(db, Change("delete", row))
        return result
    pk = table.primary_key.columns[0]
    after = {r[0]: dict(zip(keys, r[1:], strict=True))
             for r in db.execute(select(pk, *table.c).where(pk.in_([row[pk.key] for row in before]))).all()}
    for row in before:
        now = after.get(row[pk.key])
        if now is None:
            continue
        old = {name: row[name] for name in tracked if name in values and row[name] != now[name]}
        if old:
            rule(db, Change("update", now, old))
    return result


def install() -> None:
    """Derive events and audit entries from every ORM session's changes (idempotent)."""
    for name, hook in (("after_flush", _after_flush), ("do_orm_execute", _bulk)):
        if not event.contains(Session, name, hook):
            event.listen(Session, name, hook)
