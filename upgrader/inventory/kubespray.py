"""Reading a Kubespray (Ansible YAML) inventory as a native inventory document.

Owns the detection of an Ansible YAML inventory, the walk of its groups (``hosts``,
``vars``, ``children``, a group possibly declared in several places), Ansible's variable
precedence for the few variables we use (``all.vars`` < group vars by depth < host vars),
and the mapping to our keys: hosts of ``kube_control_plane`` (or the older ``kube-master``)
are control-plane nodes, other hosts of ``kube_node`` (``kube-node``) are workers;
``ansible_host``/``ansible_user``/``ansible_port``/``ansible_ssh_private_key_file``/
``ansible_become`` (and their ``ansible_ssh_*`` aliases) give the address and SSH settings;
a ``bastion`` host becomes the jump host; ``cluster_name`` (else the file stem) names the
cluster. Every other native setting is an ``upgrader_*`` variable (the table is
``upgrader.core.settings.SETTINGS``): cluster-wide ones in ``all.vars`` only, those a node
may override also in group or host vars; on one level an ``upgrader_*`` variable wins over
the Ansible variable of the same meaning, otherwise the more specific level wins, as in
Ansible. An unknown ``upgrader_*`` variable is an error. It also says where, in the
Kubespray file, each converted value came from, so errors point there.

Must not: read files, evaluate Jinja templates, validate values (the native schema does),
or look at secrets (``ansible_password``, ``ansible_become_password`` are never read).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from upgrader.core.settings import BY_VARIABLE, SETTINGS, Setting
from upgrader.errors import ConfigError
from upgrader.inventory.problems import Loc, LocRenderer, one_line, render_loc

CONTROL_PLANE_GROUPS = ("kube_control_plane", "kube-master", "kube_master")
NODE_GROUPS = ("kube_node", "kube-node")
CLUSTER_GROUPS = ("k8s_cluster", "k8s-cluster")
BASTION_GROUP = "bastion"
_GROUP_KEYS = ("hosts", "vars", "children")
# canonical variable <- the aliases Ansible also accepts (canonical wins on one level)
_ALIASES = {
    "ansible_host": ("ansible_ssh_host",),
    "ansible_user": ("ansible_ssh_user",),
    "ansible_port": ("ansible_ssh_port",),
    "ansible_ssh_private_key_file": ("ansible_private_key_file",),
}
# Ansible variable <- the upgrader_* variable that wins over it on the same level
_UPGRADER_OVER_ANSIBLE: dict[str, str] = {
    s.ansible: s.variable for s in SETTINGS if s.ansible and s.ansible.startswith("ansible_")
}


def _internal(setting: Setting) -> str:
    """The name a setting goes by after the walk (the Ansible one, when there is one)."""
    ansible = setting.ansible or ""
    return ansible if ansible in _UPGRADER_OVER_ANSIBLE else setting.variable


# our node field <- variable (host or group vars; all.vars too for address and labels)
_NODE_VARS = {
    "address": "ansible_host",
    **{s.node_field: _internal(s) for s in SETTINGS if s.node_field is not None},
}
# node fields all.vars sets on every node (a host's or group's value replaces it, as in Ansible)
_FROM_ALL_TOO = frozenset({"address", "labels", "node_env"})
# native (section, key) <- variable, read from all.vars only
_ALL_VARS = {
    (s.key.split(".")[0], s.key.split(".")[1]): _internal(s)
    for s in SETTINGS
    if s.key is not None and s.key != "cluster.name"
}
# variables that only all.vars may hold (cluster-wide settings)
_CLUSTER_ONLY = frozenset(s.variable for s in SETTINGS if s.node_field is None and s.key)
_SECRETISH = ("password", "passphrase", "secret", "token")


def looks_like_ansible(data: Mapping[Any, Any]) -> bool:
    """An Ansible YAML inventory has groups at the top (``all``, ``kube_node``, ...)."""
    if "nodes" in data:
        return False
    groups = ("all", *CONTROL_PLANE_GROUPS, *NODE_GROUPS, *CLUSTER_GROUPS)
    return any(key in data for key in groups)


@dataclass
class _Group:
    hosts: list[str] = field(default_factory=list)
    vars: dict[str, tuple[Any, Loc]] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    depth: int = 0
    loc: Loc = ()


@dataclass
class _Host:
    loc: Loc
    vars: dict[str, tuple[Any, Loc]] = field(default_factory=dict)


class _Walker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, _Host] = {}
        self._members: dict[str, list[str]] = {}
        self._member_sets: dict[str, frozenset[str]] = {}

    def fail(self, loc: Loc, message: str) -> ConfigError:
        return ConfigError(one_line(f"{self.source}: {render_loc(loc)}: {message}"))

    def canonical_vars(self, raw: object, loc: Loc) -> dict[str, tuple[Any, Loc]]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise self.fail(loc, f"expected a mapping of variables, got {type(raw).__name__}")
        out: dict[str, tuple[Any, Loc]] = {}
        for key, value in raw.items():
            if not isinstance(key, str):
                raise self.fail((*loc, str(key)), "variable names must be strings")
            if key.startswith("upgrader_"):
                self.check_upgrader_var(key, (*loc, key), all_vars=loc == ("all", "vars"))
            out[key] = (value, (*loc, key))
        for canonical, aliases in _ALIASES.items():
            for alias in aliases:
                if alias in out:
                    value = out.pop(alias)
                    out.setdefault(canonical, value)
        for ansible, variable in _UPGRADER_OVER_ANSIBLE.items():
            if variable in out:
                out[ansible] = out.pop(variable)
        return out

    def check_upgrader_var(self, name: str, loc: Loc, all_vars: bool) -> None:
        if name not in BY_VARIABLE:
            message = "unknown upgrader_* variable"
            if any(s in name.lower() for s in _SECRETISH) and not name.endswith("_env"):
                message += " (secrets never go in the inventory: name an environment variable"
                message += " with upgrader_ssh_sudo_password_env)"
            else:
                close = difflib.get_close_matches(name, list(BY_VARIABLE), n=1)
                if close:
                    message += f" (did you mean {close[0]}?)"
            raise self.fail(loc, message)
        if not all_vars and (name in _CLUSTER_ONLY or name == "upgrader_cluster_name"):
            raise self.fail(loc, "a cluster-wide setting: only read from all.vars")

    def mapping(
        self, raw: Mapping[Any, Any], key: str, loc: Loc, what: str
    ) -> Mapping[Any, Any] | None:
        """``raw[key]`` when present: a mapping (of ``what``), else a one-line error."""
        value = raw.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise self.fail(
                (*loc, key), f"expected a mapping of {what}, got {type(value).__name__}"
            )
        return value

    def group(self, name: str, raw: object, loc: Loc, depth: int) -> None:
        grp = self.groups.setdefault(name, _Group(depth=depth, loc=loc))
        grp.depth = min(grp.depth, depth)
        if raw is None:
            return
        if not isinstance(raw, Mapping):
            kind = type(raw).__name__
            raise self.fail(loc, f"expected a group (hosts, vars, children), got {kind}")
        for key in raw:
            if key not in _GROUP_KEYS:
                raise self.fail((*loc, str(key)), "unknown key (expected hosts, vars, children)")
        hosts = self.mapping(raw, "hosts", loc, "host names")
        if hosts is not None:
            for host, host_vars in hosts.items():
                hloc: Loc = (*loc, "hosts", str(host))
                if not isinstance(host, str) or not host:
                    raise self.fail(hloc, "host names must be non-empty strings")
                entry = self.hosts.setdefault(host, _Host(loc=hloc))
                entry.vars.update(self.canonical_vars(host_vars, hloc))
                if host not in grp.hosts:
                    grp.hosts.append(host)
        grp.vars.update(self.canonical_vars(raw.get("vars"), (*loc, "vars")))
        children = self.mapping(raw, "children", loc, "group names")
        if children is not None:
            for child, child_raw in children.items():
                if not isinstance(child, str) or not child:
                    raise self.fail((*loc, "children", str(child)), "group names must be strings")
                if child not in grp.children:
                    grp.children.append(child)
                self.group(child, child_raw, (*loc, "children", child), depth + 1)

    def members(self, name: str) -> list[str]:
        """Hosts of ``name`` and of its children, in declaration order (after the walk)."""
        if name in self._members:
            return self._members[name]
        out: list[str] = []
        seen: set[str] = set()

        def visit(group: str) -> None:
            if group in seen or group not in self.groups:
                return
            seen.add(group)
            for host in self.groups[group].hosts:
                if host not in out:
                    out.append(host)
            for child in self.groups[group].children:
                visit(child)

        visit(name)
        self._members[name] = out
        return out

    def member_set(self, name: str) -> frozenset[str]:
        if name not in self._member_sets:
            self._member_sets[name] = frozenset(self.members(name))
        return self._member_sets[name]

    def host_vars(self, host: str) -> tuple[dict[str, tuple[Any, Loc]], set[str]]:
        """Effective variables of ``host`` and the names that came from ``all.vars`` only."""
        merged: dict[str, tuple[Any, Loc]] = {}
        if "all" in self.groups:
            merged.update(self.groups["all"].vars)
        from_all = set(merged)
        ordered = sorted(
            (g for g in self.groups if g != "all"), key=lambda g: (self.groups[g].depth, g)
        )
        for name in ordered:
            if host in self.member_set(name):
                merged.update(self.groups[name].vars)
                from_all -= set(self.groups[name].vars)
        merged.update(self.hosts[host].vars)
        from_all -= set(self.hosts[host].vars)
        return merged, from_all


def _scalar(walker: _Walker, var: tuple[Any, Loc], want_int: bool = False) -> Any:
    value, loc = var
    if isinstance(value, str) and "{{" in value:
        raise walker.fail(loc, "uses Jinja templating, which upgrader does not evaluate")
    if isinstance(value, Mapping):  # upgrader_node_labels, upgrader_node_env
        for key, item in value.items():
            _scalar(walker, (item, (*loc, str(key))))
    if want_int and isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _roles(walker: _Walker) -> dict[str, str]:
    """host -> role, in order: control planes first, then the workers."""
    cp_groups = [g for g in CONTROL_PLANE_GROUPS if g in walker.groups]
    node_groups = [g for g in NODE_GROUPS if g in walker.groups]
    top: Loc = ("all", "children") if "all" in walker.groups else ()
    if not cp_groups:
        raise walker.fail(top, "no kube_control_plane (or kube-master) group")
    ordered: dict[str, str] = {}
    for grp in cp_groups:
        for host in walker.members(grp):
            ordered.setdefault(host, "control-plane")
    if not ordered:
        raise walker.fail(walker.groups[cp_groups[0]].loc, "no hosts in this group")
    for grp in node_groups:
        for host in walker.members(grp):
            ordered.setdefault(host, "worker")
    return ordered


def _sections(walker: _Walker, origins: dict[Loc, Loc]) -> dict[str, dict[str, Any]]:
    """The native sections from ``all.vars``'s ``upgrader_*`` variables, and the jump
    host from the bastion group (``upgrader_ssh_jump_host`` wins over it)."""
    all_vars = walker.groups["all"].vars if "all" in walker.groups else {}
    sections: dict[str, dict[str, Any]] = {
        "kubeconfig": {},
        "ssh": {},
        "packages": {},
        "kubeadm": {},
        "drain": {},
        "workers": {},
        "images": {},
    }
    for (section, key), var in _ALL_VARS.items():
        if var in all_vars:
            sections[section][key] = _scalar(
                walker, all_vars[var], want_int=key in ("port", "max_unavailable_per_group")
            )
            origins[(section, key)] = all_vars[var][1]
    ssh = sections["ssh"]
    bastions = walker.members(BASTION_GROUP)
    if bastions and "jump_host" not in ssh:
        bvars, _ = walker.host_vars(bastions[0])
        host = _scalar(walker, bvars["ansible_host"]) if "ansible_host" in bvars else bastions[0]
        spec = str(host)
        if ":" in spec:
            spec = f"[{spec}]"
        if "ansible_user" in bvars:
            spec = f"{_scalar(walker, bvars['ansible_user'])}@{spec}"
        if "ansible_port" in bvars:
            spec = f"{spec}:{_scalar(walker, bvars['ansible_port'])}"
        ssh["jump_host"] = spec
        origins[("ssh", "jump_host")] = walker.hosts[bastions[0]].loc
    return sections


def _node(
    walker: _Walker, host: str, role: str, index: int, origins: dict[Loc, Loc]
) -> dict[str, Any]:
    """The native ``nodes[index]`` entry of ``host`` (its host and group vars)."""
    hvars, from_all = walker.host_vars(host)
    hloc = walker.hosts[host].loc
    node: dict[str, Any] = {"name": host, "address": host, "role": role}
    for field_ in ((), ("name",), ("role",), ("address",)):
        origins[("nodes", index, *field_)] = hloc
    if "kube_override_hostname" in hvars:
        node["name"] = _scalar(walker, hvars["kube_override_hostname"])
        origins[("nodes", index, "name")] = hvars["kube_override_hostname"][1]
    for key, var in _NODE_VARS.items():
        if var in hvars and (key in _FROM_ALL_TOO or var not in from_all):
            value = _scalar(walker, hvars[var], want_int=key == "port")
            if "." in key:  # a nested node field (drain.fallback)
                outer, inner = key.split(".", 1)
                node.setdefault(outer, {})[inner] = value
                origins[("nodes", index, outer, inner)] = hvars[var][1]
            else:
                node[key] = value
                origins[("nodes", index, key)] = hvars[var][1]
    return node


@dataclass
class Converted:
    """A native inventory dict, and how to name its fields in the Kubespray file."""

    data: dict[str, Any]
    render: LocRenderer


def convert(data: Mapping[Any, Any], stem: str, source: str) -> Converted:
    walker = _Walker(source)
    for name, raw in data.items():
        if not isinstance(name, str):
            raise walker.fail((str(name),), "group names must be strings")
        walker.group(name, raw, (name,), 0 if name == "all" else 1)
    ordered = _roles(walker)
    origins: dict[Loc, Loc] = {}
    sections = _sections(walker, origins)
    nodes = [
        _node(walker, host, role, index, origins)
        for index, (host, role) in enumerate(ordered.items())
    ]

    cluster_name: Any = stem
    name_groups = ("all", *CLUSTER_GROUPS)
    for grp, var in [("all", "upgrader_cluster_name")] + [(g, "cluster_name") for g in name_groups]:
        if grp in walker.groups and var in walker.groups[grp].vars:
            name_var = walker.groups[grp].vars[var]
            cluster_name = _scalar(walker, name_var)
            origins[("cluster", "name")] = name_var[1]
            break

    native: dict[str, Any] = {"cluster": {"name": cluster_name}, "nodes": nodes}
    for section, values in sections.items():
        if values:
            native[section] = values
    top_loc: Loc = ("all",) if "all" in walker.groups else ()

    def render(loc: Loc) -> str:
        for cut in range(len(loc), 0, -1):
            origin = origins.get(loc[:cut])
            if origin is not None:
                rest = loc[cut:]
                return render_loc((*origin, *rest))
        if loc[:1] == ("cluster",):
            return "cluster name (taken from the file name; set cluster_name in all.vars)"
        return render_loc(top_loc or loc)

    return Converted(native, render)
