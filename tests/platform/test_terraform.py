"""platform/terraform, offline: every file parses (python-hcl2), every module call passes what the module needs and
nothing else, variables are typed, described and validated, outputs that carry a secret are sensitive, the
environments' backend and tfvars agree with the stack, `terraform fmt` and checkov pass.

`terraform validate` and `plan` need the azurerm provider, which cannot be downloaded here: the infra workflow
runs them. With a real Terraform (>= 1.9) on the machine, `terraform init -backend=false` checks the module graph
(every module source, every file loads, one provider version range); with only the bundled 1.0.3 that test skips.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_tools import TERRAFORM_MIN, terraform_version
from tests.platform._support import (
    ENV_NAMES,
    ENVIRONMENTS,
    ROOT,
    checkov_findings,
    checkov_skips,
    explain,
    hcl_to_json,
    run,
    unexplained_and_stale,
)

pytestmark = pytest.mark.timeout(600)  # checkov takes ~15 s, more on a loaded machine or a cold install

TERRAFORM = ROOT / "platform" / "terraform"
MODULES = TERRAFORM / "modules"
STACK = TERRAFORM / "stack"
# Each environment's Terraform overlay (terraform.tfvars, backend.hcl) lives with its Helm overlay.
TF_ENVIRONMENTS = ENVIRONMENTS
TF_ENV_FILES = ("backend.hcl", "terraform.tfvars")
MODULE_NAMES = ("network", "registry", "aks", "postgres", "redis", "storage", "keyvault", "monitoring")
MODULE_FILES = (
    "terraform.tf",
    "main.tf",
    "variables.tf",
    "outputs.tf",
    "locals.tf",
    "README.md",
    "examples/basic/main.tf",
)
# What the deploy workflow reads from `terraform output`: the names are a contract.
STACK_OUTPUTS = {
    "resource_group_name",
    "acr_name",
    "acr_login_server",
    "aks_cluster_name",
    "key_vault_name",
    "key_vault_uri",
    "key_vault_secrets_provider_client_id",
    "tenant_id",
    "api_identity_client_id",
    "worker_identity_client_id",
    "postgres_fqdn",
    "redis_hostname",
    "oidc_issuer_url",
}
BACKEND_KEYS = {"resource_group_name", "storage_account_name", "container_name", "key", "use_azuread_auth"}
META_ARGUMENTS = {"source", "version", "providers", "depends_on", "count", "for_each"}
# An output is secret by its name or by what it returns.
SECRET_NAME = re.compile(r"password|secret|connection_string|access_key|(^|_)key$|kube_?config|_url$|token", re.I)
SECRET_VALUE = re.compile(
    r"random_password\.|_access_key|connection_string|kube_(admin_)?config|database_url|redis_url"
)
NOT_SECRET_URLS = {"oidc_issuer_url", "key_vault_uri", "vault_uri"}
REFERENCE = re.compile(r"_(id|ids|uri|name|names)$")  # points at a secret, is none
# Variables whose values Azure constrains (names, SKUs, versions, zones, ranges, retention): they need a validation.
RESTRICTED = re.compile(
    r"^(name|environment|address_space)$|(sku|sku_name|sku_tier|_version|zone|zones|_days|_type|_channel"
    r"|_policy|capacity|storage_mb|ip_ranges)$"
)


@dataclass(frozen=True)
class Variable:
    name: str
    block: dict[str, Any]

    @property
    def required(self) -> bool:
        return "default" not in self.block


class Tree:
    """Parsed HCL documents by absolute path, and what the checks ask of them."""

    def __init__(self, docs: dict[Path, dict[str, Any]]) -> None:
        self.docs = docs

    def tf_docs(self, directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
        for path, doc in sorted(self.docs.items()):
            if path.parent == directory.resolve() and path.suffix == ".tf":
                yield path, doc

    def variables(self, directory: Path) -> list[Variable]:
        return [Variable(n, b) for _, doc in self.tf_docs(directory) for n, b in blocks(doc, "variable")]

    def outputs(self, directory: Path) -> dict[str, dict[str, Any]]:
        return {n: b for _, doc in self.tf_docs(directory) for n, b in blocks(doc, "output")}

    def module_call_problems(self, caller: Path) -> list[str]:
        """Every module call in `caller` passes each required variable of the called module, and no unknown one."""
        problems = []
        for path, doc in self.tf_docs(caller):
            for name, call in blocks(doc, "module"):
                where = f"{_shown(path)}: module {name}"
                target = (caller / str(call.get("source", ""))).resolve()
                declared = self.variables(target)
                if not declared:
                    problems.append(f"{where}: source {call.get('source')} has no variables (missing?)")
                    continue
                given = set(call) - META_ARGUMENTS - {"__is_block__"}
                required = {v.name for v in declared if v.required}
                missing, unknown = required - given, given - {v.name for v in declared}
                problems += [f"{where}: required variable {v} not passed" for v in sorted(missing)]
                problems += [f"{where}: passes {v}, which the module does not declare" for v in sorted(unknown)]
        return problems


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, body) of every `kind` block (variable, output, module) of a parsed document."""
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            if label != "__is_block__":
                yield label, body


def resources(doc: dict[str, Any], kind: str = "resource") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every resource (or data source) of a parsed document."""
    for entry in doc.get(kind, []):
        for rtype, named in entry.items():
            for name, body in named.items():
                if name != "__is_block__":
                    yield rtype, name, body


def variable_order_problems(variables: list[Variable]) -> list[str]:
    """Required variables first, then optional ones, each group in alphabetical order."""
    names = [v.name for v in variables]
    expected = sorted(v.name for v in variables if v.required) + sorted(v.name for v in variables if not v.required)
    return [] if names == expected else [f"variables in {names}, expected {expected}"]


def variable_problems(variables: list[Variable]) -> list[str]:
    problems = []
    for v in variables:
        if not str(v.block.get("description", "")).strip():
            problems.append(f"{v.name}: no description")
        if "type" not in v.block:
            problems.append(f"{v.name}: no type")
        if RESTRICTED.search(v.name) and v.name != "resource_group_name" and not v.block.get("validation"):
            problems.append(f"{v.name}: a restricted value without a validation block")
    return problems + variable_order_problems(variables)


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split an HCL expression on `sep` outside brackets and strings."""
    parts, depth, quoted, current = [], 0, False, ""
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()] if current.strip() else parts


def object_attributes(type_expr: str) -> dict[str, tuple[str, Any]] | None:
    """The attributes of an object(...) type: name => (its type, its optional() default or ...); None if no object."""
    expr = type_expr.strip()
    if expr.startswith("${") and expr.endswith("}"):
        expr = expr[2:-1].strip()
    match = re.fullmatch(r"object\(\{(.*)\}\)", expr, flags=re.S)
    if not match:
        return None
    attributes: dict[str, tuple[str, Any]] = {}
    for part in _split_top_level(match.group(1)):
        name, _, attr_type = part.partition("=")
        attr_type, default = attr_type.strip(), ...
        optional = re.fullmatch(r"optional\((.*)\)", attr_type, flags=re.S)
        if optional:
            args = _split_top_level(optional.group(1))
            attr_type = args[0]
            if len(args) > 1:
                try:
                    default = json.loads(args[1])
                except json.JSONDecodeError:
                    default = ...
        attributes[name.strip()] = (attr_type, default)
    return attributes


def tfvars_problems(value: Any, type_expr: str, path: str) -> list[str]:
    """Keys a tfvars object sets that its variable's type does not have, and values equal to the type's default."""
    attributes = object_attributes(type_expr)
    if attributes is None or not isinstance(value, dict):
        return []
    problems = []
    for key, item in value.items():
        if key not in attributes:
            problems.append(f"{path}.{key}: not an attribute of the variable's type")
            continue
        attr_type, default = attributes[key]
        if default is not ... and item == default:
            problems.append(f"{path}.{key} = {item!r} repeats the default")
        problems += tfvars_problems(item, attr_type, f"{path}.{key}")
    return problems


@pytest.fixture(scope="session")
def tf(tools: dict[str, Path]) -> Tree:
    """Every .tf, .tfvars and .hcl file under platform/terraform and environments/, parsed by one hcl2tojson run."""
    files = [p for pattern in ("*.tf", "*.tfvars", "*.hcl") for p in TERRAFORM.rglob(pattern)]
    assert len(files) > 50, f"platform/terraform holds only {len(files)} HCL files"
    files += [p for pattern in ("*.tfvars", "*.hcl") for p in TF_ENVIRONMENTS.rglob(pattern)]
    return Tree(hcl_to_json(tools["hcl2tojson"], files))


def caller_dirs() -> list[Path]:
    return [STACK, *(MODULES / m / "examples" / "basic" for m in MODULE_NAMES)]


def test_every_file_parses(tf: Tree) -> None:
    """hcl_to_json fails on any file python-hcl2 cannot parse; here, every file has come back with content."""
    empty = [str(p.relative_to(ROOT)) for p, doc in tf.docs.items() if not doc]
    assert not empty, f"parsed to nothing: {empty}"


def test_modules_have_the_standard_layout(tf: Tree) -> None:
    assert sorted(p.name for p in MODULES.iterdir()) == sorted(MODULE_NAMES)
    for module in MODULE_NAMES:
        missing = [f for f in MODULE_FILES if not (MODULES / module / f).is_file()]
        assert not missing, f"modules/{module} lacks {missing}"
        main = tf.docs[(MODULES / module / "main.tf").resolve()]
        assert any(name == "this" for _, name, _ in resources(main)), f"modules/{module}: no primary resource `this`"
        # variables in variables.tf, outputs in outputs.tf, nothing else declares them.
        for path, doc in tf.tf_docs(MODULES / module):
            for kind in ("variable", "output"):
                if path.name != f"{kind}s.tf":
                    assert not list(blocks(doc, kind)), f"modules/{module}/{path.name} declares a {kind}"


def test_module_readmes_document_inputs_and_outputs(tf: Tree) -> None:
    for module in MODULE_NAMES:
        readme = (MODULES / module / "README.md").read_text()
        names = [v.name for v in tf.variables(MODULES / module)] + list(tf.outputs(MODULES / module))
        undocumented = [n for n in names if f"`{n}`" not in readme]
        assert not undocumented, f"modules/{module}/README.md does not mention {undocumented}"


def test_module_calls_pass_every_required_variable_and_no_unknown_one(tf: Tree) -> None:
    problems = [p for caller in caller_dirs() for p in tf.module_call_problems(caller)]
    assert not problems, "\n".join(problems)
    # The stack calls every module, each example calls its own.
    called = {str(call["source"]) for _, doc in tf.tf_docs(STACK) for _, call in blocks(doc, "module")}
    assert called == {f"../modules/{m}" for m in MODULE_NAMES}
    for module in MODULE_NAMES:
        example = MODULES / module / "examples" / "basic"
        sources = [str(call["source"]) for _, doc in tf.tf_docs(example) for _, call in blocks(doc, "module")]
        assert sources == ["../.."], f"modules/{module}/examples/basic calls {sources}"


def test_variables_are_typed_described_ordered_and_validated(tf: Tree) -> None:
    problems = []
    for directory in (STACK, *(MODULES / m for m in MODULE_NAMES)):
        variables = tf.variables(directory)
        assert variables, f"{directory.relative_to(ROOT)} declares no variables"
        problems += [f"{directory.relative_to(TERRAFORM)}: {p}" for p in variable_problems(variables)]
    assert not problems, "\n".join(problems)


def test_outputs_are_described_and_secrets_sensitive(tf: Tree) -> None:
    problems = []
    for directory in (STACK, *(MODULES / m for m in MODULE_NAMES)):
        for name, output in tf.outputs(directory).items():
            where = f"{directory.relative_to(TERRAFORM)}: output {name}"
            if not str(output.get("description", "")).strip():
                problems.append(f"{where}: no description")
            secret = (
                SECRET_NAME.search(name) and name not in NOT_SECRET_URLS and not REFERENCE.search(name)
            ) or SECRET_VALUE.search(str(output.get("value", "")))
            if secret and output.get("sensitive") is not True:
                problems.append(f"{where}: carries a secret but is not sensitive")
    assert not problems, "\n".join(problems)
    stack_outputs = set(tf.outputs(STACK))
    assert stack_outputs >= STACK_OUTPUTS, f"the stack lacks outputs {STACK_OUTPUTS - stack_outputs}"


def test_versions_are_pinned(tf: Tree) -> None:
    for directory in (STACK, *(MODULES / m for m in MODULE_NAMES)):
        where = directory.relative_to(TERRAFORM)
        settings = [t for _, doc in tf.tf_docs(directory) for t in doc.get("terraform", [])]
        assert len(settings) == 1, f"{where}: one terraform block, found {len(settings)}"
        assert settings[0]["required_version"] == ">= 1.9", where
        pins = {name: spec for entry in settings[0]["required_providers"] for name, spec in entry.items()}
        pins.pop("__is_block__", None)
        assert re.fullmatch(r"~> 4\.\d+", pins["azurerm"]["version"]), f"{where}: azurerm {pins['azurerm']}"
        for name, spec in pins.items():
            assert spec["source"] == f"hashicorp/{name}", f"{where}: {name} from {spec['source']}"
            assert spec["version"].startswith("~> "), f"{where}: {name} pinned {spec['version']}"
        used = {
            rtype.split("_")[0]
            for _, doc in tf.tf_docs(directory)
            for kind in ("resource", "data")
            for rtype, _, _ in resources(doc, kind)
        }
        assert used <= set(pins), f"{where}: providers used but not pinned: {used - set(pins)}"
    stack_settings = next(t for _, doc in tf.tf_docs(STACK) for t in doc.get("terraform", []))
    backend = stack_settings["backend"][0]
    assert set(backend) - {"__is_block__"} == {"azurerm"}, backend
    assert set(backend["azurerm"]) == {"__is_block__"}, "the backend is configured by -backend-config only"


def test_environments_have_a_backend_each(tf: Tree) -> None:
    keys = set()
    for env in ENV_NAMES:
        backend = tf.docs[(TF_ENVIRONMENTS / env / "backend.hcl").resolve()]
        assert set(backend) == BACKEND_KEYS, f"{env}/backend.hcl: {sorted(backend)}"
        assert backend["key"] == f"taskflow-{env}.tfstate"
        assert backend["use_azuread_auth"] is True
        keys.add(backend["key"])
    assert len(keys) == len(ENV_NAMES), "every environment has a state of its own"
    with_terraform = {p.parent.name for name in TF_ENV_FILES for p in TF_ENVIRONMENTS.glob(f"*/{name}")}
    assert with_terraform == set(ENV_NAMES), f"environments with Terraform files: {sorted(with_terraform)}"
    # One tree of environments: nothing per-environment is left among the reusable modules.
    assert not (TERRAFORM / "environments").exists()
    assert not [p for p in TERRAFORM.rglob("*") if p.suffix in {".tfvars"} or p.name == "backend.hcl"]


def test_tfvars_carry_only_differences_the_stack_declares(tf: Tree) -> None:
    variables = {v.name: v for v in tf.variables(STACK)}
    problems = []
    for env in ENV_NAMES:
        tfvars = tf.docs[(TF_ENVIRONMENTS / env / "terraform.tfvars").resolve()]
        assert tfvars.get("environment") == env, (
            f"{env}/terraform.tfvars sets environment = {tfvars.get('environment')}"
        )
        for key, value in tfvars.items():
            where = f"{env}/terraform.tfvars: {key}"
            if key not in variables:
                problems.append(f"{where}: the stack declares no such variable")
                continue
            if SECRET_NAME.search(key):
                problems.append(f"{where}: secrets are generated, never set in tfvars")
            block = variables[key].block
            if "default" in block and block["default"] == value:
                problems.append(f"{where}: repeats the stack's default")
            problems += tfvars_problems(value, str(block["type"]), where)
    assert not problems, "\n".join(problems)


def test_prod_is_highly_available_across_zones(tf: Tree) -> None:
    prod = tf.docs[(TF_ENVIRONMENTS / "prod" / "terraform.tfvars").resolve()]
    assert prod["postgres"]["high_availability"] is True
    assert prod["postgres"]["zone"] in {"1", "2", "3"}
    assert prod["postgres"]["geo_redundant_backup_enabled"] is True
    assert sorted(prod["aks"]["zones"]) == ["1", "2", "3"]
    assert sorted(prod["redis"]["zones"]) == ["1", "2", "3"]
    assert prod["redis"]["sku_name"] == "Premium"
    assert prod["aks"]["system_node_pool"]["min_count"] >= 3, "at least one system node per zone"
    for env in ("dev", "staging"):
        tfvars = tf.docs[(TF_ENVIRONMENTS / env / "terraform.tfvars").resolve()]
        assert not tfvars.get("postgres", {}).get("high_availability"), f"{env} pays for a standby"


def test_subnets_are_the_ones_the_chart_allows(tf: Tree) -> None:
    """The chart's network policies (environments/<env>/values.yaml over base) let pods reach PostgreSQL and Redis in
    the subnets the stack carves out of each environment's address space: x.x.2.0/24 and x.x.3.0/24."""
    variables = {v.name: v for v in tf.variables(STACK)}
    base = yaml.safe_load((ENVIRONMENTS / "base" / "values.yaml").read_text())["global"]["networkPolicy"]
    for env in ("staging", "prod"):  # dev runs in-cluster PostgreSQL and Redis
        tfvars = tf.docs[(TF_ENVIRONMENTS / env / "terraform.tfvars").resolve()]
        space = ipaddress.ip_network(tfvars.get("address_space", variables["address_space"].block["default"]))
        subnets = list(space.subnets(new_prefix=24))
        overlay = yaml.safe_load((ENVIRONMENTS / env / "values.yaml").read_text()) or {}
        policy = {**base, **overlay.get("global", {}).get("networkPolicy", {})}
        assert policy["postgresql"]["to"] == [{"ipBlock": {"cidr": str(subnets[2])}}], env
        assert policy["redis"]["to"] == [{"ipBlock": {"cidr": str(subnets[3])}}], env
    main = "\n".join((STACK / f).read_text() for f in ("locals.tf", "main.tf"))
    assert "cidrsubnet(var.address_space, 8, 2)" in main
    assert "cidrsubnet(var.address_space, 8, 3)" in main


def test_terraform_fmt(tools: dict[str, Path]) -> None:
    for tree in (TERRAFORM, TF_ENVIRONMENTS):
        proc = run([tools["terraform"], "fmt", "-check", "-recursive", "-diff", tree])
        assert proc.returncode == 0, explain(proc)


# An empty provider mirror: `terraform init` then never reaches a registry, here or on a runner, and stops exactly
# at the provider download — after it has installed the module tree and loaded every file of every module.
NO_REGISTRY_RC = 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n'
PROVIDER_DOWNLOAD_ERROR = "Error: Failed to query available provider packages"


def test_terraform_init_loads_the_module_graph(tools: dict[str, Path], tmp_path: Path) -> None:
    """`terraform init -backend=false` (a real Terraform >= 1.9) on the stack and every module's example: each
    module source resolves, every file of every module loads, and the module tree asks for one version range per
    provider. `validate` and `plan` need the azurerm provider's schema and run in the infra workflow only."""
    version = terraform_version(tools["terraform"])
    if version is None or version < TERRAFORM_MIN:
        pytest.skip(
            f"no Terraform >= {'.'.join(map(str, TERRAFORM_MIN))} here (only {tools['terraform']}, "
            f"version {version}): terraform init needs one; the infra workflow installs it"
        )
    tree = tmp_path / "terraform"  # a copy: init writes .terraform/ and a lock file next to the configuration
    shutil.copytree(TERRAFORM, tree)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "terraformrc").write_text(NO_REGISTRY_RC % (tmp_path / "mirror"))
    env = {
        **os.environ,
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_CONFIG_FILE": str(tmp_path / "terraformrc"),
    }
    expected_modules = {"stack": set(MODULE_NAMES)} | {f"modules/{m}/examples/basic": {m} for m in MODULE_NAMES}
    for where, modules in expected_modules.items():
        directory = tree / where
        proc = run([tools["terraform"], f"-chdir={directory}", "init", "-backend=false", "-input=false", "-no-color"],
                   env=env, timeout=120)  # fmt: skip
        output = proc.stdout + proc.stderr
        errors = [line.strip() for line in output.splitlines() if line.strip().startswith("Error:")]
        assert set(errors) == {PROVIDER_DOWNLOAD_ERROR}, f"{where}: {explain(proc)}"
        installed = json.loads((directory / ".terraform" / "modules" / "modules.json").read_text())["Modules"]
        calls = {m["Key"] for m in installed if m["Key"]}
        assert {c for c in calls if "." not in c} >= modules, f"{where}: modules installed: {sorted(calls)}"
        ranges = dict(re.findall(r'- Finding (\S+) versions matching "([^"]+)"', output))
        assert "hashicorp/azurerm" in ranges, f"{where}: {output}"
        split = {provider: r.split(", ") for provider, r in ranges.items()}
        assert all(len(r) == 1 for r in split.values()), f"{where}: modules disagree on provider versions: {split}"


def test_checkov_finds_nothing_but_the_listed_skips(tools: dict[str, Path]) -> None:
    proc = run(
        [tools["checkov"], "--skip-download", "--quiet", "--compact", "--output", "json", "--directory", TERRAFORM,
         "--framework", "terraform"],
        timeout=600,
    )  # fmt: skip
    assert proc.returncode in (0, 1), explain(proc)
    findings, scanned = checkov_findings(json.loads(proc.stdout))
    assert scanned.get("terraform", 0) > 50, f"checkov scanned too little: {scanned}"
    skips = checkov_skips("terraform")
    for skip in skips:
        assert len(skip.get("reason", "")) > 40, f"{skip['check']}: every skip says why"
    unexplained, stale = unexplained_and_stale(findings, skips)
    assert not unexplained, (
        "checkov findings not in platform/checkov-skips.yaml (fix them, or list them with framework: terraform and "
        "a reason):\n" + "\n".join(unexplained)
    )
    assert not stale, "terraform skips that match no finding any more (remove them):\n" + "\n".join(stale)


# The checks themselves can fail: run them on small modules written here, parsed by the real hcl2tojson.
BROKEN_MODULE = """
variable "zone" {
  type    = string
  default = "1"
}

variable "name" {
  description = "Name."
  type        = string
}

variable "size" {
  description = "Size."
  default     = 1
}
"""
BROKEN_CALLER = """
module "broken" {
  source = "../mod"
  size   = 2
  colour = "blue"
}
"""


def test_the_checks_catch_a_broken_module(tools: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "mod").mkdir()
    (tmp_path / "caller").mkdir()
    (tmp_path / "mod" / "variables.tf").write_text(BROKEN_MODULE)
    (tmp_path / "caller" / "main.tf").write_text(BROKEN_CALLER)
    tree = Tree(hcl_to_json(tools["hcl2tojson"], [tmp_path / "mod" / "variables.tf", tmp_path / "caller" / "main.tf"]))

    call_problems = tree.module_call_problems(tmp_path / "caller")
    assert any("required variable name not passed" in p for p in call_problems), call_problems
    assert any("passes colour" in p for p in call_problems), call_problems
    assert len(call_problems) == 2, call_problems

    problems = variable_problems(tree.variables(tmp_path / "mod"))
    assert "zone: no description" in problems
    assert "zone: a restricted value without a validation block" in problems
    assert "size: no type" in problems
    assert any(p.startswith("variables in ['zone', 'name', 'size']") for p in problems), problems


def test_the_checks_catch_bad_tfvars() -> None:
    type_expr = (
        '${object({sku = optional(string, "Standard"), pool = optional(object({min = optional(number, 1)}), {})})}'
    )
    assert tfvars_problems({"sku": "Premium", "pool": {"min": 3}}, type_expr, "x") == []
    assert tfvars_problems({"sku": "Standard", "pool": {"min": 1, "max": 2}}, type_expr, "x") == [
        "x.sku = 'Standard' repeats the default",
        "x.pool.min = 1 repeats the default",
        "x.pool.max: not an attribute of the variable's type",
    ]
