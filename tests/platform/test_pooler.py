"""Azure's built-in PgBouncer, end to end on paper: the Terraform postgres module turns it on and says where it
listens, the stack hands the pooled URL to Key Vault, and the chart points TASKFLOW_DATABASE_URL at it and
TASKFLOW_DATABASE_DIRECT_URL at the server, on the Key Vault path and on the chart's own Secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from taskcore.settings import Settings
from tests.platform._support import CHART, ROOT, Rendered, hcl_to_json, helm_env, helm_template, run, values_files
from tests.platform.test_terraform import MODULES, STACK, TF_ENVIRONMENTS, blocks, resources

POOLER_PORT = 6432
WORKLOADS = (("Deployment", "api"), ("Deployment", "worker"), ("Job", "migrate"))


def _database_env(rendered: Rendered, kind: str, component: str) -> dict[str, str]:
    """TASKFLOW_DATABASE_* of the workload's TaskFlow container -> the Secret key each reads; for the
    worker, every pool's Deployment must agree."""
    workloads = list(rendered.pools(kind).values()) if component == "worker" else [rendered.one(kind, component)]
    found = []
    for workload in workloads:
        spec = workload["spec"]["template"]["spec"]
        container = next(c for c in spec["containers"] if c["name"] in {component, "migrate"})
        found.append(
            {
                e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
                for e in container.get("env", [])
                if e["name"].startswith("TASKFLOW_DATABASE")
            }
        )
    assert all(env == found[0] for env in found), f"{rendered.name}: the worker pools disagree: {found}"
    return found[0]


def _postgres_ports(rendered: Rendered, component: str) -> set[int]:
    """Ports of the egress rule that reaches PostgreSQL (the one with 5432)."""
    policy = rendered.one("NetworkPolicy", component)
    for rule in policy["spec"]["egress"]:
        ports = {p["port"] for p in rule["ports"]}
        if 5432 in ports:
            return ports
    raise AssertionError(f"{component}: no egress to PostgreSQL")


def _vault_keys(rendered: Rendered) -> tuple[set[str], set[str]]:
    spc = rendered.of_kind("SecretProviderClass")[0]["spec"]
    objects = {yaml.safe_load(o)["objectAlias"] for o in yaml.safe_load(spc["parameters"]["objects"])["array"]}
    synced = {d["key"] for d in spc["secretObjects"][0]["data"]}
    return objects, synced


def test_with_the_pooler_the_pooled_url_goes_to_pgbouncer_and_sessions_go_direct(
    scenarios: dict[str, Rendered],
) -> None:
    rendered = scenarios["prod-pooler"]
    for kind, component in WORKLOADS:
        assert _database_env(rendered, kind, component) == {
            "TASKFLOW_DATABASE_URL": "database-pooled-url",
            "TASKFLOW_DATABASE_DIRECT_URL": "database-url",
        }, component
        assert _postgres_ports(rendered, component) == {5432, POOLER_PORT}, component
    objects, synced = _vault_keys(rendered)
    assert {"database-url", "database-pooled-url"} <= objects & synced


def test_without_the_pooler_nothing_changes(scenarios: dict[str, Rendered]) -> None:
    rendered = scenarios["prod-azure"]  # the same Key Vault wiring, pooler off
    for kind, component in WORKLOADS:
        assert _database_env(rendered, kind, component) == {"TASKFLOW_DATABASE_URL": "database-url"}, component
        assert _postgres_ports(rendered, component) == {5432}, component
    objects, synced = _vault_keys(rendered)
    # A vault without the pooled URL must still mount: the object is asked for only with the pooler on.
    assert "database-pooled-url" not in objects | synced
    assert "database-url" in objects & synced


def test_the_charts_own_secret_derives_the_pooled_url(tools: dict[str, Path]) -> None:
    direct = "postgresql://taskflow:p%40ss%2Fw0rd@psql-x.postgres.database.azure.com:5432/taskflow?sslmode=require"
    text = helm_template(
        tools["helm"],
        "staging",
        "--values",
        str(CHART / "ci" / "own-secret-values.yaml"),
        "--set",
        "global.postgresql.external.pooler.enabled=true",
        "--set",
        f"global.secrets.databaseUrl={direct}",
    )
    secret = Rendered("own-secret-pooler", text).one("Secret", "secrets")["stringData"]
    assert secret["database-url"] == direct
    pooled, original = urlsplit(secret["database-pooled-url"]), urlsplit(direct)
    assert pooled.port == POOLER_PORT
    assert (pooled.username, pooled.password, pooled.hostname, pooled.path, pooled.query) == (
        original.username,
        original.password,
        original.hostname,
        original.path,
        original.query,
    )


def test_the_pooler_is_refused_with_the_in_cluster_postgresql(tools: dict[str, Path]) -> None:
    files = [arg for f in values_files("dev") for arg in ("--values", str(f))]
    proc = run(
        [
            tools["helm"],
            "template",
            "taskflow",
            CHART,
            *files,
            "--set",
            "global.postgresql.external.pooler.enabled=true",
        ],
        env=helm_env(),
    )
    assert proc.returncode != 0
    assert "global.postgresql.external.pooler" in proc.stderr, proc.stderr


def _doc(docs: dict[Path, dict[str, Any]], path: Path) -> dict[str, Any]:
    return docs[path.resolve()]


def test_terraform_turns_on_azures_pgbouncer_and_hands_out_the_pooled_url(tools: dict[str, Path]) -> None:
    module = MODULES / "postgres"
    files = [module / f for f in ("main.tf", "locals.tf", "outputs.tf", "variables.tf")]
    files += [STACK / f for f in ("main.tf", "locals.tf", "outputs.tf", "variables.tf")]
    docs = hcl_to_json(tools["hcl2tojson"], files)

    configs = {
        body["name"]: body
        for rtype, _, body in resources(_doc(docs, module / "main.tf"))
        if rtype == "azurerm_postgresql_flexible_server_configuration"
    }
    assert configs["pgbouncer.enabled"]["value"] == "true"
    assert configs["pgbouncer.pool_mode"]["value"] == "TRANSACTION"  # what TASKFLOW_DATABASE_DIRECT_URL is for
    for body in configs.values():
        assert "var.pgbouncer_enabled" in str(body["count"])

    locals_ = {k: v for entry in _doc(docs, module / "locals.tf")["locals"] for k, v in entry.items()}
    assert locals_["pooled_port"] == POOLER_PORT
    assert "{local.pooled_port}" in str(locals_["database_pooled_url"])
    outputs = dict(blocks(_doc(docs, module / "outputs.tf"), "output"))
    assert outputs["database_pooled_url"]["sensitive"] is True
    assert "pooled_port" in outputs

    variables = dict(blocks(_doc(docs, module / "variables.tf"), "variable"))
    assert variables["pgbouncer_enabled"]["default"] is False
    assert variables["pgbouncer_default_pool_size"]["default"] == PGBOUNCER_POOL  # what the budget counts
    assert "B_" in str(variables["pgbouncer_enabled"]["validation"])  # Azure has no PgBouncer on Burstable

    stack_call = dict(blocks(_doc(docs, STACK / "main.tf"), "module"))["postgres"]
    assert "local.pgbouncer_enabled" in str(stack_call["pgbouncer_enabled"])
    stack_locals = {k: v for entry in _doc(docs, STACK / "locals.tf")["locals"] for k, v in entry.items()}
    assert "database-pooled-url" in str(stack_locals["secrets"])
    assert "module.postgres.database_pooled_url" in str(stack_locals["secrets"])
    assert "B_" in str(stack_locals["pgbouncer_enabled"])
    stack_outputs = dict(blocks(_doc(docs, STACK / "outputs.tf"), "output"))
    assert "module.postgres.pooled_port" in str(stack_outputs["postgres_pooled_port"]["value"])


def test_the_chart_and_terraform_agree_on_the_port_and_the_secret_name() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["global"]
    assert values["postgresql"]["external"]["pooler"]["port"] == POOLER_PORT
    assert values["secrets"]["keyVault"]["objects"]["database-pooled-url"] == "database-pooled-url"
    assert '"database-pooled-url"' in (STACK / "locals.tf").read_text()
    assert (ROOT / "platform" / "terraform" / "modules" / "postgres" / "locals.tf").read_text().count("6432") == 1


# Azure Database for PostgreSQL flexible server, "Limits" (learn.microsoft.com/azure/postgresql/flexible-server/
# concepts-limits): maximum user connections by compute size at the default max_connections (the total less the 15
# Azure reserves). docs/operations.md#connection-budget quotes the same table.
AZURE_USER_CONNECTIONS = {
    "B1ms": 35,
    "B2s": 414,
    "B2ms": 844,
    "B4ms": 1703,
    "B8ms": 3422,
    "D2ds_v5": 844,
    "D4ds_v5": 1703,
    "D8ds_v5": 3422,
    "D16ds_v5": 4985,
    "E2ds_v5": 1703,
    "E4ds_v5": 3422,
    "E8ds_v5": 4985,
}
# The in-cluster development PostgreSQL keeps 3 of its max_connections for superusers.
SUPERUSER_RESERVED = 3
# What operators, psql and monitoring may take beside TaskFlow.
HEADROOM = 0.8
# Server connections of Azure's PgBouncer per user and database (the module's pgbouncer_default_pool_size).
PGBOUNCER_POOL = 50


def connection_budget(rendered: Rendered) -> int:
    """PostgreSQL connections the rendered release may open at once, with every autoscaler at its maximum and a
    rolling update in flight (docs/operations.md#connection-budget)."""
    config = rendered.one("ConfigMap", "config")["data"]
    pool = int(config.get("TASKFLOW_DB_POOL_MAX_SIZE", Settings.model_fields["db_pool_max_size"].default))
    processes = int(config.get("TASKFLOW_API_WORKERS", Settings.model_fields["api_workers"].default))
    pooled = "TASKFLOW_DATABASE_DIRECT_URL" in _database_env(rendered, "Deployment", "api")
    # Per pod: the API's pool and LISTEN connection per uvicorn process; a worker's pool (its leader lock takes one
    # of those connections). Behind the pooler only the direct ones reach the server, plus PgBouncer's own pool.
    per_pod = {"api": processes * (1 if pooled else pool + 1), "worker": 1 if pooled else pool}
    most = {o["spec"]["scaleTargetRef"]["name"]: o["spec"]["maxReplicaCount"] for o in rendered.of_kind("ScaledObject")}
    most |= {
        o["spec"]["scaleTargetRef"]["name"]: o["spec"]["maxReplicas"]
        for o in rendered.of_kind("HorizontalPodAutoscaler")
    }
    total = 1 + (PGBOUNCER_POOL if pooled else 0)  # the migration Job; PgBouncer's server connections
    for deployment in rendered.of_kind("Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        role = "api" if component == "api" else "worker" if component.startswith("worker") else None
        if role is None:
            continue
        replicas = most.get(deployment["metadata"]["name"], deployment["spec"].get("replicas", 1))
        surge = deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%")
        replicas += -(-replicas * int(surge[:-1]) // 100) if isinstance(surge, str) else surge
        total += replicas * per_pod[role]
    return total


def test_every_environment_fits_its_databases_connections(
    tools: dict[str, Path], scenarios: dict[str, Rendered]
) -> None:
    """The chart's and the environments' replica counts and pool sizes follow from the connection budget: each
    environment, scaled out to its maximum during a rolling update, fits its server's max_connections with room."""
    stack_variables = hcl_to_json(tools["hcl2tojson"], [STACK / "variables.tf"])[(STACK / "variables.tf").resolve()]
    postgres_type = str(dict(blocks(stack_variables, "variable"))["postgres"]["type"])
    default_sku = re.search(r'sku_name\s*=\s*optional\(string,\s*"([^"]+)"\)', postgres_type)
    assert default_sku, postgres_type
    for env in ("dev", "staging", "prod"):
        rendered = scenarios[env]
        in_cluster = [
            s
            for s in rendered.of_kind("StatefulSet")
            if s["metadata"]["labels"]["app.kubernetes.io/component"] == "postgresql"
        ]
        if in_cluster:  # dev: the chart's own server, whose max_connections the chart sets
            args = in_cluster[0]["spec"]["template"]["spec"]["containers"][0]["args"]
            capacity = int(args[args.index("-c") + 1].removeprefix("max_connections=")) - SUPERUSER_RESERVED
        else:
            tfvars = next(iter(hcl_to_json(tools["hcl2tojson"], [TF_ENVIRONMENTS / env / "terraform.tfvars"]).values()))
            sku = tfvars.get("postgres", {}).get("sku_name", default_sku.group(1))
            size = sku.split("_Standard_")[1]
            assert size in AZURE_USER_CONNECTIONS, f"{env}: add {sku}'s connections (Azure's limits page) to the table"
            capacity = AZURE_USER_CONNECTIONS[size]
        budget = connection_budget(rendered)
        assert budget <= HEADROOM * capacity, f"{env}: up to {budget} connections, the server takes {capacity}"
    # Behind the pooler a pod holds one direct connection: the same release needs a fraction of them.
    assert connection_budget(scenarios["prod-pooler"]) < connection_budget(scenarios["prod"]) / 4
