"""`make scale-test`: does per-pool autoscaling do what the chart promises?

The Helm chart rendered for an environment (`--env`) gives each worker pool's policy: its
queues and weights, concurrency, bounds, the load one replica holds (concurrency x
targetUtilisation), polling interval, scale-down window and cooldown. A Locust ramp
(idle → burst → idle) submits short tasks into the first pool's queues and long ones into
the others' while one autoscaler loop per pool does what KEDA does with the pool's
ScaledObject: every `pollingInterval` it reads `load` (due + running) from
GET /api/v1/load?queue=… for the pool's queues, wants `ceil(load / target)` replicas within
[min, max], scales up at once, scales down only to the highest wish of the stabilization
window, and from 1 to 0 only after `cooldownPeriod` without load — by starting and stopping
real `taskflow-worker` processes with the pool's TASKFLOW_WORKER_QUEUES and
TASKFLOW_WORKER_CONCURRENCY (SIGTERM on scale-down).

It records each pool's load, replicas, running tasks and throughput, draws them (PNG), and
passes only if, per pool, replicas rose within two polling intervals of the load exceeding
what the minimum holds, returned to the minimum after the window (or cooldown), never fell
below what the pool's running tasks need (the point of counting `running`), and throughput
rose with replicas; no task ran on a worker of a pool that does not consume its queue; and
every task submitted finished exactly once (succeeded, on its first attempt), in the queue
it was submitted to.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import orjson
import yaml

from loadtest.procs import System, provisioned, stop

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CHART = ROOT / "platform" / "helm" / "taskflow"
POOL_LABEL = "taskflow/pool"
HPA_SYNC_SECONDS = 15.0  # the HPA controller's default --horizontal-pod-autoscaler-sync-period
# Workers of the harness drain for one second: a pool scaled down under a running long task hands it back, which the
# held-running check sees (its running tasks exceed what its live replicas hold).
GRACE_SECONDS = "1"


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    target_per_replica: float  # load (due + running) one replica holds: concurrency x targetUtilisation
    polling_interval: float
    stabilization: float  # seconds a lower wish must persist before replicas go down
    cooldown: float = 0.0  # seconds without load before 1 → 0 (KEDA, only with min_replicas 0)

    def scaled(self, factor: float) -> Policy:
        """The same policy with its intervals divided by ``factor`` (a short run in the test suite)."""
        return Policy(
            self.min_replicas,
            self.max_replicas,
            self.target_per_replica,
            self.polling_interval / factor,
            self.stabilization / factor,
            self.cooldown / factor,
        )


@dataclass(frozen=True)
class Pool:
    """One worker pool as the chart renders it: what its pods consume and how it is scaled."""

    name: str
    queues: str  # TASKFLOW_WORKER_QUEUES, "critical:3,default:1"
    concurrency: int
    policy: Policy

    @property
    def queue_names(self) -> list[str]:
        return [q.split(":", 1)[0] for q in self.queues.split(",")]

    def load_path(self) -> str:
        return "/api/v1/load?" + "&".join(f"queue={q}" for q in self.queue_names)

    def scaled(self, factor: float) -> Pool:
        return Pool(self.name, self.queues, self.concurrency, self.policy.scaled(factor))

    @classmethod
    def of(cls, data: dict[str, Any]) -> Pool:
        """From JSON (``--pools``, a report): the fields above, ``policy`` a Policy's."""
        return cls(data["name"], data["queues"], int(data["concurrency"]), Policy(**data["policy"]))


def _env(container: dict[str, Any], name: str) -> str:
    for entry in container.get("env", []):
        if entry["name"] == name and "value" in entry:
            return str(entry["value"])
    raise RuntimeError(f"the worker container declares no {name}")


def _down_window(behavior: dict[str, Any]) -> float:
    return float(behavior.get("scaleDown", {}).get("stabilizationWindowSeconds", 300))


def _keda_policy(spec: dict[str, Any], queue_names: list[str]) -> Policy:
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    url = urlsplit(meta["url"])
    polled = parse_qs(url.query).get("queue", [])
    if url.path != "/api/v1/load" or meta.get("valueLocation") != "load" or polled != queue_names:
        raise RuntimeError(f"the ScaledObject polls {meta['url']} ({meta.get('valueLocation')}), not its queues' load")
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
    return Policy(
        int(spec["minReplicaCount"]),
        int(spec["maxReplicaCount"]),
        float(meta["targetValue"]),
        float(spec["pollingInterval"]),
        _down_window(behavior),
        float(spec.get("cooldownPeriod", 300)),
    )


def _hpa_policy(spec: dict[str, Any], queue_names: list[str]) -> Policy:
    (metric,) = spec["metrics"]
    expressions = metric["external"]["metric"].get("selector", {}).get("matchExpressions", [])
    selected = [e["values"] for e in expressions if e["key"] == "queue" and e["operator"] == "In"]
    if selected != [queue_names]:
        raise RuntimeError(f"the HPA selects queues {selected}, not {queue_names}")
    target = float(metric["external"]["target"]["averageValue"])
    window = _down_window(spec.get("behavior", {}))
    return Policy(int(spec["minReplicas"]), int(spec["maxReplicas"]), target, HPA_SYNC_SECONDS, window)


def pools_from_manifests(documents: Iterable[dict[str, Any] | None]) -> list[Pool]:
    """Each pool of a `helm template` output: its Deployment's env and its ScaledObject's (or HPA's) policy, matched
    by the pool label; in the order the Deployments come (the chart's order of worker.pools)."""
    deployments: dict[str, dict[str, Any]] = {}
    scalers: dict[str, tuple[str, dict[str, Any]]] = {}
    for doc in documents:
        pool = ((doc or {}).get("metadata", {}).get("labels") or {}).get(POOL_LABEL)
        if doc is None or pool is None:
            continue
        if doc["kind"] == "Deployment":
            deployments[pool] = doc
        elif doc["kind"] in ("ScaledObject", "HorizontalPodAutoscaler"):
            scalers[pool] = (doc["kind"], doc["spec"])
    pools = []
    for name, deployment in deployments.items():
        if name not in scalers:
            raise RuntimeError(f"pool {name} has no autoscaler (autoscaling off?): nothing to test")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        queues = _env(container, "TASKFLOW_WORKER_QUEUES")
        concurrency = int(_env(container, "TASKFLOW_WORKER_CONCURRENCY"))
        names = [q.split(":", 1)[0] for q in queues.split(",")]
        kind, spec = scalers[name]
        policy = _keda_policy(spec, names) if kind == "ScaledObject" else _hpa_policy(spec, names)
        pools.append(Pool(name, queues, concurrency, policy))
    if not pools:
        raise RuntimeError("no worker pool rendered")
    return pools


def pools_from_chart(env: str, *extra: str) -> list[Pool]:
    """The worker pools `helm template` renders for environments/<env> (``extra``: more helm arguments)."""
    helm = shutil.which("helm") or str(ROOT / ".taskflow" / "bin" / "helm")  # installed by `make tools`
    values = [ROOT / "environments" / "base" / "values.yaml"]
    values += [ROOT / "environments" / env / name for name in ("values.yaml", "version.yaml")]
    argv = [helm, "template", "taskflow", str(CHART)] + [a for v in values if v.exists() for a in ("-f", str(v))]
    rendered = subprocess.run([*argv, *extra], capture_output=True, text=True, check=True, timeout=60).stdout
    return pools_from_manifests(yaml.safe_load_all(rendered))


@dataclass
class Autoscaler:
    """The replica decision of KEDA/HPA for one pool: up at once, down to the highest wish of the window; with
    min_replicas 0, KEDA's 1 → 0 after ``cooldown`` seconds without load and 0 → 1 as soon as there is some."""

    policy: Policy
    replicas: int = 0
    wishes: deque[tuple[float, int]] = field(default_factory=deque)
    last_active: float | None = None

    def decide(self, now: float, load: float) -> int:
        p = self.policy
        if load > 0:
            self.last_active = now
        if p.min_replicas == 0 and load <= 0:
            idle_long_enough = self.last_active is None or now - self.last_active >= p.cooldown
            if self.replicas == 0 or idle_long_enough:
                self.wishes.clear()
                self.replicas = 0
                return 0
        wish = min(p.max_replicas, max(p.min_replicas, 1, math.ceil(load / p.target_per_replica)))
        self.wishes.append((now, wish))
        while self.wishes and self.wishes[0][0] < now - p.stabilization:
            self.wishes.popleft()
        if wish >= self.replicas:
            self.replicas = wish
        else:
            self.replicas = max(w for _, w in self.wishes)
        return self.replicas


@dataclass
class Sample:
    t: float
    load: int
    running: int
    replicas: int
    succeeded: int


@dataclass(frozen=True)
class Stream:
    """What Locust submits into one pool's queues during the burst: ``batch`` sleep tasks of ``seconds`` each, every
    ``every``-th iteration of a user (about one a second), round-robin over the pool's queues."""

    queues: list[str]
    seconds: float
    batch: int
    every: int = 1


class Fleet:
    """One pool's real worker processes; scale-down sends SIGTERM to the newest and reaps them later."""

    def __init__(self, system: System, pool: Pool) -> None:
        self.system = system
        self.pool = pool
        self.live: list[subprocess.Popen[bytes]] = []
        self.stopping: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def scale_to(self, replicas: int) -> None:
        while len(self.live) < replicas:
            self.started += 1
            self.live.append(
                self.system.start_worker(
                    TASKFLOW_WORKER_QUEUES=self.pool.queues,
                    TASKFLOW_WORKER_CONCURRENCY=str(self.pool.concurrency),
                    TASKFLOW_WORKER_ID=f"{self.pool.name}-{self.started}",
                    TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS=GRACE_SECONDS,
                )
            )
        while len(self.live) > replicas:
            proc = self.live.pop()
            proc.send_signal(signal.SIGTERM)
            self.stopping.append(proc)
        self.stopping = [p for p in self.stopping if p.poll() is None]

    def stop(self) -> None:
        for proc in [*self.live, *self.stopping]:
            stop(proc)


def default_streams(pools: list[Pool], batch: int, sleep: float) -> dict[str, Stream]:
    """Short tasks into the first pool, long ones into the others: longer than their scale-down window (and
    cooldown), so a signal that forgot running tasks would scale a pool down under them."""
    streams = {pools[0].name: Stream(pools[0].queue_names, sleep, batch)}
    for pool in pools[1:]:
        hold = max(pool.policy.stabilization, pool.policy.cooldown)
        streams[pool.name] = Stream(pool.queue_names, round(max(2.0, 1.5 * hold), 1), 1, 4)
    return streams


class _Recorder:
    """Per pool: the signal from the API, the state from PostgreSQL, and the autoscaler's decisions."""

    def __init__(self, pools: list[Pool], fleets: dict[str, Fleet]) -> None:
        self.pools = pools
        self.fleets = fleets
        self.scalers = {p.name: Autoscaler(p.policy) for p in pools}
        self.next_poll = dict.fromkeys(self.scalers, 0.0)
        self.samples: dict[str, list[Sample]] = {p.name: [] for p in pools}
        self.decisions: dict[str, list[tuple[float, int, int]]] = {p.name: [] for p in pools}
        self.misrouted: list[dict[str, Any]] = []
        self.consumers = {q: {p.name for p in pools if q in p.queue_names} for p in pools for q in p.queue_names}

    async def tick(self, api: httpx.AsyncClient, db: asyncpg.Connection, start: float) -> int:
        """One sample of every pool; a decision for each pool whose poll is due. Returns the tasks still to do."""
        counts = await db.fetch("SELECT queue, status, count(*) AS n FROM tasks GROUP BY queue, status")
        by = {(r["queue"], r["status"]): int(r["n"]) for r in counts}
        for row in await db.fetch("SELECT queue, worker_id FROM tasks WHERE status = 'running' GROUP BY 1, 2"):
            owner = str(row["worker_id"] or "").rsplit("-", 1)[0]  # TASKFLOW_WORKER_ID "<pool>-<n>"
            if owner not in self.consumers.get(row["queue"], set()):
                self.misrouted.append({"queue": row["queue"], "worker_id": row["worker_id"]})
        for pool in self.pools:
            now = time.monotonic() - start
            signal_ = (await api.get(pool.load_path())).raise_for_status().json()
            if sorted(signal_["queues"]) != sorted(pool.queue_names):
                raise RuntimeError(f"GET {pool.load_path()} answered for {signal_['queues']}")
            load = int(signal_["load"])
            running = sum(by.get((q, "running"), 0) for q in pool.queue_names)
            succeeded = sum(by.get((q, "succeeded"), 0) for q in pool.queue_names)
            fleet = self.fleets[pool.name]
            if time.monotonic() - start >= self.next_poll[pool.name]:
                self.next_poll[pool.name] += pool.policy.polling_interval
                fleet.scale_to(self.scalers[pool.name].decide(now, load))
                self.decisions[pool.name].append((now, load, self.scalers[pool.name].replicas))
            # After this tick's decision: the run may end on it (every pool back at its minimum), and
            # the last sample must show the replicas it left.
            self.samples[pool.name].append(Sample(now, load, running, len(fleet.live), succeeded))
        return sum(n for (_, status), n in by.items() if status in ("queued", "scheduled", "running"))

    def settled(self) -> bool:
        return all(len(self.fleets[p.name].live) == p.policy.min_replicas for p in self.pools)


def _locust(system: System, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "locust"),
            "-f",
            str(Path(__file__).parent / "scale_locustfile.py"),
            "--headless",
            "--host",
            system.url,
            "--only-summary",
            # A user stopped by the shape finishes its request first: a batch the API stored is a batch
            # Locust counted (killed mid-request, it was stored and not counted, failing exactly-once).
            "--stop-timeout",
            "60",
            "--csv",
            str(out / "scale"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def run(
    pools: list[Pool], streams: dict[str, Stream], *, idle: float, burst: float, users: int, out: Path
) -> dict[str, Any]:
    settings = {"auth_enabled": "false", "lease_seconds": "10"}
    async with provisioned("taskflow_scale", out / "logs", **settings) as resources:
        system = System(resources)
        fleets = {p.name: Fleet(system, p) for p in pools}
        recorder = _Recorder(pools, fleets)
        locust: subprocess.Popen[bytes] | None = None
        try:
            system.start_api()
            env = {
                **resources.env,
                "SCALE_IDLE_SECONDS": str(idle),
                "SCALE_BURST_SECONDS": str(burst),
                "SCALE_BURST_USERS": str(users),
                "SCALE_STREAMS": json.dumps([asdict(s) for s in streams.values()]),
                "PYTHONPATH": str(ROOT),
            }
            db = await asyncpg.connect(resources.database_url)
            start = time.monotonic()
            locust = _locust(system, env, out)
            longest = max(max(p.policy.stabilization, p.policy.cooldown) for p in pools)
            limit = 2 * idle + burst + longest + max(s.seconds for s in streams.values()) + 120
            async with httpx.AsyncClient(base_url=system.url, timeout=10) as api:
                while time.monotonic() - start < limit:
                    waiting = await recorder.tick(api, db, start)
                    done = locust.poll() is not None and waiting == 0 and recorder.settled()
                    if done and time.monotonic() - start > idle:
                        break
                    await asyncio.sleep(0.25)
            rows = await db.fetch("SELECT queue, status, attempt FROM tasks")
            await db.close()
        finally:
            if locust is not None:
                stop(locust, timeout=90)
            for fleet in fleets.values():
                fleet.stop()
            system.stop_all()
    with (out / "scale_stats.csv").open() as stats:
        sent_batches = {r["Name"]: int(r["Request Count"]) for r in csv.DictReader(stats) if r["Name"] != "Aggregated"}
    sent = {q: sent_batches.get(f"/api/v1/tasks/batch {q}", 0) * s.batch for s in streams.values() for q in s.queues}
    return {
        "pools": [asdict(p) for p in pools],
        "streams": {name: asdict(s) for name, s in streams.items()},
        "samples": {name: [asdict(s) for s in samples] for name, samples in recorder.samples.items()},
        "decisions": recorder.decisions,
        "misrouted": recorder.misrouted[:20],
        "tasks": {
            "sent": sent,
            "stored": {q: sum(1 for r in rows if r["queue"] == q) for q in sent},
            "succeeded_first_attempt": {
                q: sum(1 for r in rows if r["queue"] == q and r["status"] == "succeeded" and r["attempt"] == 1)
                for q in sent
            },
            "elsewhere": sum(1 for r in rows if r["queue"] not in sent),
        },
    }


def _peak(samples: list[Sample], replicas_test: Any, width: float) -> float:
    """The best rate over ``width``-second windows spent at a replica count passing the test."""
    best = 0.0
    for i, a in enumerate(samples):
        window = [b for b in samples[i:] if b.t - a.t <= width + 0.5]
        b = window[-1]
        if b.t - a.t >= width and all(replicas_test(w.replicas) for w in window):
            best = max(best, (b.succeeded - a.succeeded) / (b.t - a.t))
    return best


def pool_verdict(pool: Pool, samples: list[Sample], decisions: list[tuple[float, int, int]]) -> dict[str, Any]:
    """One pool's four promises, each with the numbers behind it."""
    p = pool.policy
    held_at_min = p.target_per_replica * p.min_replicas
    backlog = next((s.t for s in samples if s.load > held_at_min), None)
    risen = next((s.t for s in samples if s.replicas > p.min_replicas), None)
    rise_ok = backlog is not None and risen is not None and risen - backlog <= 2 * p.polling_interval + 0.5
    last_high = max((s.t for s in samples if s.replicas > p.min_replicas), default=None)
    last_wish = max((t for t, load, _ in decisions if load > held_at_min), default=None)
    # Down to the minimum only after the window; to zero only after the cooldown without load.
    hold = p.cooldown if p.min_replicas == 0 else p.stabilization
    back_ok = (
        bool(samples)
        and samples[-1].replicas == p.min_replicas
        and last_high is not None
        and last_wish is not None
        and last_high - last_wish >= hold - p.polling_interval - 0.5
    )
    # Running tasks beyond what the live replicas hold sit on workers told to stop: scaled down under them.
    short = [asdict(s) for s in samples if s.running > s.replicas * pool.concurrency]
    width = max(1.0, min(5.0, p.polling_interval))
    low = _peak(samples, lambda r: r == p.min_replicas, width)
    high = _peak(samples, lambda r: r > p.min_replicas, width)
    return {
        "replicas_rose_in_time": {"ok": rise_ok, "load_above_min_at": backlog, "rose_at": risen},
        "back_to_min_after_window": {"ok": back_ok, "last_scale_wish_at": last_wish, "last_above_min_at": last_high},
        "held_running_tasks": {"ok": not short, "samples_short_of_slots": short[:5]},
        "throughput_rose": {
            "ok": high > 1.2 * low and high > 0,
            "peak_at_min_per_s": low,
            "peak_above_min_per_s": high,
        },
    }


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """Every pool's promises (named "<pool>: <promise>"), the routing of tasks to pools, and exactly-once."""
    results: dict[str, Any] = {}
    for data in report["pools"]:
        pool = Pool.of(data)
        samples = [Sample(**s) for s in report["samples"][pool.name]]
        for name, result in pool_verdict(pool, samples, report["decisions"][pool.name]).items():
            results[f"{pool.name}: {name}"] = result
    results["tasks_ran_in_their_pools"] = {"ok": not report["misrouted"], "misrouted": report["misrouted"]}
    tasks = report["tasks"]
    exact = all(tasks["stored"][q] == n == tasks["succeeded_first_attempt"][q] for q, n in tasks["sent"].items())
    results["exactly_once"] = {"ok": exact and tasks["elsewhere"] == 0 and sum(tasks["sent"].values()) > 0, **tasks}
    return results


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for data in report["pools"]:
        samples = [Sample(**s) for s in report["samples"][data["name"]]]
        t = [s.t for s in samples]
        axes[0].plot(t, [s.load for s in samples], label=f"{data['name']} load")
        axes[0].plot(t, [s.running for s in samples], linestyle=":", label=f"{data['name']} running")
        axes[1].step(t, [s.replicas for s in samples], where="post", label=data["name"])
        rates = [0.0] + [(b.succeeded - a.succeeded) / max(b.t - a.t, 1e-9) for a, b in itertools.pairwise(samples)]
        axes[2].plot(t, rates, linewidth=0.8, label=data["name"])
    policies = {d["name"]: d["policy"] for d in report["pools"]}
    axes[0].set(ylabel="tasks (due + running)", title="Per-pool autoscaling (policies: " + json.dumps(policies) + ")")
    axes[1].set(ylabel="worker replicas")
    axes[2].set(ylabel="tasks/s finished", xlabel="seconds")
    for ax in axes:
        ax.legend(fontsize=7)
    axes[0].title.set_fontsize(6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scale-test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="dev", help="environment whose rendered chart gives the pools")
    parser.add_argument(
        "--pools", help="JSON list of pools instead of the chart's: [{name, queues, concurrency, policy}]"
    )
    parser.add_argument("--time-scale", type=float, default=1.0, help="divide the policies' intervals by this")
    parser.add_argument("--idle", type=float, default=20)
    parser.add_argument("--burst", type=float, default=60)
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--batch", type=int, default=50, help="tasks per batch into the first pool")
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds each task of the first pool sleeps")
    parser.add_argument("--streams", help='JSON {pool: {"seconds", "batch", "every"}} over the default streams')
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    pools = [Pool.of(d) for d in json.loads(args.pools)] if args.pools else pools_from_chart(args.env)
    pools = [p.scaled(args.time_scale) for p in pools]
    streams = default_streams(pools, args.batch, args.sleep)
    for name, override in (json.loads(args.streams) if args.streams else {}).items():
        streams[name] = Stream(**{**asdict(streams[name]), **override})
    args.out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(run(pools, streams, idle=args.idle, burst=args.burst, users=args.users, out=args.out))
    report["verdict"] = verdict(report)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    chart(report, args.out / f"scale-{stamp}.png")
    (args.out / f"scale-{stamp}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    for name, result in report["verdict"].items():
        details = json.dumps({k: v for k, v in result.items() if k != "ok"})
        print(f"{'PASS' if result['ok'] else 'FAIL'}  {name}: {details}")
    print(f"written: {args.out / f'scale-{stamp}.json'} and .png")
    return 0 if all(r["ok"] for r in report["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
