"""`make scale-test`: does queue-depth autoscaling do what the chart promises?

A Locust ramp (idle → burst → idle) drives the real API while an autoscaler loop applies a
policy — read from the Helm chart rendered for an environment (`--env`), or given — by
starting and stopping real `taskflow-worker` processes (SIGTERM on scale-down), like KEDA
with the chart's ScaledObject: every `pollingInterval` it reads `due` from GET
/api/v1/queue, wants `ceil(due / target)` replicas within [min, max], scales up at once and
scales down only to the highest wish of the last stabilization window.

It records due tasks, replicas and throughput, draws them (PNG), and passes only if
replicas rose within two polling intervals of the backlog, returned to the minimum after
the cooldown, throughput rose with replicas, and every task submitted finished exactly
once (succeeded, on its first attempt).
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import yaml

from loadtest.procs import System, provisioned, stop

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CHART = ROOT / "platform" / "helm" / "taskflow"


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    target_due_per_replica: int
    polling_interval: float
    stabilization: float  # seconds a lower wish must persist before replicas go down

    @classmethod
    def from_chart(cls, env: str) -> Policy:
        """The worker scaling policy `helm template` renders for environments/<env>."""
        helm = shutil.which("helm") or str(ROOT / ".taskflow" / "bin" / "helm")  # installed by `make tools`
        values = [ROOT / "environments" / "base" / "values.yaml", ROOT / "environments" / env / "values.yaml"]
        argv = [helm, "template", "taskflow", str(CHART)] + [a for v in values if v.exists() for a in ("-f", str(v))]
        rendered = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
        for doc in yaml.safe_load_all(rendered):
            if doc and doc.get("kind") == "ScaledObject":
                spec = doc["spec"]
                trigger = spec["triggers"][0]["metadata"]
                window = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
                down = window.get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 300)
                return cls(
                    spec["minReplicaCount"],
                    spec["maxReplicaCount"],
                    int(trigger["targetValue"]),
                    float(spec["pollingInterval"]),
                    float(down),
                )
            if doc and doc.get("kind") == "HorizontalPodAutoscaler":
                spec = doc["spec"]
                target = spec["metrics"][0]["external"]["target"]["averageValue"]
                down = spec.get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 300)
                return cls(spec["minReplicas"], spec["maxReplicas"], int(target), 15.0, float(down))
        raise RuntimeError(f"no worker autoscaler rendered for {env}")

    def scaled(self, factor: float) -> Policy:
        """The same policy with its intervals divided by ``factor`` (a short run in the test suite)."""
        return Policy(
            self.min_replicas,
            self.max_replicas,
            self.target_due_per_replica,
            self.polling_interval / factor,
            self.stabilization / factor,
        )


@dataclass
class Autoscaler:
    """The replica decision of KEDA/HPA: up at once, down to the highest wish of the window."""

    policy: Policy
    replicas: int = 0
    wishes: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, now: float, due: int) -> int:
        p = self.policy
        wish = min(p.max_replicas, max(p.min_replicas, math.ceil(due / p.target_due_per_replica)))
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
    due: int
    replicas: int
    succeeded: int


class Fleet:
    """Real worker processes; scale-down sends SIGTERM to the newest and reaps them later."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.live: list[subprocess.Popen[bytes]] = []
        self.stopping: list[subprocess.Popen[bytes]] = []

    def scale_to(self, replicas: int) -> None:
        while len(self.live) < replicas:
            self.live.append(self.system.start_worker())
        while len(self.live) > replicas:
            proc = self.live.pop()
            proc.send_signal(signal.SIGTERM)
            self.stopping.append(proc)
        self.stopping = [p for p in self.stopping if p.poll() is None]

    def stop(self) -> None:
        for proc in [*self.live, *self.stopping]:
            stop(proc)


async def run(
    policy: Policy, *, idle: float, burst: float, users: int, batch: int, sleep: float, out: Path
) -> dict[str, Any]:
    settings = {"worker_concurrency": "5", "auth_enabled": "false", "lease_seconds": "10"}
    async with provisioned("taskflow_scale", out / "logs", **settings) as resources:
        system = System(resources)
        fleet = Fleet(system)
        samples: list[Sample] = []
        decisions: list[tuple[float, int, int]] = []
        locust: subprocess.Popen[bytes] | None = None
        try:
            system.start_api()
            scaler = Autoscaler(policy)
            fleet.scale_to(scaler.decide(0, 0))
            env = {
                **resources.env,
                "SCALE_IDLE_SECONDS": str(idle),
                "SCALE_BURST_SECONDS": str(burst),
                "SCALE_BURST_USERS": str(users),
                "TASKFLOW_LOAD_BATCH": str(batch),
                "TASKFLOW_LOAD_SLEEP_SECONDS": str(sleep),
                "PYTHONPATH": str(ROOT),
            }
            locust = subprocess.Popen(
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
                    "30",
                    "--csv",
                    str(out / "scale"),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            db = await asyncpg.connect(resources.database_url)
            start = time.monotonic()
            next_poll = start
            limit = 2 * idle + burst + policy.stabilization + 120
            async with httpx.AsyncClient(base_url=system.url, timeout=10) as api:
                while time.monotonic() - start < limit:
                    now = time.monotonic() - start
                    due = (await api.get("/api/v1/queue")).json()["due"]
                    succeeded = await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'succeeded'")
                    samples.append(Sample(now, due, len(fleet.live), succeeded))  # what these replicas achieved
                    if time.monotonic() >= next_poll:
                        next_poll += policy.polling_interval
                        fleet.scale_to(scaler.decide(now, due))
                        decisions.append((now, due, scaler.replicas))
                    waiting = await db.fetchval(
                        "SELECT count(*) FROM tasks WHERE status IN ('queued','scheduled','running')"
                    )
                    if (
                        locust.poll() is not None
                        and waiting == 0
                        and len(fleet.live) == policy.min_replicas
                        and now > idle
                    ):
                        break
                    await asyncio.sleep(0.25)
            final = await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'succeeded'")
            last_due = samples[-1].due if samples else 0
            samples.append(Sample(time.monotonic() - start, last_due, len(fleet.live), final))  # where it ended
            rows = await db.fetch("SELECT status, attempt FROM tasks")
            await db.close()
        finally:
            if locust is not None:
                stop(locust)
            fleet.stop()
            system.stop_all()
    with (out / "scale_stats.csv").open() as stats:
        batches = int(next(r for r in csv.DictReader(stats) if r["Name"] == "Aggregated")["Request Count"])
    return {
        "policy": asdict(policy),
        "samples": [asdict(s) for s in samples],
        "decisions": decisions,
        "tasks": {
            "stored": len(rows),
            "batches_sent": batches,
            "batch": batch,
            "succeeded_first_attempt": sum(1 for r in rows if r["status"] == "succeeded" and r["attempt"] == 1),
        },
    }


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """The four promises, each with the numbers behind it."""
    p = Policy(**report["policy"])
    samples = [Sample(**s) for s in report["samples"]]
    backlog = next((s.t for s in samples if s.due > p.target_due_per_replica * p.min_replicas), None)
    risen = next((s.t for s in samples if s.replicas > p.min_replicas), None)
    rise_ok = backlog is not None and risen is not None and risen - backlog <= 2 * p.polling_interval + 0.5
    last_high = max((s.t for s in samples if s.replicas > p.min_replicas), default=None)
    last_wish = max(
        (t for t, due, _ in report["decisions"] if math.ceil(due / p.target_due_per_replica) > p.min_replicas),
        default=None,
    )
    back_ok = (
        samples[-1].replicas == p.min_replicas
        and last_high is not None
        and last_wish is not None
        and last_high - last_wish >= p.stabilization - p.polling_interval - 0.5
    )

    def peak(replicas_test: Any, width: float = 1.0) -> float:
        """The best rate over ``width``-second windows spent at a replica count passing the test."""
        best = 0.0
        for i, a in enumerate(samples):
            window = [b for b in samples[i:] if b.t - a.t <= width + 0.5]
            b = window[-1]
            if b.t - a.t >= width and all(replicas_test(w.replicas) for w in window):
                best = max(best, (b.succeeded - a.succeeded) / (b.t - a.t))
        return best

    low, high = peak(lambda r: r == p.min_replicas), peak(lambda r: r > p.min_replicas)
    tasks = report["tasks"]
    sent = tasks["batches_sent"] * tasks["batch"]
    return {
        "replicas_rose_in_time": {"ok": rise_ok, "backlog_at": backlog, "rose_at": risen},
        "back_to_min_after_cooldown": {"ok": back_ok, "last_scale_wish_at": last_wish, "last_above_min_at": last_high},
        "throughput_rose": {
            "ok": high > 1.2 * low and high > 0,
            "peak_at_min_per_s": low,
            "peak_above_min_per_s": high,
        },
        "exactly_once": {"ok": tasks["stored"] == sent == tasks["succeeded_first_attempt"], **tasks, "sent": sent},
    }


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [Sample(**s) for s in report["samples"]]
    t = [s.t for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    axes[0].plot(t, [s.due for s in samples], color="tab:orange")
    axes[0].set(ylabel="due tasks", title="Queue-depth autoscaling (policy: " + json.dumps(report["policy"]) + ")")
    axes[1].step(t, [s.replicas for s in samples], where="post", color="tab:blue")
    axes[1].set(ylabel="worker replicas")
    rates = [0.0] + [(b.succeeded - a.succeeded) / max(b.t - a.t, 1e-9) for a, b in itertools.pairwise(samples)]
    axes[2].plot(t, rates, color="tab:green", linewidth=0.8)
    axes[2].set(ylabel="tasks/s finished", xlabel="seconds")
    axes[0].title.set_fontsize(7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scale-test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="dev", help="environment whose rendered chart gives the policy")
    parser.add_argument("--policy", help="JSON Policy instead of the chart's")
    parser.add_argument("--time-scale", type=float, default=1.0, help="divide the policy's intervals by this")
    parser.add_argument("--idle", type=float, default=20)
    parser.add_argument("--burst", type=float, default=60)
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds each task sleeps")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    policy = Policy(**json.loads(args.policy)) if args.policy else Policy.from_chart(args.env)
    policy = policy.scaled(args.time_scale)
    args.out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(
        run(
            policy, idle=args.idle, burst=args.burst, users=args.users, batch=args.batch, sleep=args.sleep, out=args.out
        )
    )
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
