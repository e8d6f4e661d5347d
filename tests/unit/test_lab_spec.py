"""The lab spec: validation with one-line errors, defaults, resolution into spec.json, and
the pure helpers of the simulated nodes (repository, repo files, dpkg-query format, flags,
kubeadm's version-skew refusals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from upgrader.errors import ConfigError
from upgrader_lab import spec as labspec
from upgrader_lab.node import args as nodeargs
from upgrader_lab.node import repo

BRIEF = {
    "version": "v1.27.8",
    "nodes": [
        {"name": "cp-1", "role": "control-plane"},
        {"name": "w-1", "role": "worker", "kubelet": "v1.26.5", "cordoned": True},
    ],
    "faults": [{"node": "w-1", "match": "kubeadm upgrade node", "times": 1, "exit": 1}],
}


def never_busy(_: str) -> bool:
    return False


def resolve(data: dict[str, Any], lab_dir: str = "/labs/a") -> dict[str, Any]:
    return labspec.resolve(labspec.parse_spec(data, "s.yaml"), Path(lab_dir), never_busy)


# --------------------------------------------------------------------------- defaults


def test_empty_spec_is_the_default_lab() -> None:
    out = resolve({})
    assert out["cluster_name"] == "lab"
    assert out["version"] == "v1.27.8"
    assert [(n["name"], n["role"]) for n in out["nodes"]] == [
        ("cp-1", "control-plane"),
        ("w-1", "worker"),
        ("w-2", "worker"),
    ]
    kinds = {(w["kind"], w["name"]) for w in out["workloads"]}
    assert ("DaemonSet", "kube-proxy") in kinds
    web = next(w for w in out["workloads"] if w["name"] == "web")
    assert web["replicas"] == 3 and web["pdb"] == {"maxUnavailable": 1}
    assert out["delays"] == {
        "kubelet_ready": 1.0,
        "package_install": 0.0,
        "pod_termination": 0.2,
        "download": 0.0,
        "command": 0.0,
    }
    assert out["faults"] == [] and out["missing_packages"] == [] and out["rbac"] is None


def test_brief_shape_resolves_with_every_node_field() -> None:
    out = resolve(BRIEF)
    cp, w = out["nodes"]
    assert cp == {
        "name": "cp-1",
        "role": "control-plane",
        "flavor": "debian",
        "os_family": "debian",
        "versionlock": False,
        "kubelet": "v1.27.8",
        "kubeadm": "v1.27.8",
        "kubectl": "v1.27.8",
        "control_plane": "v1.27.8",
        "cordoned": False,
        "address": cp["address"],
        "never_ready": False,
        "runtime": "containerd://1.7.2",
        "cgroup": "v2",
        "labels": {},
        "kubelet_config": {
            "anonymous_auth": False,
            "authorization_mode": "Webhook",
            "read_only_port": 0,
        },
        "repo_minor": "1.27",
        "held": ["kubeadm", "kubectl", "kubelet"],
    }
    assert w["kubelet"] == "v1.26.5" and w["kubeadm"] == "v1.27.8"
    assert w["control_plane"] is None and w["cordoned"] is True
    assert out["faults"] == [
        {
            "node": "w-1",
            "match": "kubeadm upgrade node",
            "times": 1,
            "exit": 1,
            "stderr": None,
            "hang": None,
            "drop": False,
        }
    ]


def test_versions_are_normalised_and_rhel_nodes_hold_nothing() -> None:
    out = resolve(
        {
            "version": "1.28.4",
            "nodes": [{"name": "cp-1", "role": "control-plane", "os_family": "rhel"}],
        }
    )
    assert out["version"] == "v1.28.4"
    assert out["nodes"][0]["held"] == []


def test_unknown_top_level_keys_are_kept() -> None:
    out = resolve({**BRIEF, "notes": {"owner": "qa"}})
    assert out["notes"] == {"owner": "qa"}


def test_faults_of_every_kind_resolve() -> None:
    out = resolve(
        {
            **BRIEF,
            "faults": [
                {"node": "w-1", "match": "apt-get install", "hang": 30},
                {"node": "w-1", "match": "kubeadm upgrade node", "drop": True, "times": 2},
                {
                    "api": {
                        "method": "GET",
                        "path_prefix": "/api/v1/nodes",
                        "status": 503,
                        "times": 3,
                    }
                },
            ],
            "missing_packages": ["1.28.4", "v1.28.3"],
        }
    )
    hang, drop, api = out["faults"]
    assert hang["hang"] == 30 and hang["exit"] is None and hang["drop"] is False
    assert drop["drop"] is True and drop["times"] == 2 and drop["exit"] is None
    assert api == {
        "api": {"method": "GET", "path_prefix": "/api/v1/nodes", "status": 503, "times": 3}
    }
    assert out["missing_packages"] == ["1.28.3", "1.28.4"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"nodes": [{"name": "cp-1", "role": "master"}]}, "s.yaml: nodes[0].role: "),
        (
            {"nodes": [{"name": "cp-1", "role": "control-plane", "colour": 1}]},
            "nodes[0].colour: unknown field",
        ),
        ({"nodes": [{"name": "CP_1", "role": "control-plane"}]}, "nodes[0].name: "),
        ({"version": "1.28"}, "s.yaml: version: invalid version '1.28'"),
        (
            {"nodes": [{"name": "w", "role": "worker"}]},
            "nodes: a lab needs at least one control-plane",
        ),
        (
            {"nodes": [{"name": "a", "role": "control-plane"}, {"name": "a", "role": "worker"}]},
            "nodes[1].name: duplicate node name 'a'",
        ),
        (
            {**BRIEF, "faults": [{"node": "w-9", "match": "x"}]},
            "faults[0].node: no node named 'w-9'",
        ),
        ({**BRIEF, "faults": [{"node": "w-1", "match": "x", "times": 0}]}, "faults[0].times: "),
        (
            {**BRIEF, "faults": [{"node": "w-1", "match": "x", "bogus": 1}]},
            "faults[0].bogus: unknown field",
        ),
        (
            {**BRIEF, "faults": [{"node": "w-1", "match": "x", "drop": True, "exit": 1}]},
            "faults[0]: drop: a dropped session has no exit code",
        ),
        (
            {**BRIEF, "faults": [{"api": {"path_prefix": "/api"}}]},
            "faults[0].api: give exactly one",
        ),
        (
            {**BRIEF, "faults": [{"api": {"path_prefix": "api", "status": 500}}]},
            "faults[0].api.path_prefix",
        ),
        (
            {"missing_packages": ["1.28"]},
            "missing_packages[0]: '1.28' is not a version like 1.28.4",
        ),
        ({"workloads": [{"kind": "Pod", "name": "p"}]}, "workloads[0].node: a bare Pod needs"),
        ({"workloads": [{"kind": "Job", "name": "j"}]}, "workloads[0].kind: "),
        (
            {
                "workloads": [
                    {
                        "kind": "Deployment",
                        "name": "d",
                        "pdb": {"minAvailable": 1, "maxUnavailable": 1},
                    }
                ]
            },
            "workloads[0].pdb: give exactly one of maxUnavailable or minAvailable",
        ),
        (
            {
                "nodes": [
                    {"name": "w", "role": "worker", "control_plane": "v1.27.8"},
                    {"name": "c", "role": "control-plane"},
                ]
            },
            "nodes[0]: control_plane: only control-plane nodes",
        ),
        (
            {"nodes": [{"name": "c", "role": "control-plane", "address": "10.0.0.1"}]},
            "nodes[0].address: ",
        ),
        ([1, 2], "s.yaml: (top level): expected a mapping"),
        ({"etcd": "stacked"}, "etcd: "),
    ],
)
def test_bad_input_is_one_line_naming_the_field(data: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        labspec.parse_spec(data, "s.yaml")
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_load_spec_reports_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        labspec.load_spec(bad)
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        labspec.load_spec(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text("version: v1.29.3\nnodes:\n  - {name: cp-1, role: control-plane}\n")
    assert labspec.load_spec(good).version == "v1.29.3"


def test_from_flags_names_nodes_and_checks_counts() -> None:
    spec = labspec.from_flags(2, 3, "v1.30.1")
    assert [n.name for n in spec.nodes] == ["cp-1", "cp-2", "w-1", "w-2", "w-3"]
    assert spec.version == "v1.30.1"
    with pytest.raises(ConfigError, match="--control-planes"):
        labspec.from_flags(0, 1)
    with pytest.raises(ConfigError, match="--workers"):
        labspec.from_flags(1, -1)
    with pytest.raises(ConfigError, match="--version: invalid version"):
        labspec.from_flags(1, 1, "latest")


# --------------------------------------------------------------------------- addresses


def _addresses(out: dict[str, Any]) -> list[str]:
    return [n["address"] for n in out["nodes"]]


def test_addresses_are_loopback_unique_and_differ_between_lab_dirs() -> None:
    a = _addresses(resolve(BRIEF, "/labs/a"))
    b = _addresses(resolve(BRIEF, "/labs/b"))
    for addr in a + b:
        assert addr.startswith("127.") and not addr.startswith("127.0.")
    assert len(set(a)) == len(a)
    assert not set(a) & set(b)
    assert a == _addresses(resolve(BRIEF, "/labs/a"))  # stable for one directory


def test_a_block_where_something_listens_is_skipped() -> None:
    first = _addresses(resolve(BRIEF, "/labs/a"))
    block = first[0].rsplit(".", 1)[0]
    spec = labspec.parse_spec(BRIEF)
    out = labspec.resolve(spec, Path("/labs/a"), lambda addr: addr.startswith(block + "."))
    assert not any(a.startswith(block + ".") for a in _addresses(out))


def test_large_labs_span_several_blocks_without_duplicates() -> None:
    spec = labspec.from_flags(1, 299)
    addrs = _addresses(labspec.resolve(spec, Path("/labs/big"), never_busy))
    assert len(addrs) == len(set(addrs)) == 300
    assert len({a.rsplit(".", 1)[0] for a in addrs}) == 2


def test_explicit_addresses_are_kept_and_others_avoid_their_block() -> None:
    data = {
        "nodes": [
            {"name": "cp-1", "role": "control-plane", "address": "127.5.5.5"},
            {"name": "w-1", "role": "worker"},
        ]
    }
    cp, w = _addresses(resolve(data))
    assert cp == "127.5.5.5"
    assert not w.startswith("127.5.5.")


# --------------------------------------------------------------------------- node helpers


def test_repository_covers_every_minor_from_1_24_without_missing_versions() -> None:
    r = repo.build_repository(["1.28.4"])
    minors = [tuple(int(x) for x in m.split(".")) for m in r]
    assert minors[0] == (1, 24)
    assert minors == sorted(minors) and len(minors) >= 10
    assert "1.28.3" in r["1.28"] and "1.28.4" not in r["1.28"]
    assert all(v.startswith("1.27.") for v in r["1.27"])
    assert r["1.27"][0] == "1.27.0"


def test_repository_falls_back_without_release_data(tmp_path: Path) -> None:
    r = repo.build_repository([], release_data=tmp_path / "none.json")
    assert list(r)[-1] == "1.33"
    assert r["1.28"][-1] == "1.28.15"


def test_package_version_strings() -> None:
    assert repo.deb_version("v1.28.4") == "1.28.4-1.1"
    assert repo.rpm_version("1.28.4") == "1.28.4-150500.1.1"
    assert repo.upstream_of("1.28.4-150500.1.1") == "1.28.4"


def test_repo_files_round_trip() -> None:
    sections = repo.yum_repo(repo.yum_repo_text("1.30"))
    assert repo.yum_minor(sections["kubernetes"]) == "1.30"
    assert "kubeadm" in sections["kubernetes"]["exclude"].split()


def test_flag_parser_accepts_cobra_and_getopt_forms() -> None:
    p = nodeargs.parse(
        ["upgrade", "apply", "v1.28.4", "-y", "--certificate-renewal=false", "--v", "5", "-ojson"],
        {"--v", "-o"},
        {"-y", "--certificate-renewal"},
    )
    assert p.positional == ["upgrade", "apply", "v1.28.4"]
    assert p.has("-y") and not p.has("--certificate-renewal")
    assert p.get("--v") == "5" and p.get("-o") == "json"
    q = nodeargs.parse(["-qy", "--bogus", "--", "-x"], set(), {"-q", "-y"})
    assert q.has("-q", "-y") and q.unknown == ["--bogus"] and q.positional == ["-x"]


# --------------------------------------------------------------------------- simulated kubeadm


def _policy(
    cluster: str, kubeadm: str, target: str, kubelets: list[str] | None = None, **flags: bool
) -> tuple[list[str], list[str]]:
    from upgrader_lab.node.kubeadm import Ver, version_policy_errors

    return version_policy_errors(
        Ver.parse(cluster),
        Ver.parse(kubeadm),
        Ver.parse(target),
        target,
        kubelets if kubelets is not None else [cluster],
        flags.get("experimental", False),
        flags.get("rc", False),
    )


def test_kubeadm_allows_one_minor_and_same_version_reruns() -> None:
    assert _policy("v1.27.8", "v1.28.4", "v1.28.4") == ([], [])
    assert _policy("v1.28.4", "v1.28.4", "v1.28.4") == ([], [])


def test_kubeadm_mandatory_refusals() -> None:
    mandatory, _ = _policy("v1.26.5", "v1.28.4", "v1.28.4")
    assert mandatory == [
        'Specified version to upgrade to "v1.28.4" is too high; kubeadm can upgrade only 1 '
        "minor version at a time"
    ]
    mandatory, _ = _policy("v1.27.8", "v1.27.8", "v1.28.4")
    assert any(
        "at least one minor release higher than the kubeadm minor release (28 > 27)" in m
        for m in mandatory
    )
    mandatory, _ = _policy("v1.29.1", "v1.29.1", "v1.27.3")
    assert any(
        "is too low; kubeadm can downgrade only 1 minor version at a time" in m for m in mandatory
    )
    mandatory, _ = _policy("v1.28.4", "v1.29.0", "v1.28.0")
    assert any("is equal to or lower than the minimum supported version" in m for m in mandatory)


def test_kubeadm_force_overridable_refusals() -> None:
    mandatory, skippable = _policy("v1.28.1", "v1.28.1", "v1.28.4")
    assert mandatory == []
    assert skippable == [
        'Specified version to upgrade to "v1.28.4" is higher than the kubeadm version '
        '"v1.28.1". Upgrade kubeadm first using the tool you used to install kubeadm'
    ]
    _, skippable = _policy("v1.28.4", "v1.29.0", "v1.28.9")
    assert "Kubeadm version v1.29.0 can only be used to upgrade to Kubernetes version 1.29" in (
        skippable
    )
    _, skippable = _policy("v1.28.4", "v1.29.0-rc.1", "v1.29.0-rc.1")
    assert any("is an unstable version" in s for s in skippable)
    assert _policy("v1.28.4", "v1.29.0-rc.1", "v1.29.0-rc.1", rc=True)[1] == []
    # a pre-release target turns the one-minor-at-a-time refusal into a skippable one
    mandatory, skippable = _policy("v1.27.8", "v1.29.0-rc.1", "v1.29.0-rc.1", experimental=True)
    assert mandatory == [] and any("is too high" in s for s in skippable)


def test_kubeadm_kubelet_skew_depends_on_kubeadm_minor() -> None:
    _, skippable = _policy("v1.27.8", "v1.28.4", "v1.28.4", ["v1.27.8", "v1.26.5"])
    assert skippable == [
        "There are kubelets in this cluster that are too old that have these versions [v1.26.5]"
    ]
    assert _policy("v1.29.4", "v1.30.1", "v1.30.1", ["v1.27.3"])[1] == []
    _, skippable = _policy("v1.29.4", "v1.30.1", "v1.30.1", ["v1.26.3"])
    assert skippable and "too old" in skippable[0]
    _, skippable = _policy("v1.29.4", "v1.30.1", "v1.30.1", ["garbage"])
    assert skippable == ["couldn't parse kubelet version garbage"]


# --------------------------------------------------------------------------- flavors


def test_flavor_sets_os_family_and_os_family_alone_still_means_rhel() -> None:
    out = resolve(
        {
            "nodes": [
                {"name": "cp-1", "role": "control-plane"},
                {"name": "r-1", "role": "worker", "os_family": "rhel"},
                {"name": "f-1", "role": "worker", "flavor": "fedora", "held": ["kubelet"]},
                {"name": "k-1", "role": "worker", "flavor": "kubespray"},
            ]
        }
    )
    got = {
        n["name"]: (n["flavor"], n["os_family"], n["held"], n["versionlock"]) for n in out["nodes"]
    }
    assert got == {
        "cp-1": ("debian", "debian", ["kubeadm", "kubectl", "kubelet"], False),
        "r-1": ("rhel", "rhel", [], False),
        # held on an rpm node means versionlocked: the plugin comes with it
        "f-1": ("fedora", "rhel", ["kubelet"], True),
        # a binary install has no packages to hold
        "k-1": ("kubespray", "debian", [], False),
    }


def test_flavor_and_a_contradicting_os_family_is_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"nodes\[0\]: os_family: 'debian' does not fit flavor"):
        labspec.parse_spec(
            {
                "nodes": [
                    {
                        "name": "cp-1",
                        "role": "control-plane",
                        "flavor": "fedora",
                        "os_family": "debian",
                    }
                ]
            },
            "s.yaml",
        )
    with pytest.raises(ConfigError, match="versionlock: only rpm flavors"):
        labspec.parse_spec(
            {"nodes": [{"name": "cp-1", "role": "control-plane", "versionlock": True}]}, "s.yaml"
        )
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.flavor"):
        labspec.parse_spec({"nodes": [{"name": "cp-1", "role": "control-plane", "flavor": "suse"}]})


def test_lab_up_flavor_flag_applies_to_every_node_without_one() -> None:
    spec = labspec.from_flags(1, 2, flavor="fedora")
    assert {n.flavor_or_default for n in spec.nodes} == {"fedora"}
    mixed = labspec.parse_spec(
        {
            "nodes": [
                {"name": "cp-1", "role": "control-plane"},
                {"name": "w-1", "role": "worker", "os_family": "rhel"},
                {"name": "w-2", "role": "worker", "flavor": "debian"},
            ]
        }
    )
    out = labspec.with_flavor(mixed, "kubespray")
    assert [n.flavor_or_default for n in out.nodes] == ["kubespray", "rhel", "debian"]
    with pytest.raises(ConfigError, match="--flavor: 'arch' is not one of"):
        labspec.from_flags(flavor="arch")


def test_external_etcd_resolves_to_kubeadm_config_endpoints() -> None:
    from upgrader_lab.apiserver import objects as ob
    from upgrader_lab.apiserver import seed
    from upgrader_lab.apiserver.spec import parse_spec as api_spec

    assert labspec.resolve(labspec.parse_spec({}, "s"))["etcd"] == "local"
    resolved = labspec.resolve(labspec.parse_spec({"etcd": "external"}, "s"))
    assert resolved["etcd"] == "external"
    spec = api_spec(resolved, "spec.json")
    assert spec.etcd_external and all(e.startswith("https://") for e in spec.etcd_external)
    objs = seed.initial_objects(spec, 0.0)
    cm = next(
        o for kind, o in objs if kind == "configmaps" and o["metadata"]["name"] == "kubeadm-config"
    )
    import yaml

    cfg = yaml.safe_load(cm["data"]["ClusterConfiguration"])
    assert cfg["etcd"] == ob.etcd_section(spec.etcd_external)
    assert cfg["etcd"]["external"]["endpoints"] == list(spec.etcd_external)
    pods = [o["metadata"]["name"] for kind, o in objs if kind == "pods"]
    assert not any(p.startswith("etcd-") for p in pods) and "kube-apiserver-cp-1" in pods
