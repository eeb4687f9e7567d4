"""NACM (RFC 8341): the rules as values, read from and written to RFC 7951 JSON, and the
decisions: may this user run this operation, read or write this node, get this event."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.access.paths import Path, PathError, Step, covers, may_reach_below, parse_path

MODULE = "ietf-netconf-acm"
NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"
ROOT = f"{MODULE}:nacm"
NETCONF_MODULE = "ietf-netconf"
# Nodes and operations marked nacm:default-deny-all in their modules (RFC 8341 §3.2,
# RFC 6241's ietf-netconf): only an explicit permit rule opens them.
DENY_ALL_NODES: tuple[Path, ...] = ((Step(MODULE, "nacm"),),)
DENY_ALL_OPERATIONS = frozenset(
    {
        (NETCONF_MODULE, "kill-session"),
        (NETCONF_MODULE, "delete-config"),
        ("ietf-subscribed-notifications", "kill-subscription"),  # RFC 8639
    }
)
ALWAYS_PERMITTED = frozenset({(NETCONF_MODULE, "close-session")})  # RFC 8341 §3.4.4
MEMO_SIZE = 4096  # decisions kept per set of rules (users × operations × top-level nodes)


class Access(enum.Enum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    EXEC = "exec"


ALL_ACCESS = frozenset(Access)
WRITES = frozenset({Access.CREATE, Access.UPDATE, Access.DELETE})


class Action(enum.Enum):
    PERMIT = "permit"
    DENY = "deny"


class NacmError(ValueError):
    """A NACM configuration this module cannot use (names the rule and why)."""


@dataclass(frozen=True)
class Rule:
    """One rule. At most one of `rpc_name`, `notification_name` and `path` is set; none:
    the rule matches every request (RFC 8341 §3.4.4, "rule-type")."""

    name: str
    action: Action
    module_name: str = "*"
    rpc_name: str | None = None
    notification_name: str | None = None
    path: Path | None = None
    path_text: str | None = None  # the path as configured, to write it back
    access: frozenset[Access] = ALL_ACCESS
    comment: str = ""

    def _module_matches(self, module: str) -> bool:
        return self.module_name in ("*", module)


@dataclass(frozen=True)
class RuleList:
    name: str
    groups: tuple[str, ...]  # "*": every group
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Nacm:
    """/nacm: the switch, the defaults, the groups (name → users) and the rule lists."""

    enabled: bool = True
    read_default: Action = Action.PERMIT
    write_default: Action = Action.DENY
    exec_default: Action = Action.PERMIT
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    rule_lists: tuple[RuleList, ...] = ()
    _by_user: dict[str, tuple[RuleList, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # Decisions that depend only on their arguments and these frozen rules, kept as made
    # (a NETCONF session asks the same few at every RPC); bounded by MEMO_SIZE.
    _memo: dict[tuple[object, ...], bool] = field(default_factory=dict, compare=False, repr=False)
    _groups: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    def groups_of(self, user: str) -> frozenset[str]:
        found = self._groups.get(user)
        if found is None:
            found = frozenset(name for name, users in self.groups if user in users)
            if len(self._groups) < MEMO_SIZE:
                self._groups[user] = found
        return found

    def remembered(self, key: tuple[object, ...], decide: Callable[[], bool]) -> bool:
        """`decide()`, made once per `key` for these rules: for callers whose decision
        follows from the rules and `key` alone."""
        found = self._memo.get(key)
        if found is None:
            found = decide()
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = found
        return found

    def rule_lists_of(self, user: str) -> tuple[RuleList, ...]:
        """The rule lists that apply to `user`, in order (cached per user)."""
        found = self._by_user.get(user)
        if found is None:
            groups = self.groups_of(user)
            found = tuple(
                rules
                for rules in self.rule_lists
                if "*" in rules.groups or groups.intersection(rules.groups)
            )
            self._by_user[user] = found
        return found

    # ---- decisions -----------------------------------------------------------------------

    def may_exec(self, user: str, module: str, operation: str) -> bool:
        """RFC 8341 §3.4.4: may `user` invoke `operation` of `module`?"""
        return self.remembered(
            ("exec", user, module, operation), lambda: self._may_exec(user, module, operation)
        )

    def _may_exec(self, user: str, module: str, operation: str) -> bool:
        if (module, operation) in ALWAYS_PERMITTED or not self.enabled:
            return True
        for rule in self._rules(user):
            if Access.EXEC not in rule.access or not rule._module_matches(module):
                continue
            if rule.notification_name is not None or rule.path is not None:
                continue
            if rule.rpc_name in (None, "*", operation):
                return rule.action is Action.PERMIT
        if (module, operation) in DENY_ALL_OPERATIONS:
            return False
        return self.exec_default is Action.PERMIT

    def may_receive(self, user: str, module: str, notification: str) -> bool:
        """RFC 8341 §3.4.6: may `user` receive the event `notification` of `module`?"""
        if not self.enabled:
            return True
        for rule in self._rules(user):
            if Access.READ not in rule.access or not rule._module_matches(module):
                continue
            if rule.rpc_name is not None or rule.path is not None:
                continue
            if rule.notification_name in (None, "*", notification):
                return rule.action is Action.PERMIT
        return self.read_default is Action.PERMIT

    def reads_everything(self, user: str) -> bool:
        """Whether `user` may read every data node (no reply needs pruning)."""
        return self.remembered(("reads", user), lambda: self._reads_everything(user))

    def _reads_everything(self, user: str) -> bool:
        if not self.enabled:
            return True
        for rule in self._rules(user):
            if Access.READ not in rule.access:
                continue
            if rule.rpc_name is not None or rule.notification_name is not None:
                continue
            return rule.path is None and rule.module_name == "*" and rule.action is Action.PERMIT
        return False

    def may_access(self, user: str, node: Path, access: Access) -> bool:
        """RFC 8341 §3.4.5: may `user` have `access` to the data node at `node`?"""
        return self._data_decision(user, node, access) is Action.PERMIT

    def subtree_uniform(self, user: str, node: Path, access: Access) -> bool:
        """Whether every descendant of `node` gets the same decision as `node` for `access`:
        then a reader may keep or drop the whole subtree without looking inside."""
        if not self.enabled:
            return True
        for rule in self._rules(user):
            if access not in rule.access:
                continue
            if rule.rpc_name is not None or rule.notification_name is not None:
                continue
            if rule.path is not None and may_reach_below(rule.path, node):
                return False
            if rule.module_name != "*" and (rule.path is None or covers(rule.path, node)):
                return False  # it decides the nodes of one module, which may sit below
        return not any(may_reach_below(deny, node) for deny in DENY_ALL_NODES)

    def permits_subtree(self, user: str, node: Path, access: Access) -> bool:
        """Whether `user` has `access` to `node` and to every node below it, whatever module
        they belong to: then an edit inside the subtree needs no node-by-node check, and a
        reply keeps the subtree whole. Conservative: False whenever a rule might decide some
        descendant otherwise."""
        return self.remembered(
            ("subtree", user, node, access), lambda: self._permits_subtree(user, node, access)
        )

    def _permits_subtree(self, user: str, node: Path, access: Access) -> bool:
        if not self.enabled:
            return True
        for rule in self._rules(user):
            if access not in rule.access:
                continue
            if rule.rpc_name is not None or rule.notification_name is not None:
                continue
            if rule.path is not None and may_reach_below(rule.path, node):
                return False  # it may decide part of the subtree on its own
            if rule.path is not None and not covers(rule.path, node):
                continue  # elsewhere in the tree
            if rule.module_name != "*":
                if rule.action is Action.DENY:
                    return False  # denies that module's nodes, wherever they sit below
                continue  # permits that module's nodes; the others go on to the next rules
            return rule.action is Action.PERMIT  # it decides every node left, /nacm too
        # Every node left falls to the default, but the default-deny-all ones (RFC 8341 §3.2).
        if any(covers(deny, node) or may_reach_below(deny, node) for deny in DENY_ALL_NODES):
            return False
        default = self.read_default if access is Access.READ else self.write_default
        return default is Action.PERMIT

    def _data_decision(self, user: str, node: Path, access: Access) -> Action:
        if not self.enabled or not node:
            return Action.PERMIT
        module = node[-1].module
        for rule in self._rules(user):
            if access not in rule.access or not rule._module_matches(module):
                continue
            if rule.rpc_name is not None or rule.notification_name is not None:
                continue
            if rule.path is None or covers(rule.path, node):
                return rule.action
        if any(covers(deny, node) for deny in DENY_ALL_NODES):
            return Action.DENY
        return self.read_default if access is Access.READ else self.write_default

    def _rules(self, user: str) -> Iterable[Rule]:
        for rules in self.rule_lists_of(user):
            yield from rules.rules


# ---- RFC 7951 JSON ---------------------------------------------------------------------------


def from_json(doc: Mapping[str, Any]) -> Nacm | None:
    """The /nacm of a running configuration in RFC 7951 JSON; None when it has none."""
    data = doc.get(ROOT)
    if data is None:
        return None
    rule_lists = tuple(_rule_list(item) for item in data.get("rule-list", ()))
    groups = tuple(
        (str(group["name"]), tuple(str(user) for user in group.get("user-name", ())))
        for group in data.get("groups", {}).get("group", ())
    )
    return Nacm(
        enabled=bool(data.get("enable-nacm", True)),
        read_default=Action(data.get("read-default", "permit")),
        write_default=Action(data.get("write-default", "deny")),
        exec_default=Action(data.get("exec-default", "permit")),
        groups=groups,
        rule_lists=rule_lists,
    )


def _rule_list(data: Mapping[str, Any]) -> RuleList:
    return RuleList(
        str(data["name"]),
        tuple(str(group) for group in data.get("group", ())),
        tuple(_rule(str(data["name"]), item) for item in data.get("rule", ())),
    )


def _rule(list_name: str, data: Mapping[str, Any]) -> Rule:
    name = str(data["name"])
    path_text = data.get("path")
    path: Path | None = None
    if path_text is not None:
        try:
            path = parse_path(str(path_text))
        except PathError as error:
            raise NacmError(f"rule-list {list_name!r} rule {name!r}: {error}") from error
    operations = str(data.get("access-operations", "*"))
    access = (
        ALL_ACCESS
        if operations.strip() == "*"
        else frozenset(Access(bit) for bit in operations.split())
    )
    return Rule(
        name=name,
        action=Action(data["action"]),
        module_name=str(data.get("module-name", "*")),
        rpc_name=data.get("rpc-name"),
        notification_name=data.get("notification-name"),
        path=path,
        path_text=None if path_text is None else str(path_text),
        access=access,
        comment=str(data.get("comment", "")),
    )


def to_json(nacm: Nacm) -> dict[str, Any]:
    """The RFC 7951 JSON of `nacm` (config only), under its module-qualified name."""
    data: dict[str, Any] = {
        "enable-nacm": nacm.enabled,
        "read-default": nacm.read_default.value,
        "write-default": nacm.write_default.value,
        "exec-default": nacm.exec_default.value,
        "enable-external-groups": False,
        "groups": {
            "group": [
                {"name": name, "user-name": list(users)} if users else {"name": name}
                for name, users in nacm.groups
            ]
        },
        "rule-list": [
            {
                "name": rules.name,
                "group": list(rules.groups),
                "rule": [_rule_json(r) for r in rules.rules],
            }
            for rules in nacm.rule_lists
        ],
    }
    return {ROOT: data}


def _rule_json(rule: Rule) -> dict[str, Any]:
    data: dict[str, Any] = {"name": rule.name, "module-name": rule.module_name}
    if rule.rpc_name is not None:
        data["rpc-name"] = rule.rpc_name
    if rule.notification_name is not None:
        data["notification-name"] = rule.notification_name
    if rule.path_text is not None:
        data["path"] = rule.path_text
    data["access-operations"] = (
        "*" if rule.access == ALL_ACCESS else " ".join(a.value for a in Access if a in rule.access)
    )
    data["action"] = rule.action.value
    if rule.comment:
        data["comment"] = rule.comment
    return data


# ---- the project's standard groups -----------------------------------------------------------

MONITOR = "monitor"  # reads everything but the rules; changes nothing
LINK_OPERATOR = "link-operator"  # reads, and changes the node's links
CONTROLLER = "controller"  # the SDN controller's own account: the whole node tree
ADMIN = "admin"  # everything, the rules included
GROUPS = (MONITOR, LINK_OPERATOR, CONTROLLER, ADMIN)
NODE_MODULE = "etsi-qkd-sdn-node"
_CONFIG_OPERATIONS = (
    "edit-config",
    "copy-config",
    "commit",
    "cancel-commit",
    "discard-changes",
    "lock",
    "unlock",
)


def standard(members: Mapping[str, Iterable[str]]) -> Nacm:
    """The rules every agent starts with: `members` maps each group of GROUPS to its users.

    Reads are permitted by default (/nacm is default-deny-all), writes denied by default;
    each group's rule list opens what it needs.
    """
    unknown = set(members) - set(GROUPS)
    if unknown:
        raise NacmError(f"unknown group(s) {', '.join(sorted(unknown))}: use {', '.join(GROUPS)}")
    node = f"/{NODE_MODULE}:qkd_node"
    write = WRITES
    rule_lists = (
        RuleList(
            "admin",
            (ADMIN,),
            (Rule("permit-all", Action.PERMIT, comment="administrators may do everything"),),
        ),
        RuleList(
            "controller",
            (CONTROLLER,),
            (
                Rule(
                    "node-tree",
                    Action.PERMIT,
                    path=parse_path(node),
                    path_text=node,
                    access=write,
                    comment="the controller installs links and applications",
                ),
            ),
        ),
        RuleList(
            "link-operator",
            (LINK_OPERATOR,),
            (
                Rule(
                    "links",
                    Action.PERMIT,
                    path=parse_path(f"{node}/qkd_links"),
                    path_text=f"{node}/qkd_links",
                    access=write,
                    comment="operators switch and tune links",
                ),
            ),
        ),
        RuleList(
            "monitor",
            (MONITOR,),
            tuple(
                Rule(
                    f"no-{operation}",
                    Action.DENY,
                    module_name=NETCONF_MODULE,
                    rpc_name=operation,
                    access=frozenset({Access.EXEC}),
                    comment="monitoring changes nothing",
                )
                for operation in _CONFIG_OPERATIONS
            ),
        ),
    )
    groups = tuple((group, tuple(sorted(set(members.get(group, ()))))) for group in GROUPS)
    return Nacm(groups=groups, rule_lists=rule_lists)
